"""Matmul and the shape ops: forward against NumPy/einsum, gradients against central differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt

from . import reference as ref
from .factories import covers, op_test
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


test_matmul = op_test(lambda a, b: a @ b, ref.matmul, shapes=matmul_shapes(), covers="matmul")
test_matmul_rmatmul_numpy = op_test(lambda a: np.eye(a.shape[-2]) @ a, lambda a: a,
                                    shapes=shapes(min_dims=2).map(lambda s: (s,)), covers="matmul")


def reshape_kw(shp):
    s = shp[0]
    n = int(np.prod(s))
    return st.sampled_from([(-1,), (n,), tuple(reversed(s)) or (1,), (1, *s), (n, 1)]).map(
        lambda t: {"shape": t})


test_reshape = op_test(lambda x, shape: x.reshape(shape), lambda x, shape: np.reshape(x, shape),
                       shapes=one, kwargs=reshape_kw, covers="reshape")
test_view_varargs = op_test(lambda x: x.view(-1, 1), lambda x: np.reshape(x, (-1, 1)), shapes=one)


def two_dims(shp):
    nd = len(shp[0])
    return st.fixed_dictionaries({"d0": st.integers(-nd, nd - 1), "d1": st.integers(-nd, nd - 1)})


test_transpose = op_test(lambda x, d0, d1: x.transpose(d0, d1), lambda x, d0, d1: np.swapaxes(x, d0, d1),
                         shapes=nd1, kwargs=two_dims, covers="transpose")
test_permute = op_test(lambda x, dims: x.permute(*dims), lambda x, dims: np.transpose(x, dims), shapes=one,
                       kwargs=lambda s: st.permutations(range(len(s[0]))).map(lambda p: {"dims": tuple(p)}),
                       covers="permute")
test_T = op_test(lambda x: x.T, lambda x: x.T, shapes=one, covers="transpose")


def _roll_ref(x, shifts, dims):
    """out[i] = x[(i - shift) mod n] along each rolled dim, by index arithmetic (not np.roll)."""
    if dims is None:
        n = x.size
        return x.reshape(-1)[(np.arange(n) - shifts[0]) % max(n, 1)].reshape(x.shape)
    for s, d in zip(shifts, dims, strict=True):
        n = x.shape[d]
        x = np.take(x, (np.arange(n) - s) % n, axis=d)
    return x


def _roll_kwargs(s):
    nd = len(s[0])
    return st.one_of(
        st.fixed_dictionaries({"shifts": st.tuples(st.integers(-7, 7)), "dims": st.just(None)}),
        st.lists(st.tuples(st.integers(-7, 7), st.integers(-nd, nd - 1)), min_size=1, max_size=3).map(
            lambda pairs: {"shifts": tuple(p[0] for p in pairs), "dims": tuple(p[1] for p in pairs)}))


test_roll = op_test(lambda x, shifts, dims: x.roll(shifts, dims), _roll_ref, shapes=nd1, kwargs=_roll_kwargs,
                    covers="roll")


def test_roll_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(24.0).reshape(2, 3, 4)
    for shifts, dims in [(1, None), (-5, None), (1, 0), ((2, -1), (2, 1)), ((1, 1), (0, 0))]:
        ours = mt.tensor(x).roll(shifts, dims).numpy()
        np.testing.assert_array_equal(ours, torch.roll(torch.tensor(x), shifts, dims).numpy())
test_unsqueeze = op_test(lambda x, dim: x.unsqueeze(dim), lambda x, dim: np.expand_dims(x, dim), shapes=one,
                         kwargs=lambda s: dim_kwargs(s, extra=1), covers="unsqueeze")
test_squeeze_all = op_test(lambda x: x.squeeze(), np.squeeze, shapes=one, covers="squeeze")


def _squeeze_ref(x, dim):
    return np.squeeze(x, dim) if x.shape[dim] == 1 else x


test_squeeze_dim = op_test(lambda x, dim: x.squeeze(dim), _squeeze_ref, shapes=nd1,
                           kwargs=dim_kwargs, covers="squeeze")


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
                       kwargs=flatten_kw, covers="flatten")
test_contiguous_of_transposed = op_test(lambda x: x.T.contiguous(), lambda x: np.array(x.T, order="C"),
                                        shapes=one, covers="contiguous")
test_clone = op_test(lambda x: x.clone(), lambda x: x.copy(), shapes=one, covers="clone")


@covers("expand")
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


# ------------------------------------------------------------------------------------------------------
# view: never copies, and raises as PyTorch does when the shape cannot be laid over the strides

VIEW_ERROR = "view size is not compatible with input tensor's size and stride"


@st.composite
def strided_views(draw):
    """(base shape, permutation, slices, expanded sizes, target): a layout PyTorch can also make (a
    contiguous base, permuted, sliced with steps and offsets, size-1 dims expanded) and a target shape of the
    same size, reached by merging, splitting, adding or removing dims, or drawn at random."""
    base = draw(shapes(min_dims=1, max_dims=4, max_side=4))
    perm = tuple(draw(st.permutations(range(len(base)))))
    slices = tuple(draw(st.sampled_from([slice(None), slice(None), slice(None, None, 2), slice(1, None), slice(0, 1)]))
                   for _ in base)
    shape = [len(range(*s.indices(n))) for s, n in zip(slices, (base[p] for p in perm), strict=True)]
    sizes = tuple(draw(st.sampled_from([1, 3])) if n == 1 else n for n in shape)
    target = list(sizes)
    for _ in range(draw(st.integers(1, 3))):
        step = draw(st.sampled_from(["merge", "split", "one", "drop_one", "random"]))
        if step == "merge" and len(target) > 1:
            i = draw(st.integers(0, len(target) - 2))
            target[i:i + 2] = [target[i] * target[i + 1]]
        elif step == "split" and target:
            i = draw(st.integers(0, len(target) - 1))
            f = draw(st.sampled_from([d for d in range(1, target[i] + 1) if target[i] % d == 0] or [1]))
            target[i:i + 1] = [f, target[i] // f] if target[i] else [0, 1]
        elif step == "one":
            target.insert(draw(st.integers(0, len(target))), 1)
        elif step == "drop_one" and 1 in target:
            target.remove(1)
        elif step == "random":
            n = int(np.prod(target))
            target = list(draw(st.permutations(_prime_factors(n) if n else [0])))
    if target and draw(st.booleans()) and 0 not in target:
        target[draw(st.integers(0, len(target) - 1))] = -1
    return base, perm, slices, sizes, tuple(target)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _strided(lib, case):
    base, perm, slices, sizes, _ = case
    x = lib.tensor(np.arange(float(np.prod(base))).reshape(base))
    return x.permute(*perm)[slices].expand(*sizes)


@given(case=strided_views())
def test_view_follows_the_stride_rule(case):
    """NumPy's reshape(copy=False) applies the same rule: the oracle when PyTorch is not installed."""
    x, target = _strided(mt, case), case[-1]
    try:
        expected = np.reshape(x.numpy(), target, copy=False)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(RuntimeError, match=VIEW_ERROR):
            x.view(target)
    else:
        v = x.view(*target)
        np.testing.assert_array_equal(v.numpy(), expected)
        assert v.numel() == 0 or np.shares_memory(v.numpy(), x.numpy())
    np.testing.assert_array_equal(x.reshape(target).numpy(), np.reshape(x.numpy(), target))


def test_view_decides_as_torch_does():
    torch = pytest.importorskip("torch")

    @given(case=strided_views())
    def inner(case):
        x, tx, target = _strided(mt, case), _strided(torch, case), case[-1]
        try:
            expected = tx.view(target).numpy()
        except RuntimeError as err:
            assert VIEW_ERROR in str(err)
            expected = None
        if expected is None:
            with pytest.raises(RuntimeError, match=VIEW_ERROR):
                x.view(target)
        else:
            np.testing.assert_array_equal(x.view(target).numpy(), expected)

    inner()


def test_view_of_transposed_heads_raises_like_torch():
    B, nh, T, hs = 2, 3, 4, 5
    y = mt.randn(B, nh, T, hs).transpose(1, 2)              # (B, T, nh, hs), not contiguous
    with pytest.raises(RuntimeError) as err:
        y.view(B, T, nh * hs)
    assert str(err.value) == ("view size is not compatible with input tensor's size and stride (at least one "
                              "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    expected = np.swapaxes(y.numpy(), 1, 2).reshape(B, nh, T, hs).transpose(0, 2, 1, 3).reshape(B, T, -1)
    np.testing.assert_array_equal(y.reshape(B, T, nh * hs).numpy(), expected)
    np.testing.assert_array_equal(y.contiguous().view(B, T, nh * hs).numpy(), expected)
    # dims the transpose did not touch may still be split or merged
    v = y.view(B, T, nh, hs // 5, 5)
    assert np.shares_memory(v.numpy(), y.numpy())


def test_view_of_strided_and_expanded_tensors():
    x = mt.arange(24.0).reshape(4, 6)
    assert x[:, ::2].view(12).tolist() == list(range(0, 24, 2))  # strides (6, 2): one step of 2 throughout
    y = x[:, :3]                                             # (4, 3), strides (6, 1): rows with gaps between
    with pytest.raises(RuntimeError, match=VIEW_ERROR):
        y.view(12)
    assert y.view(2, 2, 3).tolist() == y.numpy().reshape(2, 2, 3).tolist()
    e = mt.ones(3, 1).expand(3, 4)                           # a stride of 0, as torch's expand
    with pytest.raises(RuntimeError, match=VIEW_ERROR):
        e.view(12)
    assert e.view(3, 2, 2).shape == (3, 2, 2)
    assert mt.ones(2, 3).view(-1).shape == (6,)
    with pytest.raises(ValueError, match="invalid"):
        mt.ones(2, 3).view(4)


def test_view_shares_memory_and_dtype_views():
    x = mt.zeros(2, 3)
    v = x.view(3, 2)
    with mt.no_grad():
        v[0, 0] = 5.0
    assert x[0, 0].item() == 5.0 and v._version is x._version
    assert x.view(x.dtype) is x
    with pytest.raises(NotImplementedError, match="view\\(dtype\\)"):
        x.view(mt.int32)


test_view_of_permuted_grad = op_test(lambda x: x.permute(2, 0, 1).view(x.shape[2], -1),
                                     lambda x: np.transpose(x, (2, 0, 1)).reshape(x.shape[2], -1),
                                     shapes=shapes(min_dims=3, max_dims=3).map(lambda s: (s,)))
