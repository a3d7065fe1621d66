"""Hugging Face GPT-2 directories both ways: GPT.from_pretrained against a float64 NumPy forward of a tiny
committed directory (tests/data/hf_gpt2_tiny, written by `write_tiny_gpt2` below: run
`python -m tests.test_hf_gpt2` to write it again), sharded files and clear errors; nanoGPT state dicts;
export (hf.export_gpt2 / language_model.export_hf) read back by from_pretrained; our tokenizers as tokenizer.json
against the `tokenizers` package; and, when transformers and PyTorch are installed, logits and token ids
against GPT2LMHeadModel and AutoTokenizer on the same directories."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer.io import hf
from minitransformer.io.safetensors import load_file, serialize
from minitransformer.nn import GPT, GPTConfig, generation
from minitransformer.tasks import language_model
from minitransformer.text.tokenizers import (
    GPT2_SPLIT,
    ByteBPETokenizer,
    CharTokenizer,
    hf_split_pattern,
    hf_tokenizer_json,
    load_hf_tokenizer,
    tokenizer_from_hf_json,
)

from .tolerances import kernel_tol

FIXTURE = Path(__file__).parent / "data" / "hf_gpt2_tiny"
TINY = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 11, "n_positions": 5,
        "n_embd": 8, "n_layer": 2, "n_head": 2, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-6}
TOL = kernel_tol(np.float32, 4 * 32)  # float32 through a whole model; the longest reduction is the MLP's 4C
# characters at the edges of GPT2_SPLIT's classes: Python-only whitespace (\x1c-\x1f), other spaces, letters
# of each kind, combining marks, numbers that \d is not (No, Nl), decimal digits of other scripts, "_",
# apostrophes, symbols, emoji, controls, the last code point
EDGES = (" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u3000\u200b\ufeff aZéßǅʰ中\u0301\u0903²½Ⅻ〇٣𝟘09_'-!€😀"
         "\U000e0001\x00\x7f\U0010ffff")
TEXTS = ["", "hello world", "Hello  world\n\nnew  line\t tab ", "it's we'll they'RE 'S", "x²+y½ Ⅻ 〇 ٣٤ 𝟘",
         "naïve café  \u00a0 \u3000 end\x1c\x1d", "emoji 😀👍🏽 and 中文 漢字", "snake_case __dunder__ a-b",
         "  \n  leading and trailing  \n", "e\u0301 combining", "tabs\t\t\tand\r\nCRLF"]


# ---- the tiny committed directory and its float64 reference ------------------------------------------------

def tiny_gpt2_weights() -> dict[str, np.ndarray]:
    """Random weights under GPT-2's own names and layouts (Conv1D (in, out)), as GPT2Model's files carry
    them: no `transformer.` prefix, the attention-mask buffers included. 2-D block weights in float16."""
    rng = np.random.default_rng(20261205)
    C, V, T = TINY["n_embd"], TINY["vocab_size"], TINY["n_positions"]
    w = {"wte.weight": rng.normal(0, 0.5, (V, C)), "wpe.weight": rng.normal(0, 0.2, (T, C))}
    for i in range(TINY["n_layer"]):
        p = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"], w[p + ln + ".bias"] = 1 + rng.normal(0, 0.1, C), rng.normal(0, 0.1, C)
        for name, n_in, n_out in (("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, 4 * C),
                                  ("mlp.c_proj", 4 * C, C)):
            w[p + name + ".weight"] = rng.normal(0, 0.4, (n_in, n_out)).astype(np.float16)
            w[p + name + ".bias"] = rng.normal(0, 0.1, n_out)
        w[p + "attn.bias"] = np.tril(np.ones((T, T)))[None, None]
    w["h.1.attn.masked_bias"] = np.array(-1e4)
    w["ln_f.weight"], w["ln_f.bias"] = 1 + rng.normal(0, 0.1, C), rng.normal(0, 0.1, C)
    return {k: v if v.dtype == np.float16 else v.astype(np.float32) for k, v in w.items()}


def write_tiny_gpt2(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(TINY, indent=2, sort_keys=True) + "\n")
    (directory / "model.safetensors").write_bytes(serialize(tiny_gpt2_weights(), {"format": "pt"}))
    return directory


def reference_logits(w: dict[str, np.ndarray], cfg: dict, idx: np.ndarray) -> np.ndarray:
    """GPT-2's forward in float64 on Hugging Face's weights as stored (Conv1D: x @ W + b) -> (B, T, V)."""
    w = {k.removeprefix("transformer."): v.astype(np.float64) for k, v in w.items()}
    C, nh, eps = cfg["n_embd"], cfg["n_head"], cfg.get("layer_norm_epsilon", 1e-5)
    hs = C // nh
    B, T = idx.shape

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def gelu(x):
        if cfg.get("activation_function", "gelu_new") == "gelu":
            return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    x = w["wte.weight"][idx] + w["wpe.weight"][:T]                              # (B, T, C)
    causal = np.tril(np.ones((T, T), bool))
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        qkv = ln(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]   # (B, T, 3C)
        q, k, v = (qkv[..., j * C:(j + 1) * C].reshape(B, T, nh, hs).transpose(0, 2, 1, 3) for j in range(3))
        s = np.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs), -np.inf)  # (B, nh, T, T)
        a = np.exp(s - s.max(-1, keepdims=True))
        y = ((a / a.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = gelu(ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return ln(x, "ln_f") @ w["wte.weight"].T


def all_logits(model: GPT, idx: np.ndarray) -> np.ndarray:
    """(B, T, V) logits of every position (forward gives them when targets are passed)."""
    with mt.no_grad():
        return model(mt.tensor(idx), np.zeros_like(idx))[0].numpy()


IDX = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])


def test_the_committed_directory_is_what_the_generator_writes(tmp_path):
    fresh = write_tiny_gpt2(tmp_path / "tiny")
    for name in ("config.json", "model.safetensors"):
        assert (fresh / name).read_bytes() == (FIXTURE / name).read_bytes(), name
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 8192


def test_from_pretrained_matches_a_float64_forward_of_the_fixture():
    model = GPT.from_pretrained(FIXTURE)
    assert not model.training and model.config.block_size == 5 and model.config.bias
    assert model.transformer.h[1].mlp.gelu.approximate == "tanh" and model.transformer.ln_f.eps == 1e-6
    expected = reference_logits(load_file(FIXTURE / "model.safetensors"), TINY, IDX)
    np.testing.assert_allclose(all_logits(model, IDX), expected, **TOL)
    assert np.abs(expected).max() > 1.0  # the weights are large enough for the nonlinearities to matter
    # the graph-free generation path reads the same eps and GELU form
    caches = generation.new_caches(model)
    generation.decode_step(model, np.asarray(IDX[:, :3]), 0, caches)
    step = generation.decode_step(model, np.asarray(IDX[:, 3:4]), 3, caches)
    np.testing.assert_allclose(step[:, 0], expected[:, 3], **TOL)


def test_prefixed_sharded_exact_gelu_and_bfloat16(tmp_path):
    w = tiny_gpt2_weights()
    names = sorted(w)
    shards = {"model-00001-of-00002.safetensors": names[:9], "model-00002-of-00002.safetensors": names[9:]}
    for file, keys in shards.items():
        (tmp_path / file).write_bytes(serialize({"transformer." + k: w[k] for k in keys}))
    index = {"metadata": {}, "weight_map": {"transformer." + k: f for f, ks in shards.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = {**TINY, "activation_function": "gelu", "n_positions": None, "n_ctx": 5}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    model = GPT.from_pretrained(tmp_path)
    np.testing.assert_allclose(all_logits(model, IDX), reference_logits(w, cfg, IDX), **TOL)
    # bfloat16: the top half of each float32, written by hand into the header's BF16 entries
    bf = {k: (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) for k, v in w.items()}
    raw = serialize(bf)
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode().rstrip().replace('"U16"', '"BF16"')
    header += " " * (-len(header) % 8)
    single = tmp_path / "bf16"
    single.mkdir()
    (single / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header.encode() + raw[8 + n:])
    (single / "config.json").write_text(json.dumps(TINY))
    w16 = {k: (v.astype(np.uint32) << 16).view(np.float32) for k, v in bf.items()}
    np.testing.assert_allclose(all_logits(GPT.from_pretrained(single), IDX), reference_logits(w16, TINY, IDX),
                               **TOL)


def _write(d: Path, weights: dict, cfg: dict | None = None) -> Path:
    d.mkdir(exist_ok=True)
    (d / "model.safetensors").write_bytes(serialize(weights))
    (d / "config.json").write_text(json.dumps(cfg or TINY))
    return d


def test_errors_name_the_keys_and_the_file(tmp_path):
    w = tiny_gpt2_weights()
    bad = {k: v for k, v in w.items() if k != "h.1.mlp.c_fc.bias"}
    bad["h.2.ln_1.weight"] = w["h.1.ln_1.weight"]
    bad["h.0.attn.c_proj.weight"] = np.zeros((8, 9), np.float32)
    with pytest.raises(ValueError) as e:
        GPT.from_pretrained(_write(tmp_path / "a", bad))
    msg = str(e.value)
    assert str(tmp_path / "a" / "model.safetensors") in msg
    assert "missing weights h.1.mlp.c_fc.bias" in msg and "unexpected weights h.2.ln_1.weight" in msg
    assert "h.0.attn.c_proj.weight [8, 9] (expected [8, 8])" in msg
    # sizes are checked from the header before anything is allocated: 10^12 rows would not fit in memory
    with pytest.raises(ValueError, match=r"wte\.weight \[11, 8\] \(expected \[1000000000000, 8\]\)"):
        GPT.from_pretrained(_write(tmp_path / "b", w, {**TINY, "vocab_size": 10 ** 12}))
    cases = [({**TINY, "model_type": "llama"}, "model_type 'llama' is not supported"),
             ({**TINY, "activation_function": "relu"}, "activation_function 'relu' is not supported"),
             ({**TINY, "n_head": 3}, "n_embd 8 is not divisible by n_head 3"),
             ({**TINY, "n_inner": 16}, "n_inner 16"),
             ({**TINY, "tie_word_embeddings": False}, "tie_word_embeddings false"),
             ({**TINY, "n_layer": 0}, "n_layer must be a positive integer")]
    for cfg, match in cases:
        with pytest.raises(ValueError, match=re.escape(match)):
            GPT.from_pretrained(_write(tmp_path / "c", w, cfg))
    (tmp_path / "c" / "model.safetensors").write_bytes(serialize(w)[:-4])
    (tmp_path / "c" / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        GPT.from_pretrained(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(tmp_path / "nowhere")
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY))
    (d / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin is PyTorch's pickle format"):
        GPT.from_pretrained(d)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"wte.weight": "../x.safetensors"}}))
    with pytest.raises(ValueError, match="is not a file name in"):
        GPT.from_pretrained(d)


# ---- nanoGPT state dicts -----------------------------------------------------------------------------------

def test_load_state_dict_takes_nanogpt_checkpoints():
    cfg = GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, bias=True)
    mt.manual_seed(0)
    src = GPT(cfg)
    state = {k: v.numpy() for k, v in src.state_dict().items()}
    # what nanoGPT saves: both tied names, a non-flash model's mask buffers, torch.compile's / DDP's prefixes
    masks = {f"transformer.h.{i}.attn.bias": np.tril(np.ones((8, 8)))[None, None] for i in range(2)}
    idx = np.array([[1, 2, 3, 4]])
    for prefix in ("_orig_mod.", "module.", "module._orig_mod.", ""):
        nano = {prefix + k: v for k, v in {**state, **masks}.items()}
        mt.manual_seed(1)
        dst = GPT(cfg)
        dst.load_state_dict(nano)
        np.testing.assert_array_equal(all_logits(dst, idx), all_logits(src, idx))
    mt.manual_seed(1)
    dst = GPT(cfg)
    dst.load_state_dict({k: v for k, v in state.items() if k != "lm_head.weight"})  # one tied name is enough
    np.testing.assert_array_equal(dst.lm_head.weight.numpy(), state["transformer.wte.weight"])
    with pytest.raises(RuntimeError, match="Missing key"):
        dst.load_state_dict({k: v for k, v in state.items() if "ln_f" not in k})


# ---- export ------------------------------------------------------------------------------------------------

CORPUS = ("def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0  # it's naïve, café 中文 😀\n"
          "we'll see: x² ½ ٣ __init__ \t tabs\r\n") * 20


def _bpe() -> ByteBPETokenizer:
    return ByteBPETokenizer.train(CORPUS, 330)


def _model(vocab: int, bias: bool, seed: int = 0) -> GPT:
    mt.manual_seed(seed)
    model = GPT(GPTConfig(block_size=16, vocab_size=vocab, n_layer=2, n_head=2, n_embd=32, bias=bias))
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # larger than GPT's init, so every weight shows in the logits
        p.data[...] = p.data + rng.normal(0, 0.1, p.shape).astype(np.float32)
    return model.eval()


def test_export_reads_back_with_the_same_logits_and_tokenizer(tmp_path):
    for tok, bias in ((CharTokenizer.train(CORPUS), False), (_bpe(), True)):
        model = _model(tok.vocab_size, bias)
        out = hf.export_gpt2(model, tok, tmp_path / tok.kind, eos_token_id=0)
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json",
                                                         "model.safetensors", "tokenizer.json",
                                                         "tokenizer_config.json"]
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["activation_function"] == "gelu" and cfg["eos_token_id"] == 0 and cfg["model_type"] == "gpt2"
        w = load_file(out / "model.safetensors")
        assert w["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)
        assert bias or not w["transformer.h.1.mlp.c_fc.bias"].any()
        idx = np.array([tok.encode("def add(a, b):\n    ret")[:16]])
        back = GPT.from_pretrained(out)
        np.testing.assert_allclose(all_logits(back, idx), all_logits(model, idx), **TOL)
        np.testing.assert_allclose(all_logits(model, idx), reference_logits(w, cfg, idx), **TOL)
        again = load_hf_tokenizer(out / "tokenizer.json")
        assert type(again) is type(tok) and again.to_dict() == tok.to_dict()
    # a model read from a Hugging Face directory goes back out with its biases, tanh GELU and eps
    hf.export_gpt2(GPT.from_pretrained(FIXTURE), None, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["activation_function"] == "gelu_new"
    np.testing.assert_allclose(all_logits(GPT.from_pretrained(tmp_path / "again"), IDX),
                               all_logits(GPT.from_pretrained(FIXTURE), IDX), rtol=0, atol=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        hf.export_gpt2(model, None, tmp_path / "x", bos_token_id=10 ** 6)


def test_export_checkpoint(tmp_path):
    from minitransformer.deploy.compress import quantize_checkpoint
    from minitransformer.tasks.language_model import TrainConfig, load_model, train

    data = tmp_path / "t.txt"
    data.write_text(CORPUS)
    train(TrainConfig(data=str(data), out=str(tmp_path / "lm"), tokenizer="bpe", vocab_size=300, n_layer=1,
                      n_head=2, n_embd=16, block_size=8, batch_size=4, max_iters=2, eval_interval=2,
                      eval_iters=1, sample_tokens=0), progress=False)
    line = language_model.export_hf(str(tmp_path / "lm"), str(tmp_path / "hf"))
    assert "\n" not in line and re.search(r"n_layer 1, .*bpe tokenizer of \d+ tokens", line), line
    model, tok, _ = load_model(tmp_path / "lm")
    idx = np.array([tok.encode("def add(a, b):")[:8]])
    np.testing.assert_allclose(all_logits(GPT.from_pretrained(tmp_path / "hf"), idx), all_logits(model, idx),
                               **TOL)
    quantize_checkpoint(tmp_path / "lm", tmp_path / "q", 8)
    for ckpt, out, match in ((tmp_path / "q", tmp_path / "hq", "quantized"),
                             (tmp_path / "lm", tmp_path / "lm", "new directory"),
                             (tmp_path / "none", tmp_path / "h2", "no checkpoint"),
                             (tmp_path / "hf", tmp_path / "h3", "no checkpoint")):
        with pytest.raises(ValueError, match=match):
            language_model.export_hf(str(ckpt), str(out))
    with pytest.raises(ValueError, match="holds a minitransformer checkpoint"):
        hf.export_gpt2(model, tok, tmp_path / "lm")
    # the command line: `minitransformer export --out CKPT --hf DIR`, and one error line for a bad call
    from minitransformer.__main__ import main

    assert main(["export", "--out", str(tmp_path / "lm"), "--hf", str(tmp_path / "cli")]) == 0
    np.testing.assert_allclose(all_logits(GPT.from_pretrained(tmp_path / "cli"), idx), all_logits(model, idx),
                               **TOL)
    assert main(["export", "--out", str(tmp_path / "lm")]) == 2


# ---- tokenizer.json against the tokenizers package --------------------------------------------------------

def test_split_classes_cover_every_character_once():
    """hf_split_pattern writes "other" as [^ space letter digit]: true when \\w is letters + digits + "_"."""
    text = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    assert re.sub(r"[^\W\d_]|\d|_", "", text) == re.sub(r"\w", "", text)
    assert not re.search(r"(?=\s)\w", text)


def _hf(doc: dict):
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.Tokenizer.from_str(json.dumps(doc))


def test_split_pattern_splits_as_python_re():
    tokenizers = pytest.importorskip("tokenizers")
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(hf_split_pattern()), behavior="isolated")

    @given(st.text(st.sampled_from(EDGES) | st.characters(exclude_categories=["Cs"]), max_size=40))
    def check(text):
        assert [p for p, _ in split.pre_tokenize_str(text)] == GPT2_SPLIT.findall(text)

    check()
    for text in TEXTS + [EDGES, EDGES[::-1]]:
        assert [p for p, _ in split.pre_tokenize_str(text)] == GPT2_SPLIT.findall(text)


def test_char_tokenizer_json_encodes_and_decodes_as_ours():
    tok = CharTokenizer.train(CORPUS)
    theirs = _hf(hf_tokenizer_json(tok))

    @given(st.text(st.sampled_from(tok.chars), max_size=60))
    def check(text):
        ids = tok.encode(text)
        assert theirs.encode(text).ids == ids and theirs.decode(ids) == text

    check()
    with pytest.raises(ValueError, match="not in this character vocabulary"):
        tok.encode("Z")
    with pytest.raises(Exception, match="(?i)unk"):  # as ours: a character outside the vocabulary is an error
        theirs.encode("Z")
    assert tokenizer_from_hf_json(json.loads(theirs.to_str())).to_dict() == tok.to_dict()


def test_bpe_tokenizer_json_encodes_and_decodes_as_ours():
    tok = _bpe()
    theirs = _hf(hf_tokenizer_json(tok))

    @given(st.text(st.sampled_from(EDGES) | st.characters(exclude_categories=["Cs"]), max_size=60),
           st.lists(st.integers(0, tok.vocab_size - 1), max_size=12))
    def check(text, ids):
        assert theirs.encode(text).ids == tok.encode(text)
        assert theirs.decode(tok.encode(text)) == text
        assert theirs.decode(ids) == tok.decode(ids)  # partial UTF-8 sequences become U+FFFD the same way

    check()
    for text in TEXTS + [CORPUS]:
        assert theirs.encode(text).ids == tok.encode(text), text
    assert len(tok.encode(CORPUS)) < len(CORPUS.encode()) / 2  # merges apply
    assert tokenizer_from_hf_json(json.loads(theirs.to_str())).to_dict() == tok.to_dict()


def test_foreign_or_ambiguous_tokenizers_are_refused():
    tok = _bpe()
    doc = hf_tokenizer_json(tok)
    doc["normalizer"] = {"type": "NFC"}
    with pytest.raises(ValueError, match="normalizer"):
        tokenizer_from_hf_json(doc)
    doc = hf_tokenizer_json(tok)
    doc["model"]["vocab"] = {k: (v + 1) % tok.vocab_size for k, v in doc["model"]["vocab"].items()}
    with pytest.raises(ValueError, match="ids 0-255 are not the 256 bytes in order"):
        tokenizer_from_hf_json(doc)
    # two merges that spell the same bytes: Hugging Face's vocabulary cannot tell them apart
    with pytest.raises(ValueError, match="tokens 257 and 258 are both b'aaa'"):
        hf_tokenizer_json(ByteBPETokenizer([(97, 97), (256, 97), (97, 256)]))


# ---- against transformers ----------------------------------------------------------------------------------
# transformers runs in a child process started outside the repository: it imports the top-level package
# `kernels` (one of its dependencies), which this repository's kernels/ folder shadows whenever the
# repository root is on sys.path, as it is under pytest.

_TRANSFORMERS_JOBS = r"""
import json, sys
import torch, transformers

def make(d, activation):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                  activation_function=activation)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():  # away from the init, so biases and LN weights matter
            ln = ".ln_" in name and name.endswith("weight")
            p.copy_(1 + 0.1 * torch.randn_like(p) if ln else 0.2 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)

def logits(d, idx):
    model = transformers.GPT2LMHeadModel.from_pretrained(d).eval()
    with torch.no_grad():
        return model(torch.tensor(idx)).logits.tolist()

def tokens(d, texts, ids):
    tok = transformers.AutoTokenizer.from_pretrained(d)
    return {"call": [tok(t)["input_ids"] for t in texts], "encode": [tok.encode(t) for t in texts],
            "decode": [tok.decode(i) for i in ids]}

jobs = json.load(open(sys.argv[1], encoding="utf-8"))
json.dump([globals()[job.pop("op")](**job) for job in jobs], open(sys.argv[2], "w", encoding="utf-8"))
"""


def run_transformers(tmp_path: Path, jobs: list[dict]) -> list:
    """Run `jobs` ({"op": make | logits | tokens, ...}) in transformers, in a child process -> their results."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    (tmp_path / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", _TRANSFORMERS_JOBS, "jobs.json", "results.json"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))


ACTS = ["gelu_new", "gelu"]


@pytest.fixture(scope="module")
def transformers_results(tmp_path_factory):
    """One child process for every check against transformers (its import alone takes seconds): it makes a
    random GPT2LMHeadModel per activation and gives its logits, and gives the logits and tokens of our two
    exported models. -> (directory, idx, its results, our exports' (logits, texts, ids))."""
    d = tmp_path_factory.mktemp("transformers")
    idx = np.random.default_rng(1).integers(0, 50, (2, 16))
    jobs = [{"op": "make", "d": a, "activation": a} for a in ACTS]
    jobs += [{"op": "logits", "d": a, "idx": idx.tolist()} for a in ACTS]
    ours = []
    for tok, bias in ((CharTokenizer.train(CORPUS), True), (_bpe(), False)):
        model = _model(tok.vocab_size, bias, seed=3)
        hf.export_gpt2(model, tok, d / tok.kind)
        ids_in = np.array([tok.encode(CORPUS[:40])[:16]])
        texts = [t for t in TEXTS + [CORPUS, CORPUS[7:50], CORPUS[90:]]
                 if tok.kind == "bpe" or set(t) <= set(tok.chars)]
        ids = [tok.encode(t) for t in texts]
        jobs += [{"op": "logits", "d": tok.kind, "idx": ids_in.tolist()},
                 {"op": "tokens", "d": tok.kind, "texts": texts, "ids": ids}]
        ours.append((all_logits(model, ids_in), texts, ids))
    return d, idx, run_transformers(d, jobs), ours


def test_transformers_directories_give_transformers_logits_and_go_back_out(transformers_results):
    d, idx, results, _ = transformers_results
    for a, expected in zip(ACTS, results[len(ACTS):2 * len(ACTS)], strict=True):
        ours = GPT.from_pretrained(d / a)
        np.testing.assert_allclose(all_logits(ours, idx), np.array(expected), **TOL)
        # and back out: the very tensors transformers wrote (biases, Conv1D layout), under the same config
        hf.export_gpt2(ours, None, d / f"back-{a}")
        theirs, back = load_file(d / a / "model.safetensors"), load_file(d / f"back-{a}" / "model.safetensors")
        assert set(back) == set(theirs) - {"lm_head.weight"}
        for k, v in back.items():
            np.testing.assert_array_equal(v, theirs[k], err_msg=k)
        cfg, back_cfg = (json.loads((d / x / "config.json").read_text()) for x in (a, f"back-{a}"))
        for k in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size", "activation_function",
                  "layer_norm_epsilon", "tie_word_embeddings"):
            assert back_cfg[k] == cfg.get(k, True), k


def test_export_loads_in_transformers(transformers_results):
    _, _, results, ours = transformers_results
    exported = results[2 * len(ACTS):]
    for (logits, texts, ids), theirs, toks in zip(ours, exported[::2], exported[1::2], strict=True):
        np.testing.assert_allclose(np.array(theirs), logits, **TOL)
        assert toks["call"] == ids and toks["encode"] == ids
        assert toks["decode"] == texts


if __name__ == "__main__":
    write_tiny_gpt2(FIXTURE)
    print(f"wrote {FIXTURE}", file=sys.stderr)
