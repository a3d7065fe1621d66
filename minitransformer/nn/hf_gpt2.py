"""Hugging Face's GPT-2 directory layout, mapped to and from the GPT in gpt.py. Plain dicts and arrays only:
gpt.py's `GPT.from_pretrained` builds the model from what `read_config` and `read_weights` return, and
minitransformer/io/hf.py writes a directory from what `config_json` and `hf_state` return.

    config.json      model_type "gpt2"; n_embd, n_layer, n_head, n_positions (or n_ctx), vocab_size,
                     layer_norm_epsilon, activation_function ("gelu_new" / "gelu_pytorch_tanh" = tanh GELU,
                     "gelu" = exact)
    model.safetensors, or shards listed in model.safetensors.index.json ({"weight_map": {name: file}})

Weight names are ours without the `transformer.` prefix (which GPT2LMHeadModel's files carry and GPT2Model's
do not): wte, wpe, h.{i}.ln_1, h.{i}.attn.c_attn, ... ln_f. GPT-2's c_attn, c_proj and c_fc are `Conv1D`
layers, whose weight is stored (in, out): the transpose of a Linear's (out, in). lm_head.weight is tied to
wte and may be absent; the attention-mask buffers h.{i}.attn.bias and h.{i}.attn.masked_bias are ignored.

Reading checks every name and shape against config.json from the safetensors headers alone, before any
weight is read or the model allocated; a mismatch raises one ValueError naming the keys and the file.
Not handled here: untied output layers, cross-attention, n_inner other than 4 * n_embd, attention without
the 1/sqrt(hs) scale or with the per-layer scale, other activations (each refused by name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..io.safetensors import decode, header_length, parse_header

# activation_function -> F.gelu's `approximate`: gelu_new and gelu_pytorch_tanh are the same tanh formula
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
HF_ACTIVATION = {"tanh": "gelu_new", "none": "gelu"}
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
_IGNORED = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")   # GPT-2's causal-mask buffers, not weights
_CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")
_FLOATS = {"F64", "F32", "F16", "BF16"}


class Spec(NamedTuple):
    """What config.json says: GPTConfig's fields (`config`), the GELU form and the LayerNorm epsilon."""

    config: dict[str, Any]
    approximate: str
    eps: float


def read_config(directory: str | Path) -> Spec:
    """config.json of a Hugging Face GPT-2 directory, checked; anything this GPT cannot compute is refused."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (a Hugging Face model directory has config.json and "
                                f"{SINGLE} or {INDEX})")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("model_type") != "gpt2":
        kind = d.get("model_type", "?") if isinstance(d, dict) else "?"
        raise ValueError(f"{path}: model_type {kind!r} is not supported; GPT.from_pretrained reads model_type "
                         "'gpt2' (GPT2LMHeadModel, GPT2Model)")
    act = d.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"{path}: activation_function {act!r} is not supported (one of "
                         f"{', '.join(ACTIVATIONS)})")
    sizes = {}
    for ours, theirs in (("n_embd", "n_embd"), ("n_layer", "n_layer"), ("n_head", "n_head"),
                         ("vocab_size", "vocab_size"), ("block_size", "n_positions")):
        v = d.get(theirs)
        if theirs == "n_positions" and v is None:
            theirs, v = "n_ctx", d.get("n_ctx")  # older configs
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{path}: {theirs} must be a positive integer, got {v!r}")
        sizes[ours] = v
    C = sizes["n_embd"]
    if C % sizes["n_head"]:
        raise ValueError(f"{path}: n_embd {C} is not divisible by n_head {sizes['n_head']}")
    refused = [(d.get("n_inner") not in (None, 4 * C), f"n_inner {d.get('n_inner')} (this GPT's MLP is 4 * n_embd)"),
               (d.get("add_cross_attention", False), "add_cross_attention"),
               (not d.get("scale_attn_weights", True), "scale_attn_weights false"),
               (d.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx"),
               (not d.get("tie_word_embeddings", True), "tie_word_embeddings false (this GPT ties lm_head to wte)")]
    for bad, what in refused:
        if bad:
            raise ValueError(f"{path}: {what} is not supported")
    eps = d.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise ValueError(f"{path}: layer_norm_epsilon must be a small positive number, got {eps!r}")
    dropout = d.get("resid_pdrop", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"{path}: resid_pdrop must be in [0, 1), got {dropout!r}")
    return Spec({**sizes, "dropout": float(dropout), "bias": True}, ACTIVATIONS[act], float(eps))


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Hugging Face name (no prefix) -> the shape stored in the file (Conv1D weights (in, out))."""
    C, V, T = config["n_embd"], config["vocab_size"], config["block_size"]
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        for name, shape in (("ln_1.weight", (C,)), ("ln_1.bias", (C,)),
                            ("attn.c_attn.weight", (C, 3 * C)), ("attn.c_attn.bias", (3 * C,)),
                            ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                            ("ln_2.weight", (C,)), ("ln_2.bias", (C,)),
                            ("mlp.c_fc.weight", (C, 4 * C)), ("mlp.c_fc.bias", (4 * C,)),
                            ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))):
            shapes[p + name] = shape
    shapes["ln_f.weight"] = shapes["ln_f.bias"] = (C,)
    return shapes


def is_conv1d(name: str) -> bool:
    """Whether a weight is stored (in, out) by Hugging Face, i.e. transposed relative to our Linear."""
    return name.endswith(_CONV1D)


class _Entry(NamedTuple):
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int   # absolute byte offset in the file
    nbytes: int


def _read_header(path: Path) -> dict[str, _Entry]:
    """The tensor entries of a safetensors file, read from its header alone (safetensors.parse_header checks
    them to lie inside it)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = header_length(f.read(8), size, str(path))
        entries, _ = parse_header(f.read(n), size - 8 - n, str(path))
    return {key: _Entry(path, e.dtype, e.shape, 8 + n + e.begin, e.end - e.begin) for key, e in entries.items()}


def _weight_files(d: Path) -> tuple[Path, list[Path], dict[str, str] | None]:
    """(the file to name in errors, the safetensors files, the index's weight_map or None)."""
    if (d / SINGLE).is_file():
        return d / SINGLE, [d / SINGLE], None
    index = d / INDEX
    if not index.is_file():
        other = [p.name for p in d.glob("*.bin")] if d.is_dir() else []
        hint = f" ({', '.join(sorted(other))} is PyTorch's pickle format, which is not read)" if other else ""
        raise FileNotFoundError(f"{d}: neither {SINGLE} nor {INDEX} found{hint}")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not a map of names to file names")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a valid safetensors index ({e})") from None
    shards = sorted(set(weight_map.values()))
    for s in shards:
        if Path(s).name != s or s in (".", ".."):
            raise ValueError(f"{index}: shard {s!r} is not a file name in {d}")
        if not (d / s).is_file():
            raise FileNotFoundError(f"{index}: shard {d / s} not found")
    return index, [d / s for s in shards], weight_map


def _short(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _load(e: _Entry) -> np.ndarray:
    """One tensor as float32, read from its own bytes only."""
    with open(e.path, "rb") as f:
        f.seek(e.start)
        raw = f.read(e.nbytes)
    return decode(raw, e.dtype, e.shape).astype(np.float32)


def read_weights(directory: str | Path, spec: Spec) -> dict[str, np.ndarray]:
    """The weights of a Hugging Face GPT-2 directory as our state_dict (float32, Linear layout, names with
    `transformer.`; lm_head.weight left out: it is wte). Names, dtypes and shapes are all checked first."""
    d = Path(directory)
    where, files, weight_map = _weight_files(d)
    entries: dict[str, _Entry] = {}
    for path in files:
        for key, e in _read_header(path).items():
            if weight_map is not None and weight_map.get(key) != path.name:
                continue  # a name the index places in another shard (or not at all) is not read from here
            name = key.removeprefix("transformer.")
            if name in entries:
                raise ValueError(f"{where}: weight {name!r} appears twice (with and without 'transformer.')")
            entries[name] = e
    if weight_map is not None:
        lost = sorted(k for k in weight_map if k.removeprefix("transformer.") not in entries)
        if lost:
            raise ValueError(f"{where}: {_short(lost)} listed in the index but not in the shard it names")
    shapes = expected_shapes(spec.config)
    present = {k for k in entries if not _IGNORED.fullmatch(k) and k != "lm_head.weight"}
    missing, extra = sorted(set(shapes) - present), sorted(present - set(shapes))
    problems = []
    if missing:
        problems.append(f"missing weights {_short(missing)}")
    if extra:
        problems.append(f"unexpected weights {_short(extra)}")
    wrong = [f"{k} {list(entries[k].shape)} (expected {list(s)})" for k, s in shapes.items()
             if k in entries and entries[k].shape != s]
    if "lm_head.weight" in entries and entries["lm_head.weight"].shape != shapes["wte.weight"]:
        wrong.append(f"lm_head.weight {list(entries['lm_head.weight'].shape)} "
                     f"(expected {list(shapes['wte.weight'])})")
    if wrong:
        problems.append(f"wrong shapes {_short(wrong)}")
    types = sorted({f"{k} {entries[k].dtype}" for k in shapes if k in entries and entries[k].dtype not in _FLOATS})
    if types:
        problems.append(f"not floating point: {_short(types)}")
    if problems:
        c = spec.config
        raise ValueError(f"{where}: does not hold the GPT-2 that config.json describes (n_layer={c['n_layer']}, "
                         f"n_embd={c['n_embd']}, vocab_size={c['vocab_size']}, n_positions={c['block_size']}): "
                         + "; ".join(problems))
    state = {}
    for name in shapes:
        arr = _load(entries[name])
        state["transformer." + name] = np.ascontiguousarray(arr.T) if is_conv1d(name) else arr
    return state


def hf_state(state: dict[str, np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Our state_dict (arrays; biases may be absent) -> GPT2LMHeadModel's names and layouts, float32: Conv1D
    weights transposed to (in, out), absent biases written as zeros, lm_head.weight left out (tied)."""
    out = {}
    for name, shape in expected_shapes(config).items():
        ours = state.get("transformer." + name)
        if ours is None:
            if not name.endswith(".bias"):
                raise ValueError(f"the model has no {'transformer.' + name}; a GPT-2 needs it")
            ours = np.zeros(shape, np.float32)
        arr = np.asarray(ours, dtype=np.float32)
        out["transformer." + name] = np.ascontiguousarray(arr.T if is_conv1d(name) else arr)
    return out


def config_json(config: dict[str, Any], approximate: str, eps: float, bos_token_id: int | None = None,
                eos_token_id: int | None = None) -> dict[str, Any]:
    """config.json of GPT2LMHeadModel for a GPT with GPTConfig fields `config`, its GELU form and LN eps."""
    if approximate not in HF_ACTIVATION:
        raise ValueError(f"GELU approximate={approximate!r} has no Hugging Face GPT-2 activation_function")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config["vocab_size"], "n_positions": config["block_size"], "n_ctx": config["block_size"],
        "n_embd": config["n_embd"], "n_layer": config["n_layer"], "n_head": config["n_head"], "n_inner": None,
        "activation_function": HF_ACTIVATION[approximate], "layer_norm_epsilon": eps,
        "resid_pdrop": config["dropout"], "embd_pdrop": config["dropout"], "attn_pdrop": config["dropout"],
        "initializer_range": 0.02, "scale_attn_weights": True, "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "torch_dtype": "float32",
    }
