"""The SGEMM study (sgemm.cu): every version callable by name, for the tests and benchmarks/gpu.py.
The library's matmuls stay on cuBLAS (CuPy's `@`): see the header of sgemm.cu and docs/kernels.md."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._loader import contiguous, cupy, kernel

# name -> (threads per block, block tile rows, block tile columns, needs K % 4 == 0 and N % 4 == 0)
VERSIONS = {
    "sgemm_v1": ((32, 32), 32, 32, False),
    "sgemm_v2": ((32, 32), 32, 32, False),
    "sgemm_v3": ((512,), 64, 64, False),
    "sgemm_v4_nn": ((256,), 128, 128, False),
    "sgemm_v5": ((256,), 128, 128, True),
    "sgemm_v6": ((128,), 128, 128, True),
    "sgemm_tf32": ((128,), 64, 64, False),
}
TRANSPOSED = {"nt": "sgemm_v4_nt", "tn": "sgemm_v4_tn"}


def matmul(a: Any, b: Any, version: str = "sgemm_v4_nn", layout: str = "nn") -> Any:
    """a @ b for float32 CuPy arrays (M, K) @ (K, N), or batched (Bt, M, K) @ (Bt, K, N), with one named
    version. layout "nt": b is given as (N, K) and a @ b^T is computed; "tn": a is given as (K, M)."""
    cp = cupy()
    a, b = contiguous(a), contiguous(b)
    batched = a.ndim == 3
    Bt = a.shape[0] if batched else 1
    if layout == "nn":
        M, K = a.shape[-2:]
        N = b.shape[-1]
        name = version
    else:
        name = TRANSPOSED[layout]
        M, K = (a.shape[-2:] if layout == "nt" else a.shape[-1:-3:-1])
        N = b.shape[-2] if layout == "nt" else b.shape[-1]
    threads, bm, bn, vec = VERSIONS.get(name, ((256,), 128, 128, False))
    if vec and (K % 4 or N % 4):
        raise ValueError(f"{name} needs K and N to be multiples of 4, got K={K}, N={N}")
    c = cp.empty((Bt, M, N) if batched else (M, N), cp.float32)
    sA, sB, sC = (M * K, K * N, M * N) if batched else (0, 0, 0)
    grid = (math.ceil(N / bn), math.ceil(M / bm), Bt)
    kernel("sgemm", name)(grid, threads, (np.int32(M), np.int32(N), np.int32(K), np.float32(1.0), a, b,
                                          np.float32(0.0), c, np.int64(sA), np.int64(sB), np.int64(sC)))
    return c
