"""Mixed precision as PyTorch spells it: `GradScaler` (loss scaling) and `autocast`.

`GradScaler` is the real thing: `scale(loss)` multiplies the loss by the current scale S, so the gradients
come out multiplied by S too; `unscale_(opt)` divides them by S and looks for inf/NaN; `step(opt)` skips the
optimizer step when any gradient is not finite; `update()` halves S after a skipped step and doubles it after
`growth_interval` good steps in a row. On float16 gradients this keeps small values from flushing to zero; on
float32 it costs a multiply and skips the steps that overflowed. Built for `device="cuda"` on a machine with
no CUDA device it disables itself with PyTorch's warning, and every method passes through, as in PyTorch.

`autocast` is a documented no-op: PyTorch runs chosen ops (matmuls, convolutions) in float16/bfloat16 inside
it. Here every op runs in its inputs' dtype (float32 for a float32 model), so the numbers are those of a
float32 run. It checks its arguments as PyTorch does and reports itself as enabled
(`is_autocast_enabled()`), so scripts that branch on it behave the same.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import dtypes
from .cuda import is_available
from .dtypes import float16, float32
from .tensor import Tensor
from .xp import array_module

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Dynamic loss scaling: `scaler.scale(loss).backward(); scaler.step(opt); scaler.update()`."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        self._device = str(device).split(":")[0]
        self._enabled = bool(enabled)
        if self._enabled and self._device == "cuda":
            if not is_available():
                warnings.warn("torch.cuda.amp.GradScaler is enabled, but CUDA is not available.  Disabling.",
                              stacklevel=2)
                self._enabled = False
        if self._enabled:
            if growth_factor <= 1.0:
                raise ValueError(f"GradScaler: growth_factor must be > 1.0, got {growth_factor}")
            if backoff_factor >= 1.0:
                raise ValueError(f"GradScaler: backoff_factor must be < 1.0, got {backoff_factor}")
            if growth_interval < 1:
                raise ValueError(f"GradScaler: growth_interval must be >= 1, got {growth_interval}")
        # the scale is a float32 number, as PyTorch keeps it in a float32 tensor: its steps round the same way
        self._scale = np.float32(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    # ---- the four calls of a training step ------------------------------------------------------------
    def scale(self, outputs: Any) -> Any:
        """`outputs` (a tensor, or a list/tuple of them, nested) multiplied by the current scale."""
        if not self._enabled:
            return outputs

        if isinstance(outputs, Tensor):
            return outputs * self._scale.astype(outputs.dtype) if outputs.dtype.kind == "f" else outputs * 1
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if isinstance(outputs, Iterable):
            return map(self.scale, outputs)
        raise ValueError(f"GradScaler.scale: outputs must be a tensor or an iterable of tensors, "
                         f"got {type(outputs).__name__}")

    def _state(self, optimizer: Any) -> dict[str, Any]:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    def unscale_(self, optimizer: Any) -> None:
        """Divide this optimizer's gradients by the scale (in place) and record whether any is inf/NaN.
        Call it before clipping gradients, so the clip threshold applies to the true gradients."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = np.float32(1.0 / np.float64(self._scale))  # the reciprocal in float64, then rounded once
        found_inf = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                xp = _xp(g)
                if not bool(xp.isfinite(g).all()):
                    found_inf = True
                p.grad.data = (g * inv.astype(g.dtype)).astype(g.dtype, copy=False)
        state["found_inf"] = found_inf
        state["stage"] = _UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """Unscale if not done yet, then take the optimizer step unless a gradient was inf/NaN (returns what
        `optimizer.step` returns, or None for a skipped step)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        out = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = _STEPPED
        return out

    def update(self, new_scale: Any = None) -> None:
        """Adjust the scale for the next iteration: back off after a skipped step, grow after
        `growth_interval` clean ones; or set it to `new_scale`."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = np.float32(float(new_scale))
        else:
            if not self._per_optimizer:
                raise RuntimeError("No inf checks were recorded prior to update(): call scaler.step(optimizer) "
                                   "(or unscale_) before update()")
            if any(s["found_inf"] for s in self._per_optimizer.values()):
                self._scale = np.float32(self._scale * np.float32(self._backoff_factor))
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale = np.float32(self._scale * np.float32(self._growth_factor))
                    self._growth_tracker = 0
        self._per_optimizer = {}

    # ---- queries and state ------------------------------------------------------------------------------
    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return float(self._scale) if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's keys; empty when disabled, as PyTorch's."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._scale = np.float32(float(state_dict["scale"]))
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _xp(a: Any) -> Any:
    return array_module(a)


# ---- autocast ----------------------------------------------------------------------------------------------
class _AutocastState(threading.local):
    def __init__(self) -> None:
        self.stack: list[tuple[str, Any, bool]] = []


_autocast_state = _AutocastState()
def _default_dtype(device_type: str) -> Any:
    """PyTorch's autocast defaults: float16 on CUDA, bfloat16 on the CPU (looked up when first needed)."""
    return dtypes.bfloat16 if device_type == "cpu" else float16


class autocast:  # noqa: N801 (torch's name)
    """`with mt.autocast("cuda", dtype=mt.float16):` (also a decorator). A no-op: ops run in their inputs'
    dtype; see the module doc. Arguments are checked as PyTorch checks them."""

    def __init__(self, device_type: str = "cuda", dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if not isinstance(device_type, str):
            raise ValueError(f"autocast: expected device_type as a str ('cpu' or 'cuda'), got "
                             f"{type(device_type).__name__}")
        kind = device_type.split(":")[0]
        if kind not in ("cpu", "cuda", "mps", "xpu", "hpu"):
            raise RuntimeError(f"autocast: unsupported device_type {device_type!r}; expected 'cpu' or 'cuda'")
        if dtype is not None:
            name = getattr(dtype, "name", None) if not isinstance(dtype, str) else dtype
            if name not in ("float16", "bfloat16", "float32"):
                raise ValueError(f"autocast: dtype must be float16, bfloat16 or float32, got {dtype!r}")
        self.device = kind
        self.fast_dtype = _default_dtype(kind) if dtype is None else dtype
        self._enabled = bool(enabled)

    def __enter__(self) -> autocast:
        _autocast_state.stack.append((self.device, self.fast_dtype, self._enabled))
        return self

    def __exit__(self, *exc: object) -> None:
        _autocast_state.stack.pop()

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with autocast(self.device, self.fast_dtype, self._enabled):
                return fn(*args, **kwargs)

        return wrapper


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether the innermost `autocast` block (for `device_type`, default any) is enabled."""
    for dev, _, enabled in reversed(_autocast_state.stack):
        if device_type is None or dev == device_type:
            return enabled
    return False


def get_autocast_dtype(device_type: str) -> Any:
    for dev, dtype, _ in reversed(_autocast_state.stack):
        if dev == device_type:
            return dtype
    return _default_dtype(device_type) if device_type in ("cpu", "cuda") else float32


def is_autocast_available(device_type: str) -> bool:
    return device_type in ("cpu", "cuda")


__all__ = ["GradScaler", "autocast", "is_autocast_enabled", "get_autocast_dtype", "is_autocast_available"]


from .porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
