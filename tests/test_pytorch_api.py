"""PyTorch's small names that training scripts reach for: randint's overloads, Generator, device, tensor
formatting, pin_memory/non_blocking, mt.cuda without a GPU, GradScaler, autocast, backends flags, compile,
bfloat16. Where PyTorch is installed the semantics are checked against it on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minitransformer as mt
from minitransformer.dtypes import _MissingBFloat16


# ---- randint and generators --------------------------------------------------------------------------
def test_randint_overloads():
    mt.manual_seed(0)
    a = mt.randint(10, (3,))                    # randint(high, size): nanoGPT's batch sampling
    b = mt.randint(5, 10, (2, 2))               # randint(low, high, size)
    c = mt.randint(10, size=(4,))
    d = mt.randint(low=2, high=4, size=(50,))
    assert a.shape == (3,) and a.dtype == np.int64 and ((0 <= a.numpy()) & (a.numpy() < 10)).all()
    assert b.shape == (2, 2) and ((5 <= b.numpy()) & (b.numpy() < 10)).all()
    assert c.shape == (4,)
    assert set(d.tolist()) <= {2, 3} and len(set(d.tolist())) == 2
    assert mt.randint(3, (2,), dtype=mt.int32).dtype == np.int32
    with pytest.raises(ValueError, match="low"):
        mt.randint(5, 5, (1,))
    with pytest.raises(TypeError, match="size"):
        mt.randint(0, 10)


def test_randint_matches_torch_signatures():
    torch = pytest.importorskip("torch")
    for args, kwargs in [((10, (3,)), {}), ((5, 10, (2, 2)), {}), ((10,), {"size": (4,)}),
                         ((), {"low": 2, "high": 4, "size": (5,)})]:
        assert tuple(torch.randint(*args, **kwargs).shape) == mt.randint(*args, **kwargs).shape


def test_generator_streams_are_independent_and_repeatable():
    g1 = mt.Generator().manual_seed(42)
    x1 = mt.randn(5, generator=g1)
    mt.manual_seed(0)
    before = mt.randn(3).numpy()
    g2 = mt.Generator().manual_seed(42)
    mt.manual_seed(0)
    x2 = mt.randn(5, generator=g2)               # drawing from g2 must not touch the global stream
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(mt.randn(3).numpy(), before)
    g = mt.Generator().manual_seed(7)
    p1 = mt.randperm(10, generator=g).tolist()
    r1 = mt.randint(0, 100, (4,), generator=g).tolist()
    m1 = mt.multinomial(mt.tensor([0.1, 0.2, 0.7]), 5, replacement=True, generator=g).tolist()
    g.manual_seed(7)
    assert (mt.randperm(10, generator=g).tolist(), mt.randint(0, 100, (4,), generator=g).tolist(),
            mt.multinomial(mt.tensor([0.1, 0.2, 0.7]), 5, replacement=True, generator=g).tolist()) == (p1, r1, m1)
    assert sorted(p1) == list(range(10))
    assert g.initial_seed() == 7
    state = g.get_state()
    a = mt.rand(3, generator=g).numpy()
    g.set_state(state)
    np.testing.assert_array_equal(mt.rand(3, generator=g).numpy(), a)
    t = mt.zeros(4)
    t.normal_(generator=mt.Generator().manual_seed(1))
    np.testing.assert_array_equal(t.numpy(), mt.randn(4, generator=mt.Generator().manual_seed(1)).numpy())
    with pytest.raises(TypeError, match="generator"):
        mt.randn(2, generator=np.random.default_rng(0))


def test_global_seed_queries():
    mt.manual_seed(123)
    assert mt.initial_seed() == 123
    s = mt.seed()
    assert mt.initial_seed() == s


# ---- devices, formatting, pinning ----------------------------------------------------------------------
def test_device_is_torch_like_and_a_string():
    d = mt.device("cuda", 1)
    assert (d.type, d.index, str(d)) == ("cuda", 1, "cuda:1")
    assert mt.device("cuda:0").index == 0 and mt.device("cpu").index is None
    assert repr(mt.device("cpu")) == "device(type='cpu')"
    x = mt.tensor([1.0])
    assert x.device == "cpu" and x.device.type == "cpu" and x.to(mt.device("cpu")) is x
    with pytest.raises(ValueError, match="device"):
        mt.device("tpu")
    with pytest.raises(ValueError, match="index"):
        mt.device("cuda:x")


def test_device_matches_torch():
    torch = pytest.importorskip("torch")
    for spec in [("cpu",), ("cuda",), ("cuda", 1), ("cuda:3",)]:
        t, m = torch.device(*spec), mt.device(*spec)
        assert (t.type, t.index, str(t)) == (m.type, m.index, str(m))


def test_format_of_scalar_tensors():
    loss = mt.tensor([1.23456, 2.0]).mean()
    assert f"{loss:.4f}" == "1.6173"
    assert f"{mt.tensor(3):5d}" == "    3"
    assert f"{loss}" == str(loss.item())              # a 0-d tensor formats as its number, spec or not
    assert f"{mt.tensor([1.0, 2.0])}" == str(mt.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="0-d"):
        f"{mt.tensor([1.0, 2.0]):.2f}"


def test_format_matches_torch():
    torch = pytest.importorskip("torch")
    for value, spec in [(1.23456, ".4f"), (2.5, "e"), (7, "d"), (0.125, ".1%"), (0.5, "")]:
        assert format(mt.tensor(value), spec) == format(torch.tensor(value), spec)


def test_pin_memory_non_blocking_and_copy():
    x = mt.arange(6).reshape(2, 3)
    assert x.pin_memory() is x and not x.is_pinned()
    assert x.to("cpu", non_blocking=True) is x
    y = x.to("cpu", copy=True)
    assert y is not x and not np.shares_memory(y.numpy(), x.numpy())
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    m = mt.nn.Linear(2, 2)
    assert m.to("cpu", non_blocking=True) is m
    with pytest.raises(TypeError, match="unexpected"):
        x.to("cpu", blocking=True)


def test_tensor_pickles_without_its_graph():
    import pickle

    w = mt.randn(3, requires_grad=True)
    y = w * 2
    for t, grad in [(w, True), (y, False)]:
        back = pickle.loads(pickle.dumps(t))
        np.testing.assert_array_equal(back.numpy(), t.numpy())
        assert back.requires_grad is grad and back.grad_fn is None


# ---- mt.cuda on a machine without a GPU ----------------------------------------------------------------
def test_cuda_queries_without_a_gpu():
    if mt.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU answers do not apply")
    assert mt.cuda.device_count() == 0 and not mt.cuda.is_bf16_supported()
    mt.cuda.manual_seed(3)
    mt.cuda.manual_seed_all(3)          # recorded only: the CPU stream is untouched
    assert mt.cuda.initial_seed() == 3
    assert mt.cuda.memory_allocated() == 0
    mt.cuda.empty_cache()
    for call in (mt.cuda.synchronize, mt.cuda.get_device_name, lambda: mt.cuda.set_device("cuda:0")):
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            call()


def test_cuda_answers_match_torch_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() or mt.cuda.is_available():
        pytest.skip("a GPU is present")
    assert (mt.cuda.is_available(), mt.cuda.device_count()) == (torch.cuda.is_available(), torch.cuda.device_count())


# ---- GradScaler -----------------------------------------------------------------------------------------
def _scaler_run(lib, scaler, model, opt, xs, poison):
    """A loop in PyTorch's documented shape; at the steps in `poison` the loss is made infinite."""
    scales = []
    for step, x in enumerate(xs):
        loss = (model(lib.tensor(x)) ** 2).mean()
        if step in poison:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        lib.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        scales.append(scaler.get_scale())
    return scales


def _linear(lib, w, b):
    m = lib.nn.Linear(3, 2)
    with lib.no_grad():
        m.weight.copy_(lib.tensor(w))
        m.bias.copy_(lib.tensor(b))
    return m


def test_grad_scaler_semantics():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    xs = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(8)]
    model = _linear(mt, w, b)
    opt = mt.optim.SGD(model.parameters(), lr=0.1)
    scaler = mt.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)
    scales = _scaler_run(mt, scaler, model, opt, xs, poison={3})
    # grows after 2 clean steps, halves at the poisoned one (its step skipped), then grows again
    assert scales == [8.0, 16.0, 16.0, 8.0, 8.0, 16.0, 16.0, 32.0]
    # the same updates without a scaler (skipping step 3) give the same weights
    ref = _linear(mt, w, b)
    ref_opt = mt.optim.SGD(ref.parameters(), lr=0.1)
    for step, x in enumerate(xs):
        if step == 3:
            continue
        (ref(mt.tensor(x)) ** 2).mean().backward()
        mt.nn.utils.clip_grad_norm_(ref.parameters(), 10.0)
        ref_opt.step()
        ref_opt.zero_grad()
    np.testing.assert_allclose(model.weight.numpy(), ref.weight.numpy(), rtol=1e-6, atol=1e-7)
    assert scaler.state_dict() == {"scale": 32.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                   "growth_interval": 2, "_growth_tracker": 0}


def test_grad_scaler_errors_and_disabled_pass_through():
    model = mt.nn.Linear(2, 1)
    opt = mt.optim.SGD(model.parameters(), lr=0.1)
    scaler = mt.amp.GradScaler("cpu")
    scaler.scale(model(mt.ones(1, 2)).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    scaler.update()
    with pytest.raises(RuntimeError, match="No inf checks"):
        mt.amp.GradScaler("cpu").update()
    off = mt.amp.GradScaler("cpu", enabled=False)
    loss = model(mt.ones(1, 2)).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}


def test_grad_scaler_disables_itself_without_cuda_as_torch_does():
    if mt.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = mt.cuda.amp.GradScaler(enabled=True)
    assert not scaler.is_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not mt.amp.GradScaler(enabled=False).is_enabled()   # no warning when not asked for


def test_grad_scaler_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    xs = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(9)]
    results = []
    for lib in (mt, torch):
        model = _linear(lib, w, b)
        opt = lib.optim.AdamW(model.parameters(), lr=0.01)
        scaler = lib.amp.GradScaler("cpu", init_scale=4.0, growth_interval=3)
        scales = _scaler_run(lib, scaler, model, opt, xs, poison={2, 6})
        results.append((scales, model.weight.detach().numpy().copy(), scaler.state_dict()))
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
    assert results[0][2] == {k: (v.item() if hasattr(v, "item") else v) for k, v in results[1][2].items()}


# ---- autocast, backends, compile ------------------------------------------------------------------------
def test_autocast_is_a_checked_no_op():
    x = mt.randn(2, 3)
    assert not mt.is_autocast_enabled()
    with mt.autocast(device_type="cpu", dtype=mt.bfloat16):
        assert mt.is_autocast_enabled() and mt.is_autocast_enabled("cpu")
        assert (x @ x.T).dtype == np.float32          # documented: ops keep their inputs' dtype
    with mt.amp.autocast("cuda", enabled=False):
        assert not mt.is_autocast_enabled("cuda")
    assert not mt.is_autocast_enabled()

    @mt.autocast("cpu")
    def f():
        return mt.is_autocast_enabled()

    assert f()
    with pytest.raises(ValueError, match="dtype"):
        mt.autocast("cpu", dtype=mt.int64)
    with pytest.raises(RuntimeError, match="device_type"):
        mt.autocast("tpu")


def test_backends_flags_and_matmul_precision():
    assert mt.backends.cuda.matmul.allow_tf32 is False and mt.backends.cudnn.allow_tf32 is True
    try:
        mt.backends.cuda.matmul.allow_tf32 = True
        assert mt.backends.cuda.matmul.allow_tf32
        mt.set_float32_matmul_precision("highest")
        assert not mt.backends.cuda.matmul.allow_tf32 and mt.get_float32_matmul_precision() == "highest"
        mt.set_float32_matmul_precision("high")
        assert mt.backends.cuda.matmul.allow_tf32
    finally:
        mt.set_float32_matmul_precision("highest")
    with pytest.raises(ValueError, match="highest"):
        mt.set_float32_matmul_precision("fast")
    assert not mt.backends.mps.is_available()
    import minitransformer.backends.cuda as bc

    assert bc is mt.backends.cuda


def test_compile_wraps_like_torch():
    model = mt.nn.Sequential(mt.nn.Linear(3, 4), mt.nn.GELU(), mt.nn.Linear(4, 2))
    compiled = mt.compile(model)
    x = mt.randn(5, 3)
    np.testing.assert_array_equal(compiled(x).numpy(), model(x).numpy())
    assert compiled._orig_mod is model
    assert list(compiled.state_dict()) == ["_orig_mod." + k for k in model.state_dict()]
    assert len(list(compiled.parameters())) == len(list(model.parameters()))
    compiled.eval()
    assert not model.training
    model.note = "kept"
    assert compiled.note == "kept"                       # other attributes reach the model
    fn = mt.compile(lambda a: a * 2)
    assert fn(mt.tensor(2.0)).item() == 4.0
    assert mt.compile(mode="reduce-overhead")(model)._orig_mod is model
    assert mt.compile(model, disable=True) is model
    with pytest.raises(RuntimeError, match="mode"):
        mt.compile(model, mode="fastest")


def test_optimizers_accept_torch_implementation_flags():
    import inspect

    p = [mt.nn.Parameter(mt.ones(2))]
    assert "fused" in inspect.signature(mt.optim.AdamW).parameters     # nanoGPT looks for it
    mt.optim.AdamW(p, fused=True, foreach=False)
    mt.optim.SGD(p, lr=0.1, foreach=True)
    with pytest.raises(NotImplementedError, match="differentiable"):
        mt.optim.Adam(p, differentiable=True)


# ---- bfloat16 ----------------------------------------------------------------------------------------------
def test_bfloat16_names_and_use():
    table = {"float32": mt.float32, "bfloat16": mt.bfloat16, "float16": mt.float16}   # nanoGPT's lookup
    assert table["float16"] == np.float16
    missing = _MissingBFloat16()
    with pytest.raises(TypeError, match="ml_dtypes"):
        mt.zeros(2, dtype=missing)
    with pytest.raises(TypeError, match="ml_dtypes"):
        mt.ones(2).to(missing)
    if isinstance(mt.bfloat16, _MissingBFloat16):
        return
    x = mt.tensor([1.0, 1.00390625, 3.14159], requires_grad=True)
    y = x.to(mt.bfloat16)
    assert y.dtype == mt.bfloat16
    # bfloat16 keeps 8 significant bits: 1.00390625 = 1 + 2^-8 rounds to even (1.0); pi to 3.140625
    np.testing.assert_array_equal(y.float().numpy(), np.array([1.0, 1.0, 3.140625], np.float32))
    y.float().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3, np.float32))


def test_bfloat16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    if isinstance(mt.bfloat16, _MissingBFloat16):
        pytest.skip("ml_dtypes is not installed")
    v = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 100
    ours = mt.tensor(v).to(mt.bfloat16).float().numpy()
    theirs = torch.tensor(v).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_size_and_inference_mode():
    assert mt.Size([2, 3]) == (2, 3) and mt.Size([2, 3]).numel() == 6
    with mt.inference_mode():
        assert not mt.is_grad_enabled()
    assert mt.is_grad_enabled()


def test_num_threads():
    before = mt.get_num_threads()
    try:
        mt.set_num_threads(1)
        assert mt.get_num_threads() == 1 or "numba" not in mt.backend.available()
    finally:
        mt.set_num_threads(before)
    with pytest.raises(ValueError, match="positive"):
        mt.set_num_threads(0)


def test_optimizer_resumes_from_pytorchs_adamw_state():
    """torch.save of a PyTorch AdamW (its `step` a 0-d tensor) -> mt.load -> the next step equals PyTorch's."""
    torch = pytest.importorskip("torch")
    import io

    rng = np.random.default_rng(3)
    w0, b0 = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    xs = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(4)]
    tm = _linear(torch, w0, b0)
    topt = torch.optim.AdamW(tm.parameters(), lr=0.05, betas=(0.9, 0.99), weight_decay=0.1)
    for x in xs[:3]:
        (tm(torch.tensor(x)) ** 2).mean().backward()
        topt.step()
        topt.zero_grad()
    buf = io.BytesIO()
    torch.save({"model": tm.state_dict(), "optimizer": topt.state_dict()}, buf)
    buf.seek(0)
    ckpt = mt.load(buf)
    mm = mt.nn.Linear(3, 2)
    mm.load_state_dict(ckpt["model"])
    mopt = mt.optim.AdamW(mm.parameters(), lr=0.05, betas=(0.9, 0.99), weight_decay=0.1)
    mopt.load_state_dict(ckpt["optimizer"])
    assert mopt.state[mm.weight]["step"] == 3
    for lib, model, opt in ((torch, tm, topt), (mt, mm, mopt)):
        (model(lib.tensor(xs[3])) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(mm.weight.numpy(), tm.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mm.bias.numpy(), tm.bias.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_missing_torch_features_name_themselves():
    for get, name in [(lambda: mt.fft, "torch.fft"), (lambda: mt.nn.LSTM, "torch.nn.LSTM"),
                      (lambda: mt.optim.LBFGS, "torch.optim.LBFGS"), (lambda: mt.randn(2).frobnicate,
                                                                        "torch.Tensor.frobnicate")]:
        with pytest.raises(AttributeError, match=f"{name} is not supported by minitransformer"):
            get()
    assert not hasattr(mt, "fft") and not hasattr(mt.randn(2), "frobnicate")
    with pytest.raises(ModuleNotFoundError, match="torch.utils.tensorboard is not supported"):
        import minitransformer.utils.tensorboard  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute '__frob__'"):   # dunders stay plain
        mt.randn(2).__frob__  # noqa: B018
