"""GELU, exact and tanh-approximated: forward and backward, plus the normal CDF it needs.

    exact:  gelu(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2
            gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    tanh:   gelu(x) = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) * (x + 0.044715 x^3)
            gelu'(x) = (1 + t)/2 + x/2 * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2),  t = tanh(u)
            Computed as x * s with s = (1 + tanh u)/2 = sigmoid(2u) = 1 / (1 + exp(-2u)): for very
            negative x, 1 + tanh(u) cancels catastrophically in float32, while 1 / (1 + exp(-2u)) keeps
            full relative precision (and 1 - t^2 = 4 s (1 - s)).

NumPy has no vectorised erf, so `erfc` below evaluates the rational approximations of Sun's fdlibm
(s_erf.c, accurate to under 1 ulp in float64) with array operations: one polynomial pair per interval of
|x|, selected with `where`. Phi is taken from erfc, not from 1 + erf: for x << 0, 1 + erf(x / sqrt 2)
cancels (at x = -8 only one significant digit survives in float64), while erfc(|x| / sqrt 2) / 2 keeps
full relative precision down to where the float underflows. float64 inputs are evaluated that way.

float32 inputs take a float32 formula instead (what a user without Numba runs: fdlibm in float64 over the
whole activation was most of the NumPy-only training step): erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2),
P the degree-9 Chebyshev fit of Numerical Recipes' erfcc, whose own relative error is below 1.2e-7 for every
z >= 0, evaluated in place, one division and one exp per element. In float32 the rounding of z^2 inside the
exp dominates: relative error about 2e-6 for x > -5, up to about 2e-5 in the far lower tail (still relative:
no cancellation). It is the formula of the Numba tier's phi32; the tests hold both to the float64 math.erfc.
"""

from __future__ import annotations

import math
from typing import Any

from ._xp import xp_of

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_C = 0.044715

# fdlibm s_erf.c coefficients, lowest order first.
_ERX = 8.45062911510467529297e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coeffs: tuple[float, ...], z: Any) -> Any:
    """Horner evaluation of sum(coeffs[i] * z**i)."""
    acc = xp_of(z).full_like(z, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc = acc * z + c
    return acc


def erfc_nonnegative(a: Any) -> Any:
    """erfc(a) for a >= 0, elementwise, in float64 (any array module), with full relative precision."""
    xp = xp_of(a)
    a = xp.minimum(a.astype(xp.float64, copy=False), 28.0)  # erfc(28) underflows float64 to 0 already
    z = a * a
    small = 1.0 - a * (1.0 + _poly(_PP, z) / _poly(_QQ, z))                 # a < 0.84375: 1 - erf
    s = a - 1.0
    mid = (1.0 - _ERX) - _poly(_PA, s) / _poly(_QA, s)                      # 0.84375 <= a < 1.25
    with_tail = xp.maximum(a, 1.25)                                         # keep 1/a^2 finite below 1.25
    w = 1.0 / (with_tail * with_tail)
    ratio = xp.where(with_tail < 1.0 / 0.35, _poly(_RA, w) / _poly(_SA, w), _poly(_RB, w) / _poly(_SB, w))
    tail = xp.exp(-with_tail * with_tail - 0.5625 + ratio) / with_tail     # a >= 1.25, computed directly
    return xp.where(a < 0.84375, small, xp.where(a < 1.25, mid, tail))


# Numerical Recipes' erfcc exponent polynomial, lowest order first (the Numba tier's phi32 uses it too)
ERFCC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
          0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _half_erfc32(z: Any) -> Any:
    """erfc(z) / 2 for z >= 0 in float32, in place on z's memory (z is a fresh array): about 25 passes
    over the array and no float64 temporaries."""
    xp = xp_of(z)
    f32 = xp.float32
    t = z * f32(0.5)
    t += f32(1.0)
    xp.reciprocal(t, out=t)                                                 # t = 1 / (1 + z/2)
    p = xp.full_like(z, f32(ERFCC[-1]))
    for c in ERFCC[-2::-1]:                                                # Horner in t
        p *= t
        p += f32(c)
    z *= z
    p -= z                                                                  # -z^2 + P(t)
    xp.exp(p, out=p)
    p *= t
    p *= f32(0.5)
    return p


def normal_cdf(x: Any) -> Any:
    """Phi(x) = erfc(-x / sqrt 2) / 2, elementwise: the lower tail is erfc(|x| / sqrt 2) / 2 itself, the
    upper one 1 minus that (no cancellation either way). float32 in float32 (see the module docstring),
    anything else in float64."""
    xp = xp_of(x)
    if x.dtype == xp.float32:
        if x.ndim == 0:                                                     # in-place ops need an array
            return normal_cdf(x.reshape(1)).reshape(())
        z = xp.abs(x)
        z *= xp.float32(INV_SQRT_2)
        lower = _half_erfc32(z)                                             # Phi(-|x|)
        upper = xp.float32(1.0) - lower
        return xp.where(x < 0, lower, xp.where(xp.isnan(x), x, upper))
    x = x.astype(xp.float64, copy=False)
    lower = 0.5 * erfc_nonnegative(xp.abs(x) * INV_SQRT_2)                  # Phi(-|x|)
    return xp.where(xp.isnan(x), x, xp.where(x < 0, lower, 1.0 - lower))


def _tanh_gate(x: Any) -> Any:
    """s = (1 + tanh(u)) / 2 = 1 / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)."""
    xp = xp_of(x)
    u2 = (2.0 * SQRT_2_OVER_PI) * (x + GELU_TANH_C * x * x * x)
    e = xp.exp(-xp.abs(u2))  # exp of a non-positive number: no overflow
    return xp.where(u2 >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, Any]:
    """x: any shape -> (gelu(x), gate), same shape and dtype, with gelu(x) = x * gate: the gate is
    Phi(x) (exact) or sigmoid(2u) (tanh), kept so the backward need not compute it again."""
    gate = _tanh_gate(x) if approximate == "tanh" else normal_cdf(x).astype(x.dtype, copy=False)
    return x * gate, gate


def gelu_backward(dy: Any, x: Any, approximate: str, gate: Any) -> Any:
    """dy, x, gate: same shape -> dx = dy * gelu'(x)."""
    xp = xp_of(x)
    if approximate == "tanh":
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x)
        return dy * (gate + 2.0 * x * gate * (1.0 - gate) * du)
    if x.dtype == xp.float32:                                               # in float32, in place
        if x.ndim == 0:                                                     # in-place ops need an array
            return gelu_backward(dy.reshape(1), x.reshape(1), approximate, gate.reshape(1)).reshape(())
        pdf = x * x
        pdf *= xp.float32(-0.5)
        xp.exp(pdf, out=pdf)
        pdf *= x
        pdf *= xp.float32(INV_SQRT_2PI)                                     # x phi(x)
        pdf += gate
        pdf *= dy
        return pdf
    pdf = INV_SQRT_2PI * xp.exp(-0.5 * x.astype(xp.float64, copy=False) ** 2)
    return (dy * (gate + x * pdf)).astype(x.dtype, copy=False)


def bias_gelu_forward(x: Any, bias: Any, approximate: str = "none") -> tuple[Any, Any]:
    """gelu(x + bias) and its gate: the MLP's first activation, with the Linear's bias folded in.
    x (..., M), bias (M,) or None."""
    return gelu_forward(x if bias is None else x + bias, approximate)


def bias_gelu_backward(dy: Any, x: Any, bias: Any, approximate: str, gate: Any) -> Any:
    """-> d(x + bias), shaped like x; the bias gradient is its sum over all but the last axis."""
    return gelu_backward(dy, x if bias is None else x + bias, approximate, gate)
