"""Row softmax on the GPU (softmax.cu): v1 shared-memory trees, v2 warp shuffles, v3 online (production)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reference import softmax as ref
from ._loader import contiguous, cupy, is_float32_cupy, kernel, row_threads

VERSIONS = ("softmax_v1", "softmax_v2", "softmax_v3")
PRODUCTION = "softmax_v3"


def softmax_version(x: Any, version: str) -> Any:
    """softmax over the last axis of float32 x with one named version of the kernel."""
    cp = cupy()
    x2 = contiguous(x).reshape(-1, x.shape[-1])
    N, C = x2.shape
    y = cp.empty_like(x2)
    if N:
        threads = row_threads(C)
        if version == "softmax_v1":  # tree reduction: a power of two
            threads = 1 << (threads - 1).bit_length()
            kernel("softmax", version)((N,), (threads,), (x2, y, np.int32(N), np.int32(C)), shared_mem=threads * 4)
        else:
            kernel("softmax", version)((N,), (threads,), (x2, y, np.int32(N), np.int32(C)))
    return y.reshape(x.shape)


def softmax_forward(x: Any) -> Any:
    if not is_float32_cupy(x) or x.ndim == 0:
        return ref.softmax_forward(x)
    return softmax_version(x, PRODUCTION)


def softmax_backward(dy: Any, y: Any) -> Any:
    if not is_float32_cupy(dy, y) or y.ndim == 0:
        return ref.softmax_backward(dy, y)
    cp = cupy()
    d2, y2 = contiguous(dy).reshape(-1, y.shape[-1]), contiguous(y).reshape(-1, y.shape[-1])
    N, C = y2.shape
    dx = cp.empty_like(y2)
    if N:
        kernel("softmax", "softmax_backward")((N,), (row_threads(C),), (d2, y2, dx, np.int32(N), np.int32(C)))
    return dx.reshape(y.shape)

