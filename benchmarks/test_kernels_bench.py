"""pytest-benchmark view of the hot kernels (not part of `make test`):

    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-group-by=param:kernel

Each case runs the fused op forward + backward through the library on the `numpy` and `numba` backends at
the small GPT's shapes; benchmarks/kernels.py prints the full side-by-side table with PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt
import minitransformer.nn.functional as F

rng = np.random.default_rng(0)
B, T, C, nh, V = 12, 64, 128, 4, 65


def _t(*shape):
    return mt.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)


def _cases():
    """kernel -> a closure over inputs made once, so only the op is timed."""
    x_sm, x_ce, y_ce = _t(B * nh * T, T), _t(B * T, V), mt.tensor(rng.integers(0, V, B * T))
    x_ln, w_ln, b_ln, x_ge = _t(B * T, C), _t(C), _t(C), _t(B * T, 4 * C)
    q, k, v = (_t(B, nh, T, C // nh) for _ in range(3))
    return {
        "softmax": lambda: F.softmax(x_sm, dim=-1),
        "cross_entropy": lambda: F.cross_entropy(x_ce, y_ce),
        "layer_norm": lambda: F.layer_norm(x_ln, (C,), w_ln, b_ln),
        "gelu": lambda: F.gelu(x_ge),
        "attention": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


CASES = _cases()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kernel", sorted(CASES))
def test_forward_backward(benchmark, kernel, backend):
    if backend not in mt.backend.available():
        pytest.skip("Numba is not installed")
    mt.backend.warmup()

    def run():
        with mt.backend.use(backend):
            out = CASES[kernel]()
            out.backward(mt.ones(*out.shape) if out.ndim else None)

    benchmark(run)
