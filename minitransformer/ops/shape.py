"""Shape ops: reshape/view, transpose, permute, unsqueeze, squeeze, expand, flatten, contiguous, clone.

None of these changes a value, so each backward only undoes the shape change. Most return views that
share memory (and a version counter) with their input.

`reshape` copies when it must; `view` never does and raises, as PyTorch's does, when the new shape cannot
be laid over the input's strides (`view_strides` holds the rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from ..creation import shape_arg
from ..tensor import Tensor
from ..xp import array_module
from .base import norm_dim, unbroadcast


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


class Roll(Function):
    saves_inputs = ()

    def forward(self, x, shifts, dims):
        self.shifts, self.dims = shifts, dims
        xp = array_module(x)
        if dims is None:  # PyTorch: roll the flattened tensor, then restore the shape
            return xp.roll(x.reshape(-1), shifts[0]).reshape(x.shape)
        return xp.roll(x, shifts, axis=dims)

    def backward(self, dout):
        # rolling is a permutation of positions: its gradient rolls back by the opposite shift
        xp = array_module(dout)
        back = tuple(-s for s in self.shifts)
        if self.dims is None:
            return (xp.roll(dout.reshape(-1), back[0]).reshape(dout.shape),)
        return (xp.roll(dout, back, axis=self.dims),)


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


VIEW_ERROR = ("view size is not compatible with input tensor's size and stride (at least one dimension spans "
              "across two contiguous subspaces). Use .reshape(...) instead.")


def view_strides(shape: tuple[int, ...], strides: tuple[int, ...],
                 new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The strides of `new_shape` laid over memory of (`shape`, `strides`) without a copy, or None.

    PyTorch's rule (`computeStride` in ATen; NumPy's `_attempt_nocopy_reshape` is the same): walking from the
    last dimension, the old dims split into *chunks*, maximal runs in which each dim's stride is the
    next one's stride times its size (dims of size 1 never break a run). A view exists iff the new dims
    can be grouped, in order, into runs whose sizes multiply to exactly each chunk's size: every new dim
    then lies inside one contiguous chunk. The rule is linear in the strides, so byte strides (NumPy's)
    work as well as element strides; a stride of 0 (an expanded dim) is an ordinary value here.
    """
    if not shape:
        return (1,) * len(new_shape)
    numel = 1
    for n in shape:
        numel *= n
    if numel == 0:  # no memory is read: any shape is a view (PyTorch gives it contiguous strides)
        if shape == new_shape:
            return strides
        out, acc = [], 1
        for n in reversed(new_shape):
            out.append(acc)
            acc *= max(n, 1)
        return tuple(reversed(out))
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = strides[-1]              # stride of the chunk's innermost dim
    tensor_numel = view_numel = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        chunk_ends = d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * chunk_base)
        if not chunk_ends:
            continue
        # give the chunk the new dims whose sizes multiply up to its size (and any size-1 dims)
        while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
            new_strides[view_d] = view_numel * chunk_base
            view_numel *= new_shape[view_d]
            view_d -= 1
        if view_numel != tensor_numel:
            return None                   # a new dim straddles two chunks
        if d > 0:
            chunk_base = strides[d - 1]
            tensor_numel = view_numel = 1
    return tuple(new_strides) if view_d == -1 else None


def view(input: Tensor, *shape: Any) -> Tensor:
    """The same memory seen with another shape (one size may be -1); RuntimeError when that needs a
    copy, e.g. merging the heads of a transposed (B, nh, T, hs) tensor: call .reshape(...) there."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
        if np.dtype(shape[0]) == input.dtype:
            return input
        raise NotImplementedError(f"view(dtype): reinterpreting {input.dtype} memory as {np.dtype(shape[0])} "
                                  "is not supported; use .to(dtype) to convert the values")
    target = _resolve_shape(shape_arg(shape), input.numel(), input.shape, "view")
    if view_strides(input.shape, tuple(input.data.strides), target) is None:
        raise RuntimeError(VIEW_ERROR)
    if target == input.shape:
        return input
    # the rule above is the one NumPy's and CuPy's reshape apply before copying: this never copies
    return Reshape.apply(input, shape=target)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions."""
    d0, d1 = norm_dim(dim0, input.ndim, "transpose"), norm_dim(dim1, input.ndim, "transpose")
    if d0 == d1:
        return input
    return Transpose.apply(input, d0=d0, d1=d1)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """Shift elements along `dims` by `shifts`, wrapping around (`x.roll(1, 0)`); with no dims, along the
    flattened tensor. `shifts` and `dims` may be ints or equal-length tuples."""
    shifts_t = tuple(shifts) if isinstance(shifts, (tuple, list)) else (int(shifts),)
    if dims is None:
        if len(shifts_t) != 1:
            raise ValueError(f"roll: without dims, shifts must be one int, got {shifts}")
        return Roll.apply(input, shifts=(int(shifts_t[0]),), dims=None)
    dims_t = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(dims_t) != len(shifts_t):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    dims_t = tuple(norm_dim(d, input.ndim, "roll") for d in dims_t)
    return Roll.apply(input, shifts=tuple(int(s) for s in shifts_t), dims=dims_t)


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
