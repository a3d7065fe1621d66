"""What checkpoint.json may hold: every field the library reads, with its type and range.

`check(doc)` raises SchemaError naming the first bad field by its path (`model_config.n_head must be a
positive integer below 2**31, got 0`); checkpoint.read_manifest adds the file's name and raises
CheckpointError. `check_weight_file` compares the model that model_config describes with the size of the
weight file that claims to hold it, so that a config is refused before it allocates anything.

The model config of each job is a table here: the language model's built from GPTConfig's fields, the
others written out, because the config classes of the tasks live in a layer above this one
(tests/test_checkpoint_trust.py checks those tables against the dataclasses). Fields outside
the tables are allowed at the top level and in train_config (saved_config skips them), not in model_config
(its whole dict is passed to the config class). Not checked here: whether the weights fit the model built
from model_config (that needs the model; see checkpoint.building).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from typing import Any

from ..nn.gpt import GPTConfig

MAX_SIZE = 2**31 - 1
SPECIAL_TOKENS = 4          # tasks/common.py's <pad>, <bos>, <eos>, <unk>, ahead of a Vocab's tokens
SPEECH_OUTPUTS = 64         # an upper bound on the speech model's output classes (its alphabet + blank)
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

Check = Callable[[Any, str], None]


class SchemaError(ValueError):
    """One field of checkpoint.json that the library cannot use; the message starts with its path."""


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(where: str, what: str, v: Any) -> None:
    raise SchemaError(f"{where} must be {what}, got {_show(v)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int, hi: int | None, what: str) -> Check:
    def check(v: Any, where: str) -> None:
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            _fail(where, what, v)
    return check


def real(lo: float, hi: float, what: str, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(v: Any, where: str) -> None:
        if (not _is_number(v) or not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo)
                or (hi_open and v == hi)):
            _fail(where, what, v)
    return check


def one_of(*values: Any) -> Check:
    def check(v: Any, where: str) -> None:
        if isinstance(v, bool) or v not in values:
            _fail(where, "one of " + ", ".join(repr(x) for x in values), v)
    return check


def optional(inner: Check) -> Check:
    def check(v: Any, where: str) -> None:
        if v is not None:
            inner(v, where)
    return check


def boolean(v: Any, where: str) -> None:
    if not isinstance(v, bool):
        _fail(where, "true or false", v)


def string(v: Any, where: str) -> None:
    if not isinstance(v, str):
        _fail(where, "a string", v)


SIZE = integer(1, MAX_SIZE, "a positive integer below 2**31")
NATURAL = integer(0, None, "a non-negative integer")
SEED = integer(0, 2**128 - 1, "a non-negative integer")
PROBABILITY = real(0.0, 1.0, "a number in [0, 1)", hi_open=True)
FRACTION = real(0.0, 1.0, "a number in [0, 1]")
NONNEGATIVE = real(0.0, math.inf, "a finite number >= 0")
POSITIVE = real(0.0, math.inf, "a finite number > 0", lo_open=True)
FINITE = real(-math.inf, math.inf, "a finite number")

# model_config of each job: field -> (check, required). Required: what shapes the weights, or has no default.
MODEL_CONFIGS: dict[str, dict[str, tuple[Check, bool]]] = {
    "classify": {"vocab": (SIZE, True), "n_classes": (SIZE, True), "d_model": (SIZE, True), "nhead": (SIZE, True),
                 "num_layers": (SIZE, True), "dim_feedforward": (SIZE, True), "dropout": (PROBABILITY, False),
                 "max_len": (SIZE, True), "pooling": (one_of("mean", "cls", "last"), True),
                 "causal": (boolean, False)},
    "translate": {"src_vocab": (SIZE, True), "tgt_vocab": (SIZE, True), "d_model": (SIZE, True),
                  "nhead": (SIZE, True), "num_encoder_layers": (SIZE, True), "num_decoder_layers": (SIZE, True),
                  "dim_feedforward": (SIZE, True), "dropout": (PROBABILITY, False), "max_len": (SIZE, True),
                  "share_embeddings": (boolean, True)},
    "asr": {"n_mels": (SIZE, True), "stack": (SIZE, True), "d_model": (SIZE, True), "nhead": (SIZE, True),
            "num_layers": (SIZE, True), "dim_feedforward": (SIZE, True), "dropout": (PROBABILITY, False),
            "max_len": (SIZE, False)},
    "vit": {"image_size": (SIZE, True), "patch_size": (SIZE, True), "n_classes": (SIZE, True),
            "d_model": (SIZE, True), "nhead": (SIZE, True), "num_layers": (SIZE, True),
            "dim_feedforward": (SIZE, True), "dropout": (PROBABILITY, False), "mean": (FINITE, False),
            "std": (POSITIVE, False)},
}
# the language model's config class lives below this layer, so its fields are read from it: a new field is
# accepted with a check of its default's type until it is given a check here
_GPT_CHECKS: dict[str, tuple[Check, bool]] = {
    "block_size": (SIZE, True), "vocab_size": (SIZE, True), "n_layer": (SIZE, True), "n_head": (SIZE, True),
    "n_embd": (SIZE, True), "dropout": (PROBABILITY, False), "bias": (boolean, True),
    "gelu_approximate": (one_of("none", "tanh"), False), "layer_norm_eps": (POSITIVE, False)}


def _like(default: Any) -> Check:
    """A check of the JSON type of a config field's default value."""
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return integer(-2**63, 2**63 - 1, "an integer")
    if isinstance(default, float):
        return FINITE
    if isinstance(default, str):
        return string
    return lambda v, where: None


MODEL_CONFIGS["lm"] = {f.name: _GPT_CHECKS.get(f.name, (_like(f.default), False))
                       for f in dataclasses.fields(GPTConfig)}
# (width, heads) of each job's attention: the width must divide into the heads
_HEADS = {"lm": ("n_embd", "n_head"), "classify": ("d_model", "nhead"), "translate": ("d_model", "nhead"),
          "asr": ("d_model", "nhead"), "vit": ("d_model", "nhead")}

# train_config: every option of the loop and of the five jobs, all optional (saved_config takes the
# defaults for missing ones); history is checked on its own
TRAIN_CONFIG: dict[str, Check] = {
    "max_iters": NATURAL, "lr": POSITIVE, "min_lr": NONNEGATIVE, "warmup_iters": NATURAL,
    "lr_decay_iters": optional(NATURAL), "weight_decay": NONNEGATIVE, "beta1": PROBABILITY, "beta2": PROBABILITY,
    "grad_clip": NONNEGATIVE, "grad_accum": SIZE, "batch_size": SIZE, "eval_interval": SIZE, "eval_iters": SIZE,
    "out": string, "resume": boolean, "seed": SEED, "backend": string, "device": string, "log_interval": NATURAL,
    "eval_only": boolean, "always_save_checkpoint": boolean, "decay_lr": boolean, "overwrite": boolean,
    "skip_nonfinite": boolean, "profile": NATURAL,
    "data": optional(string), "tokenizer": string, "vocab_size": SIZE, "n_layer": SIZE, "n_head": SIZE,
    "n_embd": SIZE, "block_size": SIZE, "dropout": PROBABILITY, "bias": boolean, "sample_tokens": NATURAL,
    "task": string, "n_train": SIZE, "n_test": SIZE, "d_model": SIZE, "nhead": SIZE, "num_layers": SIZE,
    "dim_feedforward": SIZE, "pooling": string, "causal": boolean, "corpus": string, "src_tokenizer": string,
    "tgt_tokenizer": string, "num_encoder_layers": SIZE, "num_decoder_layers": SIZE, "share_embeddings": boolean,
    "beam": SIZE, "length_penalty": FINITE, "max_decode_len": NATURAL, "data_dir": string, "test_voices": NATURAL,
    "noise": FRACTION, "specaugment": boolean, "dataset": string, "patch_size": NATURAL,
}
# train_config fields a job reads directly (evaluate_checkpoint), without defaults
TRAIN_REQUIRED = {"asr": ("data_dir", "n_train", "n_test", "test_voices", "noise", "seed"), "vit": ("dataset",)}


def _get(d: dict[str, Any], key: str, where: str, check: Check, required: bool = True) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in d:
        if required:
            raise SchemaError(f"{path} is missing")
        return None
    check(d[key], path)
    return d[key]


def _dict(v: Any, where: str) -> None:
    if not isinstance(v, dict):
        _fail(where, "an object", v)


def _list(v: Any, where: str) -> None:
    if not isinstance(v, list):
        _fail(where, "a list", v)


def file_name(v: Any, where: str) -> None:
    """A bare file name: no directory part, not '.' or '..', no NUL."""
    if (not isinstance(v, str) or v in ("", ".", "..") or "/" in v or "\\" in v or "\0" in v
            or (os.altsep and os.altsep in v) or os.path.isabs(v)):
        _fail(where, "a plain file name inside the checkpoint directory", v)


def sha256_hex(v: Any, where: str) -> None:
    if not isinstance(v, str) or not _HEX64.fullmatch(v):
        _fail(where, "a SHA-256 digest (64 hexadecimal digits)", v)


def _each(items: list[Any], where: str, check: Check) -> None:
    for i, v in enumerate(items):
        check(v, f"{where}[{i}]")


def check(doc: dict[str, Any]) -> None:
    """Raise SchemaError for the first field of a parsed checkpoint.json that the library cannot use."""
    _get(doc, "step", "", NATURAL)
    files = _get(doc, "files", "", _dict)
    for key in ("model", "optimizer"):
        _get(files, key, "files", file_name)
    for key, v in files.items():
        file_name(v, f"files.{key}")
    digests = _get(doc, "sha256", "", _dict)
    for key in ("model", "optimizer"):
        _get(digests, key, "sha256", sha256_hex)
    sizes = _get(doc, "bytes", "", _dict, required=False)
    if sizes is not None:
        for key in ("model", "optimizer"):
            _get(sizes, key, "bytes", NATURAL)
    _get(doc, "manifest_sha256", "", sha256_hex, required=False)
    task = _get(doc, "task", "", string, required=False)
    task = "lm" if task is None else task
    mc = _get(doc, "model_config", "", _dict)
    if task in MODEL_CONFIGS:
        _model_config(task, mc)
        _vocabulary(task, doc, mc)
    tc = _get(doc, "train_config", "", _dict)
    _train_config(task, tc)
    if _get(doc, "optimizer", "", _dict, required=False) is not None:
        _optimizer(doc["optimizer"])
        _get(doc, "rng", "", _dict)
    if doc.get("rng") is not None:
        _rng(doc["rng"])
    if task == "lm" and "quantization" in doc:
        _quantization(doc["quantization"], mc)
    if "pruning" in doc:
        pruning = doc["pruning"]
        _dict(pruning, "pruning")
        _each(_get(pruning, "params", "pruning", _list), "pruning.params", string)
    _get(doc, "written_by", "", string, required=False)
    _get(doc, "source_step", "", optional(NATURAL), required=False)
    if task in MODEL_CONFIGS:
        need = 4 * model_elements(task, mc)
        memory = physical_memory()
        if memory is not None and need > memory:
            raise SchemaError(f"model_config describes a model of {_bytes(need)} as float32, more than this "
                              f"machine's memory ({_bytes(memory)})")


def _model_config(task: str, mc: dict[str, Any]) -> None:
    fields = MODEL_CONFIGS[task]
    for key in mc:
        if key not in fields:
            raise SchemaError(f"model_config.{key} is not an option of the {task} model "
                              f"(its options: {', '.join(fields)})")
    for key, (chk, required) in fields.items():
        _get(mc, key, "model_config", chk, required)
    width, heads = _HEADS[task]
    if mc[width] % mc[heads]:
        raise SchemaError(f"model_config.{width} ({mc[width]}) must be divisible by model_config.{heads} "
                          f"({mc[heads]})")
    if task == "classify" and mc.get("causal") and mc["pooling"] == "cls":
        raise SchemaError("model_config.pooling 'cls' cannot be used with model_config.causal true")
    if task == "translate" and mc["share_embeddings"] and mc["src_vocab"] != mc["tgt_vocab"]:
        raise SchemaError(f"model_config.share_embeddings needs src_vocab equal to tgt_vocab, got "
                          f"{mc['src_vocab']} and {mc['tgt_vocab']}")
    if task == "vit" and mc["image_size"] % mc["patch_size"]:
        raise SchemaError(f"model_config.image_size ({mc['image_size']}) must be a multiple of "
                          f"model_config.patch_size ({mc['patch_size']})")


def _vocabulary(task: str, doc: dict[str, Any], mc: dict[str, Any]) -> None:
    """The tokenizer (and labels) a job reads, each with as many entries as the model has rows for them."""
    if task == "lm":
        n = _lm_tokenizer(_get(doc, "tokenizer", "", _dict))
        if n != mc["vocab_size"]:
            raise SchemaError(f"tokenizer holds {n} tokens, but model_config.vocab_size is {mc['vocab_size']}")
    elif task == "classify":
        _sized(_vocab(_get(doc, "tokenizer", "", _dict), "tokenizer"), mc["vocab"], "tokenizer", "model_config.vocab")
    elif task == "translate":
        tok = _get(doc, "tokenizer", "", _dict)
        for side in ("src", "tgt"):
            _sized(_vocab(_get(tok, side, "tokenizer", _dict), f"tokenizer.{side}"), mc[f"{side}_vocab"],
                   f"tokenizer.{side}", f"model_config.{side}_vocab")
    if task in ("classify", "vit"):
        labels = _get(doc, "labels", "", _list)
        _each(labels, "labels", string)
        _sized(len(labels), mc["n_classes"], "labels", "model_config.n_classes")


def _sized(n: int, rows: int, what: str, field: str) -> None:
    if n != rows:
        raise SchemaError(f"{what} holds {n} entries, but {field} is {rows}")


def _lm_tokenizer(tok: dict[str, Any]) -> int:
    """tokenizers.tokenizer_from_dict's input -> its vocabulary size."""
    kind = _get(tok, "kind", "tokenizer", one_of("char", "bpe"))
    if kind == "char":
        chars = _get(tok, "chars", "tokenizer", _list)
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                _fail(f"tokenizer.chars[{i}]", "a single character", c)
        return len(set(chars))
    merges = _get(tok, "merges", "tokenizer", _list)
    for i, m in enumerate(merges):
        # merge i makes token 256 + i from two tokens that exist before it
        if (not isinstance(m, list) or len(m) != 2
                or not all(_is_int(t) and 0 <= t < 256 + i for t in m)):
            _fail(f"tokenizer.merges[{i}]", f"a pair of token ids below {256 + i}", m)
    return 256 + len(merges)


def _vocab(tok: dict[str, Any], where: str) -> int:
    """tasks/common.py's Vocab.from_dict input -> its size (special tokens included)."""
    _get(tok, "kind", where, one_of("char", "word"))
    tokens = _get(tok, "tokens", where, _list)
    _each(tokens, f"{where}.tokens", string)
    specials = ("<pad>", "<bos>", "<eos>", "<unk>")
    return SPECIAL_TOKENS + sum(t not in specials for t in tokens)


def _train_config(task: str, tc: dict[str, Any]) -> None:
    for key, chk in TRAIN_CONFIG.items():
        _get(tc, key, "train_config", chk, required=key in TRAIN_REQUIRED.get(task, ()))
    history = _get(tc, "history", "train_config", _list, required=False) or []
    for i, h in enumerate(history):
        where = f"train_config.history[{i}]"
        _dict(h, where)
        _get(h, "step", where, NATURAL)
        for key in ("train", "val"):
            _get(h, key, where, _number_or_nan)
        for key, v in h.items():
            _number_or_nan(v, f"{where}.{key}")


def _number_or_nan(v: Any, where: str) -> None:
    if not _is_number(v):
        _fail(where, "a number", v)


def _optimizer(opt: dict[str, Any]) -> None:
    """loop._optim_split's JSON: the parameter groups and each parameter's scalar state."""
    groups = _get(opt, "param_groups", "optimizer", _list)
    seen: set[int] = set()
    for i, g in enumerate(groups):
        where = f"optimizer.param_groups[{i}]"
        _dict(g, where)
        params = _get(g, "params", where, _list)
        for j, p in enumerate(params):
            NATURAL(p, f"{where}.params[{j}]")
            if p in seen:
                raise SchemaError(f"{where}.params[{j}] repeats parameter {p}")
            seen.add(p)
        _get(g, "lr", where, NONNEGATIVE, required=False)
        _get(g, "eps", where, POSITIVE, required=False)
        _get(g, "weight_decay", where, NONNEGATIVE, required=False)
        betas = _get(g, "betas", where, _list, required=False)
        if betas is not None:
            if len(betas) != 2:
                _fail(f"{where}.betas", "a pair of numbers in [0, 1)", betas)
            _each(betas, f"{where}.betas", PROBABILITY)
        for flag in ("amsgrad", "maximize"):
            _get(g, flag, where, boolean, required=False)
    scalars = _get(opt, "scalars", "optimizer", _dict)
    for key, st in scalars.items():
        where = f"optimizer.scalars.{key}"
        if not re.fullmatch(r"[0-9]+", key) or int(key) not in seen:
            raise SchemaError(f"{where} names no parameter of optimizer.param_groups")
        _dict(st, where)
        for k, v in st.items():
            _number_or_nan(v, f"{where}.{k}")


def _generator_state(state: Any, where: str) -> None:
    """A NumPy PCG64 bit generator's state, as bit_generator.state gives it."""
    _dict(state, where)
    _get(state, "bit_generator", where, one_of("PCG64"))
    inner = _get(state, "state", where, _dict)
    for key in ("state", "inc"):
        _get(inner, key, f"{where}.state", integer(0, 2**128 - 1, "an integer in [0, 2**128)"))
    _get(state, "has_uint32", where, one_of(0, 1))
    _get(state, "uinteger", where, integer(0, 2**32 - 1, "an integer in [0, 2**32)"))


def _rng(rng: dict[str, Any]) -> None:
    _dict(rng, "rng")
    for key in ("global", "batches"):
        _generator_state(_get(rng, key, "rng", _dict), f"rng.{key}")
    lengths = set()
    for key in ("global_by_rank", "batches_by_rank"):
        states = _get(rng, key, "rng", _list, required=False)
        if states is not None:
            for i, s in enumerate(states):
                _generator_state(s, f"rng.{key}[{i}]")
            lengths.add(len(states))
    if len(lengths) > 1 or ("global_by_rank" in rng) != ("batches_by_rank" in rng):
        raise SchemaError("rng.global_by_rank and rng.batches_by_rank must list one state per rank each")


def _quantization(q: Any, mc: dict[str, Any]) -> None:
    """nn/quantized.quantize_'s description, as apply_format reads it."""
    _dict(q, "quantization")
    bits = _get(q, "bits", "quantization", one_of(8, 4))
    group = _get(q, "group", "quantization", optional(SIZE), required=bits == 4)
    if bits == 4 and (group is None or group % 2 or mc["n_embd"] % group):
        _fail("quantization.group", f"an even number that divides model_config.n_embd ({mc['n_embd']}) for "
                                    "4-bit weights", group)
    linears = _get(q, "linears", "quantization", _list)
    for i, name in enumerate(linears):
        if not isinstance(name, str) or not _MODULE_PATH.fullmatch(name):
            _fail(f"quantization.linears[{i}]", "a module name", name)
    if len(set(linears)) != len(linears):
        raise SchemaError("quantization.linears names a layer twice")
    embeddings = _get(q, "embeddings", "quantization", _dict)
    for lin, emb in embeddings.items():
        if lin not in linears:
            raise SchemaError(f"quantization.embeddings.{lin} is not one of quantization.linears")
        if not isinstance(emb, str) or not _MODULE_PATH.fullmatch(emb):
            _fail(f"quantization.embeddings.{lin}", "a module name", emb)


def quantized_names(doc: dict[str, Any]) -> dict[str, str]:
    """Weight name -> the integer dtype it must have, for the quantized layers of a checked manifest."""
    q = doc.get("quantization")
    if doc.get("task", "lm") != "lm" or not q:
        return {}
    dtype = "I8" if q["bits"] == 8 else "U8"
    return {f"{m}.qweight": dtype for m in [*q["linears"], *q["embeddings"].values()]}


def model_elements(task: str, mc: dict[str, Any]) -> int:
    """About how many values (parameters and buffers) the model of a checked model_config holds once built;
    Python integers, so any size is representable."""
    def layer(d: int, ff: int) -> int:  # one encoder layer: attention, feed-forward, two norms
        return 4 * d * d + 2 * d * ff + 10 * d + ff

    if task == "lm":
        C, L = mc["n_embd"], mc["n_layer"]
        return (mc["vocab_size"] + mc["block_size"]) * C + L * (12 * C * C + 13 * C) + 2 * C
    d, ff = mc["d_model"], mc["dim_feedforward"]
    if task == "classify":
        return (mc["vocab"] + mc["max_len"] + 1 + mc["n_classes"]) * d + mc["num_layers"] * layer(d, ff) + 2 * d
    if task == "translate":
        decoder = layer(d, ff) + 4 * d * d + 6 * d  # plus cross-attention and its norm
        return ((mc["src_vocab"] + 2 * mc["tgt_vocab"] + mc["max_len"]) * d + mc["num_encoder_layers"] * layer(d, ff)
                + mc["num_decoder_layers"] * decoder + 4 * d)
    if task == "asr":
        return ((mc["n_mels"] * mc["stack"] + mc.get("max_len", 0) + SPEECH_OUTPUTS) * d
                + mc["num_layers"] * layer(d, ff) + 2 * d)
    patches = (mc["image_size"] // mc["patch_size"]) ** 2
    return (mc["patch_size"] ** 2 + patches + 2 + mc["n_classes"]) * d + mc["num_layers"] * layer(d, ff) + 2 * d


def check_weight_file(doc: dict[str, Any], size: int, name: str) -> None:
    """Refuse a model_config whose model could not be stored in a model weight file of `size` bytes: the
    smallest storage is 4-bit weights (half a byte each), so the file bounds the model's size before the
    model is built. (1M values of slack: buffers that are not saved, such as the speech model's positions.)"""
    task = doc.get("task", "lm")
    if task not in MODEL_CONFIGS:
        return
    n = model_elements(task, doc["model_config"])
    if n > 4 * size + 2**20:
        raise SchemaError(f"model_config describes a model of {n:,} values ({_bytes(4 * n)} as float32), which "
                          f"the {size:,}-byte weight file {name} cannot hold")


def max_data_bytes(doc: dict[str, Any], key: str) -> int | None:
    """The most data bytes the weight file `key` ("model" or "optimizer") can hold for the model that
    model_config describes: float64 values, tied weights saved under both names, and for the optimizer up
    to four arrays per parameter; None for a job this module does not know."""
    task = doc.get("task", "lm")
    if task not in MODEL_CONFIGS:
        return None
    per_value = 16 if key == "model" else 32
    return per_value * model_elements(task, doc["model_config"]) + 2**20


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, where the OS tells."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"
