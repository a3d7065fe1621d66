"""GELU and bias + GELU on the GPU (gelu.cu), exact and tanh forms, with the gate saved for the backward."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reference import gelu as ref
from ._loader import THREADS, contiguous, cupy, grid_1d, is_float32_cupy, kernel


def bias_gelu_forward(x: Any, bias: Any, approximate: str = "none") -> tuple[Any, Any]:
    if not is_float32_cupy(x, bias) or x.ndim == 0:
        return ref.bias_gelu_forward(x, bias, approximate)
    cp = cupy()
    x = contiguous(x)
    y, gate = cp.empty_like(x), cp.empty_like(x)
    n = x.size
    if n:
        kernel("gelu", "bias_gelu_forward")(grid_1d(n), (THREADS,), (
            x, contiguous(bias), y, gate, np.int64(n), np.int32(x.shape[-1]), np.int32(approximate == "tanh")))
    return y, gate


def bias_gelu_backward(dy: Any, x: Any, bias: Any, approximate: str, gate: Any) -> Any:
    if not is_float32_cupy(dy, x, bias, gate) or x.ndim == 0:
        return ref.bias_gelu_backward(dy, x, bias, approximate, gate)
    cp = cupy()
    x = contiguous(x)
    dx = cp.empty_like(x)
    n = x.size
    if n:
        kernel("gelu", "bias_gelu_backward")(grid_1d(n), (THREADS,), (
            contiguous(dy), x, contiguous(bias), contiguous(gate), dx, np.int64(n), np.int32(x.shape[-1]),
            np.int32(approximate == "tanh")))
    return dx


def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, Any]:
    return bias_gelu_forward(x, None, approximate)


def gelu_backward(dy: Any, x: Any, approximate: str, gate: Any) -> Any:
    return bias_gelu_backward(dy, x, None, approximate, gate)
