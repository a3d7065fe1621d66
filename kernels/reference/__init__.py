"""The NumPy reference tier: the readable math every faster kernel is tested against.

Each function takes and returns arrays of any array module (NumPy or CuPy: `xp` is read off the input),
works on the last axis where an axis is involved, and computes in the input's dtype unless a comment
says why it does not.
"""

from collections.abc import Callable
from typing import Any

from .adam import adam_update
from .attention import attention_backward, attention_forward, decode_attention_forward
from .crossentropy import cross_entropy_backward, cross_entropy_forward
from .ctc import ctc_backward, ctc_forward
from .gelu import bias_gelu_backward, bias_gelu_forward, gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .quant import dequantize_forward, qlinear_backward, qlinear_forward, quantize_forward
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

# The backend table of this tier (backend.py reads it): every kernel, by name. This tier is complete: the other
# tiers implement a subset, and backend.py falls back to these for the rest.
KERNELS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward,
    gelu_forward, gelu_backward, bias_gelu_forward, bias_gelu_backward,
    layernorm_forward, layernorm_backward,
    cross_entropy_forward, cross_entropy_backward,
    attention_forward, attention_backward, decode_attention_forward,
    adam_update,
    quantize_forward, dequantize_forward, qlinear_forward, qlinear_backward,
    ctc_forward, ctc_backward,
)}
