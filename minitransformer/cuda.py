"""`mt.cuda`: PyTorch's `torch.cuda` queries and settings, answered through CuPy.

Training scripts ask these before they choose a device (`torch.cuda.is_available()`), a dtype
(`is_bf16_supported()`) or seed (`manual_seed_all`). Here a GPU means CuPy seeing a CUDA device; without
one every query answers as PyTorch does on a machine without CUDA, and the calls that need a device raise
a RuntimeError that says so.

Random numbers: every random op of the library draws on the CPU from the global generator
(`mt.manual_seed`) and copies to the GPU, so there is no separate CUDA stream to seed: `manual_seed` and
`manual_seed_all` record the seed (`initial_seed()`) and change nothing else, as PyTorch's leave the CPU
stream alone.
"""

from __future__ import annotations

import sys
from typing import Any

from . import amp as amp  # mt.cuda.amp.GradScaler / autocast, as torch.cuda.amp
from .xp import cupy_module, device

sys.modules[__name__ + ".amp"] = amp  # `from torch.cuda.amp import autocast` names it as a submodule

_state: dict[str, Any] = {"seed": None, "device": 0}


def _cupy_or_none() -> Any:
    try:
        return cupy_module()
    except RuntimeError:
        return None


def is_available() -> bool:
    """True only when CuPy is installed and sees at least one CUDA device."""
    cp = _cupy_or_none()
    return cp is not None and cp.cuda.runtime.getDeviceCount() > 0


def device_count() -> int:
    cp = _cupy_or_none()
    return 0 if cp is None else int(cp.cuda.runtime.getDeviceCount())


def is_initialized() -> bool:
    return _cupy_or_none() is not None


def _need_device(what: str) -> Any:
    cp = _cupy_or_none()
    if cp is None or cp.cuda.runtime.getDeviceCount() == 0:
        raise RuntimeError(f"torch.cuda.{what}: no CUDA GPU is available (CuPy with a CUDA device is needed; "
                           "check mt.cuda.is_available() first)")
    return cp


def _index(dev: Any) -> int:
    if dev is None:
        return int(_state["device"])
    if isinstance(dev, int):
        return dev
    d = device(dev)
    if d.type != "cuda":
        raise ValueError(f"expected a cuda device, got {str(dev)!r}")
    return 0 if d.index is None else d.index


def current_device() -> int:
    _need_device("current_device")
    return int(_state["device"])


def set_device(dev: Any) -> None:
    """Make `dev` ("cuda:1", 1, mt.device("cuda", 1)) the current device for new CUDA arrays."""
    cp = _need_device("set_device")
    i = _index(dev)
    if not 0 <= i < cp.cuda.runtime.getDeviceCount():
        raise ValueError(f"set_device: there is no CUDA device {i} ({cp.cuda.runtime.getDeviceCount()} found)")
    cp.cuda.Device(i).use()
    _state["device"] = i


def get_device_name(dev: Any = None) -> str:
    cp = _need_device("get_device_name")
    name = cp.cuda.runtime.getDeviceProperties(_index(dev))["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def get_device_capability(dev: Any = None) -> tuple[int, int]:
    cp = _need_device("get_device_capability")
    props = cp.cuda.runtime.getDeviceProperties(_index(dev))
    return int(props["major"]), int(props["minor"])


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Whether the current GPU computes in bfloat16 natively (compute capability 8.0 or newer); False
    without a GPU. (The library itself computes in float32: see `mt.amp.autocast`.)"""
    if not is_available():
        return False
    return get_device_capability()[0] >= 8


def synchronize(dev: Any = None) -> None:
    """Wait until every kernel queued on the device has finished (for honest timings)."""
    cp = _need_device("synchronize")
    cp.cuda.Device(_index(dev)).synchronize()


def manual_seed(seed: int) -> None:
    """Recorded only: the library draws every random number from the CPU generator (see the module doc)."""
    _state["seed"] = int(seed)


def manual_seed_all(seed: int) -> None:
    manual_seed(seed)


def seed() -> None:
    _state["seed"] = None


def seed_all() -> None:
    seed()


def initial_seed() -> int | None:
    return _state["seed"]


def empty_cache() -> None:
    """Hand CuPy's cached, unused device memory back to the driver (a no-op without a GPU)."""
    cp = _cupy_or_none()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()


def memory_allocated(dev: Any = None) -> int:
    """Bytes of device memory held by arrays now (CuPy's pool; 0 without a GPU)."""
    cp = _cupy_or_none()
    return 0 if cp is None else int(cp.get_default_memory_pool().used_bytes())


def memory_reserved(dev: Any = None) -> int:
    cp = _cupy_or_none()
    return 0 if cp is None else int(cp.get_default_memory_pool().total_bytes())


def max_memory_allocated(dev: Any = None) -> int:
    """CuPy keeps no peak counter: the bytes reserved by its pool, which bound the peak from below."""
    return memory_reserved(dev)


from .porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
