"""F.pad, F.one_hot and mt.einsum: forward against NumPy (np.pad, np.eye, np.einsum), gradients against
central differences (tests/factories.check_op), and, when PyTorch is installed, values, gradients and
errors against torch itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from .factories import check_op, covers
from .strategies import arrays
from .tolerances import FORWARD_F64, GRAD_F64

MODES = ("constant", "reflect", "replicate", "circular")


# ------------------------------------------------------------------------------------------------------
# pad


def _pair(mode: str, n: int) -> st.SearchStrategy:
    """(left, right) for one dim of size n that torch accepts in `mode` (negative values crop)."""
    if mode == "constant":
        return st.tuples(st.integers(-n, 2), st.integers(-n, 2)).filter(lambda p: n + p[0] + p[1] >= 0)
    if mode == "reflect":
        return st.tuples(st.integers(1 - n, n - 1), st.integers(1 - n, n - 1)).filter(lambda p: n + p[0] + p[1] >= 1)
    if mode == "replicate":
        return st.tuples(st.integers(1 - n, 3), st.integers(1 - n, 3)).filter(lambda p: n + p[0] + p[1] >= 1)

    def wraps_once(p: tuple[int, int]) -> bool:
        left = n - max(-p[0], 0) - max(-p[1], 0)  # circular wraps around what cropping leaves
        return n + p[0] + p[1] >= 0 and left >= 0 and p[0] <= max(left, 0) and p[1] <= max(left, 0)

    return st.tuples(st.integers(-n, n), st.integers(-n, n)).filter(wraps_once)


@st.composite
def pad_cases(draw, modes=MODES):
    """(shape, pad, mode, value): constant pads any dims of a 0-4-D tensor; the other modes pad the last
    k dims (k = 1..3) of a (k+1)- or (k+2)-D tensor."""
    mode = draw(st.sampled_from(modes))
    if mode == "constant":
        ndim = draw(st.integers(0, 4))
        k = draw(st.integers(0, min(ndim, 3)))
    else:
        k = draw(st.integers(1, 3))
        ndim = k + draw(st.integers(1, 2))
    shape = tuple(draw(st.integers(1, 4 if i >= ndim - k else 2)) for i in range(ndim))
    pad: list[int] = []
    for i in range(k):  # the last dim first, as torch lists them
        pad += draw(_pair(mode, shape[ndim - 1 - i]))
    value = draw(st.sampled_from([None, 0.0, -1.5, 2.0])) if mode == "constant" else None
    return shape, tuple(pad), mode, value


def pad_ref(x: np.ndarray, pad: tuple[int, ...], mode: str, value: float | None) -> np.ndarray:
    """np.pad for the positive amounts, slicing for the negative ones. Reflect and replicate mirror about the
    original edges (pad, then crop); circular wraps around the cropped tensor (crop, then pad)."""
    if x.ndim == 0:
        return x.copy()
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]

    def crop(a: np.ndarray) -> np.ndarray:
        return a[tuple(slice(max(-lo, 0), a.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(pairs))]

    if mode == "circular":
        return np.pad(crop(x), grow, mode="wrap")
    if mode == "constant":
        return crop(np.pad(x, grow, mode="constant", constant_values=value or 0.0))
    return crop(np.pad(x, grow, mode={"reflect": "reflect", "replicate": "edge"}[mode]))


def _pad(x, pad, mode, value):
    return F.pad(x, pad, mode=mode, value=value)


@covers("pad")
@given(data=st.data())
def test_pad_forward_and_grad(data):
    shape, pad, mode, value = data.draw(pad_cases(), label="case")
    x = data.draw(arrays(shape), label="x")
    check_op(_pad, pad_ref, [x], {"pad": pad, "mode": mode, "value": value})


@pytest.mark.parametrize("mode", MODES)
def test_pad_negative_amounts_crop(mode):
    x = np.arange(10.0).reshape(1, 2, 5)
    check_op(_pad, pad_ref, [x], {"pad": (-1, 3), "mode": mode, "value": None})
    check_op(_pad, pad_ref, [x], {"pad": (2, -3), "mode": mode, "value": None})


def test_pad_examples():
    x = mt.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    assert F.pad(x, (2, 1)).tolist() == [[[0, 0, 0, 1, 2, 3, 0]]]
    assert F.pad(x, (1, 1), value=-1.0).tolist() == [[[-1, 0, 1, 2, 3, -1]]]
    assert F.pad(x, (2, 2), mode="reflect").tolist() == [[[2, 1, 0, 1, 2, 3, 2, 1]]]
    assert F.pad(x, (2, 2), mode="replicate").tolist() == [[[0, 0, 0, 1, 2, 3, 3, 3]]]
    assert F.pad(x, (2, 2), mode="circular").tolist() == [[[2, 3, 0, 1, 2, 3, 0, 1]]]
    assert F.pad(x, (-1, -1)).tolist() == [[[1, 2]]]
    assert F.pad(x, (1, -2), mode="circular").tolist() == [[[1, 0, 1]]]  # wraps the cropped [0, 1]
    assert mt.nn.functional.pad is F.pad


def test_pad_integer_tensor_and_zero_dims():
    ids = mt.tensor([[1, 2], [3, 4]])
    out = F.pad(ids, (1, 0, 0, 1), value=7)
    assert out.dtype == np.int64 and out.tolist() == [[7, 1, 2], [7, 3, 4], [7, 7, 7]]
    assert F.pad(mt.tensor(2.0), ()).item() == 2.0
    assert F.pad(mt.ones(2, 3), (-3, 0)).shape == (2, 0)


@pytest.mark.parametrize("args, kwargs, error, match", [
    (((1,),), {}, ValueError, "divisible by 2"),
    (((1, 1) * 4,), {}, ValueError, "two times the input dimension"),
    (((-3, -1),), {}, ValueError, "negative size"),
    (((3, 1),), {"mode": "reflect"}, ValueError, "less than the corresponding input dimension"),
    (((-2, -1),), {"mode": "replicate"}, ValueError, "too small"),
    (((4, 0),), {"mode": "circular"}, ValueError, "wraps around more than once"),
    (((1, 1),), {"mode": "reflect", "value": 2.0}, ValueError, "doesn't take in value"),
    (((1, 1),), {"mode": "wrap"}, NotImplementedError, "unrecognised padding mode"),
    (((1, 1, 1, 1),), {"mode": "reflect"}, NotImplementedError, "not supported for 2D input"),
])
def test_pad_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        F.pad(mt.ones(2, 3), *args, **kwargs)


def test_pad_mode_dims_are_limited_as_in_torch():
    with pytest.raises(NotImplementedError, match="not supported for 1D input"):
        F.pad(mt.ones(3), (1, 1), mode="replicate")
    with pytest.raises(NotImplementedError, match="not supported for 5D input"):
        F.pad(mt.ones(1, 1, 1, 1, 3), (1, 1), mode="circular")
    assert F.pad(mt.ones(1, 1, 1, 1, 3), (1, 1, 1, 1, 1, 1), mode="circular").shape == (1, 1, 3, 3, 5)


def test_pad_matches_torch():
    torch = pytest.importorskip("torch")

    @given(data=st.data())
    def inner(data):
        shape, pad, mode, value = data.draw(pad_cases(), label="case")
        x = np.random.default_rng(len(shape)).standard_normal(shape)
        tx, mx = torch.tensor(x, requires_grad=True), mt.tensor(x, requires_grad=True)
        tout = torch.nn.functional.pad(tx, pad, mode=mode, value=value)
        mout = F.pad(mx, pad, mode=mode, value=value)
        np.testing.assert_array_equal(mout.numpy(), tout.detach().numpy())
        g = np.random.default_rng(1).standard_normal(tout.shape)
        tout.backward(torch.tensor(g))
        mout.backward(mt.tensor(g))
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)

    inner()


def test_pad_rejects_what_torch_rejects():
    torch = pytest.importorskip("torch")
    cases = [((2, 3), (1,), "constant"), ((2, 3), (1, 1) * 3, "constant"), ((2, 3), (-3, -1), "constant"),
             ((1, 2, 3), (3, 0), "reflect"), ((1, 2, 3), (-2, -1), "reflect"), ((1, 3), (-3, 0), "replicate"),
             ((1, 3), (4, 0), "circular"), ((3,), (1, 1), "reflect"), ((1, 1, 1, 1, 3), (1, 1), "replicate"),
             ((2, 3), (1, 1, 1, 1), "circular")]
    for shape, pad, mode in cases:
        with pytest.raises((RuntimeError, NotImplementedError)):
            torch.nn.functional.pad(torch.ones(shape), pad, mode=mode)
        with pytest.raises((ValueError, NotImplementedError)):
            F.pad(mt.ones(*shape), pad, mode=mode)


# ------------------------------------------------------------------------------------------------------
# one_hot


@covers("one_hot", grad=False)
@given(data=st.data())
def test_one_hot_matches_eye(data):
    shape = data.draw(st.lists(st.integers(1, 4), max_size=3).map(tuple), label="shape")
    idx = np.asarray(data.draw(st.lists(st.integers(0, 5), min_size=int(np.prod(shape)),
                                        max_size=int(np.prod(shape))), label="ids"), dtype=np.int64).reshape(shape)
    nc = data.draw(st.sampled_from([-1, int(idx.max()) + 1, 8]), label="num_classes")
    out = F.one_hot(mt.tensor(idx), nc)
    n = int(idx.max()) + 1 if nc == -1 else nc
    assert out.dtype == np.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.eye(n, dtype=np.int64)[idx])


def test_one_hot_errors_and_empty():
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(mt.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="smaller than num_classes"):
        F.one_hot(mt.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="empty tensor"):
        F.one_hot(mt.zeros(0).long())
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(mt.tensor([0.0, 1.0]))
    assert F.one_hot(mt.zeros(0).long(), 3).shape == (0, 3)
    assert F.one_hot(mt.tensor(2), 4).tolist() == [0, 0, 1, 0]
    assert "one_hot" in mt.ops.NON_DIFFERENTIABLE


def test_one_hot_matches_torch():
    torch = pytest.importorskip("torch")
    idx = np.array([[0, 4, 2], [1, 1, 3]])
    for nc in (-1, 5, 7):
        np.testing.assert_array_equal(F.one_hot(mt.tensor(idx), nc).numpy(),
                                      torch.nn.functional.one_hot(torch.tensor(idx), nc).numpy())


# ------------------------------------------------------------------------------------------------------
# einsum

POOL = "abcijkXY"


@st.composite
def einsum_cases(draw, broadcast_named: bool = False):
    """(equation, shapes, ref_equation, ell_sum): 1-3 operands over a few letters (upper case included),
    letters repeated within an operand (diagonals), letters left out of the output (sums), '...' with
    size-1 dims that broadcast, implicit or explicit output. With broadcast_named, a named dim may also
    be 1 where the letter is larger elsewhere (torch allows it, NumPy does not).

    ref_equation is what np.einsum accepts: NumPy refuses input ellipses missing from an explicit output,
    so the reference keeps them in front (ell_sum of them) and the test sums them."""
    n_ops = draw(st.integers(1, 3))
    letters = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True))
    size = {c: draw(st.integers(1, 3)) for c in letters}
    ell_sizes = draw(st.lists(st.integers(1, 3), max_size=2))
    terms, shapes, any_ell, n_ell = [], [], False, 0
    for _ in range(n_ops):
        term = draw(st.lists(st.sampled_from(letters), max_size=3))
        dims = []
        for c in dict.fromkeys(term):
            n = 1 if broadcast_named and draw(st.integers(0, 3)) == 0 else size[c]
            dims.append((c, n))
        shape = [dict(dims)[c] for c in term]
        if ell_sizes and draw(st.booleans()):
            k = draw(st.integers(0, len(ell_sizes)))  # right-aligned: the last k ellipsis dims
            e = [n if draw(st.integers(0, 3)) else 1 for n in ell_sizes[len(ell_sizes) - k:]]
            at = draw(st.integers(0, len(term)))
            term = term[:at] + ["..."] + term[at:]
            shape = shape[:at] + e + shape[at:]
            any_ell, n_ell = True, max(n_ell, k)
        terms.append("".join(term))
        shapes.append(tuple(shape))
    lhs = ",".join(terms)
    if draw(st.booleans()):
        return lhs, shapes, lhs, 0
    used = list(dict.fromkeys(c for c in lhs if c in POOL))
    out = draw(st.permutations(used))[:draw(st.integers(0, len(used)))]
    keep_ell = any_ell and draw(st.booleans())
    if keep_ell:
        at = draw(st.integers(0, len(out)))
        out = out[:at] + ["..."] + out[at:]
    rhs = "".join(out)
    if any_ell and not keep_ell:
        return f"{lhs}->{rhs}", shapes, f"{lhs}->...{rhs}", n_ell
    return f"{lhs}->{rhs}", shapes, f"{lhs}->{rhs}", 0


def _einsum_ref(ref_eq: str, ell_sum: int):
    def ref(*xs, equation):
        out = np.einsum(ref_eq, *xs)
        return out.sum(axis=tuple(range(ell_sum))) if ell_sum else out
    return ref


def _einsum(*xs, equation):
    return mt.einsum(equation, *xs)


@covers("einsum")
@given(data=st.data())
def test_einsum_forward_and_grad(data):
    eq, shapes, ref_eq, ell_sum = data.draw(einsum_cases(), label="case")
    xs = [data.draw(arrays(s), label=f"x{i}") for i, s in enumerate(shapes)]
    check_op(_einsum, _einsum_ref(ref_eq, ell_sum), xs, {"equation": eq})


@pytest.mark.parametrize("eq, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("iji->j", [(3, 2, 3)]),
    ("ij,k->i", [(2, 3), (4,)]), ("iij,jk->ki", [(3, 3, 2), (2, 4)]),
    ("bij,bjk,bkl->bil", [(2, 3, 4), (2, 4, 2), (2, 2, 3)]), ("...ij,...jk", [(2, 1, 2, 3), (4, 3, 2)]),
    ("...i->i", [(2, 3, 4)]), ("i,->i", [(3,), ()]), ("ij->ji", [(2, 3)]), ("i,i,i->", [(3,), (3,), (3,)]),
    ("Ab,bA", [(2, 3), (3, 2)]),
])
def test_einsum_cases(eq, shapes):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s) for s in shapes]
    ref_eq, ell_sum = (eq.replace("->i", "->...i"), 2) if eq == "...i->i" else (eq, 0)
    check_op(_einsum, _einsum_ref(ref_eq, ell_sum), xs, {"equation": eq})


def test_einsum_takes_a_list_and_records_the_op():
    a, b = mt.ones(2, 3, requires_grad=True), mt.ones(3, 4)
    out = mt.einsum("ij,jk->ik", [a, b])
    assert out.shape == (2, 4) and out.requires_grad and "einsum" in mt.ops.OPS
    out.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.full((2, 3), 4.0))
    assert b.grad is None


def test_einsum_output_owns_its_memory():
    x = mt.ones(2, 3)
    y = mt.einsum("ij->ji", x)
    assert not np.shares_memory(y.numpy(), x.numpy())


@pytest.mark.parametrize("eq, shapes, match", [
    ("ij,jk->ik", [(2, 3)], "fewer operands"),
    ("ij->ij", [(2, 3), (3, 4)], "more operands"),
    ("ijk,jk->ik", [(2, 3), (3, 4)], "number of subscripts"),
    ("ij,kk->ik", [(2, 3), (3, 4)], "repeated for operand 1"),
    ("ij,jk->ii", [(2, 3), (3, 4)], "appears more than once"),
    ("ij,jk->iz", [(2, 3), (3, 4)], "does not appear"),
    ("i,i->i", [(2,), (3,)], "does not broadcast"),
    ("i.j", [(2, 3)], "not part of any ellipsis"),
    ("...i...", [(2, 3)], "already found"),
    ("i1", [(2, 3)], "subscripts must be in"),
])
def test_einsum_errors(eq, shapes, match):
    with pytest.raises(ValueError, match=match):
        mt.einsum(eq, *[mt.ones(*s) for s in shapes])


def test_einsum_dtype_mismatch_raises():
    with pytest.raises(TypeError, match="dtype"):
        mt.einsum("i,i->", mt.ones(2), mt.ones(2).double())


def test_einsum_matches_torch():
    torch = pytest.importorskip("torch")

    @given(data=st.data())
    def inner(data):
        eq, shapes, _, _ = data.draw(einsum_cases(broadcast_named=True), label="case")
        rng = np.random.default_rng(len(shapes))
        xs = [rng.standard_normal(s) for s in shapes]
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        ms = [mt.tensor(x, requires_grad=True) for x in xs]
        tout = torch.einsum(eq, *ts)
        mout = mt.einsum(eq, *ms)
        np.testing.assert_allclose(mout.numpy(), tout.detach().numpy(), **FORWARD_F64)
        g = rng.standard_normal(tout.shape)
        tout.backward(torch.tensor(g))
        mout.backward(mt.tensor(g))
        for i, (m, t) in enumerate(zip(ms, ts, strict=True)):
            expected = np.zeros(m.shape) if t.grad is None else t.grad.numpy()
            np.testing.assert_allclose(m.grad.numpy(), expected, **GRAD_F64, err_msg=f"operand {i} of {eq}")

    inner()
