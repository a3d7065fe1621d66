"""Our language models as Hugging Face GPT-2 directories, which transformers' GPT2LMHeadModel and AutoTokenizer
(and `tokenizers.Tokenizer.from_file`) load as they are:

    config.json              GPT2LMHeadModel's config: sizes, activation_function from our GELU form,
                             layer_norm_epsilon, tied embeddings, bos/eos ids
    generation_config.json   bos/eos ids (generate's own max_length stays: pass max_new_tokens within n_positions)
    model.safetensors        float32 weights under GPT2LMHeadModel's names, Conv1D layout, {"format": "pt"}
    tokenizer.json           our char or byte-level BPE tokenizer in Hugging Face's format (tokenizers.py)
    tokenizer_config.json    PreTrainedTokenizerFast, model_max_length = n_positions, no clean-up on decode

The other direction is `mt.nn.GPT.from_pretrained(dir)` and `mt.tokenizers.load_hf_tokenizer(dir /
"tokenizer.json")`; nn/hf_gpt2.py holds the mapping both share. Quantized models are not exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..nn.gpt import GPT
from ..nn.hf_gpt2 import config_json, hf_state
from ..nn.layers import GELU, Embedding, LayerNorm, Linear
from ..text.tokenizers import Tokenizer, hf_tokenizer_json
from .atomic import atomic_write_bytes
from .safetensors import serialize

__all__ = ["export_gpt2"]


def _numerics(model: GPT) -> tuple[str, float]:
    """The model's one GELU form and one LayerNorm epsilon (a GPT-2 config has a single value of each)."""
    forms = {m.approximate for m in model.modules() if isinstance(m, GELU)}
    eps = {m.eps for m in model.modules() if isinstance(m, LayerNorm)}
    if len(forms) != 1 or len(eps) != 1:
        raise ValueError(f"the model's layers differ in GELU form {sorted(forms)} or LayerNorm eps {sorted(eps)}; "
                         "a GPT-2 config holds one of each")
    return forms.pop(), float(eps.pop())


_KINDS = {"c_attn": Linear, "c_proj": Linear, "c_fc": Linear, "lm_head": Linear, "wte": Embedding, "wpe": Embedding}


def _check_float(model: GPT) -> None:
    for name, m in model.named_modules():
        kind = _KINDS.get(name.rsplit(".", 1)[-1])
        if kind is not None and not isinstance(m, kind):
            raise ValueError(f"layer {name} is a {type(m).__name__}: only float models export to Hugging Face "
                             "(export the checkpoint the quantized one was made from)")


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def export_gpt2(model: GPT, tokenizer: Tokenizer | None, out_dir: str | Path, bos_token_id: int | None = None,
                eos_token_id: int | None = None) -> Path:
    """Write `model` (and `tokenizer`, unless None) to `out_dir` as a Hugging Face GPT-2 directory (see the
    module docstring); returns the directory. Biases our model lacks (bias=False) are written as zeros,
    which computes the same. Files already in out_dir that are not written here are left alone; a
    minitransformer checkpoint directory is refused, since its tokenizer.json would be replaced."""
    if not isinstance(model, GPT):
        raise TypeError(f"export_gpt2 takes a minitransformer GPT, got {type(model).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a directory")
    if (out / "checkpoint.json").exists():
        raise ValueError(f"{out} holds a minitransformer checkpoint; export to another directory")
    _check_float(model)
    approximate, eps = _numerics(model)
    c = dict(vars(model.config))
    for name, tid in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        if tid is not None and not 0 <= tid < c["vocab_size"]:
            raise ValueError(f"{name} {tid} is outside the vocabulary [0, {c['vocab_size']})")
    if tokenizer is not None and tokenizer.vocab_size > c["vocab_size"]:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens, the model only {c['vocab_size']}")
    tok_doc = None if tokenizer is None else hf_tokenizer_json(tokenizer)  # refuses before anything is written
    state = hf_state({k: v.numpy() for k, v in model.state_dict().items()}, c)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.safetensors", serialize(state, {"format": "pt"}))
    _write_json(out / "config.json", config_json(c, approximate, eps, bos_token_id, eos_token_id))
    _write_json(out / "generation_config.json", {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id})
    if tok_doc is not None:
        _write_json(out / "tokenizer.json", tok_doc)
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                    "model_max_length": c["block_size"],
                                                    "clean_up_tokenization_spaces": False})
    return out
