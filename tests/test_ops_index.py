"""Indexing, gather and embedding: forward against NumPy, gradients against central differences,
repeated indices accumulating."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from . import reference as ref
from .factories import check_op, covers, op_test
from .strategies import arrays, shapes


@st.composite
def basic_index(draw, shape):
    """A tuple of ints, slices (any step sign), None and Ellipsis valid for `shape`."""
    parts = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start, stop = draw(st.integers(-n, n)), draw(st.integers(-n, n))
            parts.append(slice(start, stop, draw(st.sampled_from([1, 2, -1]))))
        else:
            parts.append(slice(None))
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), None)
    if parts and draw(st.booleans()):
        parts = [Ellipsis, *parts[1:]]
    return tuple(parts)


test_getitem_basic = op_test(lambda x, index: x[index], lambda x, index: x[index],
                             shapes=shapes(min_dims=1).map(lambda s: (s,)),
                             kwargs=lambda s: basic_index(s[0]).map(lambda i: {"index": i}), covers="getitem")


def int_array_kw(shp):
    n = shp[0][0]
    return st.lists(st.integers(-n, n - 1), min_size=1, max_size=6).map(lambda ix: {"index": np.array(ix)})


# repeated indices in `index` make the backward scatter-add (tested against central differences)
test_getitem_int_array = op_test(lambda x, index: x[index], lambda x, index: x[index],
                                 shapes=shapes(min_dims=1).map(lambda s: (s,)), kwargs=int_array_kw, covers="getitem")
test_getitem_tensor_index = op_test(lambda x, index: x[mt.tensor(index), 0:1], lambda x, index: x[index, 0:1],
                                    shapes=shapes(min_dims=2).map(lambda s: (s,)), kwargs=int_array_kw,
                                    covers="getitem")


def bool_mask_kw(shp):
    return arrays(shp[0], elements=st.booleans()).map(lambda m: {"mask": m.astype(bool)})


test_getitem_bool_mask = op_test(lambda x, mask: x[mt.tensor(mask)], lambda x, mask: x[mask],
                                 shapes=shapes(min_dims=1).map(lambda s: (s,)), kwargs=bool_mask_kw, covers="getitem")


@st.composite
def gather_case(draw):
    s = draw(shapes(min_dims=1))
    dim = draw(st.integers(-len(s), len(s) - 1))
    idx_shape = tuple(draw(st.integers(1, n)) if i != dim % len(s) else draw(st.integers(1, 5))
                      for i, n in enumerate(s))
    index = draw(arrays(idx_shape, elements=st.integers(0, s[dim] - 1)).map(lambda a: a.astype(np.int64)))
    return (s,), {"dim": dim, "index": index}


_gather = gather_case()


@covers("gather")
def test_gather():
    @given(case=gather_case(), data=st.data())
    def inner(case, data):
        (s,), kw = case
        x = data.draw(arrays(s))
        check_op(lambda t, dim, index: t.gather(dim, mt.tensor(index)),
                 lambda a, dim, index: ref.gather(a, dim % a.ndim, index), [x], kw)

    inner()


@covers("embedding")
def test_embedding():
    @given(data=st.data())
    def inner(data):
        V, C = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
        ids = data.draw(arrays(shapes(max_dims=2), elements=st.integers(0, V - 1))).astype(np.int64)
        w = data.draw(arrays((V, C)))
        check_op(lambda t: F.embedding(mt.tensor(ids), t), lambda a: a[ids], [w], {})

    inner()


def test_embedding_repeated_ids_accumulate_and_padding_row_gets_no_gradient():
    w = mt.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    ids = mt.tensor([[1, 1, 3], [0, 1, 3]])
    out = F.embedding(ids, w, padding_idx=3)
    np.testing.assert_array_equal(out.numpy(), w.numpy()[ids.numpy()])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1, 1, 1], [3, 3, 3], [0, 0, 0], [0, 0, 0]])


def test_gather_repeated_index_accumulates():
    x = mt.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y = x.gather(1, mt.tensor([[2, 2, 0, 2]]))
    assert y.tolist() == [[3.0, 3.0, 1.0, 3.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 3.0]]


def test_split_pieces_backward_sum_into_one_gradient():
    x = mt.arange(10.0, dtype=mt.float64).requires_grad_()
    a, b, c = x.split(4)
    assert [t.shape for t in (a, b, c)] == [(4,), (4,), (2,)]
    (a.sum() * 1 + b.sum() * 2 + c.sum() * 3).backward()
    assert x.grad.tolist() == [1.0] * 4 + [2.0] * 4 + [3.0] * 2


@pytest.mark.parametrize("index", [5, -6, (0, 3), [0, 9]])
def test_index_out_of_range_names_the_bound(index):
    x = mt.zeros(5, 3)
    with pytest.raises(IndexError, match=r"out of range for dimension \d with size \d"):
        x[index]


def test_embedding_out_of_range_and_wrong_dtype():
    w = mt.zeros(4, 2)
    msg = r"token id 4 is out of range for an embedding with 4 rows \(valid ids: 0..3\)"
    with pytest.raises(IndexError, match=msg):
        F.embedding(mt.tensor([0, 4]), w)
    with pytest.raises(IndexError, match="token id -1"):
        F.embedding(mt.tensor([-1]), w)
    with pytest.raises(TypeError, match="integer tensor"):
        F.embedding(mt.tensor([0.0]), w)


def test_gather_out_of_range():
    with pytest.raises(IndexError, match="gather: index 3 is out of range for dimension 1 with size 3"):
        mt.zeros(2, 3).gather(1, mt.tensor([[0, 3]]))
