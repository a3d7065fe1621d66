"""Matrix multiply C = A @ B, Numba: a study of where BLAS gets its speed (`auto` keeps NumPy's BLAS
for every matmul; benchmarks/kernels.py shows why). Versions, in order of sophistication:

v1  naive triple loop (i, j, p): one multiply-add per load pair, strided reads of B; ~1 GFLOP/s.
v2  loop order (i, p, j): the inner loop runs along rows of B and C, contiguous, so it vectorises;
    but every multiply-add still loads and stores C.
v3  (matmul_forward) packed and register-blocked: B is packed once as B^T (contiguous rows), and each
    2x4 block of C is 8 dot products over K, held in 8 scalar accumulators that LLVM keeps in vector
    registers: per K step 6 loads feed 8 multiply-adds. Columns are processed in blocks of JB so the
    packed rows of B in use stay in L2; rows of C are split across threads.
Batched inputs (..., M, K) @ (..., K, N) loop over the batch.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange

JB = 64  # columns of C per block: JB rows of B^T (JB * K * 4 bytes) stay in L2


@jit
def matmul_v1(a, b, c):  # noqa: ANN001, ANN201
    M, K = a.shape
    N = b.shape[1]
    for i in range(M):
        for j in range(N):
            s = a.dtype.type(0.0)
            for p in range(K):
                s += a[i, p] * b[p, j]
            c[i, j] = s


@jit
def matmul_v2(a, b, c):  # noqa: ANN001, ANN201
    M, K = a.shape
    N = b.shape[1]
    c[:] = 0.0
    for i in range(M):
        ci = c[i]
        for p in range(K):
            aip = a[i, p]
            bp = b[p]
            for j in range(N):
                ci[j] += aip * bp[j]


@pjit
def _v3(a, bt, c):  # noqa: ANN001, ANN202
    M, K = a.shape
    N = bt.shape[0]
    zero = a.dtype.type(0.0)
    for i2 in prange((M + 1) // 2):
        i0 = 2 * i2
        i1 = min(i0 + 1, M - 1)  # an odd last row is computed twice and written once
        a0, a1 = a[i0], a[i1]
        for jb in range(0, N, JB):
            jend = min(jb + JB, N)
            for j0 in range(jb, jend, 4):
                j1, j2, j3 = min(j0 + 1, N - 1), min(j0 + 2, N - 1), min(j0 + 3, N - 1)
                b0, b1, b2, b3 = bt[j0], bt[j1], bt[j2], bt[j3]
                c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
                for p in range(K):
                    x0, x1 = a0[p], a1[p]
                    y0, y1, y2, y3 = b0[p], b1[p], b2[p], b3[p]
                    c00 += x0 * y0
                    c01 += x0 * y1
                    c02 += x0 * y2
                    c03 += x0 * y3
                    c10 += x1 * y0
                    c11 += x1 * y1
                    c12 += x1 * y2
                    c13 += x1 * y3
                c[i0, j0] = c00
                c[i1, j0] = c10
                if j0 + 1 < N:
                    c[i0, j1] = c01
                    c[i1, j1] = c11
                if j0 + 2 < N:
                    c[i0, j2] = c02
                    c[i1, j2] = c12
                if j0 + 3 < N:
                    c[i0, j3] = c03
                    c[i1, j3] = c13


def matmul_forward(a, b):  # noqa: ANN001, ANN201
    """a (..., M, K) @ b (..., K, N) with equal leading dims (or 2-D b) -> (..., M, N)."""
    if a.ndim == 2 and b.ndim == 2:
        c = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
        _v3(np.ascontiguousarray(a), np.ascontiguousarray(b.T), c)
        return c
    lead = a.shape[:-2]
    bb = np.broadcast_to(b, lead + b.shape[-2:])
    out = np.empty(lead + (a.shape[-2], b.shape[-1]), np.result_type(a, b))
    for idx in np.ndindex(*lead):
        out[idx] = matmul_forward(a[idx], bb[idx])
    return out
