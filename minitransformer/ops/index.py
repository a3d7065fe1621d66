"""Indexing: `x[...]` (basic and integer/bool-array indexing), `gather`, and embedding lookup.

The backward of every lookup scatters the gradient back with an *add* (`xp.add.at`), so an index that
appears several times receives the sum of its gradients. Out-of-range indices raise IndexError naming
the bound before anything is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import norm_dim


def _scatter_add(xp: Any, target: Any, index: Any, values: Any) -> None:
    """target[index] += values, accumulating over repeated indices."""
    if xp is np:
        np.add.at(target, index, values)
    else:  # CuPy
        import cupyx  # noqa: PLC0415 (CuPy arrays only: an optional dependency)

        cupyx.scatter_add(target, index, values)


def _scatter_add_rows(xp: Any, target: Any, ids: Any, rows: Any) -> None:
    """target[ids[n]] += rows[n] for 1-D ids: sort the ids, sum each run of equal ids with one
    reduceat, write each sum once. ufunc.at does the same one row at a time, about 7x slower."""
    if ids.size == 0:
        return
    if xp is not np:  # CuPy has no ufunc.reduceat: its scatter-add is fast on a GPU anyway
        _scatter_add(xp, target, ids, rows)
        return
    order = xp.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1]]))
    target[sorted_ids[starts]] += xp.add.reduceat(rows[order], starts, axis=0)


def _is_basic(index: tuple[Any, ...]) -> bool:
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in index)


def normalize_index(index: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Turn an index into a tuple of ints, slices, None, Ellipsis and integer/bool arrays, checking
    integer components against the dimension they index (IndexError naming the bound)."""
    if not isinstance(index, tuple):
        index = (index,)
    out: list[Any] = []
    for i in index:
        if isinstance(i, Tensor):
            i = i.data
        elif isinstance(i, list):
            i = np.asarray(i)
        if hasattr(i, "dtype") and getattr(i, "ndim", 0) == 0 and i.dtype.kind in "iu":
            i = int(i)
        if hasattr(i, "dtype") and i.dtype.kind not in "iub":
            raise IndexError(f"tensors used as indices must be integer or bool, got {i.dtype}")
        out.append(i)
    # which tensor dimension each component indexes (for the bound check)
    n_ellipsis_dims = len(shape) - sum(
        (c.ndim if hasattr(c, "dtype") and c.dtype.kind == "b" else 1)
        for c in out if c is not None and c is not Ellipsis
    )
    if n_ellipsis_dims < 0:
        raise IndexError(f"too many indices for a tensor of shape {shape}: got {len(out)}")
    dim = 0
    for c in out:
        if c is None:
            continue
        if c is Ellipsis:
            dim += n_ellipsis_dims
            continue
        if isinstance(c, (int, np.integer)) or (hasattr(c, "dtype") and c.dtype.kind in "iu"):
            size = shape[dim]
            xp = array_module(c) if hasattr(c, "dtype") else np
            if hasattr(c, "dtype"):
                if c.size and (int(xp.max(c)) >= size or int(xp.min(c)) < -size):
                    bad = int(xp.max(c)) if int(xp.max(c)) >= size else int(xp.min(c))
                    raise IndexError(f"index {bad} is out of range for dimension {dim} with size {size} "
                                     f"(valid: {-size}..{size - 1})")
            elif not -size <= c < size:
                raise IndexError(f"index {c} is out of range for dimension {dim} with size {size} "
                                 f"(valid: {-size}..{size - 1})")
            dim += 1
        elif hasattr(c, "dtype"):  # bool mask covers c.ndim dims
            if tuple(c.shape) != tuple(shape[dim:dim + c.ndim]):
                raise IndexError(f"boolean mask of shape {tuple(c.shape)} does not match the indexed "
                                 f"dimensions {tuple(shape[dim:dim + c.ndim])}")
            dim += c.ndim
        else:
            dim += 1
    return tuple(out)


class GetItem(Function):
    saves_inputs = ()

    def forward(self, x, index):
        self.in_shape, self.index = x.shape, index
        return x[index]

    def backward(self, dout):
        xp = array_module(dout)
        dx = xp.zeros(self.in_shape, dtype=dout.dtype)
        if _is_basic(self.index):
            dx[self.index] = dout           # disjoint positions: plain assignment
        else:
            _scatter_add(xp, dx, self.index, dout)  # repeated indices accumulate
        return (dx,)


class GetItemView(GetItem):
    is_view = True


def getitem(input: Tensor, index: Any) -> Tensor:
    idx = normalize_index(index, input.shape)
    return (GetItemView if _is_basic(idx) else GetItem).apply(input, index=idx)


class Gather(Function):
    """out[i][j][k] = x[i][index[i][j][k]][k] (for dim=1); backward scatter-adds."""

    saves_inputs = ()

    def forward(self, x, dim, index):
        xp = array_module(x)
        self.in_shape, self.dim = x.shape, dim
        # index may be smaller than x in the other dims: use an open mesh of coordinates
        grid = list(xp.ix_(*[xp.arange(n) for n in index.shape]))
        grid[dim] = index
        self.coords = tuple(grid)
        return x[self.coords]

    def backward(self, dout):
        xp = array_module(dout)
        dx = xp.zeros(self.in_shape, dtype=dout.dtype)
        _scatter_add(xp, dx, self.coords, dout)
        return (dx,)


def gather(input: Tensor, dim: int, index: Any) -> Tensor:
    """torch.gather: values of `input` along `dim` at the positions given by `index` (same ndim)."""
    idx = index.data if isinstance(index, Tensor) else array_module(input.data).asarray(index)
    d = norm_dim(dim, input.ndim, "gather")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got {idx.dtype}")
    if idx.ndim != input.ndim:
        raise ValueError(f"gather: index has {idx.ndim} dims {tuple(idx.shape)}, input has {input.ndim} "
                         f"{input.shape}; they must match")
    for i, (n_idx, n_in) in enumerate(zip(idx.shape, input.shape, strict=True)):
        if i != d and n_idx > n_in:
            raise ValueError(f"gather: index shape {tuple(idx.shape)} exceeds input shape {input.shape} "
                             f"in dimension {i}")
    size = input.shape[d]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= size):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise IndexError(f"gather: index {bad} is out of range for dimension {d} with size {size} "
                         f"(valid: 0..{size - 1})")
    return Gather.apply(input, dim=d, index=idx)


class Embedding(Function):
    """out = weight[idx]; dweight[idx[n]] += dout[n], except the row `padding_idx`, which gets none."""

    saves_inputs = ()

    def forward(self, weight, idx, padding_idx):
        self.idx, self.padding_idx, self.shape = idx, padding_idx, weight.shape
        return weight[idx]

    def backward(self, dout):
        xp = array_module(dout)
        dweight = xp.zeros(self.shape, dtype=dout.dtype)
        # (N, C) rows added into (V, C): repeated token ids accumulate
        _scatter_add_rows(xp, dweight, self.idx.reshape(-1), dout.reshape(-1, self.shape[-1]))
        if self.padding_idx is not None:
            dweight[self.padding_idx] = 0
        return (dweight,)


def embedding(input: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Look up rows of `weight` (V, C) for integer ids `input` of any shape -> (*input.shape, C)."""
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: token ids must be an integer tensor, got {idx.dtype} "
                        "(use .long() on the ids)")
    num = weight.shape[0]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num:
            bad = lo if lo < 0 else hi
            raise IndexError(f"embedding: token id {bad} is out of range for an embedding with {num} rows "
                             f"(valid ids: 0..{num - 1})")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += num
    return Embedding.apply(weight, idx=idx, padding_idx=padding_idx)


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """torch.nn.functional.one_hot: int64 (*tensor.shape, num_classes) with a 1 at each class index.
    num_classes=-1 takes the largest value + 1. Not differentiable (the input holds class indices)."""
    idx = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot is only applicable to an integer (index) tensor, got {idx.dtype}")
    xp = array_module(idx)
    if idx.size == 0:
        if num_classes == -1:
            raise ValueError("one_hot: can not infer the total number of classes from an empty tensor")
    elif int(idx.min()) < 0:
        raise ValueError("one_hot: class values must be non-negative")
    elif num_classes == -1:
        num_classes = int(idx.max()) + 1
    elif int(idx.max()) >= num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes ({num_classes}), got "
                         f"{int(idx.max())}")
    if num_classes < 0:
        raise ValueError(f"one_hot: num_classes must be -1 or non-negative, got {num_classes}")
    out = idx[..., None] == xp.arange(num_classes)     # (*shape, num_classes)
    return Tensor(out.astype(np.int64))
