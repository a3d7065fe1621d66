"""Bad input gets a clear error: shapes named with the op, dtype and device mixes, bad dims."""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt
import minitransformer.nn.functional as F


def test_matmul_shape_mismatch_names_both_shapes():
    msg = r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied \(3 != 4\)"
    with pytest.raises(ValueError, match=msg):
        mt.ones(2, 3) @ mt.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul \(batch dimensions\): shapes \(2,\) and \(3,\)"):
        mt.ones(2, 1, 3) @ mt.ones(3, 3, 1)


@pytest.mark.parametrize("op,name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                     (lambda a, b: a / b, "div"), (lambda a, b: a - b, "sub"),
                                     (lambda a, b: mt.where(mt.ones(1, dtype=mt.bool_), a, b), "where")])
def test_broadcast_mismatch_names_both_shapes_and_the_op(op, name):
    with pytest.raises(ValueError, match=rf"{name}: shapes \(2, 3\) and \(4,\) cannot be broadcast together"):
        op(mt.ones(2, 3), mt.ones(4))


def test_cat_and_stack_mismatch():
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(2, 4\) but tensor 0 has shape \(2, 3\); "
                                         r"sizes must match except in dimension 0"):
        mt.cat([mt.ones(2, 3), mt.ones(2, 4)], dim=0)
    with pytest.raises(ValueError, match=r"stack: tensor 1 has shape \(3,\)"):
        mt.stack([mt.ones(2), mt.ones(3)])
    with pytest.raises(TypeError, match="cat: tensor 0 has dtype float32 but tensor 1 has float64"):
        mt.cat([mt.ones(2), mt.ones(2, dtype=mt.float64)])


def test_float_dtype_mix_is_a_type_error():
    with pytest.raises(TypeError, match="add: dtype mismatch, float32 and float64"):
        mt.ones(2) + mt.ones(2, dtype=mt.float64)
    with pytest.raises(TypeError, match="matmul: dtype mismatch"):
        mt.ones(2, 2) @ mt.ones(2, 2, dtype=mt.float64)


class _FakeCudaArray(np.ndarray):
    """An array that reports itself as living on the GPU (its class's module starts with 'cupy')."""


_FakeCudaArray.__module__ = "cupy._fake"


def test_device_mix_is_a_type_error():
    gpu = mt.Tensor(np.ones(2).view(_FakeCudaArray))
    assert gpu.device == "cuda"
    with pytest.raises(TypeError, match="add: expected all tensors on one device, got cpu and cuda"):
        mt.ones(2, dtype=mt.float64) + gpu


def test_reshape_and_dim_errors():
    with pytest.raises(ValueError, match=r"reshape: shape \(4,\) is invalid for input of shape \(2, 3\)"):
        mt.ones(2, 3).reshape(4)
    with pytest.raises(IndexError, match=r"sum: dimension 2 is out of range for a tensor with 2 dimensions"):
        mt.ones(2, 3).sum(dim=2)
    with pytest.raises(ValueError, match="expand: the tensor of shape"):
        mt.ones(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match="permute"):
        mt.ones(2, 3).permute(0, 0)


def test_masked_fill_needs_a_bool_mask_that_broadcasts():
    with pytest.raises(TypeError, match="masked_fill: the mask must be a bool tensor"):
        mt.ones(2).masked_fill(mt.tensor([1, 0]), 0.0)
    with pytest.raises(ValueError, match=r"masked_fill: mask of shape \(3, 2\) does not broadcast"):
        mt.ones(2).masked_fill(mt.ones(3, 2, dtype=mt.bool_), 0.0)


def test_softmax_needs_dim_and_float_input():
    with pytest.raises(TypeError, match="pass dim explicitly"):
        F.softmax(mt.ones(3))
    with pytest.raises(TypeError, match="floating"):
        F.softmax(mt.arange(3), dim=0)


def test_item_of_many_elements():
    with pytest.raises(ValueError, match="a tensor with 3 elements cannot be converted to a scalar"):
        mt.ones(3).item()
