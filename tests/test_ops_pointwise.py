"""Pointwise ops: forward against tests/reference.py or NumPy, gradients against central differences
(one factory declaration per op; see tests/factories.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from . import reference as ref
from .factories import grid, op_test
from .strategies import broadcastable_shapes, floats, shapes

one = shapes().map(lambda s: (s,))
two = broadcastable_shapes(2)

# binary, broadcasting
test_add = op_test(lambda a, b: a + b, np.add, shapes=two)
test_sub = op_test(lambda a, b: a - b, np.subtract, shapes=two)
test_mul = op_test(lambda a, b: a * b, np.multiply, shapes=two)
test_div = op_test(lambda a, b: a / b, np.divide, shapes=two, elements=[floats(), floats(avoid=0.5)])
test_pow_tensor = op_test(lambda a, b: a ** b, np.power, shapes=two,
                          elements=[floats(0.5, 2.0), floats(-2.0, 2.0)])
test_maximum = op_test(mt.maximum, np.maximum, shapes=two, elements=grid())
test_minimum = op_test(mt.minimum, np.minimum, shapes=two, elements=grid())
test_add_alpha = op_test(lambda a, b: mt.add(a, b, alpha=-2.5), lambda a, b: a - 2.5 * b, shapes=two)

# with Python scalars on either side
test_radd_scalar = op_test(lambda a: 2.5 + a, lambda a: 2.5 + a, shapes=one)
test_rsub_scalar = op_test(lambda a: 2.5 - a, lambda a: 2.5 - a, shapes=one)
test_rdiv_scalar = op_test(lambda a: 2.5 / a, lambda a: 2.5 / a, shapes=one, elements=floats(avoid=0.5))
test_pow_scalar = op_test(lambda a, p: a ** p, lambda a, p: a ** p, shapes=one, elements=floats(0.5, 2.0),
                          kwargs=st.fixed_dictionaries({"p": st.sampled_from([2, 3, -1, 0.5, 1.5, -2.5])}))
test_pow_int_negative_base = op_test(lambda a, p: a ** p, lambda a, p: a ** p, shapes=one,
                                     kwargs=st.fixed_dictionaries({"p": st.sampled_from([2, 3])}))
test_rpow_scalar = op_test(lambda a: 2.0 ** a, lambda a: 2.0 ** a, shapes=one)
test_neg = op_test(lambda a: -a, np.negative, shapes=one)
test_numpy_operand = op_test(lambda a: a * np.full(a.shape, 1.5),
                             lambda a: a * 1.5, shapes=one)

# unary
test_exp = op_test(mt.exp, np.exp, shapes=one)
test_log = op_test(mt.log, np.log, shapes=one, elements=floats(0.1, 3.0))
test_sqrt = op_test(mt.sqrt, np.sqrt, shapes=one, elements=floats(0.1, 3.0))
test_rsqrt = op_test(mt.rsqrt, lambda a: 1 / np.sqrt(a), shapes=one, elements=floats(0.1, 3.0))
test_tanh = op_test(mt.tanh, np.tanh, shapes=one)
test_sigmoid = op_test(mt.sigmoid, ref.sigmoid, shapes=one, elements=floats(-6.0, 6.0))
test_relu = op_test(F.relu, ref.relu, shapes=one, elements=floats(avoid=1e-3))
test_abs = op_test(mt.abs, np.abs, shapes=one, elements=floats(avoid=1e-3))
test_clamp = op_test(lambda a: mt.clamp(a, min=-1.0, max=1.0), lambda a: np.clip(a, -1, 1), shapes=one,
                     elements=grid(offset=0.05))
test_clamp_min_only = op_test(lambda a: a.clamp(min=0.0), lambda a: np.maximum(a, 0), shapes=one,
                              elements=grid(offset=0.05))
test_gelu = op_test(lambda a, approximate: F.gelu(a, approximate=approximate), ref.gelu, shapes=one,
                    elements=floats(-5.0, 5.0),
                    kwargs=st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}))


def test_gelu_float32_matches_float64_reference():
    x = np.linspace(-8, 8, 4001)
    for approximate in ("none", "tanh"):
        got = F.gelu(mt.tensor(x, dtype=mt.float32), approximate=approximate).numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref.gelu(x, approximate), rtol=1e-6, atol=1e-7)


def test_ties_split_the_gradient_evenly():
    # maximum/minimum at ties: half to each side (PyTorch's rule), checked by hand
    a = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = mt.tensor([1.0, 1.0, 4.0], requires_grad=True)
    mt.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 1.0, 0.0]
    assert b.grad.tolist() == [0.5, 0.0, 1.0]


def test_cast_gradient_returns_in_input_dtype():
    x = mt.tensor([1.5, -2.0], dtype=mt.float64, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    (y * mt.tensor([2.0, 3.0])).sum().backward()
    assert x.grad.dtype == np.float64 and x.grad.tolist() == [2.0, 3.0]


def test_int_tensor_and_python_float_promote_to_default_float():
    x = mt.arange(3) * 0.5
    assert x.dtype == np.float32 and x.tolist() == [0.0, 0.5, 1.0]
    assert (mt.arange(3) + 1).dtype == np.int64
    assert (mt.tensor([1.0, 2.0]) + mt.arange(2)).dtype == np.float32


def test_float32_stays_float32_with_python_and_numpy_operands():
    x = mt.ones(2)
    assert (x * 2.5).dtype == np.float32
    assert (x + np.ones(2)).dtype == np.float32  # a NumPy float64 array adopts the tensor's dtype
    assert (np.ones(2) + x).dtype == np.float32 and isinstance(np.ones(2) + x, mt.Tensor)
