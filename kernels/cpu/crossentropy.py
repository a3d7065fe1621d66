"""Fused softmax + cross-entropy, Numba (same names and signatures as reference/crossentropy.py).

Forward: one pass per row computes the row's log-sum-exp (sum of exp after subtracting the row maximum,
found by NumPy's SIMD max) and the loss terms it
needs; only lse (one number per row) is cached with a reference to the logits. Backward recomputes
softmax from lse and writes dlogits = g * (p * sum(Q) - Q) in the same pass, never building the dense
coefficient matrix Q that the reference uses (docs/derivations/cross_entropy.md). Memory traffic: forward
reads the logits twice (max, exp-sum) and writes N numbers; backward reads them once and writes dlogits.
Class-probability targets take the reference path (they are dense anyway).
"""

from __future__ import annotations

import numpy as np

from ..reference import crossentropy as _reference
from ._jit import fexp, pjit, prange


@pjit
def _fwd(x, rowmax, t, w, ignore_index, eps, lse, row_loss, row_w):  # noqa: ANN001, ANN202
    N, C = x.shape
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    eps_c = eps / x.dtype.type(C)
    for n in prange(N):
        row = x[n]
        m = rowmax[n]
        s = row.dtype.type(0.0)
        for c in range(C):
            s += fexp(row[c] - m)
        lse_n = m + np.log(s)
        lse[n] = lse_n
        tn = t[n]
        if tn == ignore_index:
            row_loss[n] = 0.0
            row_w[n] = 0.0
            continue
        wt = w[tn]
        qt = (one - eps) * wt
        # a term with a zero coefficient is 0, also where log p = -inf (the reference's q != 0 rule): a class
        # of weight 0 at a -inf logit would otherwise give 0 * inf = NaN
        loss = qt * (lse_n - row[tn]) if qt != zero else zero  # -w_t * log p_t
        if eps > 0:
            smooth = zero
            for c in range(C):
                wc = w[c]
                smooth += wc * (lse_n - row[c]) if wc != zero else zero  # -sum_c w_c log p_c
            loss += eps_c * smooth
        row_loss[n] = loss
        row_w[n] = wt


@pjit
def _bwd(x, t, w, wsum, ignore_index, eps, lse, g, scale, dx):  # noqa: ANN001, ANN202
    N, C = x.shape
    per_row = g.shape[0] == N and N > 1
    one = x.dtype.type(1.0)
    eps_c = eps / x.dtype.type(C)
    for n in prange(N):
        tn = t[n]
        if tn == ignore_index:
            dx[n, :] = 0.0
            continue
        gn = (g[n] if per_row else g[0]) * scale
        wt = w[tn]
        total = (one - eps) * wt + eps_c * wsum              # sum_c Q[n, c] before the 1/D
        for c in range(C):
            p = fexp(x[n, c] - lse[n])
            dx[n, c] = gn * (p * total - eps_c * w[c])
        dx[n, tn] -= gn * (one - eps) * wt


def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing, reduction):  # noqa: ANN001, ANN201
    """logits (N, C); target (N,) ints or (N, C) probabilities -> (loss, cache)."""
    if target.dtype.kind == "f":
        loss, cache = _reference.cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing,
                                                       reduction)
        return loss, ("reference", cache)
    x = np.ascontiguousarray(logits)
    N, C = x.shape
    w = np.ones(C, dtype=x.dtype) if weight is None else np.ascontiguousarray(weight, dtype=x.dtype)
    t = np.ascontiguousarray(target, dtype=np.int64)
    lse = np.empty(N, dtype=x.dtype)
    row_loss = np.empty(N, dtype=x.dtype)
    row_w = np.empty(N, dtype=x.dtype)
    # NumPy's max is SIMD; a max loop in Numba stays scalar (vectorising it would need no-NaN fastmath)
    _fwd(x, x.max(axis=1), t, w, ignore_index, x.dtype.type(label_smoothing), lse, row_loss, row_w)
    if reduction == "none":
        loss, denom = row_loss, 1.0
    elif reduction == "sum":
        loss, denom = row_loss.sum(), 1.0
    else:
        denom = row_w.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = row_loss.sum() / denom  # every row ignored: 0/0 = NaN, as PyTorch
    return np.asarray(loss, dtype=x.dtype), ("numba", (x, t, w, lse, denom, label_smoothing, ignore_index))


def cross_entropy_backward(dloss, cache):  # noqa: ANN001, ANN201
    kind, state = cache
    if kind == "reference":
        return _reference.cross_entropy_backward(dloss, state)
    x, t, w, lse, denom, eps, ignore_index = state
    dx = np.empty_like(x)
    g = np.ascontiguousarray(np.atleast_1d(dloss), dtype=x.dtype)
    with np.errstate(divide="ignore"):
        scale = x.dtype.type(1.0 / denom) if denom != 0 else x.dtype.type(np.nan)
    _bwd(x, t, w, w.sum(dtype=x.dtype), ignore_index, x.dtype.type(eps), lse, g, scale, dx)
    return dx
