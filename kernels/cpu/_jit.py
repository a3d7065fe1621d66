"""Shared Numba settings and scalar helpers for the CPU kernels.

- `jit` / `pjit`: @njit with cache=True (a second process loads compiled code from disk instead of
  compiling again), error_model="numpy" (Python's error model adds a zero check to every division and
  stops loops vectorising), and fastmath flags that allow re-associating sums (so reductions vectorise)
  but keep IEEE semantics for inf and NaN (masks are -inf and must stay exact).
- `fast_exp32`: exp for float32 as a polynomial that LLVM can vectorise. The C library's expf is a
  scalar call (~4 ns per element here); this runs at about a nanosecond, max relative error ~1e-7:
  exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2], exp(r) by a degree-6
  polynomial (Cephes expf coefficients), 2^n built directly in the float's exponent bits. Inputs below
  -87.34 (where float32 exp underflows) give exactly 0, so exp(-inf) = 0 for masked entries.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

# Small helpers are inlined at Numba's IR level (inline="always"): left to LLVM they stay calls and the
# loops around them do not vectorise (GELU ran 10x slower). That inlining trips an internal "pedantic"
# scope check inside parallel loops whose warning is noise; it is silenced here and only here.
warnings.filterwarnings("ignore", category=numba.NumbaIRAssumptionWarning)

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no "nnan"/"ninf": -inf masks must survive
jit = numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH)
pjit = numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, parallel=True)
prange = numba.prange


def rows(a):  # noqa: ANN001, ANN201
    """(..., C) -> contiguous (N, C), a view when a is already contiguous: the layout the row kernels take."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def jit_inline(fn):  # noqa: ANN001, ANN201
    return numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")(fn)


@intrinsic
def _int32_bits_as_float32(typingctx, i):  # noqa: ANN001, ANN202
    """Reinterpret the bits of an int32 as a float32 (a no-op instruction, so loops still vectorise)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@jit_inline
def fast_exp32(x):  # noqa: ANN001, ANN201
    lo = numba.float32(-87.33654)
    t = min(max(x, lo), numba.float32(88.72283))
    n = np.floor(t * numba.float32(1.44269504) + numba.float32(0.5))  # a float: math.floor returns int64
    r = t - n * numba.float32(0.693359375) - n * numba.float32(-2.12194440e-4)
    z = r * r
    p = numba.float32(1.9875691500e-4)
    p = p * r + numba.float32(1.3981999507e-3)
    p = p * r + numba.float32(8.3334519073e-3)
    p = p * r + numba.float32(4.1665795894e-2)
    p = p * r + numba.float32(1.6666665459e-1)
    p = p * r + numba.float32(5.0000001201e-1)
    y = p * z + r + numba.float32(1.0)
    scale = _int32_bits_as_float32((numba.int32(n) + numba.int32(127)) << numba.int32(23))
    return y * scale if x >= lo else numba.float32(0.0)


def fexp(x):  # noqa: ANN001, ANN201
    """exp in the argument's precision: fast_exp32 for float32, the C library's exp for float64."""
    return math.exp(x)


@overload(fexp, inline="always")
def _fexp(x):  # noqa: ANN001, ANN202
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: fast_exp32(x)
    return lambda x: math.exp(x)


# ---- the normal CDF for float32, vectorisable: fdlibm's erf/erfc rational approximations evaluated
# branch-free (every interval computed, the right one selected), with fast_exp32 for the tail.
def _f32(coeffs):  # noqa: ANN001, ANN202
    """Coefficients lowest order first -> float32 tuple highest order first (for Horner)."""
    return tuple(np.float32(c) for c in reversed(coeffs))


def _load_fdlibm():  # noqa: ANN202
    from ..reference import gelu as g

    return (np.float32(g._ERX), _f32(g._PP), _f32(g._QQ), _f32(g._PA), _f32(g._QA), _f32(g._RA),
            _f32(g._SA), _f32(g._RB), _f32(g._SB))


_ERX32, _PP32, _QQ32, _PA32, _QA32, _RA32, _SA32, _RB32, _SB32 = _load_fdlibm()


@jit_inline
def _horner(coeffs, z):  # noqa: ANN001, ANN202
    acc = coeffs[0]
    for i in range(1, len(coeffs)):
        acc = acc * z + coeffs[i]
    return acc


@jit_inline
def phi32(v):  # noqa: ANN001, ANN201
    """Phi(v) = (1 + erf(v / sqrt 2)) / 2 in float32, with full relative precision for v << 0
    (computed as erfc(|v| / sqrt 2) / 2 there, never as 1 - something close to 1). Divisions are slow,
    so each pair of candidate rational functions is selected before the one division it needs."""
    one = numba.float32(1.0)
    a = min(abs(v) * numba.float32(0.70710678), numba.float32(6.0))
    # |x| < 0.84375: erf = a + a P(a^2)/Q(a^2);  0.84375 <= a < 1.25: erf = erx + P(a - 1)/Q(a - 1)
    small = a < numba.float32(0.84375)
    z = a * a
    s = a - one
    num = a * _horner(_PP32, z) if small else _horner(_PA32, s)
    den = _horner(_QQ32, z) if small else _horner(_QA32, s)
    erf_near = (a if small else _ERX32) + num / den
    # a >= 1.25: erfc = exp(-a^2 - 0.5625 + R(1/a^2)/S(1/a^2)) / a, two (R, S) pairs split at 1/0.35
    at = max(a, numba.float32(1.25))
    inv_at = one / at
    w = inv_at * inv_at
    first = at < numba.float32(2.857142857)
    r = _horner(_RA32, w) if first else _horner(_RB32, w)
    q = _horner(_SA32, w) if first else _horner(_SB32, w)
    erfc_tail = fast_exp32(-at * at - numba.float32(0.5625) + r / q) * inv_at
    tail = a >= numba.float32(1.25)
    erfc_a = erfc_tail if tail else one - erf_near
    erf_a = one - erfc_tail if tail else erf_near
    half = numba.float32(0.5)
    return half * (one + erf_a) if v >= numba.float32(0.0) else half * erfc_a

def phi(v):  # noqa: ANN001, ANN201
    """The standard normal CDF in the argument's precision (phi32 for float32, math.erf for float64)."""
    return 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


@overload(phi, inline="always")
def _phi(v):  # noqa: ANN001, ANN202
    if isinstance(v, types.Float) and v.bitwidth == 32:
        return lambda v: phi32(v)
    return lambda v: 0.5 * (1.0 + math.erf(v * 0.7071067811865476))
