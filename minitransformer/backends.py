"""`mt.backends`: PyTorch's `torch.backends` switches (`cuda.matmul.allow_tf32`, `cudnn.allow_tf32`, ...).

Only TF32 has an effect here: with `mt.backends.cuda.matmul.allow_tf32 = True` (or
`mt.set_float32_matmul_precision("high")`) float32 matmuls on CuPy arrays may use the GPU's TF32 tensor
cores, through CuPy's own switch for cuBLAS (its `CUPY_TF32` setting and compute type). PyTorch's default is
False for matmuls and True for cuDNN; the same defaults hold here. The CPU tier ignores both (NumPy's BLAS has
no TF32). The cuDNN flags are kept and readable, since the library has no cuDNN path. `mt.backend` (singular)
is the library's own kernel-tier switch; this module is only PyTorch's names.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

_PRECISIONS = ("highest", "high", "medium")


def _apply_tf32(enabled: bool) -> None:
    """Tell CuPy whether float32 GEMMs may use TF32 (nothing to do without CuPy)."""
    os.environ["CUPY_TF32"] = "1" if enabled else "0"  # read by CuPy when it picks a cuBLAS compute type
    if "cupy" not in sys.modules:
        return
    try:
        from cupy._core import _routines_linalg as lin  # noqa: PLC0415 (only when CuPy is already loaded)

        kind = lin.COMPUTE_TYPE_TF32 if enabled else lin.COMPUTE_TYPE_DEFAULT
        lin.set_compute_type(np.dtype(np.float32), kind)
    except (ImportError, AttributeError, TypeError):
        pass  # an older or newer CuPy without this hook: the environment setting above still applies


class _Matmul:
    """`mt.backends.cuda.matmul`: `allow_tf32` and the reduced-precision reduction flags."""

    def __init__(self) -> None:
        self._allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        self._allow_tf32 = bool(value)
        _apply_tf32(self._allow_tf32)


class _CudaBackend(ModuleType):
    def __init__(self) -> None:
        super().__init__("minitransformer.backends.cuda", "PyTorch's torch.backends.cuda switches.")
        self.matmul = _Matmul()
        self._flags = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True}

    def is_built(self) -> bool:
        """True when CuPy (the CUDA tier's runtime) is importable."""
        try:
            import cupy  # noqa: F401, PLC0415 (optional)
        except ImportError:
            return False
        return True

    def _set(self, name: str, enabled: bool) -> None:
        self._flags[name] = bool(enabled)

    # the attention-kernel switches of torch.backends.cuda: recorded, and read back by their *_enabled twins
    def enable_flash_sdp(self, enabled: bool) -> None:
        self._set("flash", enabled)

    def enable_mem_efficient_sdp(self, enabled: bool) -> None:
        self._set("mem_efficient", enabled)

    def enable_math_sdp(self, enabled: bool) -> None:
        self._set("math", enabled)

    def enable_cudnn_sdp(self, enabled: bool) -> None:
        self._set("cudnn", enabled)

    def flash_sdp_enabled(self) -> bool:
        return self._flags["flash"]

    def mem_efficient_sdp_enabled(self) -> bool:
        return self._flags["mem_efficient"]

    def math_sdp_enabled(self) -> bool:
        return self._flags["math"]

    def cudnn_sdp_enabled(self) -> bool:
        return self._flags["cudnn"]


class _CudnnBackend(ModuleType):
    def __init__(self) -> None:
        super().__init__("minitransformer.backends.cudnn", "PyTorch's torch.backends.cudnn flags (no cuDNN here).")
        self.allow_tf32 = True
        self.benchmark = False
        self.deterministic = False
        self.enabled = True

    def is_available(self) -> bool:
        return False

    def version(self) -> None:
        return None


class _MpsBackend(ModuleType):
    def __init__(self) -> None:
        super().__init__("minitransformer.backends.mps", "Apple's Metal: not a device of this library.")

    def is_available(self) -> bool:
        return False

    def is_built(self) -> bool:
        return False


cuda = _CudaBackend()
cudnn = _CudnnBackend()
mps = _MpsBackend()
for _sub in (cuda, cudnn, mps):
    sys.modules[_sub.__name__] = _sub  # so `import minitransformer.backends.cuda` works as torch's does


def set_float32_matmul_precision(precision: str) -> None:
    """PyTorch's switch: "highest" keeps full float32 matmuls; "high" and "medium" allow TF32 on a GPU."""
    if precision not in _PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: expected one of {_PRECISIONS}, got {precision!r}")
    cuda.matmul.allow_tf32 = precision != "highest"
    _precision["value"] = precision


def get_float32_matmul_precision() -> str:
    return _precision["value"]


_precision: dict[str, Any] = {"value": "highest"}


from .porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
