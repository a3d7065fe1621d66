"""Nothing lost, nothing let in: a checkpoint is never replaced by a run that did not ask to replace it, nor by
non-finite weights; every numeric option is checked for finiteness and range before anything is allocated;
ordinary OS errors are one line; small library errors say what to fix."""

from __future__ import annotations

import json
import os
import socket
import stat

import numpy as np
import pytest

import minitransformer as mt
from minitransformer.__main__ import main
from minitransformer.io import checkpoint
from minitransformer.nn.gpt import GPT, GPTConfig
from minitransformer.optim import AdamW
from minitransformer.tasks.language_model import TrainConfig, train
from minitransformer.training import loop

TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 40
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4", "--eval_iters=1",
        "--warmup_iters=1", "--sample_tokens=0", "--quiet"]


def one_error(capsys, *words: str) -> str:
    """The one `error:` line on stderr, with no traceback, holding each of `words`."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture()
def trained(tmp_path, capsys):
    """A language model trained 2 steps into tmp_path/o (checkpoint at step 2); returns the train argv."""
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    base = ["train", "--data", str(data), f"--out={tmp_path / 'o'}", *TINY, "--eval_interval=2"]
    assert main([*base, "--max_iters=2"]) == 0
    capsys.readouterr()
    return base


# ---- 1. no silent overwrite ------------------------------------------------------------------------------------
def test_training_over_a_checkpoint_needs_resume_or_overwrite(tmp_path, capsys, trained):
    out = tmp_path / "o"
    manifest = (out / "checkpoint.json").read_bytes()
    assert main([*trained, "--max_iters=3"]) == 2
    one_error(capsys, str(out), "step 2", "--resume", "--init_from=resume", "--overwrite")
    assert (out / "checkpoint.json").read_bytes() == manifest
    # the task commands share the rule (refused before any data is built)
    assert main(["classify", "train", f"--out={out}", "--max_iters=1", "--quiet"]) == 2
    one_error(capsys, str(out), "step 2", "--overwrite")
    assert (out / "checkpoint.json").read_bytes() == manifest
    assert main([*trained, "--max_iters=3", "--resume"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 3
    assert main([*trained, "--max_iters=2", "--overwrite"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2


# ---- 2. numbers: finite, in range, and sizes that fit in memory ---------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["train", "--lr", "nan"], ["--lr", "(0, inf)", "nan"]),
    (["train", "--lr", "inf"], ["--lr", "(0, inf)"]),
    (["train", "--min-lr", "nan"], ["--min-lr"]),
    (["train", "--weight-decay", "nan"], ["--weight-decay"]),
    (["train", "--grad-clip=-inf"], ["--grad-clip"]),
    (["train", "--dropout", "nan"], ["--dropout", "[0, 1)"]),
    (["train", "--beta1", "nan"], ["--beta1", "[0, 1)"]),
    (["train", "--beta2", "1"], ["--beta2", "[0, 1)"]),
    (["train", "--batch-size", "0"], ["--batch-size", "[1, 2147483647]"]),
    (["translate", "train", "--length-penalty", "nan"], ["--length-penalty", "finite"]),
    (["classify", "train", "--lr", "nan"], ["--lr"]),
    (["asr", "train", "--noise", "2"], ["--noise", "[0, 1]"]),
    (["train", "--n-layer", "1000000000"], ["GiB", "--n-layer 1000000000"]),
    (["train", "--n-embd", "1000000"], ["GiB", "--n-embd 1000000"]),
    (["train", "--block-size", "4000000"], ["GiB", "--block-size 4000000"]),
    (["eval", "--batch-size", "0"], ["--batch-size", "[1, inf)"]),
    (["sample", "--top-k", "0"], ["--top-k", "[1, inf)"]),
    (["sample", "--temperature", "nan"], ["--temperature"]),
    (["serve", "--max-new-tokens-limit", "0"], ["--max-new-tokens-limit"]),
    (["serve", "--port", "99999"], ["--port", "[0, 65535]"]),
])
def test_every_numeric_option_is_checked_in_one_line(tmp_path, capsys, argv, words):
    assert main([*argv, f"--out={tmp_path / 'none'}"]) == 2
    one_error(capsys, *words)
    assert not (tmp_path / "none").exists()


# ---- 3. non-finite loss or gradient -----------------------------------------------------------------------------
def test_a_nonfinite_step_stops_or_is_skipped_and_the_good_checkpoint_stays(tmp_path, capsys, trained,
                                                                             monkeypatch):
    out = tmp_path / "o"
    forward = GPT.forward

    def poisoned(self, idx, targets=None, **kw):  # NaN loss in training steps only (evaluation stays finite)
        logits, loss = forward(self, idx, targets, **kw)
        return logits, (loss * float("nan") if self.training and loss is not None else loss)

    monkeypatch.setattr(GPT, "forward", poisoned)
    before = checkpoint.load(out)
    assert main([*trained, "--resume", "--max_iters=4"]) == 2
    one_error(capsys, "step 2", "non-finite", "--skip-nonfinite")
    kept = checkpoint.load(out)
    assert kept[0]["step"] == 2
    for k, v in before[1].items():
        np.testing.assert_array_equal(kept[1][k], v, err_msg=k)
    assert main([*trained, "--resume", "--max_iters=4", "--skip-nonfinite"]) == 0
    stdout = capsys.readouterr().out
    assert "step 2: skipped" in stdout and "2 step(s) skipped so far" in stdout
    after = checkpoint.load(out)
    assert after[0]["step"] == 4
    for k, v in before[1].items():  # every step skipped: the weights are the good ones
        np.testing.assert_array_equal(after[1][k], v, err_msg=k)
    # weights that hold NaN are never written over a checkpoint
    model = mt.nn.Linear(2, 2)
    with mt.no_grad():
        model.weight.data[0, 0] = np.nan
    job = loop.Job(model, lambda split, rng: None, {"model_config": {}})
    with pytest.raises(RuntimeError, match="NaN or infinity; not saved"):
        loop.save_checkpoint(out, 5, job, AdamW(model.parameters()), loop.LoopConfig(), np.random.default_rng(0))
    assert checkpoint.load(out)[0]["step"] == 4


# ---- 4. OS errors: one line, no traceback --------------------------------------------------------------------
def test_os_errors_are_one_line(tmp_path, capsys, trained):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main([*trained, f"--out={a_file}", "--max_iters=1"]) == 2
    one_error(capsys, str(a_file))
    assert main(["quantize", f"--out={tmp_path / 'o'}", "--to", str(a_file / "q")]) == 2
    one_error(capsys, str(a_file))
    (tmp_path / "c.toml").write_text('max_iters = "abc"\n')
    assert main(["train", "--config", str(tmp_path / "c.toml")]) == 2
    one_error(capsys, "max_iters", "integer", "'abc'")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", f"--out={tmp_path / 'o'}", "--port", str(port)]) == 2
        one_error(capsys, f"127.0.0.1:{port}")
    assert main(["serve", f"--out={tmp_path / 'o'}", "--host", "no.such.host.invalid", "--port", "0"]) == 2
    one_error(capsys, "no.such.host.invalid")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_is_one_line(tmp_path, capsys, trained):
    out = tmp_path / "o"
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main([*trained, "--resume", "--max_iters=3"]) == 2
        one_error(capsys, str(out))
    finally:
        out.chmod(stat.S_IRWXU)


# ---- 5. library errors that say what to fix ----------------------------------------------------------------------
def test_small_library_errors(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    cfg = dict(data=str(tmp_path / "t.txt"), n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4,
               eval_interval=2, eval_iters=1, warmup_iters=1, sample_tokens=0, out=str(tmp_path / "o"))
    train(TrainConfig(**cfg, max_iters=2), progress=False)
    train(TrainConfig(**cfg, max_iters=4, resume=True), overrides={"max_iters": 4}, progress=False)
    steps = [h["step"] for h in json.loads((tmp_path / "o" / "history.json").read_text())]
    assert steps == [0, 2, 4]

    lin = mt.nn.Linear(2, 2)
    w, b = lin.weight.numpy().copy(), lin.bias.numpy().copy()
    with pytest.raises(RuntimeError, match="bias cannot be converted"):
        lin.load_state_dict({"weight": np.ones((2, 2)), "bias": np.array(["a", "b"])})
    np.testing.assert_array_equal(lin.weight.numpy(), w)  # nothing half-loaded
    np.testing.assert_array_equal(lin.bias.numpy(), b)

    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(mt.zeros(1, 0, dtype="int64"), 3)
    with pytest.raises(ValueError, match="at least one token"):
        model.generate_batch([[]], 3)
    with pytest.raises(ValueError, match="normalized_shape=0"):
        mt.nn.LayerNorm(0)
    with pytest.raises(ValueError, match="ragged .* lengths 2, 1"):
        mt.tensor([[1, 2], [3]])


def test_quantize_and_prune_do_not_replace_a_checkpoint_unasked(tmp_path, capsys):
    from minitransformer.deploy.compress import prune_checkpoint, quantize_checkpoint
    from minitransformer.tasks.language_model import TrainConfig, train

    (tmp_path / "t.txt").write_text("hello there, general kenobi. " * 200)
    for name in ("src", "dst"):
        train(TrainConfig(data=str(tmp_path / "t.txt"), out=str(tmp_path / name), n_layer=1, n_head=2, n_embd=16,
                          block_size=16, max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    before = (tmp_path / "dst" / "checkpoint.json").read_bytes()
    for call in (lambda **kw: quantize_checkpoint(tmp_path / "src", tmp_path / "dst", 8, **kw),
                 lambda **kw: prune_checkpoint(tmp_path / "src", tmp_path / "dst", 0.5, progress=False, **kw)):
        with pytest.raises(ValueError, match="already holds a checkpoint .step 2.; pass --overwrite"):
            call()
        assert (tmp_path / "dst" / "checkpoint.json").read_bytes() == before
    quantize_checkpoint(tmp_path / "src", tmp_path / "dst", 8, overwrite=True)
    assert (tmp_path / "dst" / "checkpoint.json").read_bytes() != before
    assert main(["prune", "--out", str(tmp_path / "src"), "--to", str(tmp_path / "dst"), "--sparsity", "0.5"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_nonfinite_weights_need_the_flag_on_the_command_line(tmp_path, capsys):
    from minitransformer.io import safetensors
    from minitransformer.tasks.language_model import TrainConfig, train

    (tmp_path / "t.txt").write_text("hello there, general kenobi. " * 200)
    out = tmp_path / "lm"
    train(TrainConfig(data=str(tmp_path / "t.txt"), out=str(out), n_layer=1, n_head=2, n_embd=16, block_size=16,
                      max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    doc, state, optim = checkpoint.load(out)
    state["transformer.ln_f.weight"][0] = np.nan                        # a run that diverged, written by hand
    manifest = {k: v for k, v in doc.items() if k not in ("format", "version", "step", "files", "sha256", "bytes",
                                                         "manifest_sha256")}
    checkpoint.save(out, doc["step"], state, optim, manifest)
    assert safetensors.load_file(next(out.glob("model-*.safetensors")))["transformer.ln_f.weight"][0] != 0
    sample = ["sample", "--out", str(out), "--prompt", "hello", "--max-new-tokens", "3"]
    for argv in (sample, ["eval", "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "NaN or infinite values" in err and "--allow-nonfinite" in err and "Traceback" not in err
    assert main([*sample, "--allow-nonfinite"]) == 0
