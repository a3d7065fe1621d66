"""Selection and masking: where, masked_fill, tril/triu, dropout, and the comparisons (which return
bool tensors and are not differentiable)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from ..random import rand_array
from ..tensor import Tensor
from ..xp import array_module, to_device
from .base import as_tensor, broadcast_shape, operands, unbroadcast


def _mask_array(mask: Any, like: Tensor, op: str) -> Any:
    m = mask.data if isinstance(mask, Tensor) else array_module(like.data).asarray(mask)
    if m.dtype.kind != "b":
        raise TypeError(f"{op}: the mask must be a bool tensor, got {m.dtype}")
    if isinstance(mask, Tensor) and mask.device != like.device:
        raise TypeError(f"{op}: mask is on {mask.device}, tensor on {like.device}")
    return m


class Where(Function):
    saves_inputs = ()

    def forward(self, a, b, cond):
        self.cond, self.sa, self.sb = cond, a.shape, b.shape
        return array_module(a).where(cond, a, b)

    def backward(self, dout):
        zero = dout.dtype.type(0)
        xp = array_module(dout)
        return (unbroadcast(xp.where(self.cond, dout, zero), self.sa),
                unbroadcast(xp.where(self.cond, zero, dout), self.sb))


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """Elements of `input` where `condition` is True, else of `other` (all three broadcast)."""
    a, b = operands(input, other, "where")
    cond = _mask_array(condition, a, "where")
    shape = broadcast_shape(a.shape, b.shape, "where")
    broadcast_shape(tuple(cond.shape), shape, "where (condition)")
    return Where.apply(a, b, cond=cond)


class MaskedFill(Function):
    saves_inputs = ()

    def forward(self, x, mask, value):
        self.mask = mask
        return array_module(x).where(mask, x.dtype.type(value), x)

    def backward(self, dout):
        return (array_module(dout).where(self.mask, dout.dtype.type(0), dout),)


def masked_fill(input: Tensor, mask: Any, value: Any) -> Tensor:
    """`input` with `value` where `mask` (bool, broadcastable to input's shape) is True.
    Use value=float('-inf') for attention masks: a large finite value lets masked positions leak."""
    m = _mask_array(mask, input, "masked_fill")
    if broadcast_shape(tuple(m.shape), input.shape, "masked_fill") != input.shape:
        raise ValueError(f"masked_fill: mask of shape {tuple(m.shape)} does not broadcast to the tensor's "
                         f"shape {input.shape}")
    if isinstance(value, Tensor):
        value = value.item()
    return MaskedFill.apply(input, mask=m, value=value)


class Tri(Function):
    saves_inputs = ()

    def forward(self, x, diagonal, upper):
        xp = array_module(x)
        self.diagonal, self.upper = diagonal, upper
        return xp.triu(x, diagonal) if upper else xp.tril(x, diagonal)

    def backward(self, dout):
        xp = array_module(dout)
        return ((xp.triu if self.upper else xp.tril)(dout, self.diagonal),)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the lower triangle (of the last two dims) at and below `diagonal`; zero the rest."""
    if input.ndim < 2:
        raise ValueError(f"tril: expected at least 2 dimensions, got shape {input.shape}")
    return Tri.apply(input, diagonal=diagonal, upper=False)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    if input.ndim < 2:
        raise ValueError(f"triu: expected at least 2 dimensions, got shape {input.shape}")
    return Tri.apply(input, diagonal=diagonal, upper=True)


class Dropout(Function):
    """out = x * mask / (1 - p), mask ~ Bernoulli(1 - p); backward applies the same mask and scale.
    The mask is kept on the node (`ctx.mask`) so a test or a student can look at it."""

    saves_inputs = ()

    def forward(self, x, p):
        keep = to_device(rand_array(x.shape, x.dtype) >= p, "cuda" if type(x).__module__.startswith("cupy")
                         else "cpu")
        self.mask = keep
        self.scale = x.dtype.type(1.0 / (1.0 - p))
        return x * keep * self.scale

    def backward(self, dout):
        return (dout * self.mask * self.scale,)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return Dropout.apply(input, p=p)


def _compare(fn_name: str, a: Any, b: Any) -> Tensor:
    ta, tb = operands(a, b, fn_name)
    broadcast_shape(ta.shape, tb.shape, fn_name)
    xp = array_module(ta.data)
    return Tensor(getattr(xp, fn_name)(ta.data, tb.data))


def eq(input: Any, other: Any) -> Tensor:
    return _compare("equal", input, other)


def ne(input: Any, other: Any) -> Tensor:
    return _compare("not_equal", input, other)


def lt(input: Any, other: Any) -> Tensor:
    return _compare("less", input, other)


def le(input: Any, other: Any) -> Tensor:
    return _compare("less_equal", input, other)


def gt(input: Any, other: Any) -> Tensor:
    return _compare("greater", input, other)


def ge(input: Any, other: Any) -> Tensor:
    return _compare("greater_equal", input, other)


def logical_not(input: Tensor) -> Tensor:
    return Tensor(array_module(input.data).logical_not(input.data))


def logical_and(input: Any, other: Any) -> Tensor:
    return _compare("logical_and", input, other)


def logical_or(input: Any, other: Any) -> Tensor:
    return _compare("logical_or", input, other)


def isnan(input: Tensor) -> Tensor:
    return Tensor(array_module(input.data).isnan(input.data))


def isfinite(input: Tensor) -> Tensor:
    return Tensor(array_module(input.data).isfinite(input.data))


def allclose(input: Tensor, other: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    o = as_tensor(other, like=input)
    return bool(array_module(input.data).allclose(input.data, o.data, rtol=rtol, atol=atol))


def equal(input: Tensor, other: Tensor) -> bool:
    """True when both have the same shape and elements."""
    return input.shape == other.shape and bool(np.all(to_device(eq(input, other).data, "cpu")))
