"""Quantized matrix products (the formats of kernels/reference/quant.py: int8 per output channel, or 4-bit
groups): QLinear, the graph node of a quantized Linear, and the array-level functions the quantized modules
(nn/quantized.py) call to quantize, dequantize and multiply without recording anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from ..autograd import Function


class QLinear(Function):
    """x (..., K) -> x @ W^T + bias (..., M) with W stored quantized; dx = dy @ W, dbias = sum(dy)."""

    saves_inputs = (1, 2)
    kernels = ("qlinear_forward", "qlinear_backward")

    def forward(self, x, qweight, scale, bias=None):
        self.qweight, self.scale, self.has_bias = qweight, scale, bias is not None
        return backend.kernel("qlinear_forward")(x, qweight, scale, bias)

    def backward(self, dout):
        dx = backend.kernel("qlinear_backward")(dout, self.qweight, self.scale)
        if not self.has_bias:
            return dx, None, None
        return dx, None, None, dout.reshape(-1, dout.shape[-1]).sum(axis=0)


def quantize(weight: np.ndarray, bits: int, group: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(qweight, scale) of a float (rows, cols) matrix in the int8 or 4-bit format."""
    return backend.kernel("quantize_forward")(weight, bits, group)


def dequantize(qweight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 matrix (rows, cols) that (qweight, scale) stand for."""
    return backend.kernel("dequantize_forward")(qweight, scale)


def qlinear_fn(qweight: np.ndarray, scale: np.ndarray, bias: np.ndarray | None) -> Callable[[Any], Any]:
    """x -> x @ W^T + bias on plain arrays (generation: nothing recorded), the weights bound now."""
    kernel = backend.kernel("qlinear_forward")
    return lambda x: kernel(x, qweight, scale, bias)
