"""The backend table: for each hot kernel (`softmax_forward`, `attention_backward`, ...), which
implementation runs. This is the only module that imports `minitransformer.kernels`.

Backends offer the same kernel names and signatures, each tier listing its kernels in the `KERNELS` table of
its package's __init__ (`matrix()` says which tier implements which kernel; docs/kernels.md prints it):
  numpy  kernels/reference, readable NumPy math for any array module; always present and complete.
  numba  kernels/cpu, JIT-compiled CPU kernels; present when Numba is installed.
  cuda   kernels/cuda, CUDA C launched through CuPy; present when CuPy finds a GPU.
A kernel a tier does not list runs in the reference tier.
The active choice is set with `use(name)` (a call or a context manager) or the environment variable
MINITRANSFORMER_BACKEND: "numpy", "numba", or "auto" (the default), which picks for each kernel the
backend that benchmarks/kernels.py measured fastest on this kind of device (`AUTO_ORDER` below).
The choice is for CPU arrays; CuPy arrays go to the cuda tier (or to the reference when the setting is
"numpy", or when the cuda tier does not cover a case, e.g. float64): on a machine with a GPU, `kernel()`
returns a function that looks at its first array argument.
`describe()` prints the choice per kernel; `warmup()` compiles the Numba kernels up front.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .xp import cupy_module

# the kernel files (the same names in every tier's folder): AUTO_ORDER's keys
KERNEL_FILES = ("softmax", "gelu", "layernorm", "crossentropy", "attention", "adam", "quant", "ctc")
_PACKAGES = {"numpy": "minitransformer.kernels.reference", "numba": "minitransformer.kernels.cpu",
             "cuda": "minitransformer.kernels.cuda"}

# What `auto` prefers on the CPU, per kernel file, fastest first (benchmarks/results/kernels-cpu.md).
AUTO_ORDER: dict[str, tuple[str, ...]] = {name: ("numba", "numpy") for name in KERNEL_FILES}

_tables: dict[str, dict[str, Callable[..., Any]]] = {}
_resolved: dict[tuple[str, str], Callable[..., Any]] = {}
_state = {"active": "auto"}


_found: dict[str, bool] = {}  # which optional backends import here, checked once


def _numba_available() -> bool:
    """True when Numba imports; without it `auto` silently means numpy."""
    if "numba" not in _found:
        try:
            import numba  # noqa: F401, PLC0415 (optional dependency)

            _found["numba"] = True
        except ImportError:
            _found["numba"] = False
    return _found["numba"]


def _cuda_available() -> bool:
    """True when CuPy imports and sees a GPU (checked once)."""
    if "cuda" not in _found:
        try:
            cupy_module()
            _found["cuda"] = True
        except (RuntimeError, ValueError):
            _found["cuda"] = False
    return _found["cuda"]


def available() -> list[str]:
    """Backends that can run on this machine (cuda serves CuPy arrays; numpy and numba NumPy arrays)."""
    return ["numpy"] + (["numba"] if _numba_available() else []) + (["cuda"] if _cuda_available() else [])


def _load(backend: str) -> dict[str, Callable[..., Any]]:
    """The tier's table: the `KERNELS` dict its package's __init__ spells out (name -> function)."""
    table = _tables.get(backend)
    if table is None:
        if backend not in _PACKAGES:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(['auto', *_PACKAGES])}")
        if backend != "numpy" and backend not in available():  # numpy: always there, and Numba stays unimported
            why = ("CuPy or a GPU is missing (pip install 'minitransformer[cuda]' on a machine with an NVIDIA GPU)"
                   if backend == "cuda" else "Numba is not installed (pip install 'minitransformer[numba]')")
            raise ValueError(f"backend {backend!r} is not available: {why}")
        table = _tables[backend] = dict(importlib.import_module(_PACKAGES[backend]).KERNELS)
    return table


def matrix() -> dict[str, list[str]]:
    """Every kernel name and the tiers whose table implements it (whether or not they can run here: the tables
    import without Numba's compiler running or CuPy installed, except the numba tier, which needs Numba)."""
    tiers: dict[str, list[str]] = {}
    for backend, package in _PACKAGES.items():
        try:
            names = importlib.import_module(package).KERNELS
        except ImportError:  # the numba tier without Numba installed
            continue
        for name in names:
            tiers.setdefault(name, []).append(backend)
    return dict(sorted(tiers.items()))


def _file_of(kernel_name: str) -> str:
    fn = _load("numpy").get(kernel_name)
    if fn is None:
        raise KeyError(f"no kernel named {kernel_name!r}")
    return fn.__module__.rsplit(".", 1)[-1]


def _choose(kernel_name: str) -> str:
    """The backend that serves NumPy arrays for `kernel_name` under the active setting."""
    active = _state["active"]
    if active == "cuda":
        active = "auto"
    if active != "auto":
        return active if kernel_name in _load(active) else "numpy"
    for backend in AUTO_ORDER.get(_file_of(kernel_name), ("numpy",)):
        if backend in available() and kernel_name in _load(backend):
            return backend
    return "numpy"


def _first_array(args: tuple[Any, ...]) -> Any:
    a = args[0] if args else None
    return a[0] if isinstance(a, list) and a else a  # adam_update takes lists of arrays


def kernel(name: str) -> Callable[..., Any]:
    """The implementation of kernel `name` that the active choice selects."""
    key = (_state["active"], name)
    fn = _resolved.get(key)
    if fn is None:
        fn = _load(_choose(name))[name]
        if _cuda_available():  # route CuPy arrays to the GPU tier, NumPy arrays to fn
            gpu_backend = "numpy" if _state["active"] == "numpy" else "cuda"
            gpu = _load(gpu_backend).get(name) or _load("numpy")[name]
            cpu = fn

            def fn(*args: Any, **kwargs: Any) -> Any:
                a = _first_array(args)
                return (gpu if type(a).__module__.startswith("cupy") else cpu)(*args, **kwargs)

        _resolved[key] = fn
    return fn


def tier_of(kernel_name: str, array: Any = None) -> str:
    """Which tier runs `kernel_name` for `array` under the active setting: 'numpy' (kernels/reference),
    'numba' (kernels/cpu) or 'cuda' (kernels/cuda). The profiler and the graph pictures label ops with it."""
    if array is not None and type(array).__module__.startswith("cupy"):
        return "numpy" if _state["active"] == "numpy" or kernel_name not in _load("cuda") else "cuda"
    return _choose(kernel_name)


def tiers_of(kernel_names: tuple[str, ...], array: Any = None) -> list[str]:
    """The tiers that run these kernels (an op's `Function.kernels`) for `array`, each once, in order; "?" for
    a name no tier knows. The profiler and the graph pictures label ops with it."""
    tiers: list[str] = []
    for name in kernel_names:
        try:
            tier = tier_of(name, array)
        except (KeyError, ValueError):
            tier = "?"
        if tier not in tiers:
            tiers.append(tier)
    return tiers


def current() -> str:
    """The active setting: 'auto', 'numpy' or 'numba'."""
    return _state["active"]


class use:
    """Select a backend: `mt.backend.use("numba")`, or `with mt.backend.use("numpy"): ...`."""

    def __init__(self, name: str) -> None:
        if name != "auto":
            _load(name)  # raises a clear error for an unknown or unavailable backend
        self.prev = _state["active"]
        _state["active"] = name

    def __enter__(self) -> use:
        return self

    def __exit__(self, *exc: object) -> None:
        _state["active"] = self.prev


def describe() -> str:
    """One line per kernel: its name and the backend that runs it under the active setting."""
    rows = [f"backend setting: {_state['active']} (available: {', '.join(available())})"]
    gpu = _cuda_available()
    for name in sorted(_load("numpy")):
        on_gpu = ""
        if gpu:
            on_gpu = "; CuPy arrays: " + ("cuda" if _state["active"] != "numpy" and name in _load("cuda") else "numpy")
        rows.append(f"  {name:28s} {_choose(name)}{on_gpu}")
    return "\n".join(rows)


def warmup(verbose: bool = False) -> float:
    """Compile every Numba kernel for float32 and float64 now (a no-op without Numba); returns seconds.
    Compiled code is cached on disk, so only the first process on a machine pays the full time."""
    if "numba" not in available():
        return 0.0

    t0 = time.perf_counter()
    k = _load("numba")
    cache = Path(importlib.import_module(_PACKAGES["numba"]).__file__).parent / "__pycache__"
    if verbose and not any(cache.glob("*.nbi")):
        print("compiling the Numba kernels (about a minute, first run only; cached afterwards)...", flush=True)
    for dt in (np.float32, np.float64):
        x = np.ones((2, 3), dt)
        y = k["softmax_forward"](x)
        k["softmax_backward"](x, y)
        y = k["log_softmax_forward"](x)
        k["log_softmax_backward"](x, y)
        for approximate in ("none", "tanh"):
            y, gate = k["bias_gelu_forward"](x, x[0], approximate)
            k["bias_gelu_backward"](x, x, x[0], approximate, gate)
        out, mean, rstd = k["layernorm_forward"](x, x[0], x[0], 1e-5)
        k["layernorm_backward"](x, x, x[0], mean, rstd)
        loss, cache = k["cross_entropy_forward"](x, np.array([0, 1]), None, -100, 0.1, "mean")
        k["cross_entropy_backward"](np.asarray(1.0, dt), cache)
        q = np.ones((1, 2, 2), dt)
        for causal in (False, True):
            for mask in (None, np.zeros((1, 1, 2), dt)):
                o, lse = k["attention_forward"](q, q, q, mask, 1.0, causal)
                k["attention_backward"](q, q, q, q, o, lse, mask, 1.0, causal)
        k["decode_attention_forward"](q, q[:, :, None], q[:, :, None], None, 1.0, 1)
        w = np.ones((3, 64), dt)
        for bits in (8, 4):
            qw, sc = _load("numpy")["quantize_forward"](w, bits, 64)
            for n in (1, 8):
                k["qlinear_forward"](np.ones((n, 64), dt), qw, sc, None)
        for amsgrad in (False, True):
            p = np.ones(3, dt)
            k["adam_update"]([p], [p.copy()], [p * 0], [p * 0], [p * 0] if amsgrad else None, 1e-3, 0.9, 0.99,
                             1e-8, 0.0, True, 1, False)
    return time.perf_counter() - t0


_env = os.environ.get("MINITRANSFORMER_BACKEND")
if _env:
    use(_env)


def set_num_threads(n: int) -> None:
    """`torch.set_num_threads`: the threads of the Numba kernels and, through `threadpoolctl` when it is
    installed, of NumPy's BLAS. Numba cannot start more threads than it was started with
    (NUMBA_NUM_THREADS, the core count by default), so a larger `n` is capped there."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    if "numba" in available():
        import numba  # optional dependency

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits  # optional: BLAS threads can only change through it
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    """The threads the Numba kernels use (the core count without Numba), as `torch.get_num_threads`."""
    if "numba" in available():
        import numba  # optional dependency

        return int(numba.get_num_threads())
    return os.cpu_count() or 1
