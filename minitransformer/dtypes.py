"""dtype names as PyTorch spells them (mt.float32, mt.long, ...), mapped to NumPy dtypes, and the
default floating dtype (float32) that Python floats and new random tensors get."""

from __future__ import annotations

from typing import Any

import numpy as np

float16 = half = np.dtype("float16")
float32 = np.dtype("float32")
float64 = double = np.dtype("float64")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

# torch.float / torch.int / torch.bool; exported under those names by the package
ALIASES = {"float": float32, "int": int32, "bool": bool_}

_default = {"dtype": float32}


def get_default_dtype() -> np.dtype:
    """The floating dtype that Python floats and new random tensors get (float32 unless changed)."""
    return _default["dtype"]


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype (float32 or float64)."""
    d = np.dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"default dtype must be a floating dtype, got {d}")
    _default["dtype"] = d


def is_floating(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"
