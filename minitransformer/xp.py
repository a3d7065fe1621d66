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


class device(str):  # noqa: N801 (torch's name)
    """A device name as `torch.device` spells it: `mt.device("cuda", 0)`, `mt.device("cuda:0")`, `mt.device("cpu")`.

    It is a `str` (its value is the name, "cpu" or "cuda[:index]"), so everywhere a device string is accepted
    a device is too, and `t.device == "cpu"` keeps working; `.type` and `.index` are torch's attributes.
    """

    def __new__(cls, type: Any, index: int | None = None) -> device:  # noqa: A002 (torch's argument name)
        name = str(type)
        kind, _, idx = name.partition(":")
        if kind not in ("cpu", "cuda", "mps", "meta"):
            raise ValueError(f"unknown device type {kind!r}; expected 'cpu' or 'cuda' (as in 'cuda:0')")
        if idx and index is not None:
            raise ValueError(f"device {name!r} already has an index; do not pass index={index} too")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"device index in {name!r} must be a non-negative integer")
            index = int(idx)
        if index is not None and (not isinstance(index, int) or index < 0):
            raise ValueError(f"device index must be a non-negative integer, got {index!r}")
        obj = super().__new__(cls, kind if index is None else f"{kind}:{index}")
        obj._type, obj._index = kind, index
        return obj

    @property
    def type(self) -> str:
        return self._type

    @property
    def index(self) -> int | None:
        return self._index

    def __repr__(self) -> str:
        return f"device(type='{self._type}')" if self._index is None else \
            f"device(type='{self._type}', index={self._index})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (device, (str(self),))


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
