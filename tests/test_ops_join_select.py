"""cat, stack, split, chunk, where, masked_fill, tril/triu and dropout; the comparisons, logical ops,
isnan/isfinite, allclose and equal against Python's own operators applied one element at a time."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from .factories import check_op, covers, grid, op_test
from .strategies import arrays, broadcastable_shapes, shapes


@st.composite
def cat_shapes(draw):
    s = draw(shapes(min_dims=1))
    dim = draw(st.integers(-len(s), len(s) - 1))
    k = draw(st.integers(1, 3))
    out = []
    for _ in range(k):
        t = list(s)
        t[dim] = draw(st.integers(1, 3))
        out.append(tuple(t))
    return tuple(out), dim


@covers("cat")
def test_cat():
    @given(case=cat_shapes(), data=st.data())
    def inner(case, data):
        shps, dim = case
        xs = [data.draw(arrays(s)) for s in shps]
        check_op(lambda *ts: mt.cat(ts, dim=dim), lambda *a: np.concatenate(a, axis=dim), xs, {})

    inner()


@covers("stack")
def test_stack():
    @given(s=shapes(), k=st.integers(1, 3), data=st.data())
    def inner(s, k, data):
        dim = data.draw(st.integers(-len(s) - 1, len(s)))
        xs = [data.draw(arrays(s)) for _ in range(k)]
        check_op(lambda *ts: mt.stack(ts, dim=dim), lambda *a: np.stack(a, axis=dim), xs, {})

    inner()


def _pieces_kw(shp):
    nd = len(shp[0])
    return st.fixed_dictionaries({"size": st.integers(1, 4), "dim": st.integers(-nd, nd - 1),
                                  "k": st.integers(0, 3)})


def _split_ref(x, size, dim, k):
    pieces = np.split(x, range(size, x.shape[dim], size), axis=dim)
    return pieces[min(k, len(pieces) - 1)]


def _chunk_ref(x, size, dim, k):
    n = x.shape[dim]
    c = max(-(-n // size), 1)  # torch.chunk: pieces of ceil(n / chunks)
    return _split_ref(x, c, dim, k)


test_split = op_test(lambda x, size, dim, k: (p := x.split(size, dim))[min(k, len(p) - 1)], _split_ref,
                     shapes=shapes(min_dims=1).map(lambda s: (s,)), kwargs=_pieces_kw, covers="split")
test_chunk = op_test(lambda x, size, dim, k: (p := x.chunk(size, dim))[min(k, len(p) - 1)], _chunk_ref,
                     shapes=shapes(min_dims=1).map(lambda s: (s,)), kwargs=_pieces_kw, covers="chunk")


def test_split_with_sections():
    x = mt.arange(6.0)
    assert [p.tolist() for p in mt.split(x, [1, 2, 3])] == [[0.0], [1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="sum to 5"):
        mt.split(x, [2, 3])


@covers("where")
def test_where():
    @given(shps=broadcastable_shapes(3), data=st.data())
    def inner(shps, data):
        cond = data.draw(arrays(shps[0], elements=st.booleans())).astype(bool)
        a, b = data.draw(arrays(shps[1])), data.draw(arrays(shps[2]))
        check_op(lambda x, y: mt.where(mt.tensor(cond), x, y), lambda x, y: np.where(cond, x, y), [a, b], {})

    inner()


@covers("masked_fill")
def test_masked_fill():
    @given(shps=broadcastable_shapes(2), value=st.floats(-5, 5), data=st.data())
    def inner(shps, value, data):
        x_shape = np.broadcast_shapes(*shps)
        mask = data.draw(arrays(shps[0], elements=st.booleans())).astype(bool)
        x = data.draw(arrays(x_shape))
        check_op(lambda t: t.masked_fill(mt.tensor(mask), value), lambda a: np.where(mask, value, a), [x], {})

    inner()


test_tril = op_test(lambda x, diagonal: x.tril(diagonal), lambda x, diagonal: np.tril(x, diagonal),
                    shapes=shapes(min_dims=2).map(lambda s: (s,)),
                    kwargs=st.fixed_dictionaries({"diagonal": st.integers(-2, 2)}), covers="tril")
test_triu = op_test(lambda x, diagonal: mt.triu(x, diagonal), lambda x, diagonal: np.triu(x, diagonal),
                    shapes=shapes(min_dims=2).map(lambda s: (s,)),
                    kwargs=st.fixed_dictionaries({"diagonal": st.integers(-2, 2)}), covers="triu")


def _seeded_dropout(x, p):
    mt.manual_seed(1234)  # the same mask on every call, so central differences see one function
    return F.dropout(x, p=p)


test_dropout_gradient = op_test(_seeded_dropout, None, shapes=shapes().map(lambda s: (s,)),
                                kwargs=st.fixed_dictionaries({"p": st.sampled_from([0.1, 0.5, 0.9])}), covers="dropout")


@covers("dropout", grad=False)
def test_dropout_mask_scale_and_rate():
    mt.manual_seed(0)
    x = mt.ones(200_000, dtype=mt.float64, requires_grad=True)
    y = F.dropout(x, p=0.3)
    mask = y.grad_fn.mask
    np.testing.assert_array_equal(y.numpy(), np.where(mask, 1 / 0.7, 0.0))
    assert abs((~mask).mean() - 0.3) < 0.005  # 0.3 +- 5 standard deviations of the binomial rate
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(mask, 1 / 0.7, 0.0))


def test_dropout_is_identity_in_eval_and_zero_at_p_one():
    x = mt.randn(5)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 1.0).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, 1.5)


def test_comparisons_return_bool_tensors_without_grad():
    x = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad and m.tolist() == [False, True, True]
    assert (x == 2.0).tolist() == [False, True, False]
    assert (~m).tolist() == [True, False, False]
    assert ((x >= 2) & (x < 3)).tolist() == [False, True, False]


COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
               "ge": operator.ge}


def elementwise(fn, *arrays):
    """`fn` of Python scalars, one element at a time over the arrays' broadcast shape: a bool array."""
    cols = np.broadcast_arrays(*arrays)
    values = [fn(*xs) for xs in zip(*(c.reshape(-1).tolist() for c in cols), strict=True)]
    return np.array(values, dtype=bool).reshape(cols[0].shape)


@covers("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "isnan", "isfinite",
        grad=False)
@given(shps=broadcastable_shapes(2), data=st.data())
def test_comparisons_and_logic_match_python_element_by_element(shps, data):
    """Ties, NaN (every comparison False but ne) and infinities; broadcasting; no gradient recorded."""
    values = grid(-1, 1, 0.5) | st.sampled_from([math.nan, math.inf, -math.inf])
    a, b = (data.draw(arrays(s, elements=values), label=f"x{i}") for i, s in enumerate(shps))
    ta, tb = mt.tensor(a, requires_grad=True), mt.tensor(b)
    for name, fn in COMPARISONS.items():
        got = getattr(mt, name)(ta, tb)
        assert got.dtype == np.bool_ and not got.requires_grad, name
        np.testing.assert_array_equal(got.numpy(), elementwise(fn, a, b), err_msg=name)
        np.testing.assert_array_equal(fn(ta, tb).numpy(), got.numpy(), err_msg=f"the operator of {name}")
    np.testing.assert_array_equal((ta <= 0.5).numpy(), elementwise(operator.le, a, np.array(0.5)))
    pa, pb = a > 0, b < 0.5
    for name, fn in (("logical_and", lambda x, y: x and y), ("logical_or", lambda x, y: x or y)):
        got = getattr(mt, name)(mt.tensor(pa), mt.tensor(pb))
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got.numpy(), elementwise(fn, pa, pb), err_msg=name)
    np.testing.assert_array_equal(mt.logical_not(mt.tensor(pa)).numpy(), elementwise(operator.not_, pa))
    np.testing.assert_array_equal(mt.isnan(ta).numpy(), elementwise(math.isnan, a))
    np.testing.assert_array_equal(mt.isfinite(ta).numpy(), elementwise(math.isfinite, a))


@covers("allclose", "equal", grad=False)
@given(shps=broadcastable_shapes(2), data=st.data())
def test_allclose_and_equal_follow_their_definitions(shps, data):
    """allclose: |a - b| <= atol + rtol |b| everywhere (broadcasting; NaN is never close); equal: the same
    shape and the same elements."""
    a = data.draw(arrays(shps[0], elements=grid(-1, 1, 0.25) | st.just(math.nan)), label="a")
    delta = data.draw(arrays(shps[1], elements=st.sampled_from([0.0, 1e-9, -1e-7, 1e-5, -1e-3])), label="delta")
    b = a + delta
    rtol, atol = data.draw(st.sampled_from([(1e-5, 1e-8), (1e-3, 0.0), (0.0, 1e-6)]), label="rtol, atol")
    close = elementwise(lambda x, y: abs(x - y) <= atol + rtol * abs(y), a, b)
    assert mt.allclose(mt.tensor(a), mt.tensor(b), rtol=rtol, atol=atol) is bool(close.all())
    assert mt.equal(mt.tensor(a), mt.tensor(b)) is (a.shape == b.shape and bool(elementwise(operator.eq, a, b).all()))
    assert mt.equal(mt.tensor(b), mt.tensor(b)) is not bool(np.isnan(b).any())
