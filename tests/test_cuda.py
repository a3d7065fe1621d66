"""Every version of every CUDA kernel against the NumPy reference (computed on the host in float64), on
Hypothesis-drawn shapes with awkward sizes (length 1, not multiples of any tile), huge and masked logits;
then the backend's routing of CuPy arrays and a GPT training step on `cuda` against the same step on `cpu`.
Marked gpu: skipped (and reported as skipped) without CuPy and a device. `make gpu-check` runs them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import backend

from .factories import attention_mask
from .tolerances import kernel_tol

pytestmark = pytest.mark.gpu
R = backend._load("numpy")
gpu_settings = settings(deadline=None, max_examples=25)
F32 = np.float32


def cp():  # noqa: ANN201
    import cupy

    return cupy


def to_gpu(*arrays):  # noqa: ANN001, ANN201
    return [None if a is None else cp().asarray(a) for a in arrays]


def close(got, want, n, what="", magnitude=1.0):  # noqa: ANN001, ANN201
    got = cp().asnumpy(got) if type(got).__module__.startswith("cupy") else np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_allclose(got, want, err_msg=what, **kernel_tol(F32, n, magnitude))


def ref64(fn, *arrays, **kw):  # noqa: ANN001, ANN201
    """The reference on float64 copies of host arrays."""
    return fn(*[None if a is None or not isinstance(a, np.ndarray) or a.dtype.kind != "f" else a.astype(np.float64)
                for a in arrays], **kw)


rows = st.tuples(st.sampled_from([1, 2, 7, 33, 130]), st.sampled_from([1, 3, 31, 32, 33, 100, 1000, 4097]))


@gpu_settings
@given(shape=rows, scale=st.sampled_from([1.0, 30.0, 1e4]), seed=st.integers(0, 2**16))
def test_softmax_versions(shape, scale, seed):
    from minitransformer.kernels.cuda import softmax as K

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(F32)
    dy = rng.standard_normal(shape).astype(F32)
    want = R["softmax_forward"](x.astype(np.float64))
    (xg, dyg) = to_gpu(x, dy)
    for version in K.VERSIONS:
        close(K.softmax_version(xg, version), want, shape[1], version, scale)
    y = K.softmax_forward(xg)
    close(K.softmax_backward(dyg, y), R["softmax_backward"](dy.astype(np.float64), want), shape[1], "backward")


def test_softmax_of_masked_rows():
    from minitransformer.kernels.cuda import softmax as K

    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], F32)
    for version in K.VERSIONS:
        y = cp().asnumpy(K.softmax_version(cp().asarray(x), version))
        np.testing.assert_allclose(y[0], R["softmax_forward"](x[:1].astype(np.float64))[0], rtol=1e-6)
        assert y[0, 1] == 0 and np.isnan(y[1]).all()  # the reference's NaN for a fully masked row


@gpu_settings
@given(shape=rows, affine=st.booleans(), offset=st.sampled_from([0.0, 100.0]), seed=st.integers(0, 2**16))
def test_layernorm(shape, affine, offset, seed):
    from minitransformer.kernels.cuda import layernorm as K

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) + offset).astype(F32)
    w, b = (rng.standard_normal(shape[1]).astype(F32) for _ in range(2)) if affine else (None, None)
    dout = rng.standard_normal(shape).astype(F32)
    out_r, mean_r, rstd_r = ref64(R["layernorm_forward"], x, w, b, eps=1e-5)
    out, mean, rstd = K.layernorm_forward(*to_gpu(x, w, b), 1e-5)
    close(out, out_r, shape[1], "out", 1 + offset)
    close(mean, mean_r, shape[1], "mean", 1 + offset)
    grads_r = ref64(R["layernorm_backward"], dout, x, w, mean_r, rstd_r)
    grads = K.layernorm_backward(*to_gpu(dout, x, w), mean, rstd)
    for got, want, what in zip(grads, grads_r, ("dx", "dweight", "dbias"), strict=True):
        close(got, want, max(shape), what, 1 + offset)


@gpu_settings
@given(shape=rows, approximate=st.sampled_from(["none", "tanh"]), with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_gelu(shape, approximate, with_bias, seed):
    from minitransformer.kernels.cuda import gelu as K

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(F32)
    bias = rng.standard_normal(shape[1]).astype(F32) if with_bias else None
    dy = rng.standard_normal(shape).astype(F32)
    y_r, gate_r = ref64(R["bias_gelu_forward"], x, bias, approximate=approximate)
    y, gate = K.bias_gelu_forward(*to_gpu(x, bias), approximate)
    close(y, y_r, 1, "y", 4.0)
    dx_r = ref64(R["bias_gelu_backward"], dy, x, bias, approximate=approximate, gate=gate_r)
    close(K.bias_gelu_backward(*to_gpu(dy, x, bias), approximate, gate), dx_r, 1, "dx", 4.0)


@gpu_settings
@given(shape=rows, smoothing=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(["mean", "sum", "none"]),
       scale=st.sampled_from([1.0, 1e4]), seed=st.integers(0, 2**16))
def test_cross_entropy(shape, smoothing, reduction, scale, seed):
    from minitransformer.kernels.cuda import crossentropy as K

    rng = np.random.default_rng(seed)
    N, C = shape
    logits = (rng.standard_normal(shape) * scale).astype(F32)
    target = rng.integers(0, C, N)
    target[rng.random(N) < 0.3] = -100
    target[0] = 0  # at least one row counts
    loss_r, cache_r = ref64(R["cross_entropy_forward"], logits, target, None, ignore_index=-100,
                            label_smoothing=smoothing, reduction=reduction)
    lg, tg = to_gpu(logits, target)
    loss, cache = K.cross_entropy_forward(lg, tg, None, -100, smoothing, reduction)
    close(loss, loss_r, C, "loss", scale)
    g = rng.standard_normal(N) if reduction == "none" else np.asarray(1.7)
    close(K.cross_entropy_backward(cp().asarray(g.astype(F32)), cache), R["cross_entropy_backward"](g, cache_r),
          C, "dlogits", scale)


@gpu_settings
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=5), decoupled=st.booleans(),
       maximize=st.booleans(), seed=st.integers(0, 2**16))
def test_adam_update(sizes, decoupled, maximize, seed):
    from minitransformer.kernels.cuda import adam as K

    rng = np.random.default_rng(seed)
    host = [[rng.standard_normal(n).astype(F32) for n in sizes] for _ in range(4)]
    host[3] = [np.abs(a) for a in host[3]]
    dev = [to_gpu(*group) for group in host]
    args = (1e-3, 0.9, 0.99, 1e-8, 0.1, decoupled, 7, maximize)
    want = [[a.astype(np.float64) for a in group] for group in host]
    R["adam_update"](want[0], want[1], want[2], want[3], None, *args)
    K.adam_update(dev[0], dev[1], dev[2], dev[3], None, *args)
    for group_dev, group_want, what in zip((dev[0], dev[2], dev[3]), (want[0], want[2], want[3]), ("p", "m", "v"),
                                           strict=True):
        for got, w in zip(group_dev, group_want, strict=True):
            close(got, w, 1, what)


attention_cases = st.tuples(
    st.sampled_from([1, 3]), st.sampled_from([1, 5, 64, 77]), st.sampled_from([1, 33, 64, 130]),
    st.sampled_from([16, 32, 64, 128]), st.booleans(),
    st.sampled_from(["none", "padding", "full", "fully_masked_rows"]))


@gpu_settings
@given(case=attention_cases, seed=st.integers(0, 2**16))
def test_flash_attention(case, seed):
    from minitransformer.kernels.cuda import attention as K

    B, L, S, E, causal, kind = case
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(F32) for s in ((B, L, E), (B, S, E), (B, S, E)))
    mask = attention_mask(kind, rng, B, L, S, F32)
    args = (1 / np.sqrt(E), causal)
    out_r, lse_r = ref64(R["attention_forward"], q, k, v, mask, scale=args[0], causal=causal)
    dout = rng.standard_normal(out_r.shape).astype(F32)
    grads_r = ref64(R["attention_backward"], dout, q, k, v, out_r, lse_r, mask, scale=args[0], causal=causal)
    qg, kg, vg, mg, dg = to_gpu(q, k, v, mask, dout)
    out, lse = K.attention_forward(qg, kg, vg, mg, *args)
    close(out, out_r, S, "out")
    lse = cp().asnumpy(lse)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_r))
    fin = np.isfinite(lse_r)
    close(lse[fin], lse_r[fin], S, "lse")
    grads = K.attention_backward(dg, qg, kg, vg, cp().asarray(out_r.astype(F32)), cp().asarray(lse_r.astype(F32)),
                                 mg, *args)
    for got, want, what in zip(grads, grads_r, ("dq", "dk", "dv"), strict=True):
        close(got, want, max(L, S) * E, what)


@gpu_settings
@given(m=st.sampled_from([1, 7, 64, 129, 300]), k=st.sampled_from([1, 4, 36, 128, 260]),
       n=st.sampled_from([1, 4, 52, 128, 257]), batched=st.booleans(), seed=st.integers(0, 2**16))
def test_sgemm_versions(m, k, n, batched, seed):
    from minitransformer.kernels.cuda import matmul as K

    rng = np.random.default_rng(seed)
    lead = (3,) if batched else ()
    a = rng.standard_normal(lead + (m, k)).astype(F32)
    b = rng.standard_normal(lead + (k, n)).astype(F32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    ag, bg = to_gpu(a, b)
    for version, (_, _, _, vec) in K.VERSIONS.items():
        if vec and (k % 4 or n % 4):
            continue
        tol = kernel_tol(F32, k) if version != "sgemm_tf32" else {"rtol": 5e-3, "atol": 5e-3 * np.sqrt(k)}
        got = cp().asnumpy(K.matmul(ag, bg, version))
        np.testing.assert_allclose(got, want, err_msg=version, **tol)
    if not batched:
        bt, at = to_gpu(np.ascontiguousarray(b.T), np.ascontiguousarray(a.T))
        close(K.matmul(ag, bt, layout="nt"), want, k, "nt")
        close(K.matmul(at, bg, layout="tn"), want, k, "tn")


def test_backend_sends_cupy_arrays_to_the_cuda_tier():
    assert "cuda" in backend.available()
    x = cp().asarray(np.random.default_rng(0).standard_normal((4, 9)).astype(F32))
    y = backend.kernel("softmax_forward")(x)
    assert type(y).__module__.startswith("cupy")
    close(y, R["softmax_forward"](cp().asnumpy(x).astype(np.float64)), 9)
    assert "CuPy arrays: cuda" in backend.describe()


def test_gpt_training_step_on_cuda_equals_cpu():
    """The same initial weights and batch: loss, every gradient and the weights after one AdamW step agree."""
    def step(device: str):  # noqa: ANN202
        mt.manual_seed(0)
        model = mt.nn.GPT(mt.nn.GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=64, bias=True))
        model.to(device)
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
        rng = np.random.default_rng(1)
        x = mt.tensor(rng.integers(0, 50, (4, 32)), device=device)
        y = mt.tensor(rng.integers(0, 50, (4, 32)), device=device)
        _, loss = model(x, y)
        loss.backward()
        grads = {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
        opt.step()
        return loss.item(), grads, {n: p.cpu().numpy() for n, p in model.named_parameters()}

    loss_c, grads_c, after_c = step("cpu")
    loss_g, grads_g, after_g = step("cuda")
    assert abs(loss_c - loss_g) < 1e-4 * abs(loss_c)
    for name in grads_c:
        np.testing.assert_allclose(grads_g[name], grads_c[name], rtol=1e-3, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(after_g[name], after_c[name], rtol=1e-4, atol=1e-6, err_msg=name)
