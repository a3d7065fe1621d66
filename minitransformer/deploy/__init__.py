"""Deployment: `minitransformer serve` (serve.py, its HTTP layer) and the pieces below it: the running decode
batch (batch.py), the continuous-batching scheduler that owns the model (scheduler.py), the OpenAI completions
request and response shapes (completions.py), request bodies (jsonbody.py) and connection limits
(connections.py); compression (compress.py: quantize, prune) and ONNX export (onnx_export.py)."""
