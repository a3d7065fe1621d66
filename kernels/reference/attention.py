"""Scaled dot-product attention as one kernel pair: the plain NumPy math, materialising the (L, S) score
matrix per batch entry. The fused kernels (cpu/attention.py, cuda/attention.cu) are checked against it.

    s = q k^T * scale + mask (a -inf entry blocks a key; causal blocks keys j > i)
    p = softmax(s) per row (a row with every key blocked gives p = 0), out = p v
    lse = log(sum(exp(s))) per row, kept for the backward (-inf for a fully blocked row)
Backward (docs/derivations/attention.md), with p recomputed as exp(s - lse):
    dv = p^T dout,  dp = dout v^T,  ds = p * (dp - D) with D = rowsum(dout * out),
    dq = scale * ds k,  dk = scale * ds^T q
Shapes: q (..., L, E), k (..., S, E), v (..., S, Ev) with the same leading dims ... (B in short), mask None or
(Bm, Lm, S) with Bm in {1, B}, Lm in {1, L}.
Memory: O(B L S) for the scores, which is what the fused kernels avoid.
"""

from __future__ import annotations

from typing import Any

from ._xp import xp_of


def _scores(q: Any, k: Any, mask: Any, scale: float, causal: bool) -> Any:
    xp = xp_of(q)
    s = (q @ xp.swapaxes(k, -1, -2)) * q.dtype.type(scale)                   # (..., L, S)
    if mask is not None:
        lead = s.shape[:-2] if mask.shape[0] > 1 else ()
        s = s + mask.reshape(lead + mask.shape[-2:])                         # (Bm, Lm, S) -> (..., Lm, S)
    if causal:
        L, S = s.shape[-2:]
        s = xp.where(xp.tril(xp.ones((L, S), dtype=bool)), s, -xp.inf)
    return s


def attention_forward(q: Any, k: Any, v: Any, mask: Any, scale: float, causal: bool) -> tuple[Any, Any]:
    """-> out (..., L, Ev), lse (..., L)."""
    xp = xp_of(q)
    s = _scores(q, k, mask, scale, causal)
    m = s.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)                                        # fully blocked row: exp(-inf) = 0
    e = xp.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    p = e / xp.where(total == 0, 1, total)
    with_keys = total[..., 0] > 0
    lse = xp.where(with_keys, m[..., 0] + xp.log(xp.where(with_keys, total[..., 0], 1)), -xp.inf)
    return p @ v, lse.astype(q.dtype, copy=False)


def attention_backward(dout: Any, q: Any, k: Any, v: Any, out: Any, lse: Any, mask: Any, scale: float,
                       causal: bool, grads: tuple[Any, Any, Any] | None = None) -> tuple[Any, Any, Any]:
    """-> dq, dk, dv shaped like q, k, v; written into `grads` (three arrays, e.g. views of one packed
    buffer) when given."""
    xp = xp_of(q)
    s = _scores(q, k, mask, scale, causal)
    finite = xp.isfinite(lse)[..., None]
    p = xp.where(finite, xp.exp(s - xp.where(finite, lse[..., None], 0)), 0)  # recomputed softmax
    dv = xp.swapaxes(p, -1, -2) @ dout
    dp = dout @ xp.swapaxes(v, -1, -2)
    D = (dout * out).sum(axis=-1, keepdims=True)                             # = rowsum(p * dp)
    ds = p * (dp - D) * q.dtype.type(scale)
    result = (ds @ k, xp.swapaxes(ds, -1, -2) @ q, dv)
    if grads is None:
        return result
    for dst, src in zip(grads, result, strict=True):
        dst[...] = src
    return grads


def decode_attention_forward(q: Any, k: Any, v: Any, first: Any, scale: float, length: int | None = None) -> Any:
    """One decoding step: q (B, nh, E), the cached keys and values k, v (B, nh, cap, E), of which the
    first `length` positions are filled (default: all), the new one last -> (B, nh, E). Row b sees keys
    first[b] .. length-1 (first: (B,) ints, the start of that row's tokens after left padding; None = 0
    for every row). No causal mask is needed: the new query is the last position."""
    xp = xp_of(q)
    k, v = k[:, :, :length], v[:, :, :length]
    s = (k @ q[..., None])[..., 0] * q.dtype.type(scale)                     # (B, nh, S)
    if first is not None:
        s = xp.where(xp.arange(k.shape[2])[None, None, :] < xp.asarray(first)[:, None, None], -xp.inf, s)
    e = xp.exp(s - s.max(axis=-1, keepdims=True))                              # max subtracted: no overflow
    return ((e / e.sum(axis=-1, keepdims=True))[..., None, :] @ v)[..., 0, :]
