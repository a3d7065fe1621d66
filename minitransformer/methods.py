"""Binds the functional ops to Tensor as methods and operators, with PyTorch's names and arguments
(`x.sum(dim=1, keepdim=True)`, `x @ w`, `x.masked_fill(mask, v)`). Kept in one table so the whole
method surface can be read at a glance."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .dtypes import as_dtype
from .ops.index import normalize_index
from .tensor import Tensor
from .xp import array_module, normalize_device


def _rev(fn: Any) -> Any:
    return lambda self, other: fn(other, self)


def _all(self: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return Tensor(array_module(self.data).all(self.data, axis=dim, keepdims=keepdim))


def _any(self: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return Tensor(array_module(self.data).any(self.data, axis=dim, keepdims=keepdim))


def _t(self: Tensor) -> Tensor:
    if self.ndim > 2:
        raise ValueError(f"t() expects a tensor with at most 2 dimensions, got shape {self.shape}")
    return self if self.ndim < 2 else ops.transpose(self, 0, 1)


def _to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """`t.to(dtype)`, `t.to(device)`, `t.to(device, dtype)` or `t.to(other_tensor)`.

    `non_blocking` and `memory_format` are accepted for PyTorch's signature: a NumPy copy is synchronous
    and every tensor is C-ordered here. `copy=True` always returns a new tensor."""
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    copy = bool(kwargs.pop("copy", False))
    if kwargs:
        raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, str) and (a == "cpu" or a.startswith("cuda")):
            device = a
        elif isinstance(a, str):
            try:
                dtype = np.dtype(a)
            except TypeError:
                raise ValueError(f"to(): {a!r} is neither a dtype nor a known device "
                                 "('cpu' or 'cuda')") from None
        else:
            dtype = a
    out = self
    if dtype is not None and as_dtype(dtype) != self.data.dtype:
        out = ops.cast(out, as_dtype(dtype))
    if device is not None and normalize_device(device) != out.device:
        out = ops.move(out, normalize_device(device))
    if copy and out is self:
        out = ops.clone(self)
    return out


def _setitem(self: Tensor, index: Any, value: Any) -> None:
    self._begin_inplace("__setitem__")
    self.data[normalize_index(index, self.shape)] = self._operand(value)


def _invert(self: Tensor) -> Tensor:
    if self.dtype.kind != "b":
        raise TypeError(f"~ is defined for bool tensors only, got {self.dtype}")
    return ops.logical_not(self)


_METHODS: dict[str, Any] = {
    # conversion and indexed assignment (they call ops, so they are bound here rather than in tensor.py)
    "to": _to, "__setitem__": _setitem,
    # operators
    "__add__": ops.add, "__radd__": _rev(ops.add),
    "__sub__": ops.sub, "__rsub__": _rev(ops.sub),
    "__mul__": ops.mul, "__rmul__": _rev(ops.mul),
    "__truediv__": ops.div, "__rtruediv__": _rev(ops.div),
    "__pow__": ops.pow, "__rpow__": _rev(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _rev(ops.matmul),
    "__neg__": ops.neg, "__abs__": ops.abs, "__invert__": _invert,
    "__eq__": ops.eq, "__ne__": ops.ne, "__lt__": ops.lt, "__le__": ops.le, "__gt__": ops.gt,
    "__ge__": ops.ge, "__and__": ops.logical_and, "__or__": ops.logical_or,
    "__getitem__": ops.getitem,
    # arithmetic and pointwise
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow, "neg": ops.neg,
    "maximum": ops.maximum, "minimum": ops.minimum,
    "exp": ops.exp, "log": ops.log, "sqrt": ops.sqrt, "rsqrt": ops.rsqrt, "tanh": ops.tanh,
    "sigmoid": ops.sigmoid, "relu": ops.relu, "abs": ops.abs, "clamp": ops.clamp, "clip": ops.clip,
    # reductions
    "sum": ops.sum, "mean": ops.mean, "var": ops.var, "std": ops.std, "max": ops.max, "min": ops.min,
    "amax": ops.amax, "amin": ops.amin, "logsumexp": ops.logsumexp, "softmax": ops.softmax,
    "log_softmax": ops.log_softmax, "argmax": ops.argmax, "argmin": ops.argmin, "topk": ops.topk,
    "all": _all, "any": _any,
    # linear algebra and shapes
    "matmul": ops.matmul, "reshape": ops.reshape, "view": ops.view, "transpose": ops.transpose,
    "permute": ops.permute, "roll": ops.roll, "unsqueeze": ops.unsqueeze, "squeeze": ops.squeeze, "expand": ops.expand,
    "expand_as": ops.expand_as, "flatten": ops.flatten, "contiguous": ops.contiguous, "clone": ops.clone,
    "t": _t,
    # indexing, joining, selection
    "gather": ops.gather, "split": ops.split, "chunk": ops.chunk, "masked_fill": ops.masked_fill,
    "tril": ops.tril, "triu": ops.triu, "eq": ops.eq, "ne": ops.ne, "lt": ops.lt, "le": ops.le,
    "gt": ops.gt, "ge": ops.ge, "isnan": ops.isnan, "isfinite": ops.isfinite,
    "logical_not": ops.logical_not, "logical_and": ops.logical_and, "logical_or": ops.logical_or,
    "where": lambda self, condition, other: ops.where(condition, self, other),
    "allclose": ops.allclose, "equal": ops.equal,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: ops.permute(self, *reversed(range(self.ndim))) if self.ndim > 1 else self)
Tensor.mT = property(lambda self: ops.transpose(self, -2, -1))
