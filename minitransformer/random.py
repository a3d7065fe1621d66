"""The library's random number generator: one NumPy `Generator` (PCG64) seeded by `manual_seed`.

Every random op (randn, rand, dropout masks, parameter initialisation, sampling) draws from it, so one
seed makes a whole run repeatable, and its state can be saved and restored with a checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the global generator; returns it (as torch.manual_seed returns its generator)."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))
    return _rng


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


def randn_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Standard normal samples on the CPU, drawn in `dtype` when NumPy can (float32/float64)."""
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return _rng.standard_normal(shape, dtype=dtype)
    return _rng.standard_normal(shape).astype(dtype)


def rand_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Uniform samples in [0, 1) on the CPU."""
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return _rng.random(shape, dtype=dtype)
    return _rng.random(shape).astype(dtype)
