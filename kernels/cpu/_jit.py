"""Shared Numba settings and scalar helpers for the CPU kernels.

- `jit` / `pjit`: @njit with cache=True (a second process loads compiled code from disk instead of
  compiling again), error_model="numpy" (Python's error model adds a zero check to every division and
  stops loops vectorising), and fastmath flags that allow re-associating sums (so reductions vectorise)
  but keep IEEE semantics for inf and NaN (masks are -inf and must stay exact).
- `fast_exp32`: exp for float32 as a polynomial that LLVM can vectorise. The C library's expf is a
  scalar call (~4 ns per element here); this runs at about a nanosecond, max relative error ~1e-7:
  exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2], exp(r) by a degree-6
  polynomial (Cephes expf coefficients), 2^n built directly in the float's exponent bits. Inputs below
  -87.34 (where float32 exp underflows) give exactly 0, so exp(-inf) = 0 for masked entries; NaN gives NaN.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import types as types_
import warnings
from collections.abc import Callable

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

from ..reference.gelu import ERFCC

# Small helpers are inlined at Numba's IR level (inline="always"): left to LLVM they stay calls and the
# loops around them do not vectorise (GELU ran 10x slower). That inlining trips an internal "pedantic"
# scope check inside parallel loops whose warning is noise; it is silenced here and only here.
warnings.filterwarnings("ignore", category=numba.NumbaIRAssumptionWarning)

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no "nnan"/"ninf": -inf masks must survive
jit = numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH)
pjit = numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, parallel=True)
sjit = numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, nogil=True)  # for HalfSplitter's threads
prange = numba.prange


class HalfSplitter:
    """Runs fn(0, n // 2) on a helper thread while the calling thread runs fn(n // 2, n), for work made of
    many small BLAS calls (NumPy's batched matmul keeps to one core; its BLAS calls and `sjit` kernels release
    the GIL, so the two halves run on two cores). One helper thread, started on first use and again after a
    fork; a call that finds it busy (another thread of the caller is using it) runs both halves itself.
    Each job carries a number and the caller waits for its own: if a wait was interrupted (Ctrl-C), the late
    answer of that job is skipped instead of being taken for the next one's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._seq = 0

    def _start(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(self._jobs, self._done), daemon=True,
                         name="minitransformer-half").start()
        self._pid = os.getpid()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
        while True:
            seq, fn, lo, hi = jobs.get()
            try:
                fn(lo, hi)
                done.put((seq, None))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it
                done.put((seq, e))

    def run(self, fn: Callable[[int, int], None], n: int) -> None:
        half = n // 2
        if not self._lock.acquire(blocking=False):
            fn(0, n)
            return
        try:
            if self._pid != os.getpid():
                self._start()
            self._seq += 1
            self._jobs.put((self._seq, fn, 0, half))
            try:
                fn(half, n)
            finally:
                while True:                             # always wait: the helper is still writing its half
                    seq, err = self._done.get()
                    if seq == self._seq:
                        break
            if err is not None:
                raise err
        finally:
            self._lock.release()


def renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of the Python function fn under the name fn + suffix, for a second build of one kernel with
    other options (serial beside parallel). Numba names its cache files after the function, and its cache
    key ignores the compile options, so two builds of one function would load each other's machine code."""
    g = types_.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    g.__doc__ = fn.__doc__
    return g


# Elements from which a row kernel's parallel build beats its serial one here: waking the sleeping OpenMP
# workers (passive waiting, above) costs 30-80 us per parallel region, which is longer than a layer norm of
# 768 x 128 takes on one core (20 us). Measured crossover for layer norm: 0.5-0.8 M elements.
PARALLEL_MIN = 1 << 19


def serial_and_parallel(fn: Callable) -> tuple[Callable, Callable]:
    """Two builds of one kernel function, indexed by `parallel`: serial (prange runs as range, and the GIL is
    released, so HalfSplitter's two threads can run it side by side) and parallel."""
    return sjit(renamed(fn, "_serial")), pjit(fn)


def rows(a):  # noqa: ANN001, ANN201
    """(..., C) -> contiguous (N, C), a view when a is already contiguous: the layout the row kernels take."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def jit_inline(fn):  # noqa: ANN001, ANN201
    return numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")(fn)


def _bitcast(src: types.Type, dst: types.Type) -> Callable:
    """An intrinsic that reinterprets the bits of a src value as a dst value of the same width (a no-op
    instruction, so loops around it still vectorise)."""
    @intrinsic
    def bitcast(typingctx, x):  # noqa: ANN001, ANN202
        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    return bitcast


_int32_bits_as_float32 = _bitcast(types.int32, types.float32)
_float32_bits_as_int32 = _bitcast(types.float32, types.int32)


@jit_inline
def _order_key32(x):  # noqa: ANN001, ANN202
    """float32 -> int32 with the same order (flip the magnitude bits of negatives); its own inverse."""
    b = _float32_bits_as_int32(x)
    return b ^ ((b >> numba.int32(31)) & numba.int32(0x7FFFFFFF))


@jit_inline
def _max32(row, n):  # noqa: ANN001, ANN202
    m = numba.int32(-2139095041)  # the key of -inf (0x807FFFFF): an empty row's maximum
    for t in range(n):
        k = _order_key32(row[t])
        m = k if k > m else m
    m = m ^ ((m >> numba.int32(31)) & numba.int32(0x7FFFFFFF))
    return _int32_bits_as_float32(m)


def row_max(row, n):  # noqa: ANN001, ANN201
    """max(row[:n]), -inf for n = 0. LLVM does not vectorise a floating-point max reduction without the
    `nnan` flag, which the kernels cannot take (masks are -inf); for float32 the maximum is taken over
    integers ordered like the floats, which vectorises: 6x faster than the float loop here. With a NaN
    in the row the result is unspecified (a NaN or a number); the callers' exp(x - max) passes the NaN on."""
    m = -np.inf
    for t in range(n):
        m = max(m, row[t])
    return m


@overload(row_max, inline="always")
def _row_max(row, n):  # noqa: ANN001, ANN202
    if isinstance(row.dtype, types.Float) and row.dtype.bitwidth == 32:
        return lambda row, n: _max32(row, n)

    def generic(row, n):  # noqa: ANN001, ANN202
        m = row.dtype.type(-np.inf)
        for t in range(n):
            m = max(m, row[t])
        return m
    return generic


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
    r = y * scale if x >= lo else numba.float32(0.0)
    return r if x == x else x                                   # NaN stays NaN (the clamp above would hide it)


def fexp(x):  # noqa: ANN001, ANN201
    """exp in the argument's precision: fast_exp32 for float32, the C library's exp for float64."""
    return math.exp(x)


@overload(fexp, inline="always")
def _fexp(x):  # noqa: ANN001, ANN202
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: fast_exp32(x)
    return lambda x: math.exp(x)


# ---- the normal CDF for float32, vectorisable: one rational-free formula for erfc, so no branch and
# one division. erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), with P the degree-9 Chebyshev fit of
# Numerical Recipes' erfcc (relative error below 1.2e-7 for every z >= 0, tails included).
_ERFC_P32 = tuple(np.float32(c) for c in reversed(ERFCC))  # highest order first, for Horner


@jit_inline
def phi32(v):  # noqa: ANN001, ANN201
    """Phi(v) = erfc(-v / sqrt 2) / 2 in float32, with full relative precision for v << 0 (the tail is
    erfc(|v| / sqrt 2) / 2 itself, never 1 - something close to 1), down to where float32 underflows."""
    one = numba.float32(1.0)
    z = abs(v) * numba.float32(0.70710678)
    t = one / (one + numba.float32(0.5) * z)
    p = _ERFC_P32[0]
    for i in range(1, len(_ERFC_P32)):
        p = p * t + _ERFC_P32[i]
    half_erfc = numba.float32(0.5) * t * fast_exp32(p - z * z)  # erfc(z) / 2 = Phi(-|v|)
    return one - half_erfc if v >= numba.float32(0.0) else half_erfc


def phi(v):  # noqa: ANN001, ANN201
    """The standard normal CDF in the argument's precision (phi32 for float32, math.erfc for float64; erfc of
    -v, not 1 + erf(v), so that the lower tail keeps its relative precision)."""
    return 0.5 * math.erfc(-v / math.sqrt(2.0))


@overload(phi, inline="always")
def _phi(v):  # noqa: ANN001, ANN202
    if isinstance(v, types.Float) and v.bitwidth == 32:
        return lambda v: phi32(v)
    return lambda v: 0.5 * math.erfc(v * -0.7071067811865476)
