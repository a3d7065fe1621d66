"""Joining and splitting: cat, stack, split, chunk. The backward of a join slices the gradient back
into its pieces; splits are slices, whose gradients the engine sums."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import norm_dim


class Cat(Function):
    saves_inputs = ()

    def forward(self, *arrays, dim):
        self.dim = dim
        self.bounds = []
        start = 0
        for a in arrays:
            self.bounds.append((start, start + a.shape[dim]))
            start += a.shape[dim]
        return array_module(arrays[0]).concatenate(arrays, axis=dim)

    def backward(self, dout):
        lead = (slice(None),) * self.dim
        return tuple(dout[lead + (slice(lo, hi),)] for lo, hi in self.bounds)


class Stack(Function):
    saves_inputs = ()

    def forward(self, *arrays, dim):
        self.dim = dim
        return array_module(arrays[0]).stack(arrays, axis=dim)

    def backward(self, dout):
        xp = array_module(dout)
        return tuple(xp.take(dout, i, axis=self.dim) for i in range(dout.shape[self.dim]))


def _check_join(tensors: Sequence[Tensor], op: str) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: element {i} is a {type(t).__name__}, expected a Tensor")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], start=1):
        if t.device != first.device:
            raise TypeError(f"{op}: tensor 0 is on {first.device} but tensor {i} is on {t.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: tensor 0 has dtype {first.dtype} but tensor {i} has {t.dtype}; "
                            "convert them to one dtype first")
    return tensors


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dimension; all other sizes must match."""
    tensors = _check_join(tensors, "cat")
    first = tensors[0]
    d = norm_dim(dim, first.ndim, "cat")
    for i, t in enumerate(tensors[1:], start=1):
        if t.ndim != first.ndim or any(
            a != b for k, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if k != d
        ):
            raise ValueError(f"cat: tensor {i} has shape {t.shape} but tensor 0 has shape {first.shape}; "
                             f"sizes must match except in dimension {d}")
    return Cat.apply(*tensors, dim=d)


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join along a new dimension; all shapes must be equal."""
    tensors = _check_join(tensors, "stack")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], start=1):
        if t.shape != first.shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape} but tensor 0 has shape {first.shape}; "
                             "all shapes must be equal")
    d = norm_dim(dim, first.ndim + 1, "stack")
    return Stack.apply(*tensors, dim=d)


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of size `split_size` (the last may be smaller), or of the sizes listed."""
    d = norm_dim(dim, tensor.ndim, "split")
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {sum(sizes)}, but dimension {d} has size {n}")
    lead = (slice(None),) * d
    out, start = [], 0
    for s in sizes:
        out.append(tensor[lead + (slice(start, start + s),)])
        start += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """At most `chunks` pieces of size ceil(n / chunks), as torch.chunk."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = norm_dim(dim, input.ndim, "chunk")
    n = input.shape[d]
    size = max(-(-n // chunks), 1)
    return split(input, size, d)
