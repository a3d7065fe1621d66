"""Fused attention on the GPU (attention.cu, FlashAttention style) for head sizes 16, 32, 64 and 128;
other head sizes, float64 and masks of other shapes go to the reference (the unfused CuPy composition)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..reference import attention as ref
from ._loader import contiguous, cupy, is_float32_cupy, kernel

# head size -> (forward BR, dkdv BC, dq BR): the block sizes attention.cu's FLASH_KERNELS lines fix
TILES = {16: (64, 64, 64), 32: (64, 64, 64), 64: (64, 64, 64), 128: (32, 32, 32)}


def _fits(q: Any, k: Any, v: Any, mask: Any) -> bool:
    E = q.shape[-1]
    return (is_float32_cupy(q, k, v, mask) and E in TILES and v.shape[-1] == E and q.ndim >= 2
            and (mask is None or mask.ndim == 3))


def _flat(a: Any) -> Any:
    """(..., T, E) -> contiguous (BH, T, E)."""
    return contiguous(a).reshape(-1, a.shape[-2], a.shape[-1])


def _mask_args(mask: Any) -> tuple[Any, int, int]:
    if mask is None:
        return None, 1, 1
    return contiguous(mask), mask.shape[0], mask.shape[1]


def attention_forward(q: Any, k: Any, v: Any, mask: Any, scale: float, causal: bool) -> tuple[Any, Any]:
    if not _fits(q, k, v, mask):
        return ref.attention_forward(q, k, v, mask, scale, causal)
    cp = cupy()
    lead, L, S, E = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1]
    qf, kf, vf = _flat(q), _flat(k), _flat(v)
    BH = qf.shape[0]
    out, lse = cp.empty_like(qf), cp.empty((BH, L), cp.float32)
    m, Bm, Lm = _mask_args(mask)
    br = TILES[E][0]
    if BH and L:
        kernel("attention", f"flash_fwd_d{E}")((math.ceil(L / br), BH), (br,), (
            qf, kf, vf, m, out, lse, np.int32(L), np.int32(S), np.int32(Bm), np.int32(Lm), np.float32(scale),
            np.int32(causal)))
    return out.reshape(*lead, L, E), lse.reshape(*lead, L)


def attention_backward(dout: Any, q: Any, k: Any, v: Any, out: Any, lse: Any, mask: Any, scale: float,
                       causal: bool, grads: tuple[Any, Any, Any] | None = None) -> tuple[Any, Any, Any]:
    if not _fits(q, k, v, mask):
        return ref.attention_backward(dout, q, k, v, out, lse, mask, scale, causal, grads)
    cp = cupy()
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    qf, kf, vf, dof, of = _flat(q), _flat(k), _flat(v), _flat(dout), _flat(out)
    lf = contiguous(lse).reshape(-1, L)
    BH = qf.shape[0]
    dq, dk, dv = cp.empty_like(qf), cp.empty_like(kf), cp.empty_like(vf)
    Dvec = cp.empty((BH, L), cp.float32)
    m, Bm, Lm = _mask_args(mask)
    _, bc, br = TILES[E]
    common = (np.int32(L), np.int32(S), np.int32(Bm), np.int32(Lm), np.float32(scale), np.int32(causal))
    if BH and L and S:
        rows = BH * L
        kernel("attention", "flash_bwd_prep")((math.ceil(rows / 8),), (256,),  # a warp per row, 8 per block
                                              (dof, of, Dvec, np.int64(rows), np.int32(E)))
        kernel("attention", f"flash_bwd_dkdv_d{E}")((math.ceil(S / bc), BH), (bc,),
                                                    (qf, kf, vf, m, dof, lf, Dvec, dk, dv, *common))
        kernel("attention", f"flash_bwd_dq_d{E}")((math.ceil(L / br), BH), (br,),
                                                  (qf, kf, vf, m, dof, lf, Dvec, dq, *common))
    else:
        dq[...], dk[...], dv[...] = 0, 0, 0
    result = (dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape))
    if grads is None:
        return result
    for dst, src in zip(grads, result, strict=True):
        dst[...] = src
    return grads

