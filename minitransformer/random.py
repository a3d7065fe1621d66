"""The library's random number generator: one NumPy `Generator` (PCG64) seeded by `manual_seed`.

Every random op (randn, rand, dropout masks, parameter initialisation, sampling) draws from it, so one
seed makes a whole run repeatable, and its state can be saved and restored with a checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_initial_seed = int(np.random.SeedSequence().entropy % (1 << 63))
_rng = np.random.default_rng(_initial_seed)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the global generator; returns it (as torch.manual_seed returns its generator)."""
    global _rng, _initial_seed
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    _initial_seed = int(seed)
    _rng = np.random.default_rng(_initial_seed)
    return _rng


def seed() -> int:
    """Seed the global generator from fresh entropy; returns the seed (torch.seed)."""
    manual_seed(int(np.random.SeedSequence().entropy % (1 << 63)))
    return _initial_seed


def initial_seed() -> int:
    """The seed the global generator was last seeded with (torch.initial_seed)."""
    return _initial_seed


def seed_global(entropy: list[int]) -> None:
    """Seed the global generator from a list of integers (a SeedSequence), e.g. [seed, tag, rank]."""
    global _rng
    _rng = np.random.default_rng(entropy)


def generator() -> np.random.Generator:
    """The global generator (for code that needs NumPy's full random API)."""
    return _rng


def get_rng_state() -> dict[str, Any]:
    """The generator's state as a JSON-serialisable dict."""
    return _rng.bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by `get_rng_state`."""
    _rng.bit_generator.state = state


class Generator:
    """An independent random stream, as `torch.Generator`: pass it as `generator=` to the random functions
    (`randint`, `randn`, `rand`, `randperm`, `multinomial`, `RandomSampler`, `random_split`) to keep their
    draws apart from the global stream. Its bits come from its own NumPy `Generator` (PCG64), `.rng`.

    `device` is accepted for PyTorch's signature; the stream is drawn on the CPU either way.
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = str(device)
        self._seed = int(np.random.SeedSequence().entropy % (1 << 63))  # as torch: a fresh generator is unseeded
        self.rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> Generator:
        if not isinstance(seed, (int, np.integer)):
            raise TypeError(f"Generator.manual_seed expects an integer, got {type(seed).__name__}")
        self._seed = int(seed) % (1 << 64)  # torch accepts negative seeds and wraps them the same way
        self.rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Re-seed from fresh entropy and return the new seed."""
        self.manual_seed(int(np.random.SeedSequence().entropy % (1 << 63)))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> Generator:
        self.rng.bit_generator.state = state
        return self


def rng_of(generator: Generator | None) -> np.random.Generator:
    """The NumPy generator to draw from: `generator`'s own stream, or the global one when it is None."""
    if generator is None:
        return _rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator= expects a minitransformer.Generator, got {type(generator).__name__}")
    return generator.rng


def randn_array(shape: tuple[int, ...], dtype: Any, generator: Generator | None = None) -> np.ndarray:
    """Standard normal samples on the CPU, drawn in `dtype` when NumPy can (float32/float64)."""
    dtype, rng = np.dtype(dtype), rng_of(generator)
    if dtype in (np.float32, np.float64):
        return rng.standard_normal(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def rand_array(shape: tuple[int, ...], dtype: Any, generator: Generator | None = None) -> np.ndarray:
    """Uniform samples in [0, 1) on the CPU."""
    dtype, rng = np.dtype(dtype), rng_of(generator)
    if dtype in (np.float32, np.float64):
        return rng.random(shape, dtype=dtype)
    return rng.random(shape).astype(dtype)
