"""Samplers, as `torch.utils.data`: iterables of dataset indices (`SequentialSampler`, `RandomSampler`,
`SubsetRandomSampler`, `WeightedRandomSampler`) and `BatchSampler`, which groups them into lists.

Random samplers draw lazily: `RandomSampler(ds, replacement=True, num_samples=10**10)` makes indices 1024
at a time as they are consumed, never the whole list. Without a `generator`, `RandomSampler` draws a
fresh seed from the global generator at every `iter()`, so `mt.manual_seed` makes a run repeatable while
each epoch gets a new order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np

from ... import random as _random

_CHUNK = 1024  # indices drawn per call when sampling with replacement


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")


def _check_bool(value: Any, name: str, error: type[Exception] = TypeError) -> None:
    if not isinstance(value, bool):
        raise error(f"{name} should be a boolean value, but got {name}={value!r}")


class Sampler:
    """Base class: subclasses define `__iter__` (the indices) and, where it is known, `__len__`.

    `data_source` is accepted for PyTorch's signature and not used."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__ (a Sampler subclass)")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Random indices into `data_source`.

    Without replacement: a random permutation, repeated (and the last one cut) when `num_samples` exceeds
    the dataset's length. With replacement: `num_samples` independent uniform draws, made in chunks.
    `num_samples` defaults to `len(data_source)`.
    """

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: int | None = None,
                 generator: _random.Generator | None = None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        _check_bool(replacement, "replacement")
        if num_samples is not None:
            _check_positive_int(num_samples, "num_samples")
        else:
            _check_positive_int(len(data_source), "num_samples")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def _rng(self) -> np.random.Generator:
        if self.generator is not None:
            return _random.rng_of(self.generator)
        # A private stream seeded from the global one, as torch does: one global draw per epoch.
        return np.random.default_rng(int(_random.generator().integers(0, 1 << 63)))

    def __iter__(self) -> Iterator[int]:
        n, total = len(self.data_source), self.num_samples
        rng = self._rng()
        if self.replacement:
            for start in range(0, total, _CHUNK):
                yield from rng.integers(0, n, size=min(_CHUNK, total - start)).tolist()
        else:
            for _ in range(total // n):
                yield from rng.permutation(n).tolist()
            if total % n:
                yield from rng.permutation(n)[: total % n].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given `indices` in a random order (one permutation per `iter()`)."""

    def __init__(self, indices: Sequence[int], generator: _random.Generator | None = None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[Any]:
        for i in _random.rng_of(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """`num_samples` indices into `weights`, index i drawn with probability weights[i] / sum(weights).

    The weights need not sum to one. Without replacement each index comes at most once, so there must be
    at least `num_samples` positive weights.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator: _random.Generator | None = None) -> None:
        _check_positive_int(num_samples, "num_samples")
        _check_bool(replacement, "replacement", ValueError)  # ValueError here, TypeError in RandomSampler: torch's
        w = np.asarray(weights, dtype=np.float64)  # a list, an array or a CPU Tensor
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape {w.shape}")
        if w.size == 0 or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise ValueError("weights should be finite and non-negative with a positive sum")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: num_samples={num_samples} without replacement needs at "
                             f"least that many positive weights, got {np.count_nonzero(w)}")
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = _random.rng_of(self.generator)
        draws = rng.choice(self.weights.size, size=self.num_samples, replace=self.replacement,
                           p=self.weights / self.weights.sum())
        yield from draws.tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of `batch_size` indices from `sampler` (any iterable); the last, shorter list is kept unless
    `drop_last`."""

    def __init__(self, sampler: Sampler | Iterable[Any], batch_size: int, drop_last: bool) -> None:
        _check_positive_int(batch_size, "batch_size")
        _check_bool(drop_last, "drop_last", ValueError)
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[Any]]:
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size
