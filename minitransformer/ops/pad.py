"""Padding, as `torch.nn.functional.pad`: `pad` lists (left, right) amounts for the last dimension first,
then the one before it, and so on; a negative amount crops instead.

Modes, for one padded dim of size n and output position j, with p = j - left its position in input
coordinates (p < 0 or p >= n means outside the input):
    constant   value outside, x[p] inside
    reflect    x[-p] left of the input, x[2(n-1) - p] right of it (the edge is not repeated)
    replicate  x[clip(p, 0, n-1)]
    circular   x[p mod m], where m is the size left after cropping: PyTorch wraps around the cropped
               tensor, while reflect and replicate mirror about the original edges
Only constant works on any number of dims; the other three pad the last 1-3 dims of a tensor with one or
two leading (batch, channel) dims, as PyTorch allows.

Backward of constant: the gradient of the part that came from the input. Backward of the other modes:
each padded dim maps output positions to input positions through an index map, and the gradient of an
input position is the sum over the outputs that read it. The map is a few runs of step +1, -1 or 0
(centre, mirrored edge, repeated edge), so the sum is a few slice additions per dim, no scatter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module

MODES = ("constant", "reflect", "replicate", "circular")


def _index_map(n: int, left: int, right: int, mode: str) -> np.ndarray:
    """For each output position of one padded dim, the input position it reads."""
    if mode == "circular":
        lo, hi = max(-left, 0), n - max(-right, 0)       # crop first, then wrap around what is left
        m = hi - lo
        p = np.arange(-max(left, 0), m + max(right, 0))
        return lo + p % max(m, 1)
    p = np.arange(-left, n + right)
    if mode == "reflect":
        return np.where(p < 0, -p, np.where(p >= n, 2 * (n - 1) - p, p))
    return np.clip(p, 0, n - 1)                          # replicate


def _runs(idx: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split an index map into runs (out_start, out_stop, in_start, step) with step in {+1, -1, 0}."""
    runs = []
    start = 0
    while start < len(idx):
        stop = start + 1
        step = int(idx[stop] - idx[start]) if stop < len(idx) else 1
        if step not in (-1, 0, 1):
            step = 1
        else:
            while stop < len(idx) and idx[stop] - idx[stop - 1] == step:
                stop += 1
        runs.append((start, stop, int(idx[start]), step))
        start = stop
    return runs


def _take_backward(g: Any, axis: int, n: int, runs: list[tuple[int, int, int, int]]) -> Any:
    """Sum g over the outputs that read each input position of `axis` (size n in the input)."""
    xp = array_module(g)
    g = xp.moveaxis(g, axis, 0)
    dx = xp.zeros((n, *g.shape[1:]), dtype=g.dtype)
    for o0, o1, i0, step in runs:
        k = o1 - o0
        if step == 0:
            dx[i0] += g[o0:o1].sum(axis=0)               # a repeated edge: all its copies add up
        elif step == 1:
            dx[i0:i0 + k] += g[o0:o1]                    # distinct positions in one run: slices add
        else:
            dx[i0 - k + 1:i0 + 1] += g[o0:o1][::-1]      # a mirrored run
    return xp.moveaxis(dx, 0, axis)


class Pad(Function):
    saves_inputs = ()

    def forward(self, x, pairs, mode, value):
        """pairs[d] = (left, right) for every dim d of x (0, 0 where it is not padded)."""
        xp = array_module(x)
        self.in_shape, self.pairs, self.mode = x.shape, pairs, mode
        if mode == "constant":
            out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pairs, strict=True))
            self.src = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, pairs, strict=True))
            self.dst = tuple(slice(max(lo, 0), m - max(hi, 0)) for m, (lo, hi) in zip(out_shape, pairs, strict=True))
            out = xp.full(out_shape, value, dtype=x.dtype)
            out[self.dst] = x[self.src]
            return out
        self.maps = {}
        out = x
        for d, (lo, hi) in enumerate(pairs):
            if lo or hi:
                idx = _index_map(x.shape[d], lo, hi, mode)
                self.maps[d] = _runs(idx)
                out = xp.take(out, xp.asarray(idx), axis=d)
        return out if out is not x else x.copy()

    def backward(self, dout):
        xp = array_module(dout)
        if self.mode == "constant":
            dx = xp.zeros(self.in_shape, dtype=dout.dtype)
            dx[self.src] = dout[self.dst]
            return (dx,)
        dx = dout
        for d in sorted(self.maps, reverse=True):      # undo the takes in reverse order
            dx = _take_backward(dx, d, self.in_shape[d], self.maps[d])
        return (dx if dx is not dout else dout.copy(),)


def _check_sizes(shape: tuple[int, ...], pairs: list[tuple[int, int]], mode: str) -> None:
    for d, (lo, hi) in enumerate(pairs):
        n = shape[d]
        out = n + lo + hi
        if mode == "constant":
            if out < 0:
                raise ValueError(f"pad: padding ({lo}, {hi}) of dimension {d} (size {n}) gives a negative size "
                                 f"{out}")
            continue
        if not (lo or hi):
            continue
        if n == 0:
            raise ValueError(f"pad: mode '{mode}' cannot pad dimension {d} of size 0 (shape {shape})")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: padding size should be less than the corresponding input dimension, but "
                             f"got padding ({lo}, {hi}) at dimension {d} of input {list(shape)}")
        if mode == "circular":
            m = n - max(-lo, 0) - max(-hi, 0)
            if lo > n or hi > n or (out > 0 and (lo > m or hi > m)):
                raise ValueError(f"pad: padding ({lo}, {hi}) of dimension {d} (size {n}) wraps around more "
                                 "than once")
            if out < 0:
                raise ValueError(f"pad: negative padding ({lo}, {hi}) of dimension {d} (size {n}) leaves a "
                                 "negative size")
        elif out < 1:
            raise ValueError(f"pad: input of size {n} in dimension {d} is too small for padding ({lo}, {hi}) "
                             f"in mode '{mode}': the output size would be {out}")


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """torch.nn.functional.pad: `pad = (left_last, right_last, left_2nd_last, right_2nd_last, ...)`.

    Negative amounts crop. mode 'constant' fills with `value` (default 0) and pads any number of dims;
    'reflect', 'replicate' and 'circular' pad the last k = len(pad) / 2 dims (k in 1..3) of a tensor with
    k + 1 or k + 2 dims, and take no value.
    """
    amounts = [int(p) for p in pad]
    if len(amounts) % 2:
        raise ValueError(f"pad: padding length must be divisible by 2, got {len(amounts)} values {tuple(amounts)}")
    k = len(amounts) // 2
    if k > input.ndim:
        raise ValueError(f"pad: padding length should be less than or equal to two times the input dimension but "
                         f"got padding length {len(amounts)} and input of dimension {input.ndim}")
    if mode not in MODES:
        raise NotImplementedError(f"pad: unrecognised padding mode {mode!r}; expected one of {MODES}")
    if mode != "constant":
        if value is not None and value != 0:
            raise ValueError(f"pad: padding mode '{mode}' doesn't take in value argument")
        if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
            raise NotImplementedError(f"pad: padding size {len(amounts)} is not supported for {input.ndim}D input "
                                      f"tensor in mode '{mode}' (padding the last k dims, k = 1..3, needs a "
                                      f"(k+1)- or (k+2)-D input)")
    pairs = [(0, 0)] * input.ndim
    for i in range(k):  # pad[0:2] is the last dim, pad[2:4] the one before it, ...
        pairs[input.ndim - 1 - i] = (amounts[2 * i], amounts[2 * i + 1])
    _check_sizes(input.shape, pairs, mode)
    return Pad.apply(input, pairs=tuple(pairs), mode=mode, value=0 if value is None else value)
