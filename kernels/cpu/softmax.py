"""softmax and log_softmax over the last axis, Numba (same names and signatures as reference/softmax.py).

One row per loop iteration, rows split across threads (prange). Forward makes three passes over a row that
stays in L1 (max, with NumPy's SIMD max; exp and sum; scale), so memory traffic is about one read of x and
one write of y; the
reference makes about six full-array passes with temporaries. Backward is one pass to reduce sum(dy*y) and
one to write dx. A row of all -inf gives NaN, as the reference and PyTorch do.
"""

from __future__ import annotations

import numpy as np

from ._jit import fexp, pjit, prange, rows


@pjit
def _softmax_fwd(x, rowmax, y):  # noqa: ANN001, ANN202
    N, C = x.shape
    for n in prange(N):
        row, out, m = x[n], y[n], rowmax[n]
        if m == -np.inf:
            out[:] = np.nan
            continue
        s = row.dtype.type(0.0)
        for c in range(C):
            e = fexp(row[c] - m)  # max subtraction: the exponent is <= 0, so exp never overflows
            out[c] = e
            s += e
        inv = row.dtype.type(1.0) / s
        for c in range(C):
            out[c] *= inv


@pjit
def _softmax_bwd(dy, y, dx):  # noqa: ANN001, ANN202
    N, C = y.shape
    for n in prange(N):
        s = y.dtype.type(0.0)
        for c in range(C):
            s += dy[n, c] * y[n, c]
        for c in range(C):
            dx[n, c] = y[n, c] * (dy[n, c] - s)


@pjit
def _log_softmax_fwd(x, rowmax, y):  # noqa: ANN001, ANN202
    N, C = x.shape
    for n in prange(N):
        row, out, m = x[n], y[n], rowmax[n]
        if m == -np.inf:
            out[:] = np.nan
            continue
        s = row.dtype.type(0.0)
        for c in range(C):
            d = row[c] - m
            out[c] = d  # stored first: fastmath may re-associate (x - m) - log s into x - (m + log s),
            s += fexp(d)  # and m + log s rounds log s away when |m| is large
        log_s = np.log(s)
        for c in range(C):
            out[c] -= log_s


@pjit
def _log_softmax_bwd(dy, y, dx):  # noqa: ANN001, ANN202
    N, C = y.shape
    for n in prange(N):
        s = y.dtype.type(0.0)
        for c in range(C):
            s += dy[n, c]
        for c in range(C):
            dx[n, c] = dy[n, c] - fexp(y[n, c]) * s


def _forward(kernel, x):  # noqa: ANN001, ANN202
    x2 = rows(x)
    y = np.empty(x.shape, dtype=x.dtype)
    # the row maximum from NumPy's SIMD max: a max loop in Numba cannot vectorise without no-NaN fastmath
    kernel(x2, x2.max(axis=1), y.reshape(x2.shape))
    return y


def softmax_forward(x):  # noqa: ANN001, ANN201
    """x: (..., C) -> softmax over the last axis."""
    return _forward(_softmax_fwd, x)


def _backward(kernel, dy, y):  # noqa: ANN001, ANN202
    y2 = rows(y)
    dx = np.empty(y.shape, dtype=y.dtype)
    kernel(rows(dy), y2, dx.reshape(y2.shape))
    return dx


def softmax_backward(dy, y):  # noqa: ANN001, ANN201
    """dy, y = softmax(x): (..., C) -> dx."""
    return _backward(_softmax_bwd, dy, y)


def log_softmax_forward(x):  # noqa: ANN001, ANN201
    """x: (..., C) -> log_softmax over the last axis."""
    return _forward(_log_softmax_fwd, x)


def log_softmax_backward(dy, y):  # noqa: ANN001, ANN201
    """dy, y = log_softmax(x): (..., C) -> dx."""
    return _backward(_log_softmax_bwd, dy, y)
