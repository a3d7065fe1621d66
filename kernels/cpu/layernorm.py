"""Layer norm over the last axis, Numba (same names and signatures as reference/layernorm.py).

Forward: per row one pass for the mean, one for the variance, one to write the output; caches mean and
rstd. Backward: per row one pass for the two row means of the derivation (mean(dxhat), mean(dxhat * xhat))
that also accumulates dweight and dbias, and one pass to write dx. Rows are split across threads from
PARALLEL_MIN elements on (below it one core is faster than waking the others).
dweight/dbias are summed over rows without races: each thread owns one row of a (P, C) partial-sum
buffer, and the P rows are added at the end. Memory traffic: forward reads x three times from L1 and
once from memory; backward reads dout and x once from memory and writes dx.
"""

from __future__ import annotations

import numba
import numpy as np

from ._jit import PARALLEL_MIN, prange, serial_and_parallel


def _fwd_impl(x, w, b, eps, out, mean, rstd):  # noqa: ANN001, ANN202
    N, C = x.shape
    # constants in the input's dtype: a Python float or int would promote float32 rows to float64
    inv_c = x.dtype.type(1.0 / C)
    one = x.dtype.type(1.0)
    for n in prange(N):
        row = x[n]
        s = row.dtype.type(0.0)
        for c in range(C):
            s += row[c]
        mu = s * inv_c
        v = row.dtype.type(0.0)
        for c in range(C):
            d = row[c] - mu
            v += d * d
        r = one / np.sqrt(v * inv_c + eps)
        for c in range(C):
            out[n, c] = (row[c] - mu) * r * w[c] + b[c]
        mean[n] = mu
        rstd[n] = r


def _bwd_impl(dout, x, w, mean, rstd, dx, dw_part, db_part):  # noqa: ANN001, ANN202
    N, C = x.shape
    P = dw_part.shape[0]
    inv_c = x.dtype.type(1.0 / C)
    for p in prange(P):
        for n in range(p * N // P, (p + 1) * N // P):
            mu, r = mean[n], rstd[n]
            s1 = x.dtype.type(0.0)
            s2 = x.dtype.type(0.0)
            for c in range(C):
                xhat = (x[n, c] - mu) * r
                g = dout[n, c] * w[c]
                dx[n, c] = g  # kept: recomputing it below would let the compiler fuse it into an FMA
                s1 += g       # with "- s1", and g - mean(g) would no longer cancel exactly
                s2 += g * xhat
                dw_part[p, c] += dout[n, c] * xhat
                db_part[p, c] += dout[n, c]
            s1 *= inv_c
            s2 *= inv_c
            for c in range(C):
                xhat = (x[n, c] - mu) * r
                dx[n, c] = r * (dx[n, c] - s1 - xhat * s2)


_FWD = serial_and_parallel(_fwd_impl)
_BWD = serial_and_parallel(_bwd_impl)


def layernorm_forward(x, weight, bias, eps):  # noqa: ANN001, ANN201
    """x: (N, C), weight/bias: (C,) or None -> out (N, C), mean (N,), rstd (N,)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape
    w = np.ones(C, x.dtype) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(C, x.dtype) if bias is None else np.ascontiguousarray(bias)
    out = np.empty_like(x)
    mean = np.empty(N, x.dtype)
    rstd = np.empty(N, x.dtype)
    _FWD[x.size >= PARALLEL_MIN](x, w, b, x.dtype.type(eps), out, mean, rstd)
    return out, mean, rstd


def layernorm_backward(dout, x, weight, mean, rstd, need_affine=True):  # noqa: ANN001, ANN201
    """-> dx (N, C), dweight (C,) or None, dbias (C,) or None."""
    x = np.ascontiguousarray(x)
    N, C = x.shape
    w = np.ones(C, x.dtype) if weight is None else np.ascontiguousarray(weight)
    parallel = x.size >= PARALLEL_MIN
    P = max(1, min(numba.get_num_threads(), N)) if parallel else 1
    dw_part = np.zeros((P, C), x.dtype)
    db_part = np.zeros((P, C), x.dtype)
    dx = np.empty_like(x)
    _BWD[parallel](np.ascontiguousarray(dout), x, w, mean, rstd, dx, dw_part, db_part)
    if not need_affine:
        return dx, None, None
    return dx, dw_part.sum(axis=0), db_part.sum(axis=0)
