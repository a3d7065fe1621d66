"""Connectionist Temporal Classification (CTC) loss, NumPy reference (docs/tasks/speech.md derives it).

For one sample: per-frame log-probabilities lp (T, C) over the labels plus a blank, and a target
y_1..y_U. The extended target l' = (blank, y_1, blank, y_2, ..., y_U, blank) has S = 2U + 1 states; an
alignment is a path through the states that moves 0, 1 or (to skip a blank between two different labels)
2 states per frame, starting in state 0 or 1 and ending in S - 1 or S - 2. In log space:

    alpha[0, 0] = lp[0, blank],  alpha[0, 1] = lp[0, y_1]
    alpha[t, s] = logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2] if l'_s != blank and l'_s != l'_{s-2})
                  + lp[t, l'_s]
    beta is the same recursion run backwards from the last frame (beta[T-1, S-1] = lp[T-1, blank],
    beta[T-1, S-2] = lp[T-1, y_U]), and log p(y | x) = logsumexp(alpha[T-1, S-1], alpha[T-1, S-2]).
    The loss is nll = -log p(y | x). Both alpha[t, s] and beta[t, s] contain lp[t, l'_s], so the
    probability of all paths through state s at frame t is exp(alpha + beta - lp[t, l'_s]), and
    d nll / d lp[t, k] = -exp(nll) * sum over states s with l'_s = k of exp(alpha[t, s] + beta[t, s] - lp[t, k]).

A repeated label (y_i = y_{i+1}) forbids the skip, so the path must pass a blank between them: a target
with r repeats needs T >= U + r frames; with fewer, p = 0 and the loss is inf.
This gradient is with respect to log_probs as given. (PyTorch's ctc_loss returns exp(lp) minus the same
term, which equals it only when the input came out of log_softmax and the gradient is taken through it.)

Shapes: log_probs (T, B, C) (PyTorch's layout), targets (B, U_max) ints padded past target_lengths,
input_lengths and target_lengths (B,) ints. All arithmetic in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _extended(target: np.ndarray, blank: int) -> np.ndarray:
    ext = np.full(2 * len(target) + 1, blank, dtype=np.int64)
    ext[1::2] = target
    return ext


def _can_skip(ext: np.ndarray, blank: int) -> np.ndarray:
    """skip[s]: state s may be entered from s - 2 (a label different from the label two states back)."""
    skip = np.zeros(len(ext), dtype=bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    return skip


def _alphas(lp: np.ndarray, ext: np.ndarray, skip: np.ndarray) -> np.ndarray:
    T, S = lp.shape[0], len(ext)
    a = np.full((T, S), -np.inf)
    a[0, 0] = lp[0, ext[0]]
    if S > 1:
        a[0, 1] = lp[0, ext[1]]
    with np.errstate(invalid="ignore"):  # logaddexp(-inf, -inf) = -inf
        for t in range(1, T):
            prev = a[t - 1]
            x = prev.copy()
            x[1:] = np.logaddexp(x[1:], prev[:-1])
            x[2:] = np.where(skip[2:], np.logaddexp(x[2:], prev[:-2]), x[2:])
            a[t] = x + lp[t, ext]
    return a


def _betas(lp: np.ndarray, ext: np.ndarray, skip: np.ndarray) -> np.ndarray:
    T, S = lp.shape[0], len(ext)
    b = np.full((T, S), -np.inf)
    b[T - 1, S - 1] = lp[T - 1, ext[S - 1]]
    if S > 1:
        b[T - 1, S - 2] = lp[T - 1, ext[S - 2]]
    with np.errstate(invalid="ignore"):
        for t in range(T - 2, -1, -1):
            nxt = b[t + 1]
            x = nxt.copy()
            x[:-1] = np.logaddexp(x[:-1], nxt[1:])
            # state s may go to s + 2 when s + 2 may be entered from s
            x[:-2] = np.where(skip[2:], np.logaddexp(x[:-2], nxt[2:]), x[:-2])
            b[t] = x + lp[t, ext]
    return b


def ctc_forward(log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any,
                blank: int = 0) -> tuple[Any, Any]:
    """-> nll (B,) in log_probs' dtype (inf where no alignment exists), and the cache for ctc_backward."""
    lp_all = np.asarray(log_probs, dtype=np.float64)
    T, B, C = lp_all.shape
    nll = np.zeros(B)
    grad = np.zeros((T, B, C))
    for b in range(B):
        Tb, Ub = int(input_lengths[b]), int(target_lengths[b])
        lp = lp_all[:Tb, b]                                                   # (Tb, C)
        ext = _extended(np.asarray(targets[b][:Ub], dtype=np.int64), blank)
        skip = _can_skip(ext, blank)
        a, be = _alphas(lp, ext, skip), _betas(lp, ext, skip)
        S = len(ext)
        logp = np.logaddexp(a[Tb - 1, S - 1], a[Tb - 1, S - 2]) if S > 1 else a[Tb - 1, 0]
        nll[b] = -logp
        if np.isfinite(logp):
            # probability of the paths through (t, s), over p: exp(alpha + beta - lp[t, l'_s] - log p)
            occ = np.exp(a + be - lp[:, ext] - logp)                          # (Tb, S)
            np.add.at(grad[:Tb, b], (np.arange(Tb)[:, None], ext[None, :]), -occ)
        else:
            grad[:Tb, b] = np.nan
    dtype = np.asarray(log_probs).dtype
    return nll.astype(dtype), grad


def ctc_backward(dnll: Any, cache: Any) -> Any:
    """dnll (B,) -> dlog_probs (T, B, C): each sample's gradient scaled by its upstream value."""
    grad = cache
    return (grad * np.asarray(dnll, dtype=np.float64)[None, :, None]).astype(np.asarray(dnll).dtype, copy=False)
