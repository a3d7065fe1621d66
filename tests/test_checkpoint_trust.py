"""The checkpoint directory as a trust boundary: whatever checkpoint.json and the weight files hold, loading
ends in a correct load or a CheckpointError naming the file and the field, before anything large is read
or allocated. One test per way in (paths outside the directory, sizes, fields, dtypes, non-finite values,
overflowing shapes, the manifest's own checksum, leftover temporary files), then a fuzz of checkpoint.json."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.io import checkpoint, safetensors
from minitransformer.io import checkpoint_schema as schema
from minitransformer.io.checkpoint import CheckpointError
from minitransformer.tasks.language_model import TrainConfig, load_model, train
from minitransformer.training.config import flat_defaults

ROOT = Path(__file__).resolve().parent.parent


# ---- a real tiny checkpoint, and ways to change it ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-layer GPT trained for 2 steps by the library, and a 4-bit quantized copy of it."""
    from minitransformer.deploy import compress

    d = tmp_path_factory.mktemp("trained")
    (d / "text.txt").write_text("hello there, general kenobi. " * 300, encoding="utf-8")
    train(TrainConfig(data=str(d / "text.txt"), out=str(d / "out"), n_layer=1, n_head=2, n_embd=16, block_size=16,
                      max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    compress.quantize_checkpoint(d / "out", d / "q4", 4, 16, embedding=True)
    return {"float": d / "out", "quantized": d / "q4"}


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name.endswith((".safetensors", ".json")) and p.is_file():
            shutil.copy(p, dst / p.name)
    return dst


@pytest.fixture
def ckpt(trained, tmp_path):
    return _copy(trained["float"], tmp_path / "ckpt")


def _doc(d: Path) -> dict:
    return json.loads((d / "checkpoint.json").read_text())


def _write(d: Path, doc: dict) -> None:
    """checkpoint.json, re-signed: a test of the schema must not be stopped by the checksum instead."""
    if "manifest_sha256" in doc:
        doc["manifest_sha256"] = checkpoint.manifest_digest(doc)
    (d / "checkpoint.json").write_text(json.dumps(doc))


def _edit(d: Path, change) -> None:
    doc = _doc(d)
    change(doc)
    _write(d, doc)


def _replace_weights(d: Path, key: str, blob: bytes) -> Path:
    """Write new bytes as weight file `key`, with checkpoint.json's checksum and size updated to match."""
    doc = _doc(d)
    path = d / doc["files"][key]
    path.write_bytes(blob)
    doc["sha256"][key] = hashlib.sha256(blob).hexdigest()
    doc["bytes"][key] = len(blob)
    _write(d, doc)
    return path


def _model_state(d: Path) -> dict[str, np.ndarray]:
    return safetensors.load_file(d / _doc(d)["files"]["model"])


def _bytes_read() -> int | None:
    """Bytes this process has read through read() calls so far (Linux), or None."""
    try:
        return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])
    except (OSError, KeyError, ValueError):
        return None


def _forbid_reading(monkeypatch, path: Path, allow_open: bool = False) -> None:
    """Fail the test if `path` is read whole (Path.read_bytes, open) or, unless allow_open, opened at all."""
    target = os.path.realpath(path)

    def guard(original, name):
        def call(p, *args, **kwargs):
            if os.path.realpath(os.fspath(p)) == target:
                raise AssertionError(f"{name} called on {path}")
            return original(p, *args, **kwargs)
        return call

    monkeypatch.setattr(Path, "read_bytes", guard(Path.read_bytes, "Path.read_bytes"))
    monkeypatch.setattr(Path, "open", guard(Path.open, "Path.open"))
    monkeypatch.setattr("builtins.open", guard(open, "open"))
    if not allow_open:
        monkeypatch.setattr(os, "open", guard(os.open, "os.open"))


def _refused(d: Path, match: str) -> CheckpointError:
    """checkpoint.load and train.load_model both raise CheckpointError matching `match`."""
    with pytest.raises(CheckpointError, match=match) as first:
        checkpoint.load(d)
    with pytest.raises(CheckpointError, match=match):
        load_model(d)
    return first.value


# ---- weight files: plain files inside the directory, of the recorded size ----------------------------------------
def test_an_absolute_weight_path_is_refused_unopened(ckpt, tmp_path, monkeypatch):
    outside = shutil.copy(ckpt / _doc(ckpt)["files"]["model"], tmp_path / "outside.safetensors")
    _edit(ckpt, lambda doc: doc["files"].update(model=str(outside)))  # same bytes: only the path is wrong
    _refused(ckpt, r"checkpoint.json: files.model must be a plain file name inside the checkpoint directory")
    _edit(ckpt, lambda doc: doc["files"].update(model="/etc/passwd"))
    _forbid_reading(monkeypatch, Path("/etc/passwd"))
    _refused(ckpt, r"files.model must be a plain file name inside the checkpoint directory, got '/etc/passwd'")


def test_a_relative_path_out_of_the_directory_is_refused(ckpt, tmp_path):
    name = _doc(ckpt)["files"]["optimizer"]
    shutil.copy(ckpt / name, tmp_path / name)
    _edit(ckpt, lambda doc: doc["files"].update(optimizer=f"../{name}"))
    _refused(ckpt, r"files.optimizer must be a plain file name inside the checkpoint directory, got '\.\./optim")
    for bad in ("..", "sub/model.safetensors", "", "a\\b"):
        _edit(ckpt, lambda doc, bad=bad: doc["files"].update(optimizer=bad))
        _refused(ckpt, "files.optimizer must be a plain file name")


def test_a_symbolic_link_or_special_file_is_refused(ckpt, tmp_path):
    doc = _doc(ckpt)
    model = ckpt / doc["files"]["model"]
    outside = shutil.copy(model, tmp_path / "outside.safetensors")
    model.unlink()
    model.symlink_to(outside)  # the right bytes, the right checksum, but outside the directory
    _refused(ckpt, rf"{model.name}: a symbolic link; a checkpoint's weight files must be a plain file")
    model.unlink()
    os.mkfifo(model)  # opening a FIFO would block: it is refused from its lstat
    _refused(ckpt, rf"{model.name}: not a regular file")
    model.unlink()
    shutil.copy(outside, model)
    manifest = ckpt / "checkpoint.json"
    shutil.move(manifest, tmp_path / "checkpoint.json")
    manifest.symlink_to(tmp_path / "checkpoint.json")
    _refused(ckpt, r"checkpoint.json: a symbolic link")


def test_a_file_of_another_size_is_refused_before_it_is_read(ckpt, monkeypatch):
    doc = _doc(ckpt)
    big = ckpt / doc["files"]["model"]
    with open(big, "r+b") as f:
        f.truncate(2 * 2**30)  # 2 GB, sparse: the original header and data, then zeros
    before = _bytes_read()
    _forbid_reading(monkeypatch, big)
    t0 = time.perf_counter()
    err = _refused(ckpt, rf"{big.name}: corrupt or truncated \(2,147,483,648 bytes; checkpoint.json records "
                         rf"{doc['bytes']['model']:,}\)")
    assert str(ckpt) in str(err) and time.perf_counter() - t0 < 5
    if before is not None:
        assert _bytes_read() - before < 2**20


def test_without_a_recorded_size_the_header_bounds_what_is_read(ckpt, monkeypatch):
    """Checkpoints written before sizes were recorded: the safetensors header declares the size."""
    doc = _doc(ckpt)
    size = doc.pop("bytes")["model"]
    _write(ckpt, doc)
    big = ckpt / doc["files"]["model"]
    with open(big, "r+b") as f:
        f.truncate(2 * 2**30)
    before = _bytes_read()
    _forbid_reading(monkeypatch, big, allow_open=True)  # the header is read, the rest is not
    _refused(ckpt, rf"{big.name}: not a valid safetensors file: {2 * 2**30 - size} bytes after the "
                   "last tensor")
    if before is not None:
        assert _bytes_read() - before < 2**20


def test_older_checkpoints_without_sizes_or_manifest_checksum_still_load(ckpt):
    _, want, want_opt = checkpoint.load(ckpt)
    doc = _doc(ckpt)
    del doc["bytes"], doc["manifest_sha256"]
    (ckpt / "checkpoint.json").write_text(json.dumps(doc, indent=1))
    _, got, got_opt = checkpoint.load(ckpt)
    for a, b in ((want, got), (want_opt, got_opt)):
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    model, tok, _ = load_model(ckpt)
    assert tok.vocab_size == model.config.vocab_size


# ---- checkpoint.json: every field the library reads ----------------------------------------------------------------
def _set(path: str, value):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return change


def _delete(path: str):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        del node[int(last) if isinstance(node, list) else last]
    return change


FIELD_CASES = [
    (_delete("model_config"), r"model_config is missing"),
    (_set("model_config.n_head", 0), r"model_config.n_head must be a positive integer below 2\*\*31, got 0"),
    (_set("model_config.n_layer", "4"), r"model_config.n_layer must be a positive integer below 2\*\*31, got '4'"),
    (_set("model_config.n_head", 3), r"model_config.n_embd \(16\) must be divisible by model_config.n_head \(3\)"),
    (_set("model_config.dropout", math.nan), r"model_config.dropout must be a number in \[0, 1\), got nan"),
    (_set("model_config.bias", 1), r"model_config.bias must be true or false, got 1"),
    (_set("model_config.vocab_size", 2**31), r"model_config.vocab_size must be a positive integer below 2\*\*31"),
    (_set("model_config.n_inner", 64), r"model_config.n_inner is not an option of the lm model"),
    (_delete("model_config.n_embd"), r"model_config.n_embd is missing"),
    (_set("tokenizer", ["a", "b"]), r"tokenizer must be an object, got \['a', 'b'\]"),
    (_set("tokenizer.kind", "wordpiece"), r"tokenizer.kind must be one of 'char', 'bpe', got 'wordpiece'"),
    (_set("tokenizer.chars.0", "ab"), r"tokenizer.chars\[0\] must be a single character, got 'ab'"),
    (_delete("tokenizer.chars.3"), r"tokenizer holds 14 tokens, but model_config.vocab_size is 15"),
    (_set("tokenizer", {"kind": "bpe", "merges": [[300, 1]]}), r"tokenizer.merges\[0\] must be a pair of token ids"),
    (_set("step", -1), r"step must be a non-negative integer, got -1"),
    (_set("step", 2.5), r"step must be a non-negative integer, got 2.5"),
    (_delete("files"), r"files is missing"),
    (_delete("files.optimizer"), r"files.optimizer is missing"),
    (_set("sha256.model", "abc"), r"sha256.model must be a SHA-256 digest"),
    (_set("bytes.model", -5), r"bytes.model must be a non-negative integer"),
    (_set("task", 5), r"task must be a string, got 5"),
    (_delete("train_config"), r"train_config is missing"),
    (_set("train_config.batch_size", 0), r"train_config.batch_size must be a positive integer"),
    (_set("train_config.lr", math.inf), r"train_config.lr must be a finite number > 0, got inf"),
    (_set("train_config.history.0.val", "low"), r"train_config.history\[0\].val must be a number, got 'low'"),
    (_delete("train_config.history.1.step"), r"train_config.history\[1\].step is missing"),
    (_delete("rng"), r"rng is missing"),
    (_set("rng.global.state.inc", -1), r"rng.global.state.inc must be an integer in \[0, 2\*\*128\)"),
    (_set("rng.batches.bit_generator", "MT19937"), r"rng.batches.bit_generator must be one of 'PCG64'"),
    (_set("optimizer.param_groups.0.params", "x"), r"optimizer.param_groups\[0\].params must be a list"),
    (_set("optimizer.param_groups.1.betas", [0.9]), r"optimizer.param_groups\[1\].betas must be a pair"),
    (_set("optimizer.scalars.99", {"step": 2}), r"optimizer.scalars.99 names no parameter"),
    (_set("quantization", {"bits": 3, "group": None, "linears": [], "embeddings": {}}),
     r"quantization.bits must be one of 8, 4, got 3"),
    (_set("quantization", {"bits": 4, "group": 6, "linears": ["lm_head"], "embeddings": {}}),
     r"quantization.group must be an even number that divides model_config.n_embd \(16\)"),
    (_set("pruning", {"params": "all"}), r"pruning.params must be a list"),
]


@pytest.mark.parametrize("change, message", FIELD_CASES, ids=[m.split(" ")[0].replace("\\", "")
                                                               for _, m in FIELD_CASES])
def test_a_malformed_field_is_named(ckpt, change, message):
    _edit(ckpt, change)
    err = _refused(ckpt, message)
    assert str(err).startswith(f"{ckpt / 'checkpoint.json'}: ")


def test_sizes_are_refused_before_anything_is_allocated(ckpt, monkeypatch):
    t0 = time.perf_counter()
    _edit(ckpt, _set("model_config.block_size", 4_000_000))  # 64M position values from a 16 kB file
    _refused(ckpt, r"model_config describes a model of 64,\d{3},\d{3} values \(25\d.\d MB as float32\), which the "
                   r"16,\d{3}-byte weight file model-00000002.safetensors cannot hold")
    assert time.perf_counter() - t0 < 5
    monkeypatch.setattr(schema, "physical_memory", lambda: 8 * 10**9)
    _edit(ckpt, lambda doc: doc["model_config"].update(block_size=16, n_layer=2**20, n_embd=2**14))
    _refused(ckpt, r"model_config describes a model of .* TB as float32, more than this machine's memory \(8.0 GB\)")


def test_the_manifest_checksum_names_a_corrupt_checkpoint_json(ckpt):
    text = (ckpt / "checkpoint.json").read_text()
    assert '"step": 2' in text
    (ckpt / "checkpoint.json").write_text(text.replace('"step": 2', '"step": 3'))
    _refused(ckpt, r"checkpoint.json: corrupt \(its contents do not match its manifest_sha256\)")
    (ckpt / "checkpoint.json").write_text(text.replace('"manifest_sha256": "', '"manifest_sha256": "x'))
    _refused(ckpt, r"checkpoint.json: manifest_sha256 must be a SHA-256 digest \(64 hexadecimal digits\)")


# ---- the weights themselves ------------------------------------------------------------------------------------------
def test_integer_weights_relabelled_in_a_float_model_are_refused(ckpt):
    state = _model_state(ckpt)
    state["lm_head.weight"] = state["lm_head.weight"].view(np.int32)  # same bytes, labelled I32
    path = _replace_weights(ckpt, "model", safetensors.serialize(state))
    _refused(ckpt, rf"{path.name}: tensor 'lm_head.weight' is I32; a float model's weights are F16, F32, F64")


def test_quantized_checkpoints_keep_their_integer_weights_and_only_those(trained, tmp_path):
    q = _copy(trained["quantized"], tmp_path / "q")
    doc, state, _ = checkpoint.load(q)
    assert state["lm_head.qweight"].dtype == np.uint8 and doc["quantization"]["bits"] == 4
    state["lm_head.qweight"] = state["lm_head.qweight"].view(np.int8)
    path = _replace_weights(q, "model", safetensors.serialize(state))
    _refused(q, rf"{path.name}: tensor 'lm_head.qweight' is I8; the checkpoint's 4-bit quantization stores U8")
    del state["lm_head.qweight"]
    _replace_weights(q, "model", safetensors.serialize(state))
    _refused(q, r"no tensor 'lm_head.qweight', which checkpoint.json's quantization names")


def test_nan_weights_are_reported_unless_allowed(ckpt):
    state = _model_state(ckpt)
    state["transformer.wpe.weight"][3, 1] = np.nan
    state["transformer.ln_f.weight"][0] = -np.inf
    path = _replace_weights(ckpt, "model", safetensors.serialize(state))
    _refused(ckpt, rf"{path.name}: NaN or infinite values in 2 tensor\(s\): transformer.ln_f.weight, "
                   r"transformer.wpe.weight \(load with allow_nonfinite=True")
    _, loaded, _ = checkpoint.load(ckpt, allow_nonfinite=True)
    assert np.isnan(loaded["transformer.wpe.weight"][3, 1])
    _, loaded = checkpoint.load_task(ckpt, "lm", "a language model's", allow_nonfinite=True)
    assert np.isneginf(loaded["transformer.ln_f.weight"][0])


def test_a_shape_whose_size_overflows_int64_is_refused(ckpt):
    assert int(np.prod([2**32, 2**32])) == 0  # what a size computed in int64 would believe
    raw = json.dumps({"x": {"dtype": "U8", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}).encode()
    blob = struct.pack("<Q", len(raw)) + raw
    with pytest.raises(ValueError, match=r"tensor 'x' \(U8 \[4294967296, 4294967296\]\) does not fit its "
                                         r"data_offsets \[0, 0\]"):
        safetensors.deserialize(blob, "x.safetensors")
    path = _replace_weights(ckpt, "optimizer", blob)
    _refused(ckpt, rf"{path.name}: not a valid safetensors file: tensor 'x'")
    for bad in ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]},
                {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 6]},
                {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}):
        raw = json.dumps({"x": bad}).encode()
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            safetensors.deserialize(struct.pack("<Q", len(raw)) + raw + b"\0" * 8, "x.safetensors")


# ---- leftovers of killed writes --------------------------------------------------------------------------------------
def test_temporary_files_of_killed_writes_are_removed_by_the_next_save(ckpt):
    script = ("import os, pathlib, signal\n"
              "from minitransformer.io import atomic\n"
              "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"atomic.atomic_write_bytes(pathlib.Path({str(ckpt / 'checkpoint.json')!r}), b'x' * 1000)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    left = [p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".checkpoint.json.")
    doc, state, optim = checkpoint.load(ckpt)  # the kill cost nothing: the last checkpoint is intact
    (ckpt / ".model-00000001.safetensors.ab_cd123.tmp").write_bytes(b"partial")
    keep = [".notes.abcd1234.tmp", "model.tmp", ".checkpoint.json.ABCD1234.tmp", ".checkpoint.json.abcd.tmp",
            "checkpoint.json.abcd1234.tmp"]
    for name in keep:
        (ckpt / name).write_bytes(b"not ours")
    (ckpt / ".tokenizer.json.dir12345.tmp").mkdir()
    (ckpt / ".optim-00000002.safetensors.link1234.tmp").symlink_to(ckpt / "checkpoint.json")
    keep += [".tokenizer.json.dir12345.tmp", ".optim-00000002.safetensors.link1234.tmp"]
    manifest = {k: v for k, v in doc.items() if k not in ("format", "version", "step", "files", "sha256")}
    checkpoint.save(ckpt, 3, state, optim, manifest)
    assert sorted(p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")) == sorted(keep)
    assert checkpoint.load(ckpt)[0]["step"] == 3


# ---- every job's checkpoint passes the schema, and the tables follow the config classes ---------------------------
def _job_checkpoints():
    from minitransformer.tasks import classification, speech, translation, vit
    from minitransformer.tasks.common import Vocab

    vocab = Vocab(["a", "b", "c"], "char")
    return [
        ("classify", classification, classification.TransformerClassifier(classification.ClassifierConfig(
            vocab=len(vocab), n_classes=2, d_model=8, nhead=2, num_layers=1, dim_feedforward=16, max_len=16,
            pooling="cls")), {"tokenizer": vocab.to_dict(), "labels": ["x", "y"]}, classification.ClassifyConfig),
        ("translate", translation, translation.Seq2SeqTransformer(translation.Seq2SeqConfig(
            src_vocab=len(vocab), tgt_vocab=len(vocab), d_model=8, nhead=2, num_encoder_layers=1,
            num_decoder_layers=1, dim_feedforward=16, max_len=16, share_embeddings=True)),
         {"tokenizer": {"src": vocab.to_dict(), "tgt": vocab.to_dict()}}, translation.TranslateConfig),
        ("asr", speech, speech.SpeechTransformer(speech.SpeechConfig(d_model=8, nhead=2, num_layers=1,
                                                                     dim_feedforward=16, max_len=32)),
         {"test_voices": ["en"]}, speech.SpeechTrainConfig),
        ("vit", vit, vit.ViT(vit.ViTConfig(image_size=8, patch_size=2, n_classes=3, d_model=8, nhead=2, num_layers=1,
                                           dim_feedforward=16)), {"labels": ["0", "1", "2"]}, vit.ViTTrainConfig),
    ]


def test_every_jobs_checkpoint_loads_through_its_own_loader(tmp_path):
    for task, module, model, extra, job_config in _job_checkpoints():
        out = tmp_path / task
        manifest = {"task": task, "model_config": dataclasses.asdict(model.config),
                    "train_config": dataclasses.asdict(job_config()), **extra}
        checkpoint.save(out, 1, {k: v.numpy() for k, v in model.state_dict().items()}, {}, manifest)
        loaded = module.load(out)[0]
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k].numpy(), v.numpy(), err_msg=f"{task} {k}")
        doc = _doc(out)
        doc["model_config"]["d_model"] = 0
        _write(out, doc)
        with pytest.raises(CheckpointError, match=rf"{task}/checkpoint.json: model_config.d_model must be"):
            module.load(out)


def test_the_schema_tables_follow_the_config_classes():
    from minitransformer.nn.gpt import GPTConfig
    from minitransformer.tasks import classification, speech, translation, vit
    from minitransformer.tasks.common import SPECIALS

    models = {"lm": GPTConfig, "classify": classification.ClassifierConfig, "translate": translation.Seq2SeqConfig,
              "asr": speech.SpeechConfig, "vit": vit.ViTConfig}
    for task, cls in models.items():
        fields = dataclasses.fields(cls)
        assert set(schema.MODEL_CONFIGS[task]) == {f.name for f in fields}, task
        for f in fields:
            check, required = schema.MODEL_CONFIGS[task][f.name]
            if f.default is dataclasses.MISSING:
                assert required, f"{task}.{f.name} has no default, so the schema must require it"
            else:
                check(f.default, f"{task}.{f.name}")  # the default itself passes
    jobs = [TrainConfig, classification.ClassifyConfig, translation.TranslateConfig, speech.SpeechTrainConfig,
            vit.ViTTrainConfig]
    for cls in jobs:  # train_config is flat: the job's options and its model's (--n-layer) side by side
        for name, default in flat_defaults(cls).items():
            if name != "history":
                assert name in schema.TRAIN_CONFIG, f"{cls.__name__}.{name} is not in TRAIN_CONFIG"
                schema.TRAIN_CONFIG[name](default, f"train_config.{name}")
    assert schema.SPECIAL_TOKENS == len(SPECIALS)
    assert len(speech.ALPHABET) + 1 <= schema.SPEECH_OUTPUTS


# ---- weights that do not fit the model that model_config describes ---------------------------------------------
IN_RANGE_EDITS = [("block_size", 8), ("n_layer", 2), ("bias", True), ("n_embd", 32)]


@pytest.mark.parametrize("field, value", IN_RANGE_EDITS)
def test_building_names_weights_that_do_not_fit_model_config(ckpt, field, value):
    from minitransformer.nn.gpt import GPT, GPTConfig

    _edit(ckpt, _set(f"model_config.{field}", value))
    doc, state = checkpoint.load_task(ckpt, "lm", "a language model's")  # the schema allows these values
    model = GPT(GPTConfig(**doc["model_config"]))
    with pytest.raises(CheckpointError, match=r"model-00000002.safetensors: its weights do not fit the model that "
                                              r"checkpoint.json's model_config describes"):
        with checkpoint.building(ckpt, doc):
            model.load_state_dict(state)


@pytest.mark.parametrize("field, value", IN_RANGE_EDITS)
def test_load_model_names_weights_that_do_not_fit_model_config(ckpt, field, value):
    _edit(ckpt, _set(f"model_config.{field}", value))
    with pytest.raises(CheckpointError, match=r"its weights do not fit the model"):
        load_model(ckpt)


# ---- the fuzz: random damage to checkpoint.json ---------------------------------------------------------------------
def _paths(node, prefix=()):
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out = []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


OUT_OF_RANGE = {"number": [-1, -1.0, 2**31, 2**63, 10**30, 1e308, math.nan, math.inf, -math.inf],
                "str": ["", "../x", "/etc/passwd", "\0"], "list": [[]], "dict": [{}]}
ANY_TYPE = [None, False, True, 0, 7, 0.5, "x", [1], {"a": 1}]


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "number", float: "number", str: "str", list: "list", dict: "dict"}.get(type(v), "null")


@st.composite
def _damage(draw, paths):
    """Edits at 1-3 places: delete a key or item, change a value's JSON type, or put an out-of-range value."""
    where = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True))
    return [(path, draw(st.sampled_from(["delete", "retype", "out_of_range"])), draw(st.integers(0, 2**16)))
            for path in where]


def _apply(doc, path, op, pick) -> None:
    node = doc
    for k in path[:-1]:
        if not isinstance(node, (dict, list)) or (isinstance(node, dict) and k not in node) or (
                isinstance(node, list) and not (isinstance(k, int) and k < len(node))):
            return
        node = node[k]
    k = path[-1]
    if not isinstance(node, (dict, list)) or (isinstance(node, dict) and k not in node) or (
            isinstance(node, list) and not (isinstance(k, int) and k < len(node))):
        return
    if op == "delete":
        del node[k]
        return
    kind = _kind(node[k])
    choices = ([v for v in ANY_TYPE if _kind(v) != kind] if op == "retype" else OUT_OF_RANGE.get(kind))
    if choices:
        node[k] = choices[pick % len(choices)]


@pytest.fixture(scope="module")
def fuzz_dirs(trained, tmp_path_factory):
    out = {}
    for kind, src in trained.items():
        d = _copy(src, tmp_path_factory.mktemp(f"fuzz-{kind}") / "ckpt")
        _, state, optim = checkpoint.load(d)
        out[kind] = (d, _doc(d), state, optim)
    return out


@pytest.mark.parametrize("kind", ["float", "quantized"])
def test_fuzzed_checkpoint_json_loads_correctly_or_raises_checkpoint_error(fuzz_dirs, kind):
    d, original, want_state, want_optim = fuzz_dirs[kind]

    @settings(max_examples=300, deadline=None)
    @given(_damage(_paths(original)))
    def run(edits):
        doc = json.loads(json.dumps(original))
        for path, op, pick in edits:
            _apply(doc, path, op, pick)
        if any(p[0] == "manifest_sha256" for p, _, _ in edits):
            (d / "checkpoint.json").write_text(json.dumps(doc))  # its own damage is what is tested
        else:
            _write(d, doc)
        try:
            _, state, optim = checkpoint.load(d)
        except CheckpointError:
            pass
        else:
            for got, want in ((state, want_state), (optim, want_optim)):
                assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
        try:
            model, tok, _ = load_model(d)
        except CheckpointError:
            return
        own = model.state_dict()
        for k, v in want_state.items():
            np.testing.assert_array_equal(own[k].numpy(), v, err_msg=k)
        assert tok.vocab_size == model.config.vocab_size

    run()


def _as_bf16(raw: bytes) -> bytes:
    """A safetensors file whose U16 entries are relabelled BF16 (the header re-packed around the change)."""
    n = struct.unpack("<Q", raw[:8])[0]
    header = raw[8:8 + n].rstrip().replace(b'"U16"', b'"BF16"')
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw[8 + n:]


def test_bfloat16_reads_as_float32_but_a_model_file_refuses_it(ckpt):
    """safetensors' BF16 (the top half of each float32) decodes exactly to float32; a checkpoint's model file
    must still hold F16/F32/F64, so the relabelled file is refused by name."""
    values = np.array([1.5, -2.25, 2.0**127, -0.0], np.float32)  # each exact in bfloat16
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    out, _ = safetensors.deserialize(_as_bf16(safetensors.serialize({"w": bits})))
    assert out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], values)
    state = _model_state(ckpt)
    name = "transformer.ln_f.weight"
    state[name] = (state[name].astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    path = _replace_weights(ckpt, "model", _as_bf16(safetensors.serialize(state)))
    _refused(ckpt, rf"{path.name}: tensor '{name}' is BF16; a float model's weights are F16, F32, F64")
