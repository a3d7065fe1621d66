"""Adam/AdamW update, Numba (same name and signature as reference/adam.py): one pass per parameter that
reads p, g, m, v (and vmax) once and writes p, m, v (and vmax) once, elements split across threads; the
reference makes about ten passes with temporaries. Arrays are flattened views, so any shape works."""

from __future__ import annotations

import math

import numpy as np

from ..reference import adam as _reference
from ._jit import jit, jit_inline, pjit, prange


@jit_inline
def _update_range(p, g, m, v, vmax, amsgrad, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt, sign):  # noqa: ANN001, ANN202
    # a loop from 0 over views: loops over range(lo, hi) keep index checks inside and vectorise poorly
    one = p.dtype.type(1.0)
    decay = one - lr * wd
    for i in range(p.shape[0]):
        gi = sign * g[i]
        pi = p[i]
        if decoupled:
            pi *= decay
        else:
            gi += wd * pi
        mi = b1 * m[i] + (one - b1) * gi
        vi = b2 * v[i] + (one - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(vmax[i], vi)
            vmax[i] = vi
        p[i] = pi - step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)


@jit
def _update_serial(p, g, m, v, vmax, amsgrad, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt, sign):  # noqa: ANN001, ANN202
    _update_range(p, g, m, v, vmax, amsgrad, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt, sign)


@pjit
def _update_parallel(p, g, m, v, vmax, amsgrad, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt, sign):  # noqa: ANN001, ANN202
    n = p.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(chunks):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        _update_range(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], vmax[lo:hi], amsgrad, lr, b1, b2, eps, wd,
                      decoupled, step_size, bc2_sqrt, sign)


# Threads pay off only for large parameters: starting a parallel region costs microseconds, and a model
# has many small ones (biases, LayerNorm gains).
PARALLEL_MIN = 1 << 16
CHUNK = 1 << 14


def _flat(a):  # noqa: ANN001, ANN202
    return a.reshape(-1)  # a view: the caller checked contiguity


def adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1, beta2, eps, weight_decay,  # noqa: ANN001, ANN201
                decoupled, step, maximize):
    step_size = lr / (1 - beta1**step)
    bc2_sqrt = math.sqrt(1 - beta2**step)
    for i, p in enumerate(params):
        arrays = [p, exp_avgs[i], exp_avg_sqs[i]] + ([max_exp_avg_sqs[i]] if max_exp_avg_sqs is not None else [])
        if not all(a.flags.c_contiguous for a in arrays):  # rare: a strided parameter takes the NumPy path
            _reference.adam_update([p], [grads[i]], [exp_avgs[i]], [exp_avg_sqs[i]],
                                   None if max_exp_avg_sqs is None else [max_exp_avg_sqs[i]], lr, beta1, beta2,
                                   eps, weight_decay, decoupled, step, maximize)
            continue
        T = p.dtype.type
        vmax = max_exp_avg_sqs[i] if max_exp_avg_sqs is not None else exp_avg_sqs[i]
        update = _update_parallel if p.size >= PARALLEL_MIN else _update_serial
        update(_flat(p), _flat(np.ascontiguousarray(grads[i], dtype=p.dtype)), _flat(exp_avgs[i]),
                _flat(exp_avg_sqs[i]), _flat(vmax), max_exp_avg_sqs is not None, T(lr), T(beta1), T(beta2),
                T(eps), T(weight_decay), decoupled, T(step_size), T(bc2_sqrt), T(-1.0 if maximize else 1.0))
