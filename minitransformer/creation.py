"""Making tensors: from data (`tensor`, `from_numpy`), filled (`zeros`, `ones`, `full`, `empty`,
`arange`, `linspace`, `eye`), random (`randn`, `rand`, `randint`, `randperm`) and the `*_like` forms.

Every function takes PyTorch's keyword arguments `dtype`, `device` and `requires_grad`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import random as _random
from .dtypes import get_default_dtype
from .tensor import Tensor, to_array
from .xp import cupy_module, normalize_device, to_device


class Size(tuple):
    """`torch.Size`: a tuple of dimension sizes (`x.size()` returns a plain tuple, which compares equal)."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= int(d)
        return n


def shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept `f(2, 3)` and `f((2, 3))` alike, as PyTorch's size arguments do."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _finish(arr: Any, device: Any, requires_grad: bool) -> Tensor:
    if device is not None:
        arr = to_device(arr, normalize_device(device))
    return Tensor(arr, requires_grad=requires_grad)


def _xp(device: Any) -> Any:
    return cupy_module() if normalize_device(device) == "cuda" else np


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, scalars, arrays or a Tensor).
    Python floats become the default dtype (float32); NumPy arrays keep their dtype."""
    arr = to_array(data, dtype=dtype)
    if isinstance(data, Tensor) or hasattr(data, "dtype"):
        arr = arr.copy()  # tensor() always copies, as torch.tensor
    return _finish(arr, device, requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like `tensor` but without copying when `data` is already an array of that dtype."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return _finish(to_array(data, dtype=dtype), device, False)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor that shares memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _dtype(dtype: Any) -> np.dtype:
    return get_default_dtype() if dtype is None else np.dtype(dtype)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(_xp(device).zeros(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(_xp(device).ones(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(_xp(device).empty(shape_arg(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = to_array(fill_value).dtype
    return Tensor(_xp(device).full(shape_arg((size,)), fill_value, dtype=np.dtype(dtype)),
                  requires_grad=requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Values from start (inclusive) to end (exclusive); int64 for integer arguments, as PyTorch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = get_default_dtype() if is_float else np.int64
    return Tensor(_xp(device).arange(start, end, step, dtype=np.dtype(dtype)), requires_grad=requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    return Tensor(_xp(device).linspace(start, end, steps, dtype=_dtype(dtype)), requires_grad=requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    return Tensor(_xp(device).eye(n, m, dtype=_dtype(dtype)), requires_grad=requires_grad)


def randn(*size: Any, generator: _random.Generator | None = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the global generator (seed it with `manual_seed`) or from `generator`."""
    return _finish(_random.randn_array(shape_arg(size), _dtype(dtype), generator), device, requires_grad)


def rand(*size: Any, generator: _random.Generator | None = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _finish(_random.rand_array(shape_arg(size), _dtype(dtype), generator), device, requires_grad)


def _is_size(x: Any) -> bool:
    return isinstance(x, (tuple, list)) or (isinstance(x, Tensor) and x.ndim == 1)


def randint(*args: Any, size: Any = None, generator: _random.Generator | None = None, dtype: Any = None,
            device: Any = None, requires_grad: bool = False, low: int | None = None,
            high: int | None = None) -> Tensor:
    """Integers drawn uniformly from [low, high), int64 unless `dtype` says otherwise. PyTorch's two forms:
    `randint(high, size)` and `randint(low, high, size)` (size positional or keyword; low defaults to 0)."""
    if size is None and args and _is_size(args[-1]):
        *args, size = args
    if len(args) == 2:
        low, high = args
    elif len(args) == 1 and high is None:
        high = args[0]
    elif len(args) == 1:
        low = args[0]
    elif args:
        raise TypeError(f"randint: expected randint(high, size) or randint(low, high, size), got {len(args)} "
                        "positional arguments before the size")
    if high is None:
        raise TypeError("randint: missing the upper bound `high` (randint(high, size) or randint(low, high, size))")
    if size is None:
        raise TypeError("randint: missing `size`, e.g. randint(10, (3,)) or randint(0, 10, size=(3,))")
    low = 0 if low is None else low
    low, high = int(low), int(high)
    if low >= high:
        raise ValueError(f"randint: low ({low}) must be less than high ({high}); the range is [low, high)")
    if requires_grad:
        raise RuntimeError("randint: integer tensors cannot require gradients")
    arr = _random.rng_of(generator).integers(low, high, size=shape_arg((size,)), dtype=np.int64)
    return _finish(arr.astype(np.dtype(dtype or np.int64), copy=False), device, False)


def randperm(n: int, *, generator: _random.Generator | None = None, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    arr = _random.rng_of(generator).permutation(int(n)).astype(np.dtype(dtype or np.int64))
    return _finish(arr, device, requires_grad)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: _random.Generator | None = None) -> Tensor:
    """Draw indices from the rows of `input` (non-negative weights, (C,) or (B, C)) -> int64."""
    probs = to_device(input.data, "cpu").astype(np.float64)
    rows = probs.reshape(-1, probs.shape[-1])
    if np.any(rows < 0) or not np.all(np.isfinite(rows)):
        raise ValueError("multinomial: weights must be finite and non-negative")
    if not replacement and num_samples > rows.shape[-1]:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from "
                         f"{rows.shape[-1]} categories")
    rng = _random.rng_of(generator)
    out = np.empty((rows.shape[0], num_samples), dtype=np.int64)
    for i, row in enumerate(rows):
        total = row.sum()
        if total <= 0:
            raise ValueError("multinomial: each row needs a positive sum of weights")
        out[i] = rng.choice(row.size, size=num_samples, replace=replacement, p=row / total)
    out = out.reshape(*probs.shape[:-1], num_samples)
    return _finish(out, input.device, False)


def _like(fn: Any, input: Tensor, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    return fn(*input.shape, dtype=input.dtype if dtype is None else dtype,
              device=input.device if device is None else device, requires_grad=requires_grad)


def zeros_like(input: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(zeros, input, dtype, device, requires_grad)


def ones_like(input: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(ones, input, dtype, device, requires_grad)


def empty_like(input: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(empty, input, dtype, device, requires_grad)


def randn_like(input: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(randn, input, dtype, device, requires_grad)


def rand_like(input: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(rand, input, dtype, device, requires_grad)


def full_like(input: Tensor, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return full(input.shape, fill_value, dtype=input.dtype if dtype is None else dtype,
                device=input.device if device is None else device, requires_grad=requires_grad)
