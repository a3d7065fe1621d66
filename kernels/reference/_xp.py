"""Find the array module (NumPy or CuPy) of an array without importing CuPy unless it owns the array."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def xp_of(a: Any) -> ModuleType:
    if type(a).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415 (only reached for CuPy arrays)

        return cupy
    return np
