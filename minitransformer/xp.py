"""Array-module helpers: which library holds an array (NumPy on the CPU, CuPy on a GPU) and on which device.

Op bodies never write `np.` for work that must also run on a GPU; they ask `array_module(a)` for the module
(`xp`) that owns their input and call it. CuPy is imported lazily, only when a CuPy array is seen or a
CUDA device is asked for, so importing the library never needs it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

_cupy: ModuleType | None = None
_cupy_error: str | None = None


def cupy_module() -> ModuleType:
    """Import CuPy on first use; raise a RuntimeError that says why CUDA is unavailable otherwise."""
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is None:
        try:
            import cupy  # noqa: PLC0415 (optional dependency, imported on demand)

            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
            return cupy
        except Exception as exc:  # ImportError, or a CUDA driver/runtime error
            _cupy_error = f"{type(exc).__name__}: {exc}"
    raise RuntimeError(
        "device 'cuda' is unavailable: " + _cupy_error
        + " (install the optional extra `minitransformer[cuda]` on a machine with an NVIDIA GPU)"
    )


def array_module(a: Any) -> ModuleType:
    """The array module (numpy or cupy) that owns array `a`."""
    if type(a).__module__.startswith("cupy"):
        return cupy_module()
    return np


def device_of(a: Any) -> str:
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    return "cuda" if type(a).__module__.startswith("cupy") else "cpu"


def normalize_device(device: Any) -> str:
    """Accept 'cpu', 'cuda', 'cuda:0' (or None for cpu) and return 'cpu' or 'cuda'."""
    if device is None:
        return "cpu"
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def to_device(a: Any, device: str) -> Any:
    """Move array `a` to `device` ('cpu' or 'cuda'); returns `a` itself when it is already there."""
    if device_of(a) == device:
        return a
    if device == "cpu":
        return a.get()
    return cupy_module().asarray(a)
