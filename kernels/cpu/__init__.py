"""Numba CPU kernels (the `numba` backend). Each module mirrors a file in `reference/` with the same
function names and signatures. This tier is optional: without Numba the library runs on `reference/`.

Numba's on-disk cache is keyed by each kernel file's own timestamp, not by the helpers it inlines from
`_jit.py`; so when `_jit.py` changes, the cached kernels here are discarded (below) and recompiled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_cache() -> None:
    here = Path(__file__).parent
    cache = here / "__pycache__"
    stamp = cache / "jit-helpers.sha256"
    digest = hashlib.sha256((here / "_jit.py").read_bytes()).hexdigest()
    try:
        if stamp.is_file() and stamp.read_text() == digest:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only installation: Numba then compiles in memory
        pass


_drop_stale_cache()

# The backend table of this tier (backend.py reads it): the kernels compiled here, by name; the kernels not
# listed (ctc_backward, the quantization helpers, qlinear_backward) run in the reference tier.
from collections.abc import Callable  # noqa: E402 (the stale cache is dropped before the kernel files load)
from typing import Any  # noqa: E402

from .adam import adam_update  # noqa: E402
from .attention import attention_backward, attention_forward, decode_attention_forward  # noqa: E402
from .crossentropy import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from .ctc import ctc_forward  # noqa: E402
from .gelu import bias_gelu_backward, bias_gelu_forward, gelu_backward, gelu_forward  # noqa: E402
from .layernorm import layernorm_backward, layernorm_forward  # noqa: E402
from .quant import qlinear_forward  # noqa: E402
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward  # noqa: E402

KERNELS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward,
    gelu_forward, gelu_backward, bias_gelu_forward, bias_gelu_backward,
    layernorm_forward, layernorm_backward,
    cross_entropy_forward, cross_entropy_backward,
    attention_forward, attention_backward, decode_attention_forward,
    adam_update,
    qlinear_forward,
    ctc_forward,
)}
