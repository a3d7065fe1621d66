"""Compression: the quantized formats (against element-by-element formulas written here), the Numba
quantized matmul against the reference on drawn shapes, QuantLinear's input gradient, quantized and
pruned GPTs (outputs, generation, checkpoints, the commands), pruning masks and the masked fine-tune."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import backend
from minitransformer.nn import prune
from minitransformer.nn.quantized import QuantLinear, apply_format, quantize_, weight_bytes

from .gradcheck import numerical_grads
from .tolerances import GRAD_F64, kernel_tol

ROOT = Path(__file__).resolve().parent.parent
R = backend._load("numpy")
TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 40


def _q4_element(packed_row: np.ndarray, k: int) -> int:
    """Element k of a packed 4-bit row, read by the layout's definition: byte j holds elements j (low
    nibble) and j + K/2 (high nibble), stored as q + 8."""
    half = len(packed_row)
    byte = int(packed_row[k % half])
    return ((byte & 15) if k < half else (byte >> 4)) - 8


@settings(deadline=None)
@given(M=st.integers(1, 9), groups=st.integers(1, 4), group=st.sampled_from([2, 8, 32]), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1e-3, 1.0, 50.0]))
def test_formats_match_their_definitions(M, groups, group, seed, scale):
    rng = np.random.default_rng(seed)
    K = groups * group
    w = rng.standard_normal((M, K)) * scale
    w[0] = 0.0  # an all-zero row quantizes to zeros, with no division by zero
    q, s = R["quantize_forward"](w, 8)
    assert q.dtype == np.int8 and s.shape == (M, 1)
    for m in range(M):
        d = np.abs(w[m]).max() / 127
        assert s[m, 0] == pytest.approx(d, rel=1e-6)
        for k in range(K):
            assert q[m, k] == (round(w[m, k] / d) if d else 0)
    deq = R["dequantize_forward"](q, s)
    assert np.all(np.abs(deq - w) <= s / 2 * (1 + 1e-5) + 1e-12)  # rounding error at most half a step

    p, s4 = R["quantize_forward"](w, 4, group)
    assert p.dtype == np.uint8 and p.shape == (M, K // 2) and s4.dtype == np.float16 and s4.shape == (M, groups)
    deq4 = R["dequantize_forward"](p, s4)
    for m in range(M):
        for g in range(groups):
            block = w[m, g * group:(g + 1) * group]
            extreme = block[np.abs(block).argmax()]
            d = np.float64(np.float16(extreme / -8))
            assert float(s4[m, g]) == d
            for k in range(g * group, (g + 1) * group):
                q_k = _q4_element(p[m], k)
                assert -8 <= q_k <= 7
                expected = int(np.clip(np.rint(w[m, k] / d), -8, 7)) if d else 0
                assert q_k == expected
                assert deq4[m, k] == np.float32(q_k * d)
            if d:
                assert _q4_element(p[m], g * group + int(np.abs(block).argmax())) == -8  # the extreme is exact


def test_bad_formats_are_refused():
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        R["quantize_forward"](np.ones((2, 4)), 3)
    with pytest.raises(ValueError, match="divides in_features 48"):
        QuantLinear.from_float(mt.nn.Linear(48, 4), 4, 32)


@pytest.mark.skipif("numba" not in backend.available(), reason="the Numba backend is optional")
@settings(deadline=None)
@given(N=st.sampled_from([1, 2, 3, 5, 7, 8, 9, 40]), M=st.integers(1, 300), groups=st.integers(1, 3),
       group=st.sampled_from([32, 64]), bits=st.sampled_from([8, 4]), dt=st.sampled_from([np.float32, np.float64]),
       strided=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_numba_qlinear_matches_the_reference(N, M, groups, group, bits, dt, strided, bias, seed):
    """Rows below and above the fused/tiled switch, channel counts that are not a multiple of either tile,
    non-contiguous inputs, float32 and float64."""
    K = groups * group
    rng = np.random.default_rng(seed)
    q, s = R["quantize_forward"](rng.standard_normal((M, K)), bits, group)
    x = rng.standard_normal((N, 2 * K)).astype(dt)[:, ::2] if strided else rng.standard_normal((N, K)).astype(dt)
    b = rng.standard_normal(M).astype(dt) if bias else None
    got = backend._load("numba")["qlinear_forward"](x, q, s, b)
    ref = R["qlinear_forward"](x, q, s, b)
    assert got.dtype == dt and got.shape == (N, M)
    np.testing.assert_allclose(got, ref, **kernel_tol(dt, K, magnitude=8.0))


@settings(deadline=None)
@given(lead=st.sampled_from([(3,), (2, 3), (1,)]), bits=st.sampled_from([8, 4]), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_quantlinear_gradient_flows_to_its_input(lead, bits, bias, seed):
    rng = np.random.default_rng(seed)
    lin = mt.nn.Linear(8, 5, bias=bias, dtype=np.float64)
    q = QuantLinear.from_float(lin, bits, group=4)
    x = rng.standard_normal((*lead, 8))
    v = rng.standard_normal((*lead, 5))
    t = mt.tensor(x, requires_grad=True)
    out = q(t)
    np.testing.assert_allclose(out.numpy(), x @ q.dequantize().astype(np.float64).T
                               + (lin.bias.numpy() if bias else 0), rtol=1e-6, atol=1e-6)
    out.backward(mt.tensor(v))
    (num,) = numerical_grads(lambda a: q(a), [x], v, [0])
    np.testing.assert_allclose(t.grad.numpy(), num, **GRAD_F64)
    if bias:
        np.testing.assert_allclose(q.bias.grad.numpy(), v.reshape(-1, 5).sum(axis=0), rtol=1e-12)


@pytest.fixture(scope="module")
def gpt():
    mt.manual_seed(0)
    return mt.nn.GPT(mt.nn.GPTConfig(block_size=32, vocab_size=40, n_layer=2, n_head=4, n_embd=64, bias=True)).eval()


@pytest.mark.parametrize("bits,group,embedding", [(8, None, False), (4, 32, False), (4, 64, True), (8, None, True)])
def test_quantized_gpt(gpt, bits, group, embedding):
    idx = np.random.default_rng(1).integers(0, 40, (3, 20))
    ref = gpt(idx, idx)[0].numpy()
    q = copy.deepcopy(gpt)
    desc = quantize_(q, bits, group, embedding)
    assert len(desc["linears"]) == 8 + embedding and bool(desc["embeddings"]) == embedding
    assert not any(isinstance(m, mt.nn.Linear) for m in q.modules() if m is not q.lm_head or embedding)
    logits = q(idx, idx)[0].numpy()
    # the same as a float model holding the dequantized weights
    deq = copy.deepcopy(gpt)
    for name in desc["linears"]:
        deq.get_submodule(name).weight.data[...] = q.get_submodule(name).dequantize()
    np.testing.assert_allclose(logits, deq(idx, idx)[0].numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(logits - ref).max() < (0.02 if bits == 8 else 0.2) * np.abs(ref).max()
    assert weight_bytes(q) < weight_bytes(gpt) / (3 if bits == 8 else 4)
    # generation: with the cache == without, and the graph-free step == forward
    assert q.generate(idx, 6, top_k=1).tolist() == q.generate(idx, 6, top_k=1, use_cache=False).tolist()
    # a fresh model given the format loads the state and computes the same
    fresh = apply_format(mt.nn.GPT(gpt.config), desc)
    fresh.load_state_dict({k: v.numpy() for k, v in q.state_dict().items()})
    np.testing.assert_array_equal(fresh.eval()(idx, idx)[0].numpy(), logits)
    if embedding:  # the tied pair shares one set of integers
        assert fresh.transformer.wte.qweight is fresh.lm_head.qweight


def test_magnitude_pruning_zeros_exactly_the_smallest(gpt):
    m = copy.deepcopy(gpt)
    names = prune.prunable_linears(m)
    assert "lm_head" not in names and len(names) == 8
    before = np.concatenate([np.abs(m.get_submodule(n).weight.numpy()).ravel() for n in names])
    masks = prune.magnitude_prune_(m, 0.3)
    after = np.concatenate([m.get_submodule(n).weight.numpy().ravel() for n in names])
    k = round(0.3 * before.size)
    assert (after == 0).sum() == k and prune.sparsity_of(m) == pytest.approx(k / before.size)
    assert before[after == 0].max() <= before[after != 0].min()  # the smallest went
    assert sum((~v).sum() for v in masks.values()) == k


def test_a_pruned_head_contributes_nothing(gpt):
    idx = np.random.default_rng(2).integers(0, 40, (2, 12))
    a, b = copy.deepcopy(gpt), copy.deepcopy(gpt)
    prune.prune_heads_(a, {1: [2]})
    # zeroing only the head's output columns already removes it; its q, k, v then cannot matter
    hs = 16
    b.transformer.h[1].attn.c_proj.weight.data[:, 2 * hs:3 * hs] = 0.0
    np.testing.assert_allclose(a(idx, idx)[0].numpy(), b(idx, idx)[0].numpy(), rtol=1e-5, atol=1e-6)
    scores = prune.head_importance(gpt)
    assert scores.shape == (2, 4) and prune.head_importance(a)[1, 2] == 0
    chosen = prune.least_important_heads(gpt, 3)
    assert sum(len(v) for v in chosen.values()) == 3
    with pytest.raises(ValueError, match="one per layer must stay"):
        prune.least_important_heads(gpt, 7)


def _trained(tmp_path: Path) -> Path:
    from minitransformer.tasks.language_model import TrainConfig, train

    data = tmp_path / "text.txt"
    data.write_text(TEXT, encoding="utf-8")
    train(TrainConfig(data=str(data), out=str(tmp_path / "f"), n_layer=1, n_head=2, n_embd=32, block_size=16,
                      batch_size=8, max_iters=30, eval_interval=30, eval_iters=2, warmup_iters=2, sample_tokens=0,
                      bias=True), progress=False)
    return tmp_path / "f"


def test_compressed_checkpoints_and_commands(tmp_path):
    from minitransformer.deploy import compress

    src = _trained(tmp_path)
    run = [sys.executable, "-m", "minitransformer"]
    r = subprocess.run(run + ["quantize", "--out", str(src), "--to", str(tmp_path / "q4"), "--bits", "4",
                              "--group", "32", "--embedding"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "4-bit in groups of 32, embedding included" in r.stdout
    compress.quantize_checkpoint(src, tmp_path / "q8", 8)
    base, q8, q4 = (compress.evaluate(d) for d in (src, tmp_path / "q8", tmp_path / "q4"))
    assert q8["file_bytes"] < base["file_bytes"] / 2 and q4["file_bytes"] < q8["file_bytes"]
    assert abs(q8["val_loss"] - base["val_loss"]) < 0.01 * base["val_loss"]
    assert abs(q4["val_loss"] - base["val_loss"]) < 0.05 * base["val_loss"]
    r = subprocess.run(run + ["sample", "--out", str(tmp_path / "q4"), "--max-new-tokens", "20", "--seed", "1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout) >= 20, r.stderr
    r = subprocess.run(run + ["eval", "--out", str(tmp_path / "q8")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and f"{q8['val_loss']:.4f}" in r.stdout and "int8" in r.stdout, r.stderr
    # inference-only checkpoints refuse to resume, and the errors are one line
    r = subprocess.run(run + ["train", "--out", str(tmp_path / "q8"), "--resume"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "holds no optimizer state" in r.stderr
    r = subprocess.run(run + ["quantize", "--out", str(tmp_path / "q8"), "--to", str(tmp_path / "x")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "already quantized" in r.stderr
    with pytest.raises(ValueError, match="new directory"):
        compress.quantize_checkpoint(src, src)


def test_pruned_fine_tune_keeps_its_zeros_and_resumes(tmp_path):
    from minitransformer.deploy import compress
    from minitransformer.tasks.language_model import TrainConfig, load_model, train

    src = _trained(tmp_path)
    desc = compress.prune_checkpoint(src, tmp_path / "p", sparsity=0.5, heads=1, finetune_iters=4, progress=False)
    assert desc["achieved_sparsity"] >= 0.5 and sum(len(v) for v in desc["heads"].values()) == 1
    model, _, doc = load_model(tmp_path / "p")
    assert doc["step"] == 4 and doc["pruning"]["params"]
    params = dict(model.named_parameters())
    zeros = {n: params[n].numpy() == 0 for n in doc["pruning"]["params"]}
    assert prune.sparsity_of(model) >= 0.5
    # continue the fine-tune: the zeros stay zeros, the other weights move
    out = train(TrainConfig(out=str(tmp_path / "p"), max_iters=8, resume=True), overrides={"max_iters": 8},
                progress=False)["model"]
    after = dict(out.named_parameters())
    for n, z in zeros.items():
        assert np.all(after[n].numpy()[z] == 0)
    assert not np.array_equal(after["transformer.h.0.mlp.c_fc.weight"].numpy(),
                              params["transformer.h.0.mlp.c_fc.weight"].numpy())
    plain = compress.prune_checkpoint(src, tmp_path / "p2", sparsity=0.25)
    assert plain["finetune_iters"] == 0 and compress.evaluate(tmp_path / "p2")["val_loss"] > 0


def test_serving_a_quantized_checkpoint(tmp_path):
    import http.client
    import json
    import threading

    from minitransformer.deploy import compress
    from minitransformer.deploy.serve import make_server

    src = _trained(tmp_path)
    compress.quantize_checkpoint(src, tmp_path / "q", 4, 32, embedding=True)
    srv = make_server(str(tmp_path / "q"), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=30)
        conn.request("GET", "/v1/model")
        info = json.loads(conn.getresponse().read())
        conn.request("POST", "/v1/generate", body=json.dumps({"prompt": "def ", "max_new_tokens": 10, "seed": 1}))
        text = json.loads(conn.getresponse().read())["text"]
        conn.close()
    finally:
        srv.shutdown()
        srv.server_close()
    from minitransformer.tasks.language_model import load_model

    float_model = load_model(src)[0]
    assert info["quantization"] == {"bits": 4, "group": 32, "layers": 5, "embedding": True}
    assert info["parameters"] == sum(p.numel() for p in float_model.parameters())
    assert len(text) >= 10


def test_quantized_weights_file_reads_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors package is optional")
    from minitransformer.deploy import compress
    from minitransformer.io import checkpoint

    src = _trained(tmp_path)
    compress.quantize_checkpoint(src, tmp_path / "q", 4, 32, embedding=True)
    doc, ours, _ = checkpoint.load(tmp_path / "q")
    theirs = st.load_file(str(tmp_path / "q" / doc["files"]["model"]))
    assert set(theirs) == set(ours)
    for k, v in ours.items():
        assert theirs[k].dtype == v.dtype and np.array_equal(theirs[k], v), k
    assert {v.dtype for v in ours.values()} >= {np.dtype(np.uint8), np.dtype(np.float16), np.dtype(np.float32)}
