"""Helpers every op shares: operand coercion (PyTorch's dtype rules), broadcasting checks, `unbroadcast`,
and dimension normalisation. Nothing here is an op itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..dtypes import get_default_dtype
from ..tensor import Tensor, to_array
from ..xp import array_module, device_of, to_device


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """Wrap a Python scalar or array as a constant tensor (on `like`'s device, in its float dtype)."""
    if isinstance(x, Tensor):
        return x
    arr = to_array(x)
    if like is not None:
        if device_of(arr) != like.device:
            arr = to_device(arr, like.device)
        if arr.dtype.kind == "f" and like.dtype.kind == "f" and arr.dtype != like.dtype:
            arr = arr.astype(like.dtype)  # a raw scalar or array adopts the tensor's precision
    return Tensor(arr)


def _cast_const(t: Tensor, dtype: np.dtype) -> Tensor:
    # Only non-float tensors are cast here, and those never require grad.
    return t if t.dtype == dtype else Tensor(t.data.astype(dtype))


def operands(a: Any, b: Any, op: str) -> tuple[Tensor, Tensor]:
    """Coerce the two operands of a binary op to tensors of one dtype on one device.

    Python scalars and NumPy arrays adopt the tensor operand's floating dtype (as PyTorch's scalars do).
    Two tensors of different floating dtypes raise TypeError; an integer or bool tensor meeting a float
    one is promoted to that float dtype; an integer tensor meeting a Python float becomes the default
    float dtype.
    """
    a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
    if not a_is and not b_is:
        a = Tensor(to_array(a))
        a_is = True
    if a_is and not b_is:
        b = _scalar_operand(b, a)
    elif b_is and not a_is:
        a = _scalar_operand(a, b)
    if a.data.__class__ is not b.data.__class__ and a.device != b.device:
        raise TypeError(f"{op}: expected all tensors on one device, got {a.device} and {b.device}")
    da, db = a.data.dtype, b.data.dtype
    if da != db:
        fa, fb = da.kind == "f", db.kind == "f"
        if fa and fb:
            raise TypeError(
                f"{op}: dtype mismatch, {da} and {db}; convert one operand first (e.g. x.to(mt.{db}))"
            )
        if fa:
            b = _cast_const(b, da)
        elif fb:
            a = _cast_const(a, db)
        else:
            common = np.result_type(da, db)
            a, b = _cast_const(a, common), _cast_const(b, common)
    return a, b


def _scalar_operand(x: Any, t: Tensor) -> Tensor:
    if isinstance(x, (bool, int, float)) or (isinstance(x, np.generic) and x.ndim == 0):
        kind = np.asarray(x).dtype.kind
        if t.dtype.kind == "f":
            return Tensor(array_module(t.data).asarray(x, dtype=t.dtype))
        if kind == "f":  # int tensor meets a Python float: compute in the default float dtype
            return Tensor(array_module(t.data).asarray(x, dtype=get_default_dtype()))
        if kind in "iu" and t.dtype.kind == "b":
            return Tensor(array_module(t.data).asarray(x, dtype=np.int64))
        return Tensor(array_module(t.data).asarray(x, dtype=t.dtype))
    return as_tensor(x, like=t)


def broadcast_shape(sa: tuple[int, ...], sb: tuple[int, ...], op: str) -> tuple[int, ...]:
    """The broadcast shape of two shapes, or a ValueError naming both shapes and the op."""
    if sa == sb:
        return sa
    try:
        return tuple(np.broadcast_shapes(sa, sb))
    except ValueError:
        raise ValueError(f"{op}: shapes {sa} and {sb} cannot be broadcast together") from None


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum gradient `g` down to `shape`: the inverse of broadcasting `shape` up to `g.shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes).reshape(shape) if axes else g.reshape(shape)


def norm_dim(dim: int, ndim: int, op: str) -> int:
    """A dimension index in [0, ndim), accepting negative values as PyTorch does."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected a value in [{-n}, {n - 1}])")
    return dim % n


def norm_dims(dim: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...] | None:
    """None (all dims) or a sorted tuple of normalised dims."""
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        return (norm_dim(int(dim), ndim, op),)
    return tuple(sorted({norm_dim(int(d), ndim, op) for d in dim}))


class quiet:
    """Silence NumPy's floating-point warnings in a block whose inf/NaN results are intended
    (a row of all -inf, zero degrees of freedom). A no-op for CuPy, which does not warn."""

    def __init__(self, a: Any) -> None:
        xp = array_module(a)
        self.ctx = xp.errstate(all="ignore") if hasattr(xp, "errstate") else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)
