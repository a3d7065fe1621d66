"""dtype names as PyTorch spells them (mt.float32, mt.long, ...), mapped to NumPy dtypes, and the
default floating dtype (float32) that Python floats and new random tensors get.

`bfloat16` is NumPy's dtype from the optional `ml_dtypes` package (`pip install ml_dtypes`, or the
`minitransformer[bf16]` extra). Without it `mt.bfloat16` still exists, so code that only names it (a
`{"bfloat16": torch.bfloat16, ...}` table) runs; using it to make or cast a tensor raises a TypeError that
says what to install.
"""

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
int8 = np.dtype("int8")
int16 = short = np.dtype("int16")


class _MissingBFloat16:
    """Stands for bfloat16 when ml_dtypes is missing: harmless to name, a clear error when used."""

    _why = "bfloat16 needs the optional ml_dtypes package: pip install ml_dtypes (or minitransformer[bf16])"

    @property
    def dtype(self) -> np.dtype:  # NumPy's np.dtype(obj) reads this attribute, so every use ends here
        raise TypeError(self._why)

    def __repr__(self) -> str:
        return "minitransformer.bfloat16 (unavailable: pip install ml_dtypes)"


_bf16: list[Any] = []


def bfloat16_dtype() -> np.dtype | None:
    """NumPy's bfloat16 from ml_dtypes, or None without it. Imported on first use: loading ml_dtypes's
    extension takes longer than importing the rest of the library, and most runs never need it."""
    if not _bf16:
        try:
            import ml_dtypes  # optional dependency

            _bf16.append(np.dtype(ml_dtypes.bfloat16))
        except ImportError:
            _bf16.append(None)
    return _bf16[0]


def __getattr__(name: str) -> Any:
    """`dtypes.bfloat16` (and `mt.bfloat16`): NumPy's dtype, or the stand-in that explains what to install."""
    if name == "bfloat16":
        d = bfloat16_dtype()
        return _MissingBFloat16() if d is None else d
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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


def as_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype for a torch-style name or dtype (mt.float32, "float32", np.float32, mt.bfloat16)."""
    return np.dtype(dtype)


def is_floating(dtype: Any) -> bool:
    d = np.dtype(dtype)
    return d.kind == "f" or d.name == "bfloat16"
