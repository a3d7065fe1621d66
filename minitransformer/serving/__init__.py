"""The pieces of `minitransformer serve` below its HTTP layer (minitransformer/serve.py): the running decode batch
(batch.py), the continuous-batching scheduler that owns the model (scheduler.py), and the OpenAI completions
request and response shapes (completions.py)."""
