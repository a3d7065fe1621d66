"""The fused functional ops of the Transformer stack against independent float64 formulas, with
gradients against central differences: linear, layer_norm, cross_entropy, nll_loss, mse_loss and
scaled_dot_product_attention (masks included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
import minitransformer.nn.functional as F

from . import reference as ref
from .factories import check_op, covers
from .strategies import arrays, floats, shapes
from .tolerances import FORWARD_F32

sizes = st.integers(1, 4)


@covers("linear")
@given(lead=shapes(max_dims=2), n_in=sizes, n_out=sizes, bias=st.booleans(), data=st.data())
def test_linear(lead, n_in, n_out, bias, data):
    x = data.draw(arrays(lead + (n_in,)))
    w = data.draw(arrays((n_out, n_in)))
    inputs = [x, w] + ([data.draw(arrays((n_out,)))] if bias else [])
    check_op(lambda *t: F.linear(*t), lambda x, w, b=None: x @ w.T + (0 if b is None else b), inputs, {})


@covers("layer_norm")
@given(lead=shapes(max_dims=2), norm=shapes(min_dims=1, max_dims=2), affine=st.sampled_from(["both", "weight", "none"]),
       eps=st.sampled_from([1e-5, 1e-3]), data=st.data())
def test_layer_norm(kernel_backend, lead, norm, affine, eps, data):
    x = data.draw(arrays(lead + norm, elements=floats(-3, 3)))
    if np.prod(norm) > 1 and np.ptp(x.reshape(-1, int(np.prod(norm))), axis=1).min() < 1e-3:
        x = x + np.arange(x.size).reshape(x.shape) * 0.1  # keep rows away from zero variance
    inputs = [x]
    if affine != "none":
        inputs.append(data.draw(arrays(norm)))
    if affine == "both":
        inputs.append(data.draw(arrays(norm)))

    def op(x, w=None, b=None):
        return F.layer_norm(x, norm, w, b, eps)

    def reference(x, w=None, b=None):
        return ref.layer_norm(x, len(norm), w, b, eps)

    check_op(op, reference, inputs, {})


@st.composite
def ce_case(draw):
    N, C = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    probs = draw(st.booleans())
    if probs:
        target = draw(arrays((N, C), elements=st.floats(0, 1)))
    else:
        target = np.array(draw(st.lists(st.sampled_from([*range(C), -100]), min_size=N, max_size=N)))
        if (target == -100).all():
            target[0] = 0
    weight = draw(st.none() | arrays((C,), elements=st.floats(0.2, 2.0)))
    kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])),
          "label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.5]))}
    logits = draw(arrays((N, C), elements=floats(-5, 5)))
    return logits, target, weight, kw


@covers("cross_entropy")
@given(case=ce_case())
def test_cross_entropy(kernel_backend, case):
    logits, target, weight, kw = case

    def op(x):
        return F.cross_entropy(x, mt.tensor(target), None if weight is None else mt.tensor(weight), **kw)

    def reference(x):
        return ref.cross_entropy(x, target, weight, **kw)

    check_op(op, reference, [logits], {})


@covers("cross_entropy")
@given(N=sizes, C=sizes, d=sizes, data=st.data())
def test_cross_entropy_with_class_dim_second(kernel_backend, N, C, d, data):
    logits = data.draw(arrays((N, C, d)))
    target = data.draw(arrays((N, d), elements=st.integers(0, C - 1))).astype(np.int64)

    def reference(x):
        return ref.cross_entropy(np.moveaxis(x, 1, -1).reshape(-1, C), target.reshape(-1), reduction="none"
                                 ).reshape(N, d)

    check_op(lambda x: F.cross_entropy(x, mt.tensor(target), reduction="none"), reference, [logits], {})


def test_cross_entropy_huge_and_masked_logits(kernel_backend):
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 3.0, 1.0]], dtype=np.float32)
    t = mt.tensor([0, 1])
    logits = mt.tensor(x, requires_grad=True)
    loss = F.cross_entropy(logits, t)
    loss.backward()
    expected = (0.0 + (-(3.0 - np.log(np.exp(3.0) + np.exp(1.0))))) / 2
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(logits.grad.numpy()))
    assert logits.grad.numpy()[1, 0] == 0.0  # a masked class gets no gradient


def test_cross_entropy_all_ignored_is_nan_and_errors_are_clear():
    out = F.cross_entropy(mt.randn(2, 3), mt.tensor([-100, -100]))
    assert np.isnan(out.item())
    with pytest.raises(IndexError, match="target 3 is out of range for 3 classes"):
        F.cross_entropy(mt.randn(2, 3), mt.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"target of shape \(3,\) does not match input of shape \(2, 3\)"):
        F.cross_entropy(mt.randn(2, 3), mt.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="class-index targets must be integers"):
        F.nll_loss(mt.randn(2, 3), mt.tensor([0.0, 1.0]))


@covers("nll_loss")
@given(N=sizes, C=sizes, data=st.data())
def test_nll_loss(N, C, data):
    logp = data.draw(arrays((N, C)))
    target = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)))
    weight = data.draw(arrays((C,), elements=st.floats(0.2, 2.0)))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))

    def reference(x):
        losses = -weight[target] * x[np.arange(N), target]
        return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / weight[target].sum()}[reduction]

    check_op(lambda x: F.nll_loss(x, mt.tensor(target), mt.tensor(weight), reduction=reduction), reference,
             [logp], {})


@covers("mse_loss")
@given(shape=shapes(), reduction=st.sampled_from(["mean", "sum", "none"]), data=st.data())
def test_mse_loss(shape, reduction, data):
    a, b = data.draw(arrays(shape)), data.draw(arrays(shape))

    def reference(x, y):
        sq = (x - y) ** 2
        return {"none": sq, "sum": sq.sum(), "mean": sq.mean()}[reduction]

    check_op(lambda x, y: F.mse_loss(x, y, reduction=reduction), reference, [a, b], {})


@st.composite
def sdpa_case(draw):
    lead = draw(shapes(max_dims=2, max_side=2))
    L, S, E, Ev = (draw(st.integers(1, 4)) for _ in range(4))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    mask = None
    if kind == "bool":
        mask = draw(arrays((L, S), elements=st.booleans())).astype(bool)  # True = may attend
    elif kind == "float":
        mask = draw(arrays((L, S), elements=st.floats(-3, 3) | st.just(-np.inf)))
    return lead, L, S, E, Ev, kind, mask


@given(case=sdpa_case(), data=st.data())
def test_scaled_dot_product_attention(kernel_backend, case, data):
    lead, L, S, E, Ev, kind, mask = case
    if kind == "causal":
        S = L
    q = data.draw(arrays(lead + (L, E)))
    k = data.draw(arrays(lead + (S, E)))
    v = data.draw(arrays(lead + (S, Ev)))
    kw = {"is_causal": True} if kind == "causal" else {"attn_mask": mask}

    def reference(q, k, v):
        if kind == "causal":
            return ref.attention(q, k, v, blocked=np.triu(np.ones((L, S), bool), 1))
        if kind == "bool":
            return ref.attention(q, k, v, blocked=~mask)
        if kind == "float":
            return ref.attention(q, k, v, blocked=np.isneginf(mask), bias=np.where(np.isneginf(mask), 0, mask))
        return ref.attention(q, k, v)

    check_op(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw), reference, [q, k, v], {})



@given(B=st.integers(1, 2), T=st.integers(1, 4), nh=st.integers(1, 3), hs=st.integers(1, 3),
       kind=st.sampled_from(["none", "causal", "bool", "float"]), data=st.data())
def test_qkv_attention(kernel_backend, B, T, nh, hs, kind, data):
    """The fused packed op against the independent per-row formula applied to the split heads."""
    C = nh * hs
    qkv = data.draw(arrays((B, T, 3 * C)))
    mask = None
    if kind == "bool":
        mask = data.draw(arrays((T, T), elements=st.booleans())).astype(bool)  # True = may attend
    elif kind == "float":
        mask = data.draw(arrays((T, T), elements=st.floats(-3, 3) | st.just(-np.inf)))
    kw = {"is_causal": True} if kind == "causal" else {"attn_mask": mask}

    def reference(qkv):
        q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, nh, hs).transpose(0, 2, 1, 3) for i in range(3))
        if kind == "causal":
            y = ref.attention(q, k, v, blocked=np.triu(np.ones((T, T), bool), 1))
        elif kind == "bool":
            y = ref.attention(q, k, v, blocked=~mask)
        elif kind == "float":
            y = ref.attention(q, k, v, blocked=np.isneginf(mask), bias=np.where(np.isneginf(mask), 0, mask))
        else:
            y = ref.attention(q, k, v)
        return y.transpose(0, 2, 1, 3).reshape(B, T, C)

    check_op(lambda t: F.qkv_attention(t, nh, **kw), reference, [qkv], {})


def test_qkv_attention_rejects_a_width_that_does_not_split_into_heads():
    with pytest.raises(ValueError, match=r"qkv of shape \(B, T, 3 \* C\).*n_head=4.*\(2, 3, 18\)"):
        F.qkv_attention(mt.zeros(2, 3, 18), 4)


def test_causal_mask_uses_minus_inf_so_the_future_gets_exactly_zero_weight(kernel_backend):
    # the last key scores q.k/sqrt(2) = 1.4e5 for every query: a finite mask (-40, or even -1e4) in place of
    # -inf would leave it the largest score of rows 0 and 1, which would then read about 1e6 (a -40 mask
    # planted in kernels/reference/attention.py's _scores fails here on the numpy backend)
    for dtype in (mt.float64, mt.float32):
        q = mt.ones(1, 3, 2, dtype=dtype)
        k = mt.tensor([[[0.0, 0.0], [0.0, 0.0], [1e5, 1e5]]], dtype=dtype)
        v = mt.tensor([[[1.0], [2.0], [1e6]]], dtype=dtype)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
        np.testing.assert_allclose(out[0, :, 0], [1.0, 1.5, 1e6], **FORWARD_F32)


def test_fully_masked_rows_give_zero_output_and_zero_gradient(kernel_backend):
    q = mt.randn(2, 3, 4, dtype=mt.float64, requires_grad=True)
    k = mt.randn(2, 5, 4, dtype=mt.float64, requires_grad=True)
    v = mt.randn(2, 5, 4, dtype=mt.float64, requires_grad=True)
    allowed = np.ones((3, 5), dtype=bool)
    allowed[1] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert np.all(out.numpy()[:, 1] == 0) and np.all(np.isfinite(out.numpy()))
    out.sum().backward()
    assert np.all(q.grad.numpy()[:, 1] == 0) and np.all(np.isfinite(k.grad.numpy()))
