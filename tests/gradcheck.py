"""Numerical gradients for checking backward.

- `numerical_grads`: central differences, one input element at a time (exact check for small inputs).
- `directional_check`: the random-projection check. For random directions u (inputs) and v (output),
  the analytic <u, J^T v> from one backward must equal the numerical directional derivative
  <v, (f(x + h u) - f(x - h u)) / 2h>. It costs two forward passes whatever the number of parameters,
  so it scales to whole models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import minitransformer as mt

from .tolerances import GRAD_F64, H


def _scalar(fn: Callable[..., mt.Tensor], arrays: Sequence[np.ndarray], v: np.ndarray) -> float:
    with mt.no_grad():
        out = fn(*[mt.tensor(a) for a in arrays])
    return float(np.sum(out.numpy().astype(np.float64) * v))


def numerical_grads(fn: Callable[..., mt.Tensor], arrays: Sequence[np.ndarray], v: np.ndarray,
                    which: Sequence[int], h: float = H) -> list[np.ndarray]:
    """d<v, fn(*arrays)>/d arrays[i] for each i in `which`, by central differences."""
    arrays = [np.array(a, dtype=a.dtype, copy=True) for a in arrays]
    grads = []
    for i in which:
        a = arrays[i]
        g = np.zeros_like(a, dtype=np.float64)
        for idx in np.ndindex(*a.shape):
            orig = a[idx]
            a[idx] = orig + h
            plus = _scalar(fn, arrays, v)
            a[idx] = orig - h
            minus = _scalar(fn, arrays, v)
            a[idx] = orig
            g[idx] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def directional_check(fn: Callable[..., mt.Tensor], params: Sequence[mt.Tensor], seed: int = 0,
                      h: float = H, rtol: float = GRAD_F64["rtol"], atol: float = GRAD_F64["atol"]) -> None:
    """Check backward of the scalar-valued closure `fn()` w.r.t. float64 `params` along a random
    direction. `fn` must be deterministic (no dropout) and read the params' current values."""
    rng = np.random.default_rng(seed)
    for p in params:
        assert p.dtype == np.float64, "the directional check needs float64 parameters"
        p.grad = None
    out = fn()
    v = rng.standard_normal(out.shape)
    out.backward(mt.tensor(v))
    us = [rng.standard_normal(p.shape) for p in params]
    analytic = sum(float(np.sum(u * (p.grad.numpy() if p.grad is not None else 0.0)))
                   for u, p in zip(us, params, strict=True))
    originals = [p.data.copy() for p in params]

    def shifted(sign: float) -> float:
        with mt.no_grad():
            for p, u, o in zip(params, us, originals, strict=True):
                p.data[...] = o + sign * h * u
            val = float(np.sum(fn().numpy() * v))
        return val

    numeric = (shifted(+1) - shifted(-1)) / (2 * h)
    for p, o in zip(params, originals, strict=True):
        p.data[...] = o
    assert abs(analytic - numeric) <= atol + rtol * abs(numeric), (
        f"directional derivative mismatch: analytic {analytic!r}, numerical {numeric!r}"
    )
