"""Compile and cache the `.cu` files of this folder with CuPy, and launch helpers shared by the wrappers."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THREADS = 256


def cupy() -> Any:
    import cupy as cp  # noqa: PLC0415 (only on a machine with a GPU)

    return cp


@cache
def module(name: str) -> Any:
    """The RawModule of `name`.cu (compiled on first use; its extern "C" kernels by name)."""
    cp = cupy()
    source = (HERE / f"{name}.cu").read_text()
    return cp.RawModule(code=source, options=("-std=c++17", f"-I{HERE}"), backend="nvrtc")


def kernel(file: str, name: str) -> Any:
    return module(file).get_function(name)


def is_float32_cupy(*arrays: Any) -> bool:
    """True when every non-None argument is a float32 CuPy array (what these kernels take)."""
    return all(a is None or (type(a).__module__.startswith("cupy") and a.dtype.name == "float32") for a in arrays)


def contiguous(a: Any) -> Any:
    return None if a is None else cupy().ascontiguousarray(a)


def grid_1d(n: int, threads: int = THREADS, max_blocks: int = 65535) -> tuple[int]:
    return (max(1, min(max_blocks, (n + threads - 1) // threads)),)


def row_threads(C: int) -> int:
    """Threads per block for a one-block-per-row kernel: a multiple of 32, up to 1024, about C / 4."""
    return max(32, min(1024, 32 * ((C // 4 + 31) // 32)))
