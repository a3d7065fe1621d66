"""Losses: the fused softmax + cross-entropy op (math in the kernels), and nll_loss and mse_loss
written as compositions of differentiable ops.

Inputs follow PyTorch: (N, C), an unbatched (C,), or (N, C, d1, d2, ...) with the class dimension
second; targets are class indices (N, d1, ...) or, for cross_entropy, class probabilities shaped like
the input.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import backend, creation
from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module, to_device
from .base import as_tensor

_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropy(Function):
    """Backends may keep a view of the logits for the backward (to recompute softmax), so the logits
    count as saved: changing them in place before backward raises."""

    kernels = ("cross_entropy_forward", "cross_entropy_backward")

    def forward(self, logits, target, weight, ignore_index, label_smoothing, reduction):
        xp = array_module(logits)
        self.shape = logits.shape
        # (N, C, d1, ...) -> (N*d1*..., C): the class dim goes last, every other position becomes a row
        moved = xp.moveaxis(logits, 1, -1) if logits.ndim > 2 else logits
        x2 = moved.reshape(-1, logits.shape[1])
        if target.dtype.kind == "f":
            t2 = (xp.moveaxis(target, 1, -1) if target.ndim > 2 else target).reshape(-1, logits.shape[1])
        else:
            t2 = target.reshape(-1)
        self.moved_shape = moved.shape
        loss, self.cache = backend.kernel("cross_entropy_forward")(x2, t2, weight, ignore_index,
                                                                   label_smoothing, reduction)
        self.bwd = backend.kernel("cross_entropy_backward")
        if reduction == "none":
            loss = loss.reshape(moved.shape[:-1])
        return loss

    def backward(self, dout):
        xp = array_module(dout)
        g = dout.reshape(-1) if dout.ndim else dout
        d2 = self.bwd(g, self.cache).reshape(self.moved_shape)
        return (xp.moveaxis(d2, -1, 1) if len(self.shape) > 2 else d2,)


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _class_targets(input: Tensor, target: Any, ignore_index: int, op: str) -> tuple[Tensor, Any]:
    """Validate input (N, C, ...) / (C,) and integer targets; returns the batched input and targets."""
    t = target.data if isinstance(target, Tensor) else array_module(input.data).asarray(target)
    if input.ndim == 1:  # unbatched: (C,) with a scalar target
        input, t = input.unsqueeze(0), t.reshape(1)
    if input.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C) or (N, C, d1, ...), got {input.shape}")
    C = input.shape[1]
    expected = (input.shape[0],) + input.shape[2:]
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: class-index targets must be integers, got {t.dtype} "
                        "(pass .long() indices, or float class probabilities of the input's shape)")
    if tuple(t.shape) != expected:
        raise ValueError(f"{op}: target of shape {tuple(t.shape)} does not match input of shape "
                         f"{input.shape} (expected {expected})")
    valid = t[t != ignore_index]
    if valid.size and (int(valid.min()) < 0 or int(valid.max()) >= C):
        bad = int(valid.min()) if int(valid.min()) < 0 else int(valid.max())
        raise IndexError(f"{op}: target {bad} is out of range for {C} classes "
                         f"(valid: 0..{C - 1}, or ignore_index={ignore_index})")
    return input, t


def cross_entropy(input: Tensor, target: Any, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax + negative log-likelihood in one numerically stable op.

    input: logits (N, C), (C,) or (N, C, d1, ...). target: class indices (N,), () or (N, d1, ...), or
    class probabilities with the input's shape. Returns a scalar, or per-position losses for 'none'.
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating, got {input.dtype}")
    w = None
    if weight is not None:
        w = as_tensor(weight, like=input).data
        if w.shape != (input.shape[1 if input.ndim > 1 else 0],):
            raise ValueError(f"cross_entropy: weight of shape {tuple(w.shape)} does not match "
                             f"{input.shape[1 if input.ndim > 1 else 0]} classes")
    t = target.data if isinstance(target, Tensor) else None
    unbatched = input.ndim == 1
    if t is not None and t.dtype.kind == "f":
        if t.shape != input.data.shape:
            raise ValueError(f"cross_entropy: probability target of shape {tuple(t.shape)} does not match "
                             f"input of shape {input.shape}")
        if unbatched:
            input, t = input.unsqueeze(0), t.reshape(1, -1)
        t = t.astype(input.dtype, copy=False)
    else:
        input, t = _class_targets(input, target, ignore_index, "cross_entropy")
    out = CrossEntropy.apply(input, target=t, weight=w, ignore_index=ignore_index,
                             label_smoothing=float(label_smoothing), reduction=reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


def nll_loss(input: Tensor, target: Any, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities `input` (N, C, ...) at class indices `target`:
    mean = sum(-w[t] * input[t]) / sum(w[t]) over the positions not ignored."""
    _check_reduction(reduction, "nll_loss")
    unbatched = input.ndim == 1
    input, t = _class_targets(input, target, ignore_index, "nll_loss")
    xp = array_module(input.data)
    valid = t != ignore_index
    safe = Tensor(xp.where(valid, t, 0))
    picked = input.gather(1, safe.unsqueeze(1)).squeeze(1)            # (N, d1, ...)
    if weight is None:
        w = Tensor(valid.astype(input.dtype))
    else:
        wt = as_tensor(weight, like=input).data
        w = Tensor(wt[safe.data] * valid)
    losses = -picked * w
    if reduction == "none":
        return losses.reshape(()) if unbatched else losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum()


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error."""
    _check_reduction(reduction, "mse_loss")
    target = as_tensor(target, like=input)
    if target.shape != input.shape:
        warnings.warn(f"mse_loss: target shape {target.shape} differs from input shape {input.shape}; "
                      "they will be broadcast, which is probably not what you want", stacklevel=2)
    diff = input - target
    sq = diff * diff
    return sq if reduction == "none" else sq.sum() if reduction == "sum" else sq.mean()


class CTC(Function):
    """Per-sample CTC negative log-likelihood (B,) from log_probs (T, B, C); the kernel pair computes the
    alpha/beta recursions and the gradient (kernels/reference/ctc.py)."""

    kernels = ("ctc_forward", "ctc_backward")

    def forward(self, log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
        xp = array_module(log_probs)
        host = [to_device(a, "cpu") for a in (log_probs, targets, input_lengths, target_lengths)]
        nll, self.cache = backend.kernel("ctc_forward")(*host, blank)
        self.impossible = ~np.isfinite(nll) if zero_infinity else None   # these samples: loss 0, gradient 0
        if self.impossible is not None:
            nll = np.where(self.impossible, 0, nll).astype(nll.dtype)
        self.bwd, self.xp = backend.kernel("ctc_backward"), xp
        return xp.asarray(nll)

    def backward(self, dout):
        grad = self.bwd(to_device(dout, "cpu"), self.cache)
        if self.impossible is not None:
            grad = np.where(self.impossible[None, :, None], 0, grad).astype(grad.dtype)
        return (self.xp.asarray(grad), None, None, None)


def ctc_loss(log_probs: Tensor, targets: Any, input_lengths: Any, target_lengths: Any, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """CTC loss with PyTorch's arguments: log_probs (T, B, C) (log_softmax over C, blank included), targets
    (B, S_max) class indices padded past each target_lengths[b] (or one concatenated 1-D sequence),
    input_lengths and target_lengths (B,). reduction "mean" divides each sample's loss by its target
    length, then averages over the batch (PyTorch's definition); "sum"; "none" gives (B,). An alignment that
    cannot exist (input too short) gives inf, or 0 with zero_infinity (its gradient then 0 too)."""


    _check_reduction(reduction, "ctc_loss")
    lp = as_tensor(log_probs)
    if lp.ndim != 3:
        raise ValueError(f"ctc_loss: log_probs must be (T, B, C), got shape {lp.shape}")
    T, B, C = lp.shape

    def host_ints(a: Any) -> np.ndarray:  # lengths and labels, from a Tensor (any device), array or list
        return np.asarray(to_device(a.data if isinstance(a, Tensor) else a, "cpu"), dtype=np.int64)

    il, tl, tg = host_ints(input_lengths).reshape(-1), host_ints(target_lengths).reshape(-1), host_ints(targets)
    if il.shape != (B,) or tl.shape != (B,):
        raise ValueError(f"ctc_loss: input_lengths {il.shape} and target_lengths {tl.shape} must both be ({B},)")
    if tg.ndim == 1:  # concatenated targets -> padded (B, max length)
        if tg.shape[0] != tl.sum():
            raise ValueError(f"ctc_loss: 1-D targets of length {tg.shape[0]} != sum of target_lengths {tl.sum()}")
        padded = np.zeros((B, max(int(tl.max(initial=0)), 1)), np.int64)
        starts = np.concatenate([[0], np.cumsum(tl)[:-1]])
        for b in range(B):
            padded[b, :tl[b]] = tg[starts[b]:starts[b] + tl[b]]
        tg = padded
    if tg.ndim != 2 or tg.shape[0] != B or (tl > tg.shape[1]).any():
        raise ValueError(f"ctc_loss: targets of shape {tg.shape} do not hold target_lengths {tl.tolist()}")
    if (il < 1).any() or (il > T).any() or (tl < 0).any():
        raise ValueError(f"ctc_loss: input_lengths must be in [1, {T}] and target_lengths >= 0")
    used = np.concatenate([tg[b, :tl[b]] for b in range(B)]) if B else np.zeros(0, np.int64)
    if used.size and (used.min() < 0 or used.max() >= C or (used == blank).any()):
        raise ValueError(f"ctc_loss: target labels must be in [0, {C}) and differ from the blank ({blank})")
    nll = CTC.apply(lp, creation.tensor(tg), creation.tensor(il), creation.tensor(tl), blank=blank,
                    zero_infinity=zero_infinity)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / creation.tensor(np.maximum(tl, 1).astype(lp.dtype), device=lp.device)).mean()
