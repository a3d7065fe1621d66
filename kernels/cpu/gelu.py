"""GELU (exact and tanh) and the fused bias + GELU of the MLP, Numba (same names and signatures as
reference/gelu.py).

One pass: read x (and bias), write y and the gate g (gelu(v) = v g: Phi(v), or sigmoid(2u) for tanh);
backward reads dy, x and g and writes dx, so the CDF is computed once per element, not twice (the bias
gradient is a column sum the op does with NumPy). The exact form uses phi32 in float32 (a branch-free
erfc with one division and one fast_exp32, see _jit.py) and the C library's erf in float64; the tanh form
uses (1 + tanh u)/2 = 1/(1 + exp(-2u)) with the vectorised fast_exp32, which keeps full relative
precision for very negative x (1 + tanh u cancels in float32).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import fexp, phi, prange, rows, serial_and_parallel

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
C = 0.044715


def _gelu_gate(v, tanh):  # noqa: ANN001, ANN202
    """The gate g with gelu(v) = v g: Phi(v) (exact) or sigmoid(2u) (tanh), in v's precision."""


def _gelu_grad(v, g, tanh):  # noqa: ANN001, ANN202
    """gelu'(v) from v and its gate g, in v's precision."""


def _typed(v):  # noqa: ANN001, ANN202
    # Constants are cast to v's type: a Python float would promote float32 math to float64 and send
    # exp to the slow scalar C library call.
    T = numba.float32 if isinstance(v, types.Float) and v.bitwidth == 32 else numba.float64
    return T, T(2 * SQRT_2_OVER_PI), T(C), T(3 * C), T(INV_SQRT_2PI), T(1.0), T(2.0), T(-0.5), T(-80.0)


@overload(_gelu_gate, inline="always")
def _gelu_gate_impl(v, tanh):  # noqa: ANN001, ANN202
    T, k2, c, c3, inv_sqrt_2pi, one, two, half, lo = _typed(v)

    def impl(v, tanh):  # noqa: ANN001, ANN202
        if tanh:
            u2 = k2 * (v + c * v * v * v)
            return one / (one + fexp(-u2)) if u2 >= lo else fexp(u2)  # sigmoid(2u), no overflow
        return phi(v)

    return impl


@overload(_gelu_grad, inline="always")
def _gelu_grad_impl(v, g, tanh):  # noqa: ANN001, ANN202
    T, k2, c, c3, inv_sqrt_2pi, one, two, half, lo = _typed(v)

    def impl(v, g, tanh):  # noqa: ANN001, ANN202
        if tanh:
            return g + two * v * g * (one - g) * (k2 / two) * (one + c3 * v * v)
        return g + v * inv_sqrt_2pi * fexp(half * v * v)

    return impl


def _fwd_impl(x, bias, tanh, y, gate):  # noqa: ANN001, ANN202
    N, M = x.shape
    for n in prange(N):
        for m in range(M):
            v = x[n, m] + bias[m]
            g = _gelu_gate(v, tanh)
            gate[n, m] = g
            y[n, m] = v * g


def _bwd_impl(dy, x, bias, tanh, gate, dx):  # noqa: ANN001, ANN202
    N, M = x.shape
    for n in prange(N):
        for m in range(M):
            dx[n, m] = dy[n, m] * _gelu_grad(x[n, m] + bias[m], gate[n, m], tanh)


# Serial below PARALLEL_MIN elements: waking the sleeping worker threads costs 30-80 us, more than the GELU of
# a decoding step's one row takes (~3 us for 512 elements); at ~2-5 ns per element the parallel build pays
# from a few tens of thousands of elements.
_FWD = serial_and_parallel(_fwd_impl)
_BWD = serial_and_parallel(_bwd_impl)
PARALLEL_MIN = 1 << 15


def bias_gelu_forward(x, bias, approximate="none"):  # noqa: ANN001, ANN201
    """x: (..., M), bias: (M,) or None -> (gelu(x + bias), gate) with gelu(v) = v * gate."""
    x2 = rows(x)
    b = np.zeros(x2.shape[1], x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    y = np.empty(x2.shape, x.dtype)
    gate = np.empty(x2.shape, x.dtype)
    _FWD[x2.size >= PARALLEL_MIN](x2, b, approximate == "tanh", y, gate)
    return y.reshape(x.shape), gate.reshape(x.shape)


def bias_gelu_backward(dy, x, bias, approximate, gate):  # noqa: ANN001, ANN201
    """-> d(x + bias) = dy * gelu'(x + bias), shaped like x (the bias gradient is its column sum)."""
    x2 = rows(x)
    b = np.zeros(x2.shape[1], x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    dx = np.empty(x2.shape, x.dtype)
    _BWD[x2.size >= PARALLEL_MIN](rows(dy), x2, b, approximate == "tanh", rows(gate), dx)
    return dx.reshape(x.shape)


def gelu_forward(x, approximate="none"):  # noqa: ANN001, ANN201
    return bias_gelu_forward(x, None, approximate)


def gelu_backward(dy, x, approximate, gate):  # noqa: ANN001, ANN201
    return bias_gelu_backward(dy, x, None, approximate, gate)
