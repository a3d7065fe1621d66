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
