"""The random-projection (directional) gradient check works on a composite model, and it fails when a
backward is wrong (a check that cannot fail proves nothing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F
from minitransformer.autograd import Function

from .gradcheck import directional_check


@given(B=st.integers(1, 4), C=st.integers(1, 5), H=st.integers(1, 6), V=st.integers(2, 5),
       seed=st.integers(0, 2**16))
def test_directional_check_on_a_two_layer_classifier(B, C, H, V, seed):
    rng = np.random.default_rng(seed)
    x = mt.tensor(rng.standard_normal((B, C)))
    y = mt.tensor(rng.integers(0, V, (B, 1)))
    w1 = mt.tensor(rng.standard_normal((C, H)), requires_grad=True)
    b1 = mt.tensor(rng.standard_normal(H), requires_grad=True)
    w2 = mt.tensor(rng.standard_normal((H, V)), requires_grad=True)

    def loss():
        h = F.gelu(x @ w1 + b1)
        return -F.log_softmax(h @ w2, dim=-1).gather(1, y).mean()

    directional_check(loss, [w1, b1, w2], seed=seed)


class _WrongSquare(Function):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dout):
        return (dout * self.x,)  # should be 2 * x


def test_directional_check_catches_a_wrong_backward():
    w = mt.tensor(np.linspace(0.5, 1.5, 6), requires_grad=True)
    with pytest.raises(AssertionError, match="directional derivative mismatch"):
        directional_check(lambda: _WrongSquare.apply(w).sum(), [w])
