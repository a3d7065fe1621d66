"""`mt.compile(model)`: PyTorch's `torch.compile` entry point, without a graph compiler behind it.

What it does: it compiles every Numba kernel of the library now (`mt.backend.warmup()`, cached on disk), so
the first training steps run at full speed instead of paying the compile inside them, and it returns a
callable equivalent to the model. The hot ops are already fused kernels, which is what a graph compiler
would buy on the CPU; nothing traces or rewrites the model.

A module comes back wrapped as PyTorch wraps it: an `OptimizedModule` whose `_orig_mod` is the model, whose
`state_dict()` keys carry the `_orig_mod.` prefix (as nanoGPT's checkpoints do) and which forwards every other
attribute (`generate`, `config`, ...) to the model. A function comes back as a function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import backend as kernel_backend
from .nn.module import Module


class OptimizedModule(Module):
    """The module `compile` returns: calls and attributes go to `_orig_mod`."""

    def __init__(self, mod: Module) -> None:
        super().__init__()
        self._orig_mod = mod
        self.training = mod.training

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "_orig_mod" in modules:
                return getattr(modules["_orig_mod"], name)
            raise

    def __repr__(self) -> str:
        return f"OptimizedModule({self._orig_mod!r})"


def compile(model: Any = None, *, fullgraph: bool = False, dynamic: bool | None = None,  # noqa: A001
            backend: Any = "inductor", mode: str | None = None, options: dict[str, Any] | None = None,
            disable: bool = False) -> Any:
    """Warm the kernels and return `model` ready to call (see the module doc); `@mt.compile` and
    `mt.compile(mode=...)(fn)` work as decorators. The arguments are accepted and have no further effect."""
    if mode is not None and mode not in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        raise RuntimeError(f"compile: unrecognised mode {mode!r}")
    if model is None:
        return functools.partial(compile, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable)
    if disable:
        return model

    kernel_backend.warmup()
    if isinstance(model, Module):
        return OptimizedModule(model)
    if not callable(model):
        raise TypeError(f"compile: expected a Module or a callable, got {type(model).__name__}")
    fn: Callable[..., Any] = model

    @functools.wraps(fn)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    compiled._orig_fn = fn  # type: ignore[attr-defined]
    return compiled
