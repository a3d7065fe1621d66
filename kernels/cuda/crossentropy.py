"""Fused softmax + cross-entropy on the GPU (crossentropy.cu) for integer targets without class weights
(probability targets and class weights go to the reference)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reference import crossentropy as ref
from ._loader import contiguous, cupy, is_float32_cupy, kernel, row_threads


def cross_entropy_forward(logits: Any, target: Any, weight: Any, ignore_index: int,
                          label_smoothing: float, reduction: str) -> tuple[Any, Any]:
    if (not is_float32_cupy(logits) or logits.ndim != 2 or weight is not None or target.dtype.kind not in "iu"):
        return ref.cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing, reduction)
    cp = cupy()
    logits, target = contiguous(logits), contiguous(target).astype(cp.int64, copy=False)
    N, C = logits.shape
    loss, lse = cp.empty(N, cp.float32), cp.empty(N, cp.float32)
    if N:
        kernel("crossentropy", "cross_entropy_forward")((N,), (row_threads(C),), (
            logits, target, loss, lse, np.int32(N), np.int32(C), np.int64(ignore_index), np.float32(label_smoothing)))
    count = (target != ignore_index).sum()
    if reduction == "none":
        total = loss
    elif reduction == "sum":
        total = loss.sum()
    else:  # mean over the rows that count; all ignored gives NaN, as PyTorch
        total = loss.sum() / count.astype(cp.float32)
    return total, ("cuda", logits, target, lse, ignore_index, label_smoothing, reduction, count)


def cross_entropy_backward(dloss: Any, cache: Any) -> Any:
    if not (isinstance(cache, tuple) and isinstance(cache[0], str) and cache[0] == "cuda"):
        return ref.cross_entropy_backward(dloss, cache)
    cp = cupy()
    _, logits, target, lse, ignore_index, smoothing, reduction, count = cache
    N, C = logits.shape
    if reduction == "none":
        g = contiguous(dloss).astype(cp.float32, copy=False)
    else:
        scale = dloss / count.astype(cp.float32) if reduction == "mean" else dloss
        g = cp.full(N, 1.0, cp.float32) * scale.astype(cp.float32)
    dlogits = cp.empty_like(logits)
    if N:
        kernel("crossentropy", "cross_entropy_backward")((N,), (row_threads(C),), (
            logits, target, lse, g, dlogits, np.int32(N), np.int32(C), np.int64(ignore_index), np.float32(smoothing)))
    return dlogits
