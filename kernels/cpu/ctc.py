"""CTC loss, Numba (the recursion and its gradient are derived in reference/ctc.py and docs/tasks/speech.md).

One sample per task across threads. Per sample: alpha and beta (T_b x S, float64) by the recursions with a
scalar log-add-exp (max + log1p(exp(-|a - b|))), then the gradient written straight into the (T, B, C)
output: -exp(alpha + beta - lp - log p) summed per label. The reference does the same with NumPy's
vectorised logaddexp over the states, one Python iteration per frame; here the frames are compiled loops.
ctc_backward (scaling the cached gradient by each sample's upstream value) is the reference's.
"""

from __future__ import annotations

import math

import numpy as np

from ..reference.ctc import ctc_backward  # noqa: F401 (the same scaling of the cached gradient)
from ._jit import jit_inline, pjit, prange


@jit_inline
def _lae(a, b):  # noqa: ANN001, ANN202
    """log(exp(a) + exp(b)), exact for -inf."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


@pjit
def _ctc(lp, targets, input_lengths, target_lengths, blank, nll, grad):  # noqa: ANN001, ANN202
    T, B, C = lp.shape
    for b in prange(B):
        Tb, U = input_lengths[b], target_lengths[b]
        S = 2 * U + 1
        ext = np.full(S, blank, np.int64)
        for u in range(U):
            ext[2 * u + 1] = targets[b, u]
        skip = np.zeros(S, np.bool_)
        for s in range(2, S):
            skip[s] = ext[s] != blank and ext[s] != ext[s - 2]
        a = np.full((Tb, S), -np.inf)
        be = np.full((Tb, S), -np.inf)
        a[0, 0] = lp[0, b, ext[0]]
        if S > 1:
            a[0, 1] = lp[0, b, ext[1]]
        for t in range(1, Tb):
            for s in range(S):
                x = a[t - 1, s]
                if s >= 1:
                    x = _lae(x, a[t - 1, s - 1])
                if s >= 2 and skip[s]:
                    x = _lae(x, a[t - 1, s - 2])
                a[t, s] = x + lp[t, b, ext[s]]
        be[Tb - 1, S - 1] = lp[Tb - 1, b, ext[S - 1]]
        if S > 1:
            be[Tb - 1, S - 2] = lp[Tb - 1, b, ext[S - 2]]
        for t in range(Tb - 2, -1, -1):
            for s in range(S):
                x = be[t + 1, s]
                if s + 1 < S:
                    x = _lae(x, be[t + 1, s + 1])
                if s + 2 < S and skip[s + 2]:
                    x = _lae(x, be[t + 1, s + 2])
                be[t, s] = x + lp[t, b, ext[s]]
        logp = _lae(a[Tb - 1, S - 1], a[Tb - 1, S - 2]) if S > 1 else a[Tb - 1, 0]
        nll[b] = -logp
        if logp == -np.inf:
            for t in range(Tb):
                for c in range(C):
                    grad[t, b, c] = np.nan
            continue
        for t in range(Tb):
            for s in range(S):
                k = ext[s]
                grad[t, b, k] -= math.exp(a[t, s] + be[t, s] - lp[t, b, k] - logp)


def ctc_forward(log_probs, targets, input_lengths, target_lengths, blank=0):  # noqa: ANN001, ANN201
    """-> nll (B,) in log_probs' dtype (inf where no alignment exists) and the cache for ctc_backward."""
    lp = np.ascontiguousarray(log_probs, dtype=np.float64)
    T, B, C = lp.shape
    nll = np.zeros(B)
    grad = np.zeros((T, B, C))
    tg = np.ascontiguousarray(targets, dtype=np.int64).reshape(B, -1)
    _ctc(lp, tg, np.ascontiguousarray(input_lengths, dtype=np.int64),
         np.ascontiguousarray(target_lengths, dtype=np.int64), blank, nll, grad)
    return nll.astype(np.asarray(log_probs).dtype), grad

