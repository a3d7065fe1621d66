"""Einstein summation, as `torch.einsum(equation, *operands)`, with its backward.

The equation names every dim of every operand with a letter (a-z, A-Z); `...` stands for the leading
dims not named (broadcast between operands, right-aligned). Without `->`, the output is the ellipsis
dims followed by the letters that appear exactly once, in alphabetical order (upper case first). A letter
repeated in one operand reads its diagonal; a letter missing from the output is summed over. A named
dim of size 1 broadcasts against the same letter's size elsewhere.

Forward and backward both call the array module's einsum (contracting pairwise, BLAS where it can).

Backward. out[o] = sum over the letters not in o of  prod_j x_j[S_j]  (S_j: operand j's letters).
Differentiating a sum of products by one factor leaves the others: for the unique letters U of S_k,

    G[U] = sum over the letters not in U of  dout[o] * prod_{j != k} x_j[S_j]

which is itself an einsum, `o, S_j (j != k) -> U`. Two corrections make it the gradient of x_k:
  - a letter of U that appears nowhere else (only in operand k: summed, not in the output or any other
    operand) cannot be an einsum output; out does not vary with it except through x_k, so G is constant
    along it: compute G without it, then broadcast along it;
  - a letter repeated in S_k ('ii') means x_k is read only where those indices agree: dx_k is G on that
    diagonal and zero elsewhere.
Size-1 dims that were broadcast are removed from the operand (indexed at 0) before all this, so their
gradient is the sum over the broadcast, and put back as size-1 dims at the end.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import as_tensor

LETTERS = string.ascii_letters


def _einsum(xp: Any, equation: str, *arrays: Any) -> Any:
    if len(arrays) > 1:
        return xp.einsum(equation, *arrays, optimize=True)
    return xp.einsum(equation, *arrays)


class Einsum(Function):
    def forward(self, *arrays, terms, out_term, drops):
        """terms[k]: operand k's letters once size-1 broadcast dims (drops[k], positions) are indexed out."""
        xp = array_module(arrays[0])
        self.terms, self.out_term, self.drops = terms, out_term, drops
        self.shapes = [a.shape for a in arrays]
        self.arrays = [_drop(a, d) for a, d in zip(arrays, drops, strict=True)]
        self.sizes = {c: n for t, a in zip(terms, self.arrays, strict=True) for c, n in zip(t, a.shape, strict=True)}
        out = _einsum(xp, f"{','.join(terms)}->{out_term}", *self.arrays)
        if any(xp.may_share_memory(out, a) for a in arrays):
            out = out.copy()  # a single-operand einsum may return a view; this op's output owns its memory
        return out

    def backward(self, dout):
        xp = array_module(dout)
        grads = []
        for k, inp in enumerate(self.inputs):
            if not inp.requires_grad:
                grads.append(None)
                continue
            term = self.terms[k]
            unique = "".join(dict.fromkeys(term))
            others = [t for j, t in enumerate(self.terms) if j != k]
            seen = set(self.out_term).union(*others)
            inner = "".join(c for c in unique if c in seen)
            g = _einsum(xp, f"{','.join([self.out_term, *others])}->{inner}", dout,
                        *[a for j, a in enumerate(self.arrays) if j != k])
            if len(inner) < len(unique):  # letters only in operand k: G is constant along them
                g = g.reshape(g.shape + (1,) * (len(unique) - len(inner)))
                order = inner + "".join(c for c in unique if c not in seen)
                g = xp.broadcast_to(g.transpose([order.index(c) for c in unique]),
                                    tuple(self.sizes[c] for c in unique))
            if len(unique) == len(term):
                dx = g.transpose([unique.index(c) for c in term])
                if len(inner) < len(unique):
                    dx = dx.copy()  # own the memory: a broadcast view repeats one value along a stride of 0
            else:  # repeated letters: write G onto the diagonal of zeros
                dx = xp.zeros(self.arrays[k].shape, dtype=dout.dtype)
                grid = xp.ix_(*[xp.arange(self.sizes[c]) for c in unique])
                dx[tuple(grid[unique.index(c)] for c in term)] = g
            if dx is dout or xp.may_share_memory(dx, dout):
                dx = dx.copy()
            grads.append(_undrop(dx, self.drops[k], self.shapes[k]))
        return tuple(grads)


def _drop(a: Any, positions: tuple[int, ...]) -> Any:
    """Index out the size-1 dims at `positions` (they broadcast, so only their one entry matters)."""
    if not positions:
        return a
    return a[tuple(0 if i in positions else slice(None) for i in range(a.ndim))]


def _undrop(g: Any, positions: tuple[int, ...], shape: tuple[int, ...]) -> Any:
    return g.reshape(shape) if positions else g


def _parse_term(term: str, k: int, equation: str) -> tuple[list[str], bool]:
    """Operand k's letters, with '.' for the ellipsis, and whether it had one."""
    labels: list[str] = []
    ellipsis = False
    i = 0
    while i < len(term):
        c = term[i]
        if c == ".":
            if term[i:i + 3] != "...":
                raise ValueError(f"einsum(): found '.' for operand {k} that is not part of any ellipsis")
            if ellipsis:
                raise ValueError(f"einsum(): found '.' for operand {k} for which an ellipsis was already found")
            ellipsis = True
            labels.append(".")
            i += 3
            continue
        if c not in LETTERS:
            raise ValueError(f"einsum(): invalid subscript {c!r} in the equation {equation!r}, subscripts must "
                             "be in [a-zA-Z]")
        labels.append(c)
        i += 1
    return labels, ellipsis


def _same_dtype(tensors: list[Tensor]) -> list[Tensor]:
    dtypes = {t.dtype for t in tensors}
    floats = {d for d in dtypes if d.kind == "f"}
    if len(floats) > 1:
        raise TypeError(f"einsum: operands have different floating dtypes {sorted(map(str, floats))}; convert them "
                        "to one dtype first")
    common = floats.pop() if floats else np.result_type(*dtypes)
    return [t if t.dtype == common else Tensor(t.data.astype(common)) for t in tensors]


def _expand(equation: str, ndims: list[int]) -> tuple[list[str], str]:
    """Every operand's letters and the output's, the ellipsis written out as fresh letters (outermost first,
    right-aligned across operands); the implicit output made explicit."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms_in = lhs.split(",")
    if len(terms_in) > len(ndims):
        raise ValueError("einsum(): fewer operands were provided than specified in the equation")
    if len(terms_in) < len(ndims):
        raise ValueError("einsum(): more operands were provided than specified in the equation")
    parsed = [_parse_term(t, k, equation) for k, t in enumerate(terms_in)]
    n_ell = 0
    for k, ((labels, has_ell), nd) in enumerate(zip(parsed, ndims, strict=True)):
        named = len(labels) - has_ell
        if (has_ell and nd < named) or (not has_ell and nd != named):
            raise ValueError(f"einsum(): the number of subscripts in the equation ({named}) does not match the "
                             f"number of dimensions ({nd}) for operand {k}"
                             + ("" if has_ell else " and no ellipsis was given"))
        if has_ell:
            n_ell = max(n_ell, nd - named)
    fresh = [c for c in LETTERS if c not in eq]
    if n_ell > len(fresh):
        raise ValueError(f"einsum: {equation!r} needs {n_ell} letters for its ellipsis dims, only {len(fresh)} "
                         "are left unused")
    ell = "".join(fresh[:n_ell])
    terms = ["".join(ell[n_ell - (nd - len(labels) + has_ell):] if c == "." else c for c in labels)
             for (labels, has_ell), nd in zip(parsed, ndims, strict=True)]
    if not arrow:  # ellipsis dims, then the letters seen once in alphabetical order (upper case first)
        return terms, ell + "".join(sorted(c for c in set(lhs) if c in LETTERS and lhs.count(c) == 1))
    out_labels, _ = _parse_term(rhs, -1, equation)
    for c in out_labels:
        if c != "." and out_labels.count(c) > 1:
            raise ValueError(f"einsum(): output subscript {c} appears more than once in the output")
        if c != "." and c not in lhs:
            raise ValueError(f"einsum(): output subscript {c} does not appear in the equation for any input operand")
    # without '...' in the output, the ellipsis dims are summed over like any letter left out
    return terms, "".join(ell if c == "." else c for c in out_labels)


def _sizes(terms: list[str], shapes: list[tuple[int, ...]]) -> dict[str, int]:
    """Each letter's size: equal within an operand, equal or 1 (broadcast) across operands."""
    sizes: dict[str, int] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes, strict=True)):
        mine: dict[str, int] = {}
        for c, n in zip(term, shape, strict=True):
            if c in mine and mine[c] != n:
                raise ValueError(f"einsum(): subscript {c} is repeated for operand {k} but the sizes don't "
                                 f"match, {n} != {mine[c]}")
            mine[c] = n
        for c, n in mine.items():
            prev = sizes.get(c, 1)
            if n != 1 and prev != 1 and n != prev:
                raise ValueError(f"einsum(): subscript {c} has size {n} for operand {k} which does not broadcast "
                                 f"with previously seen size {prev}")
            sizes[c] = n if prev == 1 else prev
    return sizes


def einsum(equation: str, *operands: Any) -> Tensor:
    """torch.einsum: `mt.einsum('bij,bjk->bik', a, b)`, or the operands as one list."""
    if not isinstance(equation, str):
        raise TypeError("einsum: the first argument must be the equation string (the sublist form is not supported)")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum(): must provide at least one operand")
    tensors = [as_tensor(x) for x in operands]
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise TypeError(f"einsum: expected all operands on one device, got {sorted(devices)}")
    tensors = _same_dtype(tensors)
    terms, out_term = _expand(equation, [t.ndim for t in tensors])
    sizes = _sizes(terms, [t.shape for t in tensors])
    # size-1 dims that broadcast against a larger size are indexed out of their operand
    drops = [tuple(i for i, (c, n) in enumerate(zip(term, t.shape, strict=True)) if n == 1 and sizes[c] != 1)
             for term, t in zip(terms, tensors, strict=True)]
    kept = ["".join(c for i, c in enumerate(term) if i not in pos) for term, pos in zip(terms, drops, strict=True)]
    return Einsum.apply(*tensors, terms=tuple(kept), out_term=out_term, drops=tuple(drops))
