"""Each job's config holds its model config as one field: built from it directly, flat on the command line, in
config files and in a checkpoint's train_config (so checkpoints written with the old flat configs resume), flat
keywords in Python, a name clash refused when the class is defined, and each bad value named as the option."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from minitransformer.__main__ import _parse_args
from minitransformer.io import checkpoint
from minitransformer.nn.gpt import GPTConfig
from minitransformer.tasks import classification as C
from minitransformer.tasks import speech as S
from minitransformer.tasks import translation as T
from minitransformer.tasks import vit as V
from minitransformer.tasks.language_model import TrainConfig, train
from minitransformer.training.config import LoopConfig, flat_defaults, flatten, job_config, model_field
from minitransformer.training.loop import resume_config, saved_config
from minitransformer.training.options import config_values

TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 20
# (job config, its model config class, a model option and a value other than the default)
JOBS = [(TrainConfig, GPTConfig, "n_layer", 2), (T.TranslateConfig, T.Seq2SeqConfig, "num_decoder_layers", 3),
        (C.ClassifyConfig, C.ClassifierConfig, "pooling", "cls"), (V.ViTTrainConfig, V.ViTConfig, "num_layers", 2),
        (S.SpeechTrainConfig, S.SpeechConfig, "dim_feedforward", 64)]
# train_config of a checkpoint written before the model config was one field: every option flat
OLD_TRAIN_CONFIG = {
    "max_iters": 4, "lr": 0.001, "min_lr": 0.0001, "warmup_iters": 2, "lr_decay_iters": 8, "weight_decay": 0.1,
    "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "grad_accum": 1, "batch_size": 4, "eval_interval": 2,
    "eval_iters": 1, "out": "elsewhere", "resume": False, "seed": 1337, "backend": "auto", "device": "cpu",
    "log_interval": 10, "eval_only": False, "always_save_checkpoint": True, "decay_lr": True,
    "history": [{"step": 2, "train": 3.0, "val": 3.1}, {"step": 4, "train": 2.5, "val": 2.6}], "overwrite": False,
    "skip_nonfinite": False, "profile": 0, "data": None, "tokenizer": "char", "vocab_size": 512, "n_layer": 1,
    "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": 0.0, "bias": True, "sample_tokens": 0,
}


@pytest.mark.parametrize("job, model_cls, name, value", JOBS)
def test_the_model_config_is_one_field_that_takes_flat_keywords(job, model_cls, name, value):
    cfg = job(**{name: value}, max_iters=7)
    assert isinstance(cfg.model, model_cls) and getattr(cfg.model, name) == value and cfg.max_iters == 7
    assert not hasattr(cfg, name)  # the option lives in the model config only
    assert job().model == job().model and job().model is not job().model  # each config its own copy
    # flat, in the order of today's options; and back: the class takes its own flat dict
    flat = flatten(cfg)
    assert "model" not in flat and flat[name] == value and list(flat) == list(flat_defaults(job))
    assert job(**flat) == cfg
    # a flat keyword sets the field in the model config given (replace goes through the same door)
    base = dataclasses.replace(job().model, dropout=0.0)
    assert job(model=base, **{name: value}).model == dataclasses.replace(base, **{name: value})
    assert dataclasses.replace(cfg, dropout=0.0).model == dataclasses.replace(cfg.model, dropout=0.0)
    with pytest.raises(TypeError):
        job(no_such_option=1)


def test_the_defaults_are_the_baby_gpt_of_minitransformer_train():
    m = TrainConfig().model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (4, 4, 128, 64, 0.0, False)
    assert TrainConfig().vocab_size == 512  # BPE's target, a job option; the model's is the tokenizer's size


def test_a_model_option_with_the_name_of_a_job_field_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"the model option\(s\) dropout of Clash.model have the name of a field"):
        @job_config
        class Clash(LoopConfig):
            dropout: float = 0.5
            model: GPTConfig = model_field(GPTConfig(), options=("n_layer", "dropout"))

    @dataclasses.dataclass
    class Tiny:
        width: int = 8
        seed: int = 0

    with pytest.raises(TypeError, match=r"the model option\(s\) seed of LoopClash.model"):
        @job_config
        class LoopClash(LoopConfig):  # the loop's own fields count too
            model: Tiny = model_field(Tiny(), options=("width", "seed"))

    with pytest.raises(TypeError, match="GPTConfig has no field n_layers"):
        model_field(GPTConfig(), options=("n_layers",))  # a renamed model field cannot drop out silently


def test_flat_options_on_the_command_line_and_in_config_files_build_the_nested_config(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("n-layer = 3\nmax_iters = 9\n")
    py = tmp_path / "c.py"
    py.write_text("n_head = 2\ndropout = 0.1\n")
    values = config_values(_parse_args(["train", "--config", str(toml), str(py), "--n_embd=32", "--no-bias"]),
                           TrainConfig)
    assert values == {"n_layer": 3, "max_iters": 9, "n_head": 2, "dropout": 0.1, "n_embd": 32, "bias": False}
    cfg = TrainConfig(**values)
    assert cfg.model == dataclasses.replace(TrainConfig().model, n_layer=3, n_head=2, n_embd=32, dropout=0.1,
                                            bias=False)
    t = T.TranslateConfig(**config_values(_parse_args(["translate", "train", "--d-model", "32",
                                                       "--share-embeddings"]), T.TranslateConfig))
    assert t.model.d_model == 32 and t.model.share_embeddings is True


def test_each_bad_value_is_one_line_naming_the_option():
    for job, width, heads in ((TrainConfig, "n_embd", "n_head"), (T.TranslateConfig, "d_model", "nhead"),
                              (C.ClassifyConfig, "d_model", "nhead"), (V.ViTTrainConfig, "d_model", "nhead"),
                              (S.SpeechTrainConfig, "d_model", "nhead")):
        w, h = f"--{width.replace('_', '-')}", f"--{heads.replace('_', '-')}"
        with pytest.raises(ValueError, match=rf"^{w} \(15\) must be divisible by {h} \(2\)$"):
            job(**{width: 15, heads: 2}).validate()
        for bad in (1.0, -0.1, math.nan):
            with pytest.raises(ValueError, match=r"^--dropout must be in \[0, 1\), got"):
                job(dropout=bad).validate()
        with pytest.raises(ValueError, match=rf"^{h} must be in \[1, "):
            job(**{heads: 0}).validate()
        job().validate()
    # the loop knows its own options only: the models' ranges and rules are their jobs'
    assert "dropout" not in LoopConfig.RANGES and "dropout" not in LoopConfig.BELOW_ONE
    with pytest.raises(ValueError, match=r"^--pooling must be one of mean, cls, last, got 'max'$"):
        C.ClassifyConfig(pooling="max").validate()


def _old_checkpoint(tmp_path):
    """A trained tiny GPT whose checkpoint.json holds train_config in the flat shape written before this change."""
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "old"
    train(TrainConfig(**{**OLD_TRAIN_CONFIG, "history": [], "data": str(data), "out": str(out)}), progress=False)
    doc = json.loads((out / "checkpoint.json").read_text())
    assert list(doc["train_config"]) == list(OLD_TRAIN_CONFIG)  # still written flat, in the same order
    doc["train_config"] = {**OLD_TRAIN_CONFIG, "data": str(data), "out": str(out)}
    doc["manifest_sha256"] = checkpoint.manifest_digest(doc)
    (out / "checkpoint.json").write_text(json.dumps(doc))
    return out, data


def test_a_checkpoint_with_the_old_flat_train_config_resumes(tmp_path):
    out, data = _old_checkpoint(tmp_path)
    doc = checkpoint.read_manifest(out)  # the schema's checks pass
    cfg = saved_config(TrainConfig, doc)
    assert cfg.model == dataclasses.replace(TrainConfig().model, n_layer=1, n_head=2, n_embd=16, block_size=16,
                                            bias=True)
    assert cfg.history == OLD_TRAIN_CONFIG["history"] and cfg.lr_decay_iters == 8
    assert flatten(cfg) == doc["train_config"]
    result = train(TrainConfig(out=str(out), resume=True), overrides={"max_iters": 6}, progress=False)
    assert result["step"] == 6 and result["model"].config.n_layer == 1 and result["model"].config.bias is True
    assert checkpoint.read_manifest(out)["train_config"]["max_iters"] == 6


def test_resume_overrides_reach_the_model_config_as_before(tmp_path):
    out, _ = _old_checkpoint(tmp_path)
    # a model option given with --resume is applied, as every other option is: dropout changes the resumed model
    cfg, resumed = resume_config(TrainConfig, out, {"dropout": 0.2, "max_iters": 6})
    assert cfg.resume and cfg.max_iters == 6 and resumed["doc"]["step"] == 4
    assert cfg.model == dataclasses.replace(saved_config(TrainConfig, resumed["doc"]).model, dropout=0.2)
    result = train(TrainConfig(out=str(out), resume=True), overrides={"dropout": 0.2, "max_iters": 6},
                   progress=False)
    assert result["model"].config.dropout == 0.2
    assert checkpoint.read_manifest(out)["train_config"]["dropout"] == 0.2
    # one that changes the weights' shapes builds that model, and the saved weights do not fit it
    cfg, _ = resume_config(TrainConfig, out, {"n_layer": 2})
    assert cfg.model.n_layer == 2
    with pytest.raises(Exception, match="h.1"):
        train(TrainConfig(out=str(out), resume=True), overrides={"n_layer": 2}, progress=False)
