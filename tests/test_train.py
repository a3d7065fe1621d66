"""The language-model job: tokenizers, safetensors, checkpoints (atomic, verified), exact resume, the
KV cache, sampling options and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer.io import atomic, checkpoint, safetensors
from minitransformer.nn import generation
from minitransformer.tasks.language_model import TrainConfig, lr_at, train
from minitransformer.text.tokenizers import ByteBPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parent.parent
TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0  # café ☕\n" * 20


@pytest.fixture(scope="module")
def bpe():
    return ByteBPETokenizer.train(TEXT, 300)


@given(s=st.text(max_size=60))
def test_bpe_round_trips_any_string(s):
    tok = ByteBPETokenizer.train(TEXT, 300)
    assert tok.decode(tok.encode(s)) == s


def test_bpe_learns_merges_and_saves(bpe, tmp_path):
    assert 256 < bpe.vocab_size <= 300  # merging stops early when every piece is a single token
    ids = bpe.encode("def add(a, b):")
    assert len(ids) < len(b"def add(a, b):")  # merges compress the training text
    save_tokenizer(bpe, tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.encode(TEXT) == bpe.encode(TEXT)


def test_char_tokenizer():
    tok = CharTokenizer.train("hello")
    assert tok.vocab_size == 4 and tok.decode(tok.encode("hole")) == "hole"
    with pytest.raises(ValueError, match="'z' is not in this character vocabulary"):
        tok.encode("z")


def test_safetensors_round_trip_and_corruption(tmp_path):
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.int64),
               "c": np.zeros((0, 4), np.float16), "d": np.array(True)}
    path = tmp_path / "x.safetensors"
    safetensors.save_file(tensors, path, metadata={"k": "v"})
    back, meta = safetensors.load_file_with_metadata(path)
    assert meta == {"k": "v"} and set(back) == set(tensors)
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])
        assert back[k].dtype == tensors[k].dtype
    raw = path.read_bytes()
    path.write_bytes(raw[:-3])
    with pytest.raises(ValueError, match=r"x.safetensors: not a valid safetensors file: .*truncated"):
        safetensors.load_file(path)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="header is not JSON"):
        safetensors.load_file(path)


def test_safetensors_matches_the_reference_library(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"w": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32),
               "i": np.arange(4, dtype=np.int32)}
    ours = tmp_path / "ours.safetensors"
    safetensors.save_file(tensors, ours)
    for k, v in st_numpy.load_file(str(ours)).items():
        np.testing.assert_array_equal(v, tensors[k])
    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(theirs))
    for k, v in safetensors.load_file(theirs).items():
        np.testing.assert_array_equal(v, tensors[k])


def test_warmup_schedule_never_starts_at_zero():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=100)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 11)
    assert lr_at(10, cfg) == pytest.approx(1e-3) and lr_at(100, cfg) == pytest.approx(1e-4)
    assert lr_at(55, cfg) == pytest.approx(1e-4 + 0.5 * 0.9e-3)


def _cfg(tmp_path, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "text.txt"
    data.write_text(TEXT * 5, encoding="utf-8")
    base = dict(data=str(data), n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_interval=4,
                eval_iters=2, warmup_iters=2, lr_decay_iters=12, out=str(tmp_path / "out"), sample_tokens=0,
                dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_resume_continues_bit_for_bit(tmp_path, tokenizer):
    full = train(_cfg(tmp_path / "a", max_iters=12, tokenizer=tokenizer, vocab_size=280), progress=False)
    train(_cfg(tmp_path / "b", max_iters=6, tokenizer=tokenizer, vocab_size=280), progress=False)
    resumed = train(_cfg(tmp_path / "b", max_iters=12, resume=True), overrides={"max_iters": 12}, progress=False)
    assert resumed["step"] == full["step"] == 12
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    assert resumed["val_loss"] == full["val_loss"]
    ha = json.loads((tmp_path / "a" / "out" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "out" / "history.json").read_text())
    assert [h for h in ha if h["step"] != 6] == [h for h in hb if h["step"] != 6]


def test_checkpoint_is_verified_and_atomic(tmp_path):
    cfg = _cfg(tmp_path, max_iters=4)
    train(cfg, progress=False)
    out = Path(cfg.out)
    doc = json.loads((out / "checkpoint.json").read_text())
    model_file = out / doc["files"]["model"]
    umask = os.umask(0)
    os.umask(umask)
    assert model_file.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions open() would give
    raw = model_file.read_bytes()
    model_file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=rf"{model_file.name}: corrupt or truncated"):
        checkpoint.load(out)
    model_file.write_bytes(raw)
    (out / "checkpoint.json").write_text("{")
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint.json: corrupt checkpoint manifest"):
        checkpoint.load(out)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in"):
        checkpoint.load(tmp_path / "nowhere")


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic.atomic_write_bytes(path, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_kv_cache_gives_the_same_logits_and_tokens():
    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=12, vocab_size=17, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = mt.tensor([[1, 2, 3, 4]])
    caches = generation.new_caches(model)
    generation.decode_step(model, idx.numpy()[:, :3], 0, caches)
    with_cache = generation.decode_step(model, idx.numpy()[:, 3:], 3, caches)
    without, _ = model(idx)
    np.testing.assert_allclose(with_cache[:, -1], without.numpy()[:, -1], rtol=1e-5, atol=1e-6)
    greedy = model.generate(idx, 20, top_k=1)  # runs past block_size: the cache restarts correctly
    assert greedy.tolist() == model.generate(idx, 20, top_k=1, use_cache=False).tolist()
    for kw in ({"temperature": 0.7}, {"top_p": 0.5}, {"top_k": 3, "top_p": 0.9}):
        mt.manual_seed(9)
        a = model.generate(idx, 15, **kw).tolist()
        mt.manual_seed(9)
        assert model.generate(idx, 15, use_cache=False, **kw).tolist() == a


def test_top_p_keeps_only_the_nucleus():
    from minitransformer.nn.generation import sample_next

    logits = mt.tensor(np.log(np.array([[0.5, 0.3, 0.15, 0.05]])))
    mt.manual_seed(0)
    draws = {int(sample_next(logits, top_p=0.7).item()) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.7; the rest never appear


def test_command_line_train_resume_sample_and_errors(tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(TEXT * 5, encoding="utf-8")
    run = [sys.executable, "-m", "minitransformer"]
    common = ["--data", str(data), "--out", str(tmp_path / "o"), "--n-layer", "1", "--n-embd", "16",
              "--n-head", "2", "--block-size", "16", "--eval-interval", "5", "--eval-iters", "2", "--quiet"]
    r = subprocess.run(run + ["train", *common, "--max-iters", "5", "--sample-tokens", "20"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "step 5: train loss" in r.stdout and "sample:" in r.stdout
    r = subprocess.run(run + ["train", "--out", str(tmp_path / "o"), "--resume", "--max-iters", "10", "--quiet",
                              "--sample-tokens", "0"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming at step 5" in r.stdout and "step 10: train loss" in r.stdout
    r = subprocess.run(run + ["sample", "--out", str(tmp_path / "o"), "--prompt", "def ", "--max-new-tokens", "30",
                              "--seed", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("def ") and len(r.stdout) >= 30
    # a reader that stops early (`| head`): a quiet exit, no traceback
    p = subprocess.Popen(run + ["sample", "--out", str(tmp_path / "o"), "--max-new-tokens", "400"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    p.stdout.read(1)
    p.stdout.close()
    assert p.wait(timeout=60) == 0 and b"Traceback" not in p.stderr.read()
    toml = tmp_path / "c.toml"
    toml.write_text('n_layer = 1\nn-embd = 16\nmax_iters = 0\nbogus = 3\n')
    for extra, message in ((["--n-embd", "15"], "--n-embd (15) must be divisible by --n-head (2)"),
                           (["--data", str(tmp_path / "missing.txt")], "no such file"),
                           (["--config", str(toml)], "unknown option(s) bogus")):
        # --overwrite: o holds the checkpoint trained above, and these runs show the other errors
        r = subprocess.run(run + ["train", *common, *extra, "--overwrite"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.strip().startswith("error:") and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    r = subprocess.run(run + ["sample", "--out", str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "error: no checkpoint in" in r.stderr


def test_builtin_corpus_is_python_source_of_about_a_megabyte():
    from minitransformer.tasks.lm_data import stdlib_corpus, stdlib_files

    text = stdlib_corpus()
    assert 900_000 < len(text) < 1_300_000
    assert stdlib_files() == sorted(stdlib_files())
    assert "def " in text and "import " in text


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import signal
    import time

    data = tmp_path / "t.txt"
    data.write_text(TEXT * 5, encoding="utf-8")
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "minitransformer", "train", "--data", str(data), "--out", str(out), "--n-layer", "1",
           "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--eval-interval", "2", "--eval-iters", "1",
           "--max-iters", "100000", "--quiet", "--sample-tokens", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted: finishing this step and saving a checkpoint" in stderr
    assert "continue with --resume" in stdout
    step = json.loads((out / "checkpoint.json").read_text())["step"]
    assert step > 0
    checkpoint.load(out)  # complete and verified


def test_cuda_without_a_gpu_is_one_clear_line(tmp_path):
    pytest.importorskip("numpy")
    if mt.xp._cupy is not None:
        pytest.skip("a GPU is present")
    r = subprocess.run([sys.executable, "-m", "minitransformer", "train", "--device", "cuda", "--max-iters", "1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: --device cuda: device 'cuda' is unavailable")
