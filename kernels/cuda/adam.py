"""Fused Adam / AdamW on the GPU (adamw.cu): every float32 CuPy parameter of the list in one launch.
AMSGrad, float64 and non-contiguous parameters go to the reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..reference import adam as ref
from ._loader import THREADS, cupy, grid_1d, is_float32_cupy, kernel


def adam_update(params: list[Any], grads: list[Any], exp_avgs: list[Any], exp_avg_sqs: list[Any],
                max_exp_avg_sqs: list[Any] | None, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool, step: int, maximize: bool) -> None:
    arrays = [*params, *grads, *exp_avgs, *exp_avg_sqs]
    if (max_exp_avg_sqs is not None or not params or not is_float32_cupy(*arrays)
            or not all(a.flags.c_contiguous for a in arrays)):
        ref.adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1, beta2, eps,
                        weight_decay, decoupled, step, maximize)
        return
    cp = cupy()

    def ptrs(xs: list[Any]) -> Any:
        return cp.asarray([x.data.ptr for x in xs], dtype=cp.uint64)

    offsets = cp.asarray(np.concatenate([[0], np.cumsum([p.size for p in params])]), dtype=cp.int64)
    total = int(sum(p.size for p in params))
    kernel("adamw", "adam_update")(grid_1d(total, THREADS, 65535), (THREADS,), (
        ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs), offsets, np.int32(len(params)),
        np.float32(lr), np.float32(beta1), np.float32(beta2), np.float32(eps), np.float32(weight_decay),
        np.int32(decoupled), np.float32(lr / (1 - beta1**step)), np.float32(math.sqrt(1 - beta2**step)),
        np.int32(maximize)))
