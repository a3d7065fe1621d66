"""GELU (exact and tanh) and the fused bias + GELU of the MLP, Numba (same names and signatures as
reference/gelu.py).

One pass: read x (and bias), write y; backward reads dy and x and writes dx (the bias gradient is a
column sum the op does with BLAS-speed NumPy). The exact form calls the C library's erf; the tanh form
uses (1 + tanh u)/2 = 1/(1 + exp(-2u)) with the vectorised fast_exp32, which keeps full relative
precision for very negative x (1 + tanh u cancels in float32).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import fexp, phi, pjit, prange

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
C = 0.044715


def _gelu_and_grad(v, tanh):  # noqa: ANN001, ANN202
    """(gelu(v), gelu'(v)), computed in v's precision (see the overload below)."""


@overload(_gelu_and_grad, inline="always")
def _gelu_and_grad_impl(v, tanh):  # noqa: ANN001, ANN202
    # Constants are cast to v's type: a Python float would promote float32 math to float64 and send
    # exp to the slow scalar C library call.
    T = numba.float32 if isinstance(v, types.Float) and v.bitwidth == 32 else numba.float64
    k2, c, c3 = T(2 * SQRT_2_OVER_PI), T(C), T(3 * C)
    inv_sqrt_2pi, one, two, half, lo = T(INV_SQRT_2PI), T(1.0), T(2.0), T(-0.5), T(-80.0)

    def impl(v, tanh):  # noqa: ANN001, ANN202
        if tanh:
            u2 = k2 * (v + c * v * v * v)
            s = one / (one + fexp(-u2)) if u2 >= lo else fexp(u2)  # sigmoid(2u), no overflow
            return v * s, s + two * v * s * (one - s) * (k2 / two) * (one + c3 * v * v)
        cdf = phi(v)
        return v * cdf, cdf + v * inv_sqrt_2pi * fexp(half * v * v)

    return impl


@pjit
def _fwd(x, bias, tanh, y):  # noqa: ANN001, ANN202
    N, M = x.shape
    for n in prange(N):
        for m in range(M):
            y[n, m] = _gelu_and_grad(x[n, m] + bias[m], tanh)[0]


@pjit
def _bwd(dy, x, bias, tanh, dx):  # noqa: ANN001, ANN202
    N, M = x.shape
    for n in prange(N):
        for m in range(M):
            dx[n, m] = dy[n, m] * _gelu_and_grad(x[n, m] + bias[m], tanh)[1]


def _rows(a):  # noqa: ANN001, ANN202
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def bias_gelu_forward(x, bias, approximate="none"):  # noqa: ANN001, ANN201
    """x: (..., M), bias: (M,) or None -> gelu(x + bias)."""
    x2 = _rows(x)
    b = np.zeros(x2.shape[1], x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    y = np.empty(x2.shape, x.dtype)
    _fwd(x2, b, approximate == "tanh", y)
    return y.reshape(x.shape)


def bias_gelu_backward(dy, x, bias, approximate="none"):  # noqa: ANN001, ANN201
    """-> d(x + bias) = dy * gelu'(x + bias), shaped like x (the bias gradient is its column sum)."""
    x2 = _rows(x)
    b = np.zeros(x2.shape[1], x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    dx = np.empty(x2.shape, x.dtype)
    _bwd(_rows(dy), x2, b, approximate == "tanh", dx)
    return dx.reshape(x.shape)


def gelu_forward(x, approximate="none"):  # noqa: ANN001, ANN201
    return bias_gelu_forward(x, None, approximate)


def gelu_backward(dy, x, approximate="none"):  # noqa: ANN001, ANN201
    return bias_gelu_backward(dy, x, None, approximate)
