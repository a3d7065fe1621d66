"""Reductions: sum, mean, var, std, max/min (with and without a dim), amax/amin, logsumexp, argmax/argmin.

Backward of a reduction spreads the gradient back over the reduced axes (`_expand`). max/min over a dim
send the gradient to the selected index (ties go to the first, as PyTorch); a full max()/min() and
amax/amin split it evenly between tied maxima (as PyTorch).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .arith import maximum, minimum
from .base import norm_dim, norm_dims, quiet
from .index import gather

Dims = int | Sequence[int] | None


def _expand(g: Any, shape: tuple[int, ...], axes: tuple[int, ...] | None, keepdim: bool) -> Any:
    """Broadcast a reduced gradient back to the input's `shape`."""
    xp = array_module(g)
    if axes is None:
        axes = tuple(range(len(shape)))
    if not keepdim:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return xp.broadcast_to(g, shape)


class Sum(Function):
    saves_inputs = ()

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, dout):
        return (_expand(dout, self.shape, self.axes, self.keepdim),)


class Mean(Function):
    saves_inputs = ()

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        out = x.mean(axis=axes, keepdims=keepdim)
        self.n = x.size // builtins.max(out.size, 1) if x.size else 0
        return out

    def backward(self, dout):
        return (_expand(dout / self.n, self.shape, self.axes, self.keepdim),)


class Var(Function):
    """sum((x - mean)^2) / (n - correction);  dx = dout * 2 (x - mean) / (n - correction)."""

    saves_inputs = ()

    def forward(self, x, axes, correction, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        self.centered = x - x.mean(axis=axes, keepdims=True)
        n = x.size if axes is None else _count(x.shape, axes)
        self.denom = builtins.max(n - correction, 0)
        sq = (self.centered * self.centered).sum(axis=axes, keepdims=keepdim)
        with quiet(x):
            return sq / self.denom

    def backward(self, dout):
        g = _expand(dout, self.shape, self.axes, self.keepdim)
        return (g * (2.0 / self.denom) * self.centered,)


class Std(Var):
    """sqrt(var); dx = dout * (x - mean) / ((n - correction) * std), and 0 where std == 0 (as PyTorch)."""

    def forward(self, x, axes, correction, keepdim):
        self.out = array_module(x).sqrt(super().forward(x, axes, correction, keepdim))
        return self.out

    def backward(self, dout):
        xp = array_module(dout)
        with quiet(dout):
            scale = xp.where(self.out == 0, 0, dout / (self.denom * self.out))
        return (_expand(scale, self.shape, self.axes, self.keepdim) * self.centered,)


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Extreme(Function):
    """max()/min()/amax/amin: the gradient is split evenly between elements equal to the extreme."""

    saves_output = True

    def forward(self, x, axes, keepdim, largest):
        self.x, self.axes, self.keepdim = x, axes, keepdim
        self.out = x.max(axis=axes, keepdims=True) if largest else x.min(axis=axes, keepdims=True)
        return self.out if keepdim else self.out.reshape(_reduced_shape(x.shape, axes))

    def backward(self, dout):
        mask = (self.x == self.out).astype(dout.dtype)
        mask /= mask.sum(axis=self.axes, keepdims=True)
        return (mask * _expand(dout, self.x.shape, self.axes, self.keepdim),)


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> tuple[int, ...]:
    if axes is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axes)


class LogSumExp(Function):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m the maximum, so it never overflows;
    backward: dx = dout * exp(x - out) (the softmax)."""

    saves_output = True

    def forward(self, x, axes, keepdim):
        xp = array_module(x)
        self.x, self.axes, self.keepdim = x, axes, keepdim
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # an all -inf row: exp(-inf - 0) = 0, log 0 = -inf
        with quiet(x):
            self.out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        return self.out if keepdim else self.out.reshape(_reduced_shape(x.shape, axes))

    def backward(self, dout):
        xp = array_module(dout)
        with quiet(dout):
            p = xp.exp(self.x - self.out)
        p = xp.where(xp.isnan(p), 0, p)  # rows that were all -inf get no gradient
        return (p * _expand(dout, self.x.shape, self.axes, self.keepdim),)


def _float_input(x: Tensor, op: str) -> Tensor:
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating tensor, got {x.dtype}; convert it with .float()")
    return x


def sum(input: Tensor, dim: Dims = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A001
    """Sum over `dim` (an int, a tuple, or None for all); bool/int tensors sum to int64 as in PyTorch."""
    if dtype is not None:
        input = input.to(dtype)
    elif input.dtype.kind in "biu":
        input = input.to("int64")
    return Sum.apply(input, axes=norm_dims(dim, input.ndim, "sum"), keepdim=keepdim)


def mean(input: Tensor, dim: Dims = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    if dtype is not None:
        input = input.to(dtype)
    _float_input(input, "mean")
    return Mean.apply(input, axes=norm_dims(dim, input.ndim, "mean"), keepdim=keepdim)


def _correction(unbiased: bool | None, correction: int | float | None) -> float:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input: Tensor, dim: Dims = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: int | float | None = None) -> Tensor:
    """Variance with Bessel's correction by default (`correction=1`, or `unbiased=False` for 0)."""
    _float_input(input, "var")
    return Var.apply(input, axes=norm_dims(dim, input.ndim, "var"),
                     correction=_correction(unbiased, correction), keepdim=keepdim)


def std(input: Tensor, dim: Dims = None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: int | float | None = None) -> Tensor:
    """Standard deviation, sqrt(var) with the same arguments."""
    _float_input(input, "std")
    return Std.apply(input, axes=norm_dims(dim, input.ndim, "std"),
                     correction=_correction(unbiased, correction), keepdim=keepdim)


class ValuesIndices(NamedTuple):
    """What `max(dim)`, `min(dim)` and `topk` return: (values, indices), as torch.return_types."""

    values: Tensor
    indices: Tensor


def _extreme(input: Tensor, dim: Any, keepdim: bool, largest: bool) -> Any:
    name = "max" if largest else "min"
    if isinstance(dim, Tensor):  # max(other): elementwise
        return (maximum if largest else minimum)(input, dim)
    if dim is None:
        if input.numel() == 0:
            raise RuntimeError(f"{name}: the tensor is empty; give a dim or a non-empty tensor")
        return Extreme.apply(input, axes=None, keepdim=False, largest=largest)
    d = norm_dim(dim, input.ndim, name)
    idx = _arg_extreme(input, d, True, largest)                       # keepdim: gather's index layout

    values = gather(input, d, idx)
    if keepdim:
        return ValuesIndices(values, idx)
    return ValuesIndices(values.squeeze(d), idx.squeeze(d))


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """max() -> scalar tensor; max(dim) -> (values, indices); max(other_tensor) -> elementwise."""
    return _extreme(input, dim, keepdim, largest=True)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    return _extreme(input, dim, keepdim, largest=False)


def amax(input: Tensor, dim: Dims = None, keepdim: bool = False) -> Tensor:
    return Extreme.apply(input, axes=norm_dims(dim, input.ndim, "amax"), keepdim=keepdim, largest=True)


def amin(input: Tensor, dim: Dims = None, keepdim: bool = False) -> Tensor:
    return Extreme.apply(input, axes=norm_dims(dim, input.ndim, "amin"), keepdim=keepdim, largest=False)


def logsumexp(input: Tensor, dim: Dims, keepdim: bool = False) -> Tensor:
    """log(sum(exp(input), dim)), stable for inputs of any magnitude."""
    _float_input(input, "logsumexp")
    return LogSumExp.apply(input, axes=norm_dims(dim, input.ndim, "logsumexp"), keepdim=keepdim)


def _arg_extreme(input: Tensor, dim: int | None, keepdim: bool, largest: bool) -> Tensor:
    xp = array_module(input.data)
    fn = xp.argmax if largest else xp.argmin
    if dim is None:
        return Tensor(xp.asarray(fn(input.data)))
    d = norm_dim(dim, input.ndim, fn.__name__)
    idx = fn(input.data, axis=d)
    return Tensor(xp.expand_dims(idx, d) if keepdim else idx)


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the largest value (over the flattened tensor when dim is None). Not differentiable."""
    return _arg_extreme(input, dim, keepdim, largest=True)


def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest value (over the flattened tensor when dim is None). Not differentiable."""
    return _arg_extreme(input, dim, keepdim, largest=False)


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
    """The k largest (or smallest) values along `dim`, in order, and their indices; values carry
    gradients back to the positions they came from."""
    if input.ndim == 0:                                         # PyTorch: the value itself, index 0, for k 0 or 1
        if k not in (0, 1):
            raise ValueError(f"topk: k={k} is out of range for a 0-d tensor (k must be 0 or 1)")
        norm_dim(dim, 0, "topk")
        values, indices = topk(input.reshape(1), 1, 0, largest, sorted)
        return ValuesIndices(values.reshape(()), indices.reshape(()))
    d = norm_dim(dim, input.ndim, "topk")
    n = input.shape[d]
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dimension {d} of size {n}")
    xp = array_module(input.data)
    order = xp.argsort(-input.data if largest else input.data, axis=d, kind="stable")
    idx = xp.take(order, xp.arange(k), axis=d)

    return ValuesIndices(gather(input, d, Tensor(idx)), Tensor(idx))
