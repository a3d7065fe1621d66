"""Fused softmax + cross-entropy: one forward gives the loss and caches what the backward needs to give
dlogits, with PyTorch's options (class weights, ignore_index, label smoothing, mean/sum/none).

Every variant is written as one weighted sum over log-probabilities,
    loss_n = -sum_c Q[n, c] * log_softmax(logits)[n, c],
where the coefficient matrix Q holds the target distribution, the class weights, the label smoothing,
the ignored rows (zero) and the 1/D of a mean reduction. Then (docs/derivations/cross_entropy.md)
    dlogits[n, c] = dloss_n * (softmax[n, c] * sum_c' Q[n, c'] - Q[n, c]),
which for a plain one-hot target is the familiar softmax - onehot.

Class-index targets (t_n), with w the class weights (1 when absent) and e the label smoothing:
    Q[n, c] = valid_n * ((1 - e) * w_c * [c == t_n] + e / C * w_c) / D
    D = sum_n valid_n * w_{t_n} for reduction='mean' (PyTorch's normalisation), else 1.
Class-probability targets p: Q = ((1 - e) p + e / C) * w / D with D = N for 'mean'.
"""

from __future__ import annotations

from typing import Any

from ._xp import xp_of
from .softmax import log_softmax_forward


def _coefficients(target: Any, C: int, weight: Any, ignore_index: int, label_smoothing: float,
                  reduction: str, dtype: Any) -> Any:
    xp = xp_of(target)
    if target.dtype.kind == "f":  # class probabilities, (N, C)
        q = target.astype(dtype, copy=True)
        if label_smoothing > 0:
            q = q * (1 - label_smoothing) + label_smoothing / C
        if weight is not None:
            q = q * weight
        if reduction == "mean":
            q = q / q.shape[0] if q.shape[0] else q * xp.nan
        return q
    N = target.shape[0]
    valid = target != ignore_index                                  # (N,)
    t = xp.where(valid, target, 0)
    w = xp.ones(C, dtype=dtype) if weight is None else weight.astype(dtype, copy=False)
    wy = w[t] * valid                                               # (N,) weight of each row's target
    q = xp.zeros((N, C), dtype=dtype)
    q[xp.arange(N), t] = (1 - label_smoothing) * wy
    if label_smoothing > 0:
        q += (label_smoothing / C) * w[None, :] * valid[:, None]
    if reduction == "mean":
        total = wy.sum()
        q = q / total if total != 0 else q * xp.nan               # all rows ignored: NaN, as PyTorch
    return q


def cross_entropy_forward(logits: Any, target: Any, weight: Any, ignore_index: int,
                          label_smoothing: float, reduction: str) -> tuple[Any, tuple[Any, Any]]:
    """logits (N, C); target (N,) ints or (N, C) probabilities -> loss (scalar, or (N,) for 'none'),
    and the cache (probs, Q) for the backward."""
    xp = xp_of(logits)
    logp = log_softmax_forward(logits)
    q = _coefficients(target, logits.shape[1], weight, ignore_index, label_smoothing, reduction, logits.dtype)
    # 0 * log(0) is 0 here: a masked class (logit -inf) with no target mass adds nothing
    terms = q * xp.where(q != 0, logp, 0)
    per_row = -terms.sum(axis=-1)
    loss = per_row if reduction == "none" else per_row.sum()
    return loss, (xp.exp(logp), q)


def cross_entropy_backward(dloss: Any, cache: tuple[Any, Any]) -> Any:
    """dloss: scalar (mean/sum) or (N,) ('none') -> dlogits (N, C)."""
    probs, q = cache
    g = dloss[:, None] if dloss.ndim == 1 else dloss
    return g * (probs * q.sum(axis=-1, keepdims=True) - q)
