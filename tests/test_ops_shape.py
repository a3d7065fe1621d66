"""Matmul and the shape ops: forward against NumPy/einsum, gradients against central differences."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import minitransformer as mt

from . import reference as ref
from .factories import op_test
from .strategies import dim_kwargs, shapes

one = shapes().map(lambda s: (s,))
nd1 = shapes(min_dims=1).map(lambda s: (s,))


@st.composite
def matmul_shapes(draw):
    """Shapes for a @ b: 1-D or batched operands whose batch dims broadcast."""
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(st.sampled_from([((), ()), ((2,), ()), ((), (3,)), ((2, 1), (3,)), ((2,), (2,)),
                                             ((1, 3), (2, 1))]))
    a = (k,) if draw(st.booleans()) and not batch_a else (*batch_a, m, k)
    b = (k,) if draw(st.booleans()) and not batch_b else (*batch_b, k, n)
    return a, b


test_matmul = op_test(lambda a, b: a @ b, ref.matmul, shapes=matmul_shapes())
test_matmul_rmatmul_numpy = op_test(lambda a: np.eye(a.shape[-2]) @ a, lambda a: a,
                                    shapes=shapes(min_dims=2).map(lambda s: (s,)))


def reshape_kw(shp):
    s = shp[0]
    n = int(np.prod(s))
    return st.sampled_from([(-1,), (n,), tuple(reversed(s)) or (1,), (1, *s), (n, 1)]).map(
        lambda t: {"shape": t})


test_reshape = op_test(lambda x, shape: x.reshape(shape), lambda x, shape: np.reshape(x, shape),
                       shapes=one, kwargs=reshape_kw)
test_view_varargs = op_test(lambda x: x.view(-1, 1), lambda x: np.reshape(x, (-1, 1)), shapes=one)


def two_dims(shp):
    nd = len(shp[0])
    return st.fixed_dictionaries({"d0": st.integers(-nd, nd - 1), "d1": st.integers(-nd, nd - 1)})


test_transpose = op_test(lambda x, d0, d1: x.transpose(d0, d1), lambda x, d0, d1: np.swapaxes(x, d0, d1),
                         shapes=nd1, kwargs=two_dims)
test_permute = op_test(lambda x, dims: x.permute(*dims), lambda x, dims: np.transpose(x, dims), shapes=one,
                       kwargs=lambda s: st.permutations(range(len(s[0]))).map(lambda p: {"dims": tuple(p)}))
test_T = op_test(lambda x: x.T, lambda x: x.T, shapes=one)
test_unsqueeze = op_test(lambda x, dim: x.unsqueeze(dim), lambda x, dim: np.expand_dims(x, dim), shapes=one,
                         kwargs=lambda s: dim_kwargs(s, extra=1))
test_squeeze_all = op_test(lambda x: x.squeeze(), np.squeeze, shapes=one)


def _squeeze_ref(x, dim):
    return np.squeeze(x, dim) if x.shape[dim] == 1 else x


test_squeeze_dim = op_test(lambda x, dim: x.squeeze(dim), _squeeze_ref, shapes=nd1,
                           kwargs=dim_kwargs)


@st.composite
def expand_case(draw):
    s = draw(shapes(max_side=3))
    target = [draw(st.integers(1, 3)) if n == 1 else n for n in s]
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    return (s,), {"sizes": tuple(lead + target)}




def test_expand_with_minus_one_keeps_the_size():
    x = mt.ones(3, 1, requires_grad=True)
    y = x.expand(-1, 4)
    assert y.shape == (3, 4)
    y.sum().backward()
    assert x.grad.tolist() == [[4.0], [4.0], [4.0]]


def flatten_kw(shp):
    nd = max(len(shp[0]), 1)
    return st.tuples(st.integers(0, nd - 1), st.integers(0, nd - 1)).map(
        lambda t: {"start_dim": min(t), "end_dim": max(t)})


def _flatten_ref(x, start_dim, end_dim):
    if x.ndim == 0:
        return x.reshape(1)
    return x.reshape(x.shape[:start_dim] + (-1,) + x.shape[end_dim + 1:])


test_flatten = op_test(lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim), _flatten_ref, shapes=one,
                       kwargs=flatten_kw)
test_contiguous_of_transposed = op_test(lambda x: x.T.contiguous(), lambda x: np.array(x.T, order="C"),
                                        shapes=one)
test_clone = op_test(lambda x: x.clone(), lambda x: x.copy(), shapes=one)


def test_expand_matches_broadcast():
    import hypothesis

    @hypothesis.given(case=expand_case())
    def inner(case):
        (s,), kw = case
        x = np.random.default_rng(0).standard_normal(s)
        from .factories import check_op

        check_op(lambda t, sizes: t.expand(*sizes), lambda a, sizes: np.broadcast_to(a, sizes), [x], kw)

    inner()


def test_contiguous_returns_self_when_already_contiguous():
    x = mt.ones(2, 3)
    assert x.contiguous() is x
    assert x.T.contiguous().data.flags.c_contiguous
