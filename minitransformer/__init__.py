"""minitransformer: a from-scratch Transformer library. `import minitransformer as mt`.

The top-level namespace mirrors `torch`: tensors and their creation functions, the differentiable ops,
grad-mode switches, seeding and dtypes; `mt.nn` holds modules and `mt.nn.functional` the stateless ops.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import sys
from pathlib import Path

# Two thread pools share the cores: OpenBLAS's and Numba's (OpenMP). Idle workers of each spin and steal
# the cores from the other (a 2-thread training step ran 4x slower). Passive waiting fixes it; the
# OpenBLAS setting only takes effect if NumPy was not imported before this package. docs/kernels.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _keep_freed_memory() -> None:
    """Let glibc reuse freed activation buffers instead of returning them to the kernel.

    By default glibc serves blocks above 128 KiB-32 MiB (a threshold it moves) with fresh mmap pages and
    unmaps them on free, so every new activation array of a training step page-faults on first touch:
    about 8 ms of a 70 ms baby-GPT step here (benchmarks/results/train-step-cpu.md). With the mmap
    threshold at 256 MiB and the trim threshold at 1 GiB, freed blocks stay in the heap and are reused;
    peak memory is unchanged, memory is handed back when the process ends. Linux/glibc only; set
    MINITRANSFORMER_MALLOC=default to keep the process's allocator settings untouched.
    """
    if os.environ.get("MINITRANSFORMER_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return
    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 256 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return


_keep_freed_memory()


def _mount_kernels() -> None:
    """Make `minitransformer.kernels` importable from a source checkout.

    An installed wheel holds the kernels at minitransformer/kernels (pyproject's package-dir maps the
    top-level kernels/ folder there). In a checkout kernels/ sits beside this package, so it is
    registered under the same name; nothing is ever importable as a bare `kernels`.
    """
    name = __name__ + ".kernels"
    here = Path(__file__).resolve().parent
    if name in sys.modules or (here / "kernels" / "__init__.py").is_file():
        return                                                  # mounted already, or an installed wheel
    # A checkout: its own kernels/, even when an editable install of another checkout would also answer
    # for the name (a second worktree, as benchmarks/before_after.py makes, must run its own kernels).
    src = here.parent / "kernels" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, src, submodule_search_locations=[str(src.parent)])
    if spec is None or spec.loader is None or not src.is_file():
        raise ImportError(f"minitransformer.kernels not found (looked for {src})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    sys.modules[__name__].kernels = module                           # mt.kernels, as a subpackage would be


_mount_kernels()

# amp, backends, cuda, distributed: PyTorch's namespaces (docs/pytorch.md)
from . import amp, backend, backends, cuda, distributed, dtypes, nn, ops, optim, profiler, utils  # noqa: E402
from . import methods as _methods  # noqa: E402,F401  (binds ops to Tensor)
from .amp import autocast, is_autocast_enabled  # noqa: E402
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: E402
from .autograd import no_grad as inference_mode  # noqa: E402  (no views to protect here: the same switch)
from .backend import get_num_threads, set_num_threads  # noqa: E402
from .backends import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: E402
from .compiler import compile  # noqa: E402
from .creation import (  # noqa: E402
    Size,
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    multinomial,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import (  # noqa: E402
    ALIASES as _ALIASES,
)
from .dtypes import (
    bool_,
    double,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    short,
    uint8,
)
from .ops import *  # noqa: E402,F403
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state  # noqa: E402
from .serialization import SerializationError, load, save  # noqa: E402
from .tasks.sentence_encoder import SentenceEncoder  # noqa: E402
from .tensor import Tensor  # noqa: E402
from .text import tokenizers  # noqa: E402
from .xp import device  # noqa: E402

globals().update(_ALIASES)  # mt.float (float32), mt.int (int32), mt.bool, as torch spells them
from .explore import graph as viz  # noqa: E402  (mt.viz.graph: a picture of the autograd graph)

# two modules that moved into folders keep their import paths: `import minitransformer.tokenizers` (mt.tokenizers,
# text/tokenizers.py) and `minitransformer.viz` (mt.viz, explore/graph.py)
sys.modules[__name__ + ".tokenizers"] = tokenizers
sys.modules[__name__ + ".viz"] = viz

# a ported PyTorch script that reaches for something missing gets an error naming the torch feature
from .porting import install_finder as _install_finder  # noqa: E402
from .porting import unsupported_attribute as _unsupported  # noqa: E402

_missing = _unsupported(__name__)


def __getattr__(name: str) -> object:
    """`mt.bfloat16` on first use (importing ml_dtypes is slow, see dtypes.py); otherwise a missing name."""
    if name == "bfloat16":
        return dtypes.bfloat16
    return _missing(name)

_install_finder()
__version__ = "0.1.0"
