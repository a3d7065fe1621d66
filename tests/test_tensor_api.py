"""The Tensor surface PyTorch users expect: creation functions and dtypes, properties, conversion,
seeding, NumPy interop."""

from __future__ import annotations

import numpy as np
import pytest

import minitransformer as mt


def test_creation_dtypes_follow_pytorch():
    assert mt.tensor([1.0, 2.0]).dtype == np.float32
    assert mt.tensor([1, 2]).dtype == np.int64
    assert mt.tensor([True]).dtype == np.bool_
    assert mt.tensor(np.ones(2)).dtype == np.float64  # NumPy arrays keep their dtype
    assert mt.zeros(2, 3).dtype == np.float32 and mt.zeros((2, 3)).shape == (2, 3)
    assert mt.ones(2, dtype=mt.float64).dtype == np.float64
    assert mt.arange(5).dtype == np.int64 and mt.arange(0.0, 1.0, 0.5).dtype == np.float32
    assert mt.full((2,), 7).dtype == np.int64 and mt.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert mt.randn(3, 4).shape == (3, 4) and mt.rand(2).dtype == np.float32
    assert mt.randint(0, 10, (5,)).dtype == np.int64
    assert mt.empty(2).shape == (2,) and mt.eye(3).tolist()[1] == [0.0, 1.0, 0.0]
    assert mt.zeros_like(mt.ones(2, dtype=mt.float64)).dtype == np.float64
    assert mt.float is mt.float32 and mt.long is mt.int64


def test_tensor_copies_and_from_numpy_shares():
    a = np.ones(3)
    t = mt.tensor(a)
    a[0] = 5
    assert t.tolist() == [1.0, 1.0, 1.0]
    s = mt.from_numpy(a)
    a[1] = 7
    assert s.tolist() == [5.0, 7.0, 1.0]
    assert np.shares_memory(s.numpy(), a)


def test_properties():
    x = mt.ones(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.T.shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    assert x.device == "cpu" and x.is_leaf and x.grad is None
    assert mt.tensor(3.5).item() == 3.5 and float(mt.tensor([2.0])) == 2.0 and int(mt.tensor(4)) == 4


def test_repr():
    assert repr(mt.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mt.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(mt.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=float64" in repr(mt.tensor([1.0], dtype=mt.float64))


def test_to_and_casts():
    x = mt.tensor([1.7, -2.2])
    assert x.to(mt.float64).dtype == np.float64 and x.double().dtype == np.float64
    assert x.long().tolist() == [1, -2] and x.to("cpu") is x
    assert x.to(mt.ones(1, dtype=mt.float64)).dtype == np.float64
    with pytest.raises(ValueError, match="neither a dtype nor a known device"):
        x.to("tpu")


def test_manual_seed_makes_random_ops_repeatable():
    mt.manual_seed(42)
    a = mt.randn(5).tolist(), mt.rand(3).tolist(), mt.randint(0, 100, (4,)).tolist()
    mt.manual_seed(42)
    b = mt.randn(5).tolist(), mt.rand(3).tolist(), mt.randint(0, 100, (4,)).tolist()
    assert a == b
    state = mt.get_rng_state()
    c = mt.randn(3).tolist()
    mt.set_rng_state(state)
    assert mt.randn(3).tolist() == c


def test_numpy_interop():
    x = mt.tensor([1.0, 2.0])
    assert isinstance(np.asarray(x), np.ndarray) and np.asarray(x).tolist() == [1.0, 2.0]
    y = np.float64(2.0) * x
    assert isinstance(y, mt.Tensor) and y.dtype == np.float32
    z = np.array([1.0, 1.0]) + x
    assert isinstance(z, mt.Tensor) and z.tolist() == [2.0, 3.0]


def test_setitem_and_in_place_ops():
    x = mt.zeros(2, 3)
    x[0, 1] = 5.0
    x[1] = mt.tensor([1.0, 2.0, 3.0])
    assert x.tolist() == [[0.0, 5.0, 0.0], [1.0, 2.0, 3.0]]
    x.mul_(2).add_(1).clamp_(max=6.0)
    assert x.tolist() == [[1.0, 6.0, 1.0], [3.0, 5.0, 6.0]]
    x.fill_(0.5)
    assert x.tolist() == [[0.5] * 3] * 2
    x.copy_(mt.ones(3))
    assert x.tolist() == [[1.0] * 3] * 2


def test_multinomial_samples_from_weights():
    mt.manual_seed(0)
    probs = mt.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    s = mt.multinomial(probs, 20, replacement=True).numpy()
    assert s.shape == (2, 20) and set(s[0]) == {1} and set(s[1]) <= {0, 2}


def test_tensor_methods_exist_with_pytorch_names():
    x = mt.randn(2, 3)
    for name in ["sum", "mean", "var", "std", "max", "min", "logsumexp", "softmax", "log_softmax", "exp",
                 "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "clamp", "reshape", "view", "transpose",
                 "permute", "unsqueeze", "squeeze", "expand", "flatten", "contiguous", "gather", "split",
                 "chunk", "masked_fill", "tril", "triu", "matmul", "detach", "requires_grad_", "backward",
                 "numpy", "item", "tolist", "zero_", "argmax"]:
        assert callable(getattr(x, name)), name
    v, i = x.max(dim=-1)
    assert v.shape == (2,) and i.dtype == np.int64
    assert x.sum(dim=1, keepdim=True).shape == (2, 1)
    assert len(x.split(2, dim=1)) == 2
