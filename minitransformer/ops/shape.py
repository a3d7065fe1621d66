"""Shape ops: reshape/view, transpose, permute, unsqueeze, squeeze, expand, flatten, contiguous, clone.

None of these changes a value, so each backward only undoes the shape change. Most return views that
share memory (and a version counter) with their input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import norm_dim, shape_arg


class Reshape(Function):
    saves_inputs = ()
    is_view = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, dout):
        return (dout.reshape(self.in_shape),)


class Transpose(Function):
    saves_inputs = ()
    is_view = True

    def forward(self, x, d0, d1):
        self.d0, self.d1 = d0, d1
        return array_module(x).swapaxes(x, d0, d1)

    def backward(self, dout):
        return (array_module(dout).swapaxes(dout, self.d0, self.d1),)


class Permute(Function):
    saves_inputs = ()
    is_view = True

    def forward(self, x, dims):
        self.inverse = tuple(int(i) for i in np.argsort(dims))
        return x.transpose(dims)

    def backward(self, dout):
        return (dout.transpose(self.inverse),)


class Expand(Function):
    saves_inputs = ()
    is_view = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return array_module(x).broadcast_to(x, shape)

    def backward(self, dout):
        from .base import unbroadcast

        return (unbroadcast(dout, self.in_shape),)


class Copy(Function):
    saves_inputs = ()

    def forward(self, x):
        return array_module(x).array(x, copy=True, order="C")

    def backward(self, dout):
        return (dout,)


def _resolve_shape(shape: tuple[int, ...], numel: int, in_shape: tuple[int, ...], op: str) -> tuple[int, ...]:
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, got {shape}")
    known = 1
    for s in shape:
        if s != -1:
            if s < 0:
                raise ValueError(f"{op}: invalid size {s} in shape {shape}")
            known *= s
    invalid = f"{op}: shape {shape} is invalid for input of shape {in_shape} ({numel} elements)"
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(invalid)
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ValueError(invalid)
    return shape


def reshape(input: Tensor, *shape: Any) -> Tensor:
    """A tensor with the same data and the given shape (one size may be -1)."""
    target = _resolve_shape(shape_arg(shape), input.numel(), input.shape, "reshape")
    if target == input.shape:
        return input
    return Reshape.apply(input, shape=target)


view = reshape


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions."""
    d0, d1 = norm_dim(dim0, input.ndim, "transpose"), norm_dim(dim1, input.ndim, "transpose")
    if d0 == d1:
        return input
    return Transpose.apply(input, d0=d0, d1=d1)


def permute(input: Tensor, *dims: Any) -> Tensor:
    """Reorder dimensions: `x.permute(0, 2, 1)`."""
    d = tuple(norm_dim(i, input.ndim, "permute") for i in shape_arg(dims))
    if sorted(d) != list(range(input.ndim)):
        raise ValueError(f"permute: {shape_arg(dims)} is not a permutation of the {input.ndim} dims "
                         f"of a tensor of shape {input.shape}")
    return Permute.apply(input, dims=d)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a dimension of size 1 at `dim` (in [-ndim-1, ndim])."""
    d = norm_dim(dim, input.ndim + 1, "unsqueeze")
    shape = input.shape[:d] + (1,) + input.shape[d:]
    return Reshape.apply(input, shape=shape)


def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    """Remove dimensions of size 1 (all of them, or those in `dim`; others are left alone)."""
    if dim is None:
        dims = {i for i, n in enumerate(input.shape) if n == 1}
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = {norm_dim(d, input.ndim, "squeeze") for d in dims}
        dims = {d for d in dims if input.shape[d] == 1}
    if not dims:
        return input
    return Reshape.apply(input, shape=tuple(n for i, n in enumerate(input.shape) if i not in dims))


def expand(input: Tensor, *sizes: Any) -> Tensor:
    """Broadcast to a larger shape without copying; -1 keeps a dimension's size."""
    sizes = shape_arg(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise ValueError(f"expand: shape {sizes} has fewer dimensions than the tensor's {input.shape}")
    shape = []
    for i, s in enumerate(sizes):
        cur = input.shape[i - lead] if i >= lead else None
        if s == -1:
            if cur is None:
                raise ValueError(f"expand: -1 is not allowed for a new leading dimension in {sizes}")
            s = cur
        if cur is not None and cur != 1 and cur != s:
            raise ValueError(f"expand: the tensor of shape {input.shape} cannot be expanded to {sizes}: "
                             f"dimension {i} has size {cur}, which is not 1")
        shape.append(s)
    shape = tuple(shape)
    if shape == input.shape:
        return input
    return Expand.apply(input, shape=shape)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, other.shape)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim (inclusive) into one."""
    if input.ndim == 0:
        return reshape(input, 1)
    s = norm_dim(start_dim, input.ndim, "flatten")
    e = norm_dim(end_dim, input.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    n = 1
    for k in input.shape[s:e + 1]:
        n *= k
    return reshape(input, input.shape[:s] + (n,) + input.shape[e + 1:])


def contiguous(input: Tensor) -> Tensor:
    """The tensor itself if its memory is C-contiguous, else a contiguous copy."""
    if input.data.flags.c_contiguous:
        return input
    return Copy.apply(input)


def clone(input: Tensor) -> Tensor:
    """A copy that owns its memory; gradients flow back to the original."""
    return Copy.apply(input)
