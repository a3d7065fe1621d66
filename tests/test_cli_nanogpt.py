"""The command line as nanoGPT's users type it: underscore names, --key=value, nanoGPT's own names, booleans as
--flag=False, TOML and nanoGPT-style .py config files (read, never run); nanoGPT's log lines in redirected
output; --help with defaults for every command; the one-line notices (Numba missing, matplotlib missing)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from minitransformer import backend
from minitransformer.__main__ import SampleOptions, _parse_args, _task_argv, main
from minitransformer.tasks import translation as T
from minitransformer.tasks.language_model import TrainConfig, lr_at
from minitransformer.training import loop
from minitransformer.training.options import config_values, python_items, read_config

TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 40
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4", "--eval_iters=1",
        "--warmup_iters=1", "--sample_tokens=0"]


def values(argv, cls=TrainConfig):
    return config_values(_parse_args(argv), cls)


# ---- the spellings --------------------------------------------------------------------------------------------
def test_underscore_key_value_and_nanogpt_names_give_the_same_config():
    ours = values(["train", "--max-iters", "2000", "--lr", "0.002", "--out", "o", "--grad-accum", "4", "--resume",
                   "--batch-size", "8", "--block-size", "32", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
                   "--dropout", "0.1", "--weight-decay", "0.05", "--beta1", "0.8", "--beta2", "0.95",
                   "--grad-clip", "0.5", "--no-decay-lr", "--warmup-iters", "5", "--lr-decay-iters", "900",
                   "--min-lr", "0.0001", "--eval-interval", "50", "--eval-iters", "3", "--seed", "7",
                   "--device", "cpu", "--bias", "--eval-only", "--log-interval", "5",
                   "--no-always-save-checkpoint"])
    nanogpt = values(["train", "--max_iters=2000", "--learning_rate=2e-3", "--out_dir=o",
                      "--gradient_accumulation_steps=4", "--init_from=resume", "--batch_size=8", "--block_size=32",
                      "--n_layer=2", "--n_head=2", "--n_embd=32", "--dropout=0.1", "--weight_decay=0.05",
                      "--beta1=0.8", "--beta2=0.95", "--grad_clip=0.5", "--decay_lr=False", "--warmup_iters=5",
                      "--lr_decay_iters=900", "--min_lr=1e-4", "--eval_interval=50", "--eval_iters=3", "--seed=7",
                      "--device=cpu", "--bias=True", "--eval_only=True", "--log_interval=5",
                      "--always_save_checkpoint=False", "--compile=False", "--dtype=float32"])
    assert ours == nanogpt
    assert ours["lr"] == 2e-3 and ours["grad_accum"] == 4 and ours["resume"] is True and ours["decay_lr"] is False
    assert values(["train", "--max-iters=7", "--no_bias", "--init_from=scratch"]) == {
        "max_iters": 7, "bias": False, "resume": False}
    cfg = TrainConfig(**ours)
    assert lr_at(0, cfg) == lr_at(899, cfg) == 2e-3  # decay_lr off: a constant rate


def test_sample_and_task_options_take_nanogpt_spellings(tmp_path):
    a = values(["sample", "--out", "o", "--prompt", "hi", "--max-new-tokens", "5", "--top-k", "3",
                "--num-samples", "2", "--temperature", "0.5", "--seed", "1"], SampleOptions)
    b = values(["sample", "--out_dir=o", "--start=hi", "--max_new_tokens=5", "--top_k=3", "--num_samples=2",
                "--temperature=0.5", "--seed=1", "--compile=False"], SampleOptions)
    assert a == b
    t = values(["translate", "train", "--d_model=32", "--learning_rate=3e-3", "--share_embeddings=True"],
               T.TranslateConfig)
    assert t == {"d_model": 32, "lr": 3e-3, "share_embeddings": True}


def test_accepted_names_explain_themselves_and_bad_values_are_one_line(capsys):
    values(["train", "--compile=True", "--dtype=bfloat16", "--wandb_log=True", "--wandb_project=x"])
    err = capsys.readouterr().err
    assert "compile: nothing more to compile" in err and "dtype bfloat16: runs in float32" in err
    assert "wandb_log" in err and len(err.strip().splitlines()) == 3
    for bad, message in ((["--init_from=gpt2"], "init_from must be 'scratch' or 'resume'"),
                         (["--dtype=int8"], "dtype must be float32"),
                         (["--bias=maybe"], "argument --bias: expected True or False, got 'maybe'")):
        with pytest.raises(SystemExit) as e:
            _parse_args(["train", *bad])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_task_commands_keep_their_old_short_forms():
    assert _task_argv(["translate", "--out", "d", "1 204"], {"--out"}) == ["translate", "predict", "--out", "d",
                                                                          "1 204"]
    assert _task_argv(["translate", "--out", "d", "eval"], {"--out"}) == ["translate", "eval", "--out", "d"]
    assert _task_argv(["asr", "transcribe", "a.wav"], set()) == ["asr", "transcribe", "a.wav"]
    assert _task_argv(["vit", "--help"], set()) == ["vit", "--help"]
    args = _parse_args(["classify", "--out", "d", "(()", "--quiet", "[]"])
    assert args.action == "predict" and args.words == ["(()", "[]"]
    args = _parse_args(["translate", "--out", "d", "x", "--beam=4", "--length_penalty=0.5"])
    assert config_values(args, T.TranslateConfig) == {"out": "d", "beam": 4, "length_penalty": 0.5}
    assert _parse_args(["asr", "predict", "--out", "d", "a.wav"]).action == "predict"  # transcribe's old name


# ---- config files ---------------------------------------------------------------------------------------------
def test_toml_keys_take_nanogpt_names(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('learning_rate = 3e-4\nout_dir = "o"\ninit_from = "resume"\nn-embd = 64\ndecay_lr = false\n'
                    'max_iters = 10\n')
    assert values(["train", "--config", str(toml), "--max_iters=20"]) == {
        "lr": 3e-4, "out": "o", "resume": True, "n_embd": 64, "decay_lr": False, "max_iters": 20}
    toml.write_text("max_iter = 3\nbogus = 1\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) max_iter, bogus; close matches: max_iters"):
        read_config(toml, TrainConfig, "--config ")
    toml.write_text('max_iters = "ten"\n')
    with pytest.raises(ValueError, match="max_iters must be an integer, got 'ten'"):
        read_config(toml, TrainConfig, "--config ")


def test_python_config_file_is_read_not_run(tmp_path):
    cfg = tmp_path / "train_shakespeare_char.py"
    cfg.write_text('"""nanoGPT style."""\n# train a miniature character-level model\nout_dir = \'out-char\'\n'
                   "eval_interval = 250 # keep frequent\nalways_save_checkpoint = False\nwandb_log = False\n"
                   "dataset = 'shakespeare_char'\ngradient_accumulation_steps = 1\nlearning_rate = 1e-3\n"
                   "lr_decay_iters = None\nbeta2 = 0.99\nmin_lr = +1e-4\nbias = False\n# compile = False\n"
                   "max_iters = 5000\n")
    got = values(["train", str(cfg), "--max_iters=100"])
    assert got == {"out": "out-char", "eval_interval": 250, "always_save_checkpoint": False,
                   "data": "data/shakespeare_char/input.txt", "grad_accum": 1, "lr": 1e-3, "lr_decay_iters": None,
                   "beta2": 0.99, "min_lr": 1e-4, "bias": False, "max_iters": 100}
    assert values(["train", "--max_iters=100", str(cfg)])["max_iters"] == 100  # the file may follow the options
    lit = tmp_path / "lit.py"
    lit.write_text("a = -3\nb = (1, 'x', None, -2.5)\nc = True\n")
    assert [(n, v) for n, v, _ in python_items(lit)] == [("a", -3), ("b", (1, "x", None, -2.5)), ("c", True)]
    for source, message in (("import os\n", r"line 1: 'import os': a config file holds only `name = value`"),
                            ("n_layer = 2\nx = open('f')\n", r"line 2: \"x = open\('f'\)\": the value must be a lit"),
                            ("max_iters = 5 * 8\n", r"line 1: 'max_iters = 5 \* 8': the value must be a literal"),
                            ("n_layer = 2\n\nmax_iter = 3\n", r"line 3: unknown option\(s\) max_iter; close matches: "
                                                              r"max_iters"),
                            ("n_layer = '2'\n", r"line 1: n_layer must be an integer, got '2'"),
                            ("n_layer = (\n", r"line 1: not valid Python")):
        bad = tmp_path / "bad.py"
        bad.write_text(source)
        with pytest.raises(ValueError, match=message):
            read_config(bad, TrainConfig)


def test_refused_config_file_is_one_error_line_and_nothing_runs(tmp_path, capsys):
    bad = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    bad.write_text(f"n_layer = 2\nopen({str(marker)!r}, 'w')\n")
    assert main(["train", str(bad), "--max_iters=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "evil.py, line 2" in err and not marker.exists()
    assert main(["train", str(tmp_path / "c.json")]) == 2
    assert "c.json: a config file is a nanoGPT-style .py file or a .toml file" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "c.toml")]) == 2
    assert "c.toml: no such file" in capsys.readouterr().err


# ---- training through the command line ------------------------------------------------------------------------
def test_log_lines_resume_eval_only_and_sample(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "o"
    base = ["train", "--data", str(data), f"--out_dir={out}", *TINY, "--eval_interval=3"]
    # stdout is not a terminal here: nanoGPT's line for every step (log_interval 1), numbered from 0
    assert main([*base, "--max_iters=3", "--log_interval=1"]) == 0
    stdout = capsys.readouterr().out
    lines = [ln for ln in stdout.splitlines() if ln.startswith("iter ")]
    assert len(lines) == 3, stdout
    for i, ln in enumerate(lines):
        assert re.fullmatch(rf"iter {i}: loss \d+\.\d{{4}}, time \d+\.\d\dms, [\d,]+ tok/s", ln), ln
    assert re.search(r"^step 3: train loss \d+\.\d{4}, val loss \d+\.\d{4}$", stdout, re.M)
    assert main([*base, "--init_from=resume", "--max_iters=4", "--log_interval=2"]) == 0
    stdout = capsys.readouterr().out
    assert "resuming at step 3" in stdout and "step 4: train loss" in stdout
    assert [ln for ln in stdout.splitlines() if ln.startswith("iter ")] == []  # iter 3 is not a multiple of 2
    manifest = (out / "checkpoint.json").read_text()
    assert main(["train", f"--out_dir={out}", "--init_from=resume", "--eval_only=True", "--eval_iters=1"]) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"^step 4: train loss", stdout, re.M) and "iter " not in stdout and "done:" not in stdout
    assert (out / "checkpoint.json").read_text() == manifest  # nothing saved
    assert json.loads(manifest)["step"] == 4
    (tmp_path / "prompt.txt").write_text("def ")
    assert main(["sample", f"--out_dir={out}", f"--start=FILE:{tmp_path / 'prompt.txt'}", "--max_new_tokens=5",
                 "--seed=1"]) == 0
    assert capsys.readouterr().out.startswith("def ")


def test_numba_missing_is_said_once_by_the_command_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(backend, "available", lambda: ["numpy"])
    # three fresh runs into one folder: each replaces the last one's checkpoint
    base = ["train", "--data", str(data), f"--out_dir={tmp_path / 'o'}", *TINY, "--max_iters=2", "--overwrite"]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert err.count("Numba is not installed") == 1, err
    assert "pip install 'minitransformer[numba]'" in err and "1.4-1.8x slower" in err
    assert main([*base, "--backend=numpy"]) == 0  # asked for NumPy: nothing to say
    assert "Numba" not in capsys.readouterr().err
    monkeypatch.setattr(backend, "available", lambda: ["numpy", "numba"])
    assert main(base) == 0
    assert "Numba" not in capsys.readouterr().err


def test_a_plot_that_cannot_be_drawn_says_why(tmp_path, capsys, monkeypatch):
    from minitransformer.tasks import vit as V

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    loop._plot([{"step": 0, "train": 2.0, "val": 2.1}], tmp_path)
    err = capsys.readouterr().err
    assert "loss.png not drawn: matplotlib is not installed (pip install 'minitransformer[viz]')" in err
    assert (tmp_path / "history.json").exists() and not (tmp_path / "loss.png").exists()
    model = V.ViT(V.ViTConfig(image_size=4, patch_size=2, n_classes=2, d_model=8, nhead=2, num_layers=1,
                              dim_feedforward=16))
    data = {"x_test": np.random.default_rng(0).random((8, 4, 4)), "y_test": np.zeros(8, np.int64),
            "labels": ["a", "b"]}
    assert V.plot_attention_png(model, data, tmp_path) is None
    err = capsys.readouterr().err
    assert err.strip() == (f"{tmp_path / 'attention.png'} not drawn: matplotlib is not installed "
                           "(pip install 'minitransformer[viz]')")


def test_log_interval_is_checked():
    with pytest.raises(ValueError, match=r"--log-interval must be in \[0, inf\)"):
        TrainConfig(log_interval=-1).validate()


# ---- --help -----------------------------------------------------------------------------------------------------
COMMANDS = [["train"], ["sample"], ["embed"], ["search"], ["serve"], ["quantize"], ["prune"], ["eval"], ["export"],
            ["run"], ["port"]] + [[t, *a] for t, p in (("translate", "predict"), ("classify", "predict"),
                                                       ("vit", "predict"), ("asr", "transcribe"))
                                  for a in ([], ["train"], ["eval"], [p])]


def _help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_help_shows_defaults(argv, capsys):
    assert "default" in _help(argv, capsys)


def test_task_actions_have_their_own_help(capsys):
    top, train, ev = (_help(a, capsys) for a in (["translate"], ["translate", "train"], ["translate", "eval"]))
    assert top != train and "--d-model" in train and "--d-model" not in top and "--learning_rate" in train
    assert "--beam" in ev and "--d-model" not in ev  # accepted there for old command lines, not listed
    assert "--max-iters MAX_ITERS" in train and "(default: 3000)" in train and "(default: out/translate)" in train
    assert "--max_iters MAX_ITERS" not in train  # the underscore spelling works without doubling the list
    t = _help(["train"], capsys)
    assert "--bias, --no-bias" in t and "(default: False)" in t and "--init_from INIT_FROM" in t
