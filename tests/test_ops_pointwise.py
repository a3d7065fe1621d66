"""Pointwise ops: forward against tests/reference.py or NumPy, gradients against central differences
(one factory declaration per op; see tests/factories.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from . import reference as ref
from .factories import covers, grid, op_test
from .strategies import broadcastable_shapes, floats, shapes
from .tolerances import FORWARD_F32

one = shapes().map(lambda s: (s,))
two = broadcastable_shapes(2)

# binary, broadcasting
test_add = op_test(lambda a, b: a + b, np.add, shapes=two, covers="add")
test_sub = op_test(lambda a, b: a - b, np.subtract, shapes=two, covers="sub")
test_mul = op_test(lambda a, b: a * b, np.multiply, shapes=two, covers="mul")
test_div = op_test(lambda a, b: a / b, np.divide, shapes=two, elements=[floats(), floats(avoid=0.5)], covers="div")
test_pow_tensor = op_test(lambda a, b: a ** b, np.power, shapes=two,
                          elements=[floats(0.5, 2.0), floats(-2.0, 2.0)], covers="pow")
test_maximum = op_test(mt.maximum, np.maximum, shapes=two, elements=grid(), covers="maximum")
test_minimum = op_test(mt.minimum, np.minimum, shapes=two, elements=grid(), covers="minimum")
test_add_alpha = op_test(lambda a, b: mt.add(a, b, alpha=-2.5), lambda a, b: a - 2.5 * b, shapes=two, covers="add")

# with Python scalars on either side
test_radd_scalar = op_test(lambda a: 2.5 + a, lambda a: 2.5 + a, shapes=one, covers="add")
test_rsub_scalar = op_test(lambda a: 2.5 - a, lambda a: 2.5 - a, shapes=one, covers="sub")
test_rdiv_scalar = op_test(lambda a: 2.5 / a, lambda a: 2.5 / a, shapes=one, elements=floats(avoid=0.5),
                           covers="div")
test_pow_scalar = op_test(lambda a, p: a ** p, lambda a, p: a ** p, shapes=one, elements=floats(0.5, 2.0),
                          kwargs=st.fixed_dictionaries({"p": st.sampled_from([2, 3, -1, 0.5, 1.5, -2.5])}),
                          covers="pow")
test_pow_int_negative_base = op_test(lambda a, p: a ** p, lambda a, p: a ** p, shapes=one,
                                     kwargs=st.fixed_dictionaries({"p": st.sampled_from([2, 3])}), covers="pow")
test_rpow_scalar = op_test(lambda a: 2.0 ** a, lambda a: 2.0 ** a, shapes=one, covers="pow")
test_neg = op_test(lambda a: -a, np.negative, shapes=one, covers="neg")
test_numpy_operand = op_test(lambda a: a * np.full(a.shape, 1.5),
                             lambda a: a * 1.5, shapes=one, covers="mul")

# unary
test_exp = op_test(mt.exp, np.exp, shapes=one, covers="exp")
test_log = op_test(mt.log, np.log, shapes=one, elements=floats(0.1, 3.0), covers="log")
test_sqrt = op_test(mt.sqrt, np.sqrt, shapes=one, elements=floats(0.1, 3.0), covers="sqrt")
test_rsqrt = op_test(mt.rsqrt, lambda a: 1 / np.sqrt(a), shapes=one, elements=floats(0.1, 3.0), covers="rsqrt")
test_tanh = op_test(mt.tanh, np.tanh, shapes=one, covers="tanh")
test_sigmoid = op_test(mt.sigmoid, ref.sigmoid, shapes=one, elements=floats(-6.0, 6.0), covers="sigmoid")
test_relu = op_test(F.relu, ref.relu, shapes=one, elements=floats(avoid=1e-3), covers="relu")
test_abs = op_test(mt.abs, np.abs, shapes=one, elements=floats(avoid=1e-3), covers="abs")
test_clamp = op_test(lambda a: mt.clamp(a, min=-1.0, max=1.0), lambda a: np.clip(a, -1, 1), shapes=one,
                     elements=grid(offset=0.05), covers="clamp")
test_clamp_min_only = op_test(lambda a: a.clamp(min=0.0), lambda a: np.maximum(a, 0), shapes=one,
                              elements=grid(offset=0.05), covers="clamp")
test_gelu = op_test(lambda a, approximate: F.gelu(a, approximate=approximate), ref.gelu, shapes=one,
                    elements=floats(-5.0, 5.0),
                    kwargs=st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
                    covers="gelu", backends=True)
# float64 in, float64 out: a copy that passes the gradient through (float32 below)
test_cast = op_test(lambda a: mt.cast(a, mt.float64), np.copy, shapes=one, covers="cast")


def test_gelu_float32_matches_float64_reference(kernel_backend):
    x = np.linspace(-8, 8, 4001)
    for approximate in ("none", "tanh"):
        got = F.gelu(mt.tensor(x, dtype=mt.float32), approximate=approximate).numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref.gelu(x, approximate), **FORWARD_F32, err_msg=approximate)


def test_ties_split_the_gradient_evenly():
    # maximum/minimum at ties: half to each side (PyTorch's rule), checked by hand
    a = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = mt.tensor([1.0, 1.0, 4.0], requires_grad=True)
    mt.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 1.0, 0.0]
    assert b.grad.tolist() == [0.5, 0.0, 1.0]


@covers("cast", grad=False)
def test_cast_rounds_like_numpy_and_its_gradient_returns_in_the_input_dtype():
    x64 = np.array([1.5, -2.0, 0.1, 1 / 3, 1e-40])
    x = mt.tensor(x64, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), x64.astype(np.float32))  # rounded to nearest; 1e-40 subnormal
    assert mt.cast(mt.tensor([2.7, -2.7]), mt.int64).tolist() == [2, -2]  # toward zero, as astype
    (y * mt.tensor([2.0, 3.0, 4.0, 5.0, 6.0])).sum().backward()
    assert x.grad.dtype == np.float64 and x.grad.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]


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
