"""The backend table: for each hot op's kernel (`softmax_forward`, `gelu_backward`, ...), which
implementation runs. This is the only module that imports `minitransformer.kernels`.

Backends register a table `{kernel name: function}`; every backend offers the same names and signatures.
`numpy` (kernels/reference) is always present and complete. The active backend is chosen with
`use(name)` (a call or a context manager) or the environment variable MINITRANSFORMER_BACKEND; `auto`
means the best available. A kernel the active backend lacks falls back to `numpy`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

# kernel module (under minitransformer.kernels.reference) -> the kernel names it defines
_REFERENCE_MODULES = ("softmax", "gelu", "layernorm", "crossentropy")
_BACKENDS = ("numpy",)  # in order of preference for `auto`

_tables: dict[str, dict[str, Callable[..., Any]]] = {}
_state = {"active": "auto"}


def _load(backend: str) -> dict[str, Callable[..., Any]]:
    table = _tables.get(backend)
    if table is None:
        if backend != "numpy":
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(available())}")
        table = {}
        for mod_name in _REFERENCE_MODULES:
            mod = importlib.import_module(f"minitransformer.kernels.reference.{mod_name}")
            for name in dir(mod):
                if name.endswith(("_forward", "_backward")):
                    table[name] = getattr(mod, name)
        _tables[backend] = table
    return table


def available() -> list[str]:
    """Backends that can run on this machine."""
    return list(_BACKENDS)


def current() -> str:
    """The backend that `auto` resolves to, or the one chosen by `use`."""
    name = _state["active"]
    return _BACKENDS[0] if name == "auto" else name


def kernel(name: str) -> Callable[..., Any]:
    """The implementation of kernel `name` in the active backend (falling back to numpy)."""
    table = _load(current())
    fn = table.get(name)
    if fn is None:
        fn = _load("numpy").get(name)
        if fn is None:
            raise KeyError(f"no kernel named {name!r}")
    return fn


class use:
    """Select a backend: `mt.backend.use("numpy")`, or `with mt.backend.use("numpy"): ...`."""

    def __init__(self, name: str) -> None:
        if name != "auto" and name not in available():
            raise ValueError(f"backend {name!r} is not available here; available: "
                             f"{', '.join(['auto', *available()])}")
        self.prev = _state["active"]
        _state["active"] = name

    def __enter__(self) -> use:
        return self

    def __exit__(self, *exc: object) -> None:
        _state["active"] = self.prev


def describe() -> str:
    """One line per kernel: its name and the backend that runs it now."""
    active = current()
    table = _load(active)
    rows = [f"backend: {_state['active']} -> {active}"]
    for name in sorted(_load("numpy")):
        rows.append(f"  {name:32s} {active if name in table else 'numpy'}")
    return "\n".join(rows)


_env = os.environ.get("MINITRANSFORMER_BACKEND")
if _env:
    use(_env)
