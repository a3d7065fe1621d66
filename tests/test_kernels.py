"""Every Numba kernel against the NumPy reference kernel of the same name, on Hypothesis-drawn shapes:
length 1, sizes that are not a multiple of any tile, non-contiguous inputs, logits of magnitude 1e4,
fully masked rows, ignore_index everywhere but one row; float32 with the tolerances of
tests/tolerances.kernel_tol and float64 tightly. Then a whole GPT training step on both backends."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import backend

from .factories import attention_mask
from .tolerances import kernel_tol

pytest.importorskip("numba", reason="the Numba backend is optional; these tests need it")

R = backend._load("numpy")
N = backend._load("numba")
dtypes = st.sampled_from([np.float32, np.float64])
# Numba compiles each kernel once per dtype and caches it on disk; examples then cost microseconds.
kernel_settings = settings(deadline=None)


def close(a, b, dtype, n, what="", magnitude=1.0):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(a, b, err_msg=what, **kernel_tol(dtype, n, magnitude))


def maybe_strided(rng, a, strided):
    """The same values, as a non-contiguous view when `strided`."""
    if not strided or a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] == 1
    return view


@st.composite
def rows(draw, max_rows=9, max_cols=70):
    """(shape, dtype, values scale, strided): (N, C) or (B, T, C) with any side 1 or odd sizes."""
    shape = draw(st.sampled_from([
        (1, 1), (1, 7), (draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols))),
        (2, draw(st.integers(1, 5)), draw(st.integers(1, max_cols)))]))
    return shape, draw(dtypes), draw(st.sampled_from([1.0, 30.0, 1e4])), draw(st.booleans())


@kernel_settings
@given(case=rows(), seed=st.integers(0, 2**16))
def test_softmax_and_log_softmax(case, seed):
    shape, dt, scale, strided = case
    rng = np.random.default_rng(seed)
    x = maybe_strided(rng, (rng.standard_normal(shape) * scale).astype(dt), strided)
    dy = rng.standard_normal(shape).astype(dt)
    C = shape[-1]
    for name in ("softmax", "log_softmax"):
        y_ref = R[f"{name}_forward"](x)
        y = N[f"{name}_forward"](x)
        # log_softmax values reach |x| ~ 1e4 * 2: compare relative to that scale
        close(y, y_ref, dt, C, name, magnitude=scale)
        close(N[f"{name}_backward"](dy, y_ref), R[f"{name}_backward"](dy, y_ref), dt, C, name + " backward",
              magnitude=scale)


def test_softmax_of_a_fully_masked_row_is_nan_like_the_reference():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], np.float32)
    y = N["softmax_forward"](x)
    assert np.isnan(y[0]).all() and y[1].tolist() == [1.0, 0.0]


@st.composite
def ce_case(draw):
    n, C = draw(st.integers(1, 9)), draw(st.integers(1, 70))
    dt = draw(dtypes)
    kind = draw(st.sampled_from(["index", "all_but_one_ignored", "probs"]))
    return n, C, dt, kind, draw(st.booleans()), draw(st.sampled_from([0.0, 0.1])), \
        draw(st.sampled_from(["mean", "sum", "none"])), draw(st.sampled_from([1.0, 1e4]))


@kernel_settings
@given(case=ce_case(), seed=st.integers(0, 2**16))
def test_cross_entropy(case, seed):
    n, C, dt, kind, weighted, eps, reduction, scale = case
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, C)) * scale).astype(dt)
    if kind == "probs":
        target = rng.dirichlet(np.ones(C), size=n).astype(dt)
    else:
        target = rng.integers(0, C, n)
        if kind == "all_but_one_ignored":
            target[:] = -100
            target[rng.integers(0, n)] = rng.integers(0, C)
    w = (rng.random(C) + 0.5).astype(dt) if weighted else None
    args = (logits, target, w, -100, eps, reduction)
    loss, cache = N["cross_entropy_forward"](*args)
    loss_ref, cache_ref = R["cross_entropy_forward"](*args)
    close(loss, loss_ref, dt, C * n, "loss", magnitude=scale)
    g = np.asarray(rng.standard_normal(np.shape(loss_ref)), dtype=dt)
    close(N["cross_entropy_backward"](g, cache), R["cross_entropy_backward"](g, cache_ref), dt, C, "dlogits",
          magnitude=scale)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_cross_entropy_zero_weight_class_at_minus_inf_is_finite_in_both_tiers(dt):
    """A class of weight 0 has coefficient 0 even under label smoothing, so its -inf logit adds nothing (the
    Numba kernel summed w_c (lse - z_c) without that rule and gave NaN)."""
    logits = np.array([[1.0, -np.inf, 0.5], [0.2, -np.inf, 0.3]], dt)
    args = (logits, np.array([0, 2]), np.array([1.0, 0.0, 1.0], dt), -100, 0.1, "mean")
    loss, loss_ref = N["cross_entropy_forward"](*args)[0], R["cross_entropy_forward"](*args)[0]
    p = np.exp(logits[:, [0, 2]] - np.logaddexp(logits[:, 0], logits[:, 2])[:, None])   # the two finite classes
    want = (-(0.9 + 0.1 / 3) * np.log(p[[0, 1], [0, 1]]) - 0.1 / 3 * np.log(p[[0, 1], [1, 0]])).mean()
    np.testing.assert_allclose([loss, loss_ref], [want, want], rtol=1e-5)


@kernel_settings
@given(case=rows(max_cols=130), affine=st.sampled_from(["both", "weight", "none"]), seed=st.integers(0, 2**16))
def test_layernorm(case, affine, seed):
    shape, dt, scale, strided = case
    rng = np.random.default_rng(seed)
    x = maybe_strided(rng, (rng.standard_normal(shape[-2:] if len(shape) == 2 else (6, shape[-1])) * scale + 3)
                      .astype(dt), strided)
    C = x.shape[-1]
    w = rng.standard_normal(C).astype(dt) if affine != "none" else None
    b = rng.standard_normal(C).astype(dt) if affine == "both" else None
    out, mean, rstd = N["layernorm_forward"](x, w, b, 1e-5)
    out_r, mean_r, rstd_r = R["layernorm_forward"](x, w, b, 1e-5)
    close(out, out_r, dt, C, "out", magnitude=scale)
    close(mean, mean_r, dt, C, "mean", magnitude=scale)
    close(rstd * scale, rstd_r * scale, dt, C, "rstd", magnitude=scale)
    dout = rng.standard_normal(x.shape).astype(dt)
    for got, ref, what in zip(N["layernorm_backward"](dout, x, w, mean_r, rstd_r),
                              R["layernorm_backward"](dout, x, w, mean_r, rstd_r), ("dx", "dw", "db"), strict=True):
        close(got, ref, dt, C * x.shape[0], what, magnitude=scale)


@kernel_settings
@given(case=rows(), approximate=st.sampled_from(["none", "tanh"]), with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_gelu_and_bias_gelu(case, approximate, with_bias, seed):
    shape, dt, _, strided = case
    rng = np.random.default_rng(seed)
    x = maybe_strided(rng, (rng.standard_normal(shape) * 4).astype(dt), strided)
    bias = rng.standard_normal(shape[-1]).astype(dt) if with_bias else None
    dy = rng.standard_normal(shape).astype(dt)
    y, gate = N["bias_gelu_forward"](x, bias, approximate)
    y_ref, gate_ref = R["bias_gelu_forward"](x, bias, approximate)
    close(y, y_ref, dt, 1, "gelu")
    close(gate, gate_ref, dt, 1, "gate")
    close(N["bias_gelu_backward"](dy, x, bias, approximate, gate_ref),
          R["bias_gelu_backward"](dy, x, bias, approximate, gate_ref), dt, 1, "backward")
    close(N["gelu_forward"](x, approximate)[0], R["gelu_forward"](x, approximate)[0], dt, 1)



def test_gelu_gate_keeps_relative_precision_in_the_tail():
    # Phi(v) for v << 0 is erfc(|v|/sqrt 2)/2 itself, about 1e-31 at v = -11.6: a float32 kernel that forms
    # 1 - erf or clamps its argument returns the wrong order of magnitude there, which an absolute
    # tolerance would not notice. Relative error only; float32's own rounding of v*v sets the 2e-5.
    # float64 goes to -37 (Phi ~ 1e-300) and is held to 1e-8.
    # Both tiers: the NumPy tier's float32 path is its own formula (erfcc in float32), held to fdlibm in float64.
    for tier, kernels in (("numba", N), ("numpy", R)):
        for dt, lo, rtol in ((np.float32, -12.5, 2e-5), (np.float64, -37.0, 1e-8)):
            v = np.linspace(lo, 6.0, 20_001).astype(dt)
            gate = kernels["gelu_forward"](v[None, :])[1][0]
            gate_ref = R["gelu_forward"](v.astype(np.float64)[None, :])[1][0]
            assert gate_ref.min() > 0  # the reference itself keeps the tail
            np.testing.assert_allclose(gate, gate_ref, rtol=rtol, atol=0, err_msg=f"{tier} {dt}")


@pytest.mark.parametrize("tier", ["numba", "numpy"])
def test_gelu_of_a_0d_float32_array(tier):
    """A scalar activation (a 0-d array) in float32: the NumPy tier's in-place float32 path needs an array."""
    kernels = N if tier == "numba" else R
    x = np.array(0.7, np.float32)
    y, gate = kernels["gelu_forward"](x)
    dx = kernels["gelu_backward"](np.array(2.0, np.float32), x, "none", gate)
    phi = 0.5 * math.erfc(-0.7 / math.sqrt(2))
    want_dx = 2.0 * (phi + 0.7 * math.exp(-0.245) / math.sqrt(2 * math.pi))
    assert y.shape == dx.shape == () and y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose([float(y), float(dx)], [0.7 * phi, want_dx], rtol=1e-6)


@st.composite
def attention_case(draw):
    B, E, Ev = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    L = draw(st.sampled_from([1, 2, 63, 64, 65, draw(st.integers(1, 140))]))
    causal = draw(st.booleans())
    S = L if causal else draw(st.sampled_from([1, 64, 65, draw(st.integers(1, 140))]))
    mask = draw(st.sampled_from(["none", "padding", "full", "fully_masked_rows"]))
    return B, L, S, E, Ev, causal, mask, draw(dtypes)


@kernel_settings
@given(case=attention_case(), seed=st.integers(0, 2**16))
def test_attention_v1_and_v2(case, seed):
    B, L, S, E, Ev, causal, kind, dt = case
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(dt) for s in ((B, L, E), (B, S, E), (B, S, Ev)))
    mask = attention_mask(kind, rng, B, L, S, dt)
    args = (mask, 1 / np.sqrt(E), causal)
    out_r, lse_r = R["attention_forward"](q, k, v, *args)
    dout = rng.standard_normal(out_r.shape).astype(dt)
    grads_r = R["attention_backward"](dout, q, k, v, out_r, lse_r, *args)
    from minitransformer.kernels.cpu import attention as cpu_attention

    for split, fwd, bwd in ((False, N["attention_forward"], N["attention_backward"]),
                            (True, N["attention_forward"], N["attention_backward"]),
                            (None, cpu_attention.attention_forward_v1, cpu_attention.attention_backward_v1)):
        with split_batch(split):
            out, lse = fwd(q, k, v, *args)
            grads = bwd(dout, q, k, v, out_r, lse_r, *args)
        close(out, out_r, dt, S, f"out (split {split})")
        np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_r))
        fin = np.isfinite(lse_r)
        close(lse[fin], lse_r[fin], dt, S, "lse")
        for got, ref, what in zip(grads, grads_r, ("dq", "dk", "dv"), strict=True):
            close(got, ref, dt, max(L, S) * max(E, Ev), f"{what} (split {split})")


@contextlib.contextmanager
def split_batch(split):
    """Force the v2 kernels' two-thread batch split on or off (None: as the thread count decides)."""
    from minitransformer.kernels.cpu import attention as cpu_attention

    before, cpu_attention.SPLIT_BATCH = cpu_attention.SPLIT_BATCH, split
    try:
        yield
    finally:
        cpu_attention.SPLIT_BATCH = before



@kernel_settings
@given(B=st.integers(1, 3), nh=st.integers(1, 3), hs=st.integers(1, 9), T=st.sampled_from([1, 63, 64, 65, 130]),
       causal=st.booleans(), mask_kind=st.sampled_from(["none", "padding", "full"]), split=st.booleans(),
       dt=dtypes, seed=st.integers(0, 2**16))
def test_attention_on_strided_views_of_a_packed_buffer(B, nh, hs, T, causal, mask_kind, split, dt, seed):
    """The production kernel takes q, k, v as (B, nh, T, hs) views of one (B, T, 3, nh, hs) buffer (no copy),
    returns out laid out as (B, T, nh, hs) in memory, and writes the gradients into views of one packed
    gradient; all against the reference on contiguous copies, with the batch split in two halves or not
    (a padding mask has one row per batch entry and head, which the halves must slice correctly)."""
    rng = np.random.default_rng(seed)
    heads = rng.standard_normal((B, T, 3, nh, hs)).astype(dt)
    q, k, v = (heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    args = (attention_mask(mask_kind, rng, B * nh, T, T, dt), 1 / np.sqrt(hs), causal)
    out_r, lse_r = R["attention_forward"](*(np.ascontiguousarray(a) for a in (q, k, v)), *args)
    with split_batch(split):
        out, lse = N["attention_forward"](q, k, v, *args)
    close(out, out_r, dt, T, "out")
    close(lse, lse_r, dt, T, "lse")
    assert out.transpose(0, 2, 1, 3).flags.c_contiguous or T == 1 or nh == 1
    dy = rng.standard_normal((B, T, nh, hs)).astype(dt).transpose(0, 2, 1, 3)  # a strided upstream gradient
    grads_r = R["attention_backward"](np.ascontiguousarray(dy), *(np.ascontiguousarray(a) for a in (q, k, v)),
                                      out_r, lse_r, *args)
    packed = np.zeros_like(heads)
    views = tuple(packed[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    with split_batch(split):
        got = N["attention_backward"](dy, q, k, v, out, lse, *args, grads=views)
    for g, view, ref_g, what in zip(got, views, grads_r, ("dq", "dk", "dv"), strict=True):
        assert g is view, what
        close(g, ref_g, dt, T * hs, what)

def test_attention_extra_memory_does_not_grow_with_t_squared():
    """The tiled kernel's temporaries are (B, BQ, BK) tiles: at T=1024 they are far smaller than T^2."""
    import tracemalloc

    T, B, E = 1024, 2, 16
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, T, E)).astype(np.float32) for _ in range(3))
    N["attention_forward"](q[:, :70], k[:, :70], v[:, :70], None, 0.25, True)  # compile outside the trace
    tracemalloc.start()
    out, lse = N["attention_forward"](q, k, v, None, 0.25, True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    scores_bytes = B * T * T * 4
    assert peak < scores_bytes / 8, (peak, scores_bytes)


@kernel_settings
@given(n=st.sampled_from([1, 2, 7, 300, 70_001]), dt=dtypes,  # 70,001 takes the multi-threaded path
       amsgrad=st.booleans(), decoupled=st.booleans(), maximize=st.booleans(),
       wd=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 2**16))
def test_adam_update(n, dt, amsgrad, decoupled, maximize, wd, seed):
    rng = np.random.default_rng(seed)
    shapes = [(n,), (3, max(1, n // 3))]
    states = []
    for _ in range(2):
        params = [rng.standard_normal(s).astype(dt) for s in shapes]
        states.append(params)
    grads = [rng.standard_normal(s).astype(dt) for s in shapes]
    m0 = [np.abs(rng.standard_normal(s)).astype(dt) for s in shapes]
    v0 = [np.abs(rng.standard_normal(s)).astype(dt) for s in shapes]
    outs = []
    for table in (N, R):
        p = [a.copy() for a in states[0]]
        m, v = [a.copy() for a in m0], [a.copy() for a in v0]
        vmax = [a.copy() for a in v0] if amsgrad else None
        table["adam_update"](p, grads, m, v, vmax, 1e-2, 0.9, 0.99, 1e-8, wd, decoupled, 3, maximize)
        outs.append((p, m, v))
    for got, ref in zip(outs[0], outs[1], strict=True):
        for a, b in zip(got, ref, strict=True):
            close(a, b, dt, 1)


def test_gpt_training_step_agrees_between_backends():
    cfg = mt.nn.GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=32, bias=True)
    rng = np.random.default_rng(0)
    idx, tgt = rng.integers(0, 50, (4, 32)), rng.integers(0, 50, (4, 32))
    results = {}
    for name in ("numpy", "numba"):
        mt.manual_seed(0)
        model = mt.nn.GPT(cfg)
        opt = model.configure_optimizers(0.1, 1e-3)
        with mt.backend.use(name):
            _, loss = model(idx, tgt)
            loss.backward()
            grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
            opt.step()
        results[name] = (loss.item(), grads, {n: p.numpy().copy() for n, p in model.named_parameters()})
    (l1, g1, p1), (l2, g2, p2) = results["numpy"], results["numba"]
    assert l1 == pytest.approx(l2, rel=1e-5)
    for n in g1:
        np.testing.assert_allclose(g2[n], g1[n], rtol=1e-3, atol=2e-5, err_msg=n)
        # Adam's first step is lr * g / (|g| + eps) elementwise: where |g| is near eps, rounding in g moves
        # the step anywhere in (-lr, lr); compare the parameters where the gradient is well above that
        ok = np.abs(g1[n]) > 1e-5
        np.testing.assert_allclose(p2[n][ok], p1[n][ok], rtol=0, atol=1e-5, err_msg=n)


def test_backend_selection():
    assert set(mt.backend.available()) == {"numpy", "numba"}
    with mt.backend.use("numpy"):
        assert mt.backend.kernel("softmax_forward").__module__.endswith("reference.softmax")
        with mt.backend.use("numba"):
            assert mt.backend.kernel("softmax_forward").__module__.endswith("cpu.softmax")
        assert mt.backend.current() == "numpy"
    assert "softmax_forward" in mt.backend.describe()
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        mt.backend.use("tpu")


@kernel_settings
@given(m=st.integers(1, 70), k=st.integers(1, 40), n=st.integers(1, 70), dt=dtypes, batched=st.booleans(),
       seed=st.integers(0, 2**16))
def test_matmul_versions(m, k, n, dt, batched, seed):
    """The GEMM study kernels (v1 naive, v2 loop order, v3 register-blocked) against NumPy's BLAS;
    sizes that are not multiples of the 2 x 4 blocks included."""
    from minitransformer.kernels.cpu import matmul as km

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    for fn in (km.matmul_v1, km.matmul_v2):
        c = np.empty((m, n), dt)
        fn(a, b, c)
        close(c, ref, dt, k)
    close(km.matmul_forward(a, b), ref, dt, k)
    if batched:
        a3 = rng.standard_normal((2, m, k)).astype(dt)
        close(km.matmul_forward(a3, b), a3.astype(np.float64) @ b.astype(np.float64), dt, k)


@kernel_settings
@given(B=st.integers(1, 3), nh=st.integers(1, 3), E=st.sampled_from([1, 7, 32]), S=st.integers(1, 40),
       spare=st.integers(0, 5), padded=st.booleans(), dt=dtypes, scale=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_decode_attention(B, nh, E, S, spare, padded, dt, scale, seed):
    """One decoding step over a cache buffer with unused room after the filled part, rows starting at
    different columns (left padding), large scores."""
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((B, nh, S + spare, E)) * scale).astype(dt)
    v = rng.standard_normal((B, nh, S + spare, E)).astype(dt)
    q = rng.standard_normal((B, nh, E)).astype(dt)
    first = rng.integers(0, S, B) if padded else None
    ref = R["decode_attention_forward"](q, k, v, first, 0.3, S)
    close(N["decode_attention_forward"](q, k, v, first, 0.3, S), ref, dt, S, "decode attention", magnitude=scale)
    # the reference itself: softmax over the row's keys, by a loop written here
    b, h = B - 1, nh - 1
    lo = 0 if first is None else first[b]
    s = k[b, h, lo:S].astype(np.float64) @ q[b, h].astype(np.float64) * 0.3
    w = np.exp(s - s.max())
    close(ref[b, h], (w / w.sum()) @ v[b, h, lo:S].astype(np.float64), dt, S, "reference", magnitude=scale)


def test_half_splitter_runs_each_half_once_and_passes_errors_on():
    """HalfSplitter: the two halves cover 0..n once each, the first on the helper thread; an error raised in
    either half reaches the caller (after the other half finished); a call made while the helper is busy
    (from inside a half) runs its whole range on the calling thread."""
    import threading

    from minitransformer.kernels.cpu._jit import HalfSplitter

    splitter = HalfSplitter()
    seen = []

    def record(lo, hi):
        seen.append((lo, hi, threading.get_ident() == main))
    main = threading.get_ident()
    for n in (2, 3, 12):
        seen.clear()
        splitter.run(record, n)
        assert sorted(seen) == [(0, n // 2, False), (n // 2, n, True)]

    def fail_first(lo, hi):
        if lo == 0:
            raise ValueError("half failed")
        seen.append((lo, hi))
    with pytest.raises(ValueError, match="half failed"):
        splitter.run(fail_first, 4)

    inner = []

    def nested(lo, hi):
        splitter.run(lambda a, b: inner.append((a, b)), 10)
    splitter.run(nested, 2)
    assert sorted(inner) == [(0, 10), (0, 10)]  # the helper is busy: both nested calls ran whole, in place
    seen.clear()
    splitter.run(record, 4)  # and the splitter still works afterwards
    assert sorted(seen) == [(0, 2, False), (2, 4, True)]

    # the late answer of an interrupted call is not taken for the next call's
    import time

    splitter._done.put((-1, None))

    def slow_first(lo, hi):
        if lo == 0:
            time.sleep(0.05)
        seen.append((lo, hi))
    seen.clear()
    splitter.run(slow_first, 4)
    assert sorted(seen) == [(0, 2), (2, 4)]


_ROW_MAX = []


@kernel_settings
@given(n=st.integers(0, 100), dt=dtypes, specials=st.lists(st.sampled_from(["-inf", "inf", "-0", "0", "denormal",
                                                                            "huge", "-huge"]), max_size=4),
       seed=st.integers(0, 2**16))
def test_row_max_equals_numpy_max(n, dt, specials, seed):
    """row_max (float32: a max over integers ordered like the floats) against NumPy's max, with infinities,
    signed zeros, denormals and the largest magnitudes; -inf for an empty row."""
    if not _ROW_MAX:
        import numba
        from minitransformer.kernels.cpu._jit import row_max

        _ROW_MAX.append(numba.njit(lambda row, n: row_max(row, n)))
    rng = np.random.default_rng(seed)
    row = (rng.standard_normal(n + 3) * 10).astype(dt)
    values = {"-inf": -np.inf, "inf": np.inf, "-0": -0.0, "0": 0.0, "denormal": np.finfo(dt).smallest_subnormal,
              "huge": np.finfo(dt).max, "-huge": -np.finfo(dt).max}
    if n:
        for name in specials:
            row[rng.integers(0, n)] = values[name]
    got = _ROW_MAX[0](row, n)
    want = row[:n].max() if n else -np.inf
    assert got == want, (got, want, row[:n])  # -0.0 == 0.0: which zero wins a tie is not specified


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_a_nan_input_gives_nan_where_the_reference_does(dt):
    """A NaN key reaches every query that sees it, as in the reference (the fast float32 exp clamped its
    argument and turned NaN into 0, which hid the NaN a user would be looking for); a causal query before the
    NaN key is untouched. The same for softmax."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 6, 4)).astype(dt) for _ in range(3))
    k[0, 3, 1] = np.nan
    for causal in (False, True):
        out = N["attention_forward"](q, k, v, None, 0.5, causal)[0]
        ref = R["attention_forward"](q, k, v, None, 0.5, causal)[0]
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        assert np.isnan(ref[0]).any() and not np.isnan(ref[1]).any()
        np.testing.assert_allclose(out[~np.isnan(ref)], ref[~np.isnan(ref)], **kernel_tol(dt, 6))
    x = rng.standard_normal((3, 5)).astype(dt)
    x[1, 2] = np.nan
    np.testing.assert_array_equal(np.isnan(N["softmax_forward"](x)), np.isnan(R["softmax_forward"](x)))
