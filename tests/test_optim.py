"""Optimizers against their closed-form updates computed independently here, parameter groups,
zero_grad semantics, state_dict round trips, schedules and gradient clipping."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt

STEPS = 5


def _grad_fn(p):
    """A fixed, non-trivial gradient field: d/dp of sum(p^4)/4 + sum(sin(p))."""
    return p ** 3 + np.cos(p)


def _run(opt_cls, kw, p0, steps=STEPS):
    p = mt.tensor(p0.copy(), requires_grad=True)
    opt = opt_cls([p], **kw)
    for _ in range(steps):
        opt.zero_grad()
        p.grad = mt.tensor(_grad_fn(p.numpy()))
        opt.step()
    return p.numpy()


def sgd_reference(p, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    buf = None
    for _ in range(STEPS):
        g = _grad_fn(p)
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def adam_reference(p, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                   decoupled=False):
    m = v = vmax = np.zeros_like(p)
    for t in range(1, STEPS + 1):
        g = _grad_fn(p)
        g = -g if maximize else g
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** t)
        vmax = np.maximum(vmax, v)
        v_hat = (vmax if amsgrad else v) / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


p0s = st.integers(1, 6).flatmap(lambda n: st.lists(st.floats(-2, 2), min_size=n, max_size=n)).map(np.array)


@given(p0=p0s, lr=st.floats(1e-3, 0.2), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       dampening=st.sampled_from([0.0, 0.3]), weight_decay=st.sampled_from([0.0, 0.01]),
       nesterov=st.booleans(), maximize=st.booleans())
def test_sgd_closed_form(p0, lr, momentum, dampening, weight_decay, nesterov, maximize):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
              maximize=maximize)
    np.testing.assert_allclose(_run(mt.optim.SGD, kw, p0), sgd_reference(p0, **kw), rtol=1e-12, atol=1e-12)


# once per backend: the NumPy reference's adam_update without the bias correction (planted) fails here on numpy
@given(p0=p0s, lr=st.floats(1e-3, 0.1), b1=st.sampled_from([0.8, 0.9]), b2=st.sampled_from([0.99, 0.999]),
       weight_decay=st.sampled_from([0.0, 0.1]), amsgrad=st.booleans(), maximize=st.booleans(),
       decoupled=st.booleans())
def test_adam_and_adamw_closed_form(kernel_backend, p0, lr, b1, b2, weight_decay, amsgrad, maximize, decoupled):
    kw = dict(lr=lr, betas=(b1, b2), weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    cls = mt.optim.AdamW if decoupled else mt.optim.Adam
    np.testing.assert_allclose(_run(cls, kw, p0), adam_reference(p0, decoupled=decoupled, **kw),
                               rtol=1e-10, atol=1e-12)


def test_adamw_default_weight_decay_is_0_01():
    p = mt.ones(1, requires_grad=True)
    assert mt.optim.AdamW([p]).param_groups[0]["weight_decay"] == 0.01
    assert mt.optim.Adam([p]).param_groups[0]["weight_decay"] == 0.0


def test_param_groups_have_their_own_options():
    a = mt.ones(2, dtype=mt.float64, requires_grad=True)
    b = mt.ones(2, dtype=mt.float64, requires_grad=True)
    opt = mt.optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1)
    a.grad, b.grad = mt.ones(2, dtype=mt.float64), mt.ones(2, dtype=mt.float64)
    opt.step()
    assert a.tolist() == [0.9, 0.9] and b.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        mt.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        mt.optim.SGD([a], lr=0.1, nesterov=True)


def test_zero_grad_semantics_and_parameters_without_grad_are_skipped():
    a = mt.ones(2, requires_grad=True)
    b = mt.ones(2, requires_grad=True)
    opt = mt.optim.Adam([a, b], lr=0.1)
    a.grad = mt.ones(2)
    opt.step()
    assert b.tolist() == [1.0, 1.0] and b not in opt.state
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(4)

    def fresh():
        p = mt.tensor(p0.copy(), requires_grad=True)
        return p, mt.optim.AdamW([p], lr=0.05, amsgrad=True)

    def steps(p, opt, n):
        for _ in range(n):
            p.grad = mt.tensor(_grad_fn(p.numpy()))
            opt.step()

    p1, o1 = fresh()
    steps(p1, o1, 6)
    p2, o2 = fresh()
    steps(p2, o2, 3)
    saved = copy.deepcopy(o2.state_dict())
    p3, o3 = fresh()
    p3.data[...] = p2.numpy()
    o3.load_state_dict(saved)
    steps(p3, o3, 3)
    np.testing.assert_array_equal(p3.numpy(), p1.numpy())
    assert saved["state"][0]["step"] == 3 and saved["param_groups"][0]["params"] == [0]


def test_schedules():
    def lrs(make, n=12, lr=1.0):
        p = mt.zeros(1, requires_grad=True)
        opt = mt.optim.SGD([p], lr=lr)
        sched = make(opt)
        out = []
        for _ in range(n):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    S = mt.optim.lr_scheduler
    assert lrs(lambda o: S.LambdaLR(o, lambda e: 1 / (e + 1)))[:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5)) == [1.0] * 3 + [0.5] * 3 + [0.25] * 3 + [0.125] * 3
    cos = lrs(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.1), n=11)
    assert cos == pytest.approx([0.1 + 0.9 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(11)])
    warm = lrs(lambda o: S.WarmupCosineLR(o, warmup_iters=4, lr_decay_iters=10, min_lr=0.1), n=13)
    assert warm[0] == pytest.approx(1 / 5) and warm[0] > 0  # the first step does not waste a zero lr
    assert warm[:5] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0])
    assert warm[7] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 3 / 6)))
    assert warm[10] == pytest.approx(0.1) and warm[12] == 0.1


def test_clip_grad_norm():
    a = mt.zeros(2, requires_grad=True)
    b = mt.zeros(1, requires_grad=True)
    a.grad, b.grad = mt.tensor([3.0, 0.0]), mt.tensor([4.0])
    total = mt.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [3 / 5.000001, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), [4 / 5.000001], rtol=1e-6)
    total = mt.nn.utils.clip_grad_norm_([a, b], max_norm=10.0)  # below the limit: unchanged
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    a.grad = mt.tensor([np.inf, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        mt.nn.utils.clip_grad_norm_([a], 1.0, error_if_nonfinite=True)


@given(sizes=st.lists(st.sampled_from([1, 7, 128, 65_536]), min_size=1, max_size=4),
       scale=st.sampled_from([1e-6, 1.0, 1e4]), strided=st.booleans(), seed=st.integers(0, 2**16))
@settings(deadline=None, max_examples=25)
def test_clip_grad_norm_of_float32_gradients_keeps_float64_precision(sizes, scale, strided, seed):
    """The 2-norm of float32 gradients (BLAS dots per gradient) against the float64 sum of squares, on
    large, tiny and non-contiguous gradients; and the clipped gradients have exactly that norm scaled."""
    rng = np.random.default_rng(seed)
    params, grads = [], []
    for n in sizes:
        g = (rng.standard_normal(2 * n if strided else n) * scale).astype(np.float32)
        g = g[::2] if strided else g
        p = mt.zeros(n, requires_grad=True)
        p.grad = mt.tensor(g)
        params.append(p)
        grads.append(g.astype(np.float64))
    exact = math.sqrt(sum(float((g * g).sum()) for g in grads))
    total = mt.nn.utils.clip_grad_norm_(params, max_norm=exact / 2)
    assert total.item() == pytest.approx(exact, rel=1e-6)
    coef = (exact / 2) / (exact + 1e-6)
    for p, g in zip(params, grads, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=2e-6, atol=0)
