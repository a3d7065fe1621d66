"""Layer norm on the GPU (layernorm.cu): forward, dx per row, dweight/dbias by column blocks (no atomics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reference import layernorm as ref
from ._loader import contiguous, cupy, is_float32_cupy, kernel, row_threads


def layernorm_forward(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    if not is_float32_cupy(x, weight, bias) or x.ndim != 2:
        return ref.layernorm_forward(x, weight, bias, eps)
    cp = cupy()
    x = contiguous(x)
    N, C = x.shape
    out, mean, rstd = cp.empty_like(x), cp.empty(N, cp.float32), cp.empty(N, cp.float32)
    if N:
        kernel("layernorm", "layernorm_forward")(
            (N,), (row_threads(C),),
            (x, contiguous(weight), contiguous(bias), out, mean, rstd, np.int32(N), np.int32(C), np.float32(eps)))
    return out, mean, rstd


def layernorm_backward(dout: Any, x: Any, weight: Any, mean: Any, rstd: Any,
                       need_affine: bool = True) -> tuple[Any, Any, Any]:
    if not is_float32_cupy(dout, x, weight, mean, rstd) or x.ndim != 2:
        return ref.layernorm_backward(dout, x, weight, mean, rstd, need_affine)
    cp = cupy()
    dout, x = contiguous(dout), contiguous(x)
    N, C = x.shape
    dx = cp.empty_like(x)
    if N:
        kernel("layernorm", "layernorm_backward_dx")(
            (N,), (row_threads(C),), (dout, x, contiguous(weight), mean, rstd, dx, np.int32(N), np.int32(C)))
    if not need_affine:
        return dx, None, None
    dweight, dbias = cp.empty(C, cp.float32), cp.empty(C, cp.float32)
    kernel("layernorm", "layernorm_backward_dwdb")(
        ((C + 31) // 32,), (32, 8), (dout, x, mean, rstd, dweight, dbias, np.int32(N), np.int32(C)))
    return dx, dweight, dbias
