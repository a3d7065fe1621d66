"""softmax and log_softmax over the last axis: forward and backward.

Forward subtracts the row maximum before exponentiating, so logits of any magnitude give finite results
(exp of a non-positive number cannot overflow). A row of all -inf has no maximum to subtract and gives
NaN, as PyTorch's softmax does.

Backward, with y = softmax(x) and upstream gradient dy (one row):
    dx = y * (dy - sum(dy * y))                      (softmax)
    dx = dy - softmax(x) * sum(dy) = dy - exp(y) * sum(dy)   (log_softmax, y = log_softmax(x))
Memory traffic: forward reads x twice and writes y once; backward reads dy and y and writes dx.
"""

from __future__ import annotations

from typing import Any

from ._xp import xp_of


def softmax_forward(x: Any) -> Any:
    """x: (..., C) -> y: (..., C), rows summing to 1."""
    xp = xp_of(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))  # max subtraction: exp never overflows
    e /= e.sum(axis=-1, keepdims=True)
    return e


def softmax_backward(dy: Any, y: Any) -> Any:
    """dy, y: (..., C) -> dx: (..., C)."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x: Any) -> Any:
    """x: (..., C) -> x - logsumexp(x): finite wherever x is, even where softmax underflows to 0."""
    xp = xp_of(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def log_softmax_backward(dy: Any, y: Any) -> Any:
    """dy, y = log_softmax(x): (..., C) -> dx: (..., C)."""
    xp = xp_of(y)
    return dy - xp.exp(y) * dy.sum(axis=-1, keepdims=True)
