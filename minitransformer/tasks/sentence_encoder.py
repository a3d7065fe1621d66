"""Sentence embeddings from a sentence-transformers model directory, without sentence-transformers:
`mt.SentenceEncoder.from_pretrained(dir).encode(sentences)`.

The directory's modules.json lists the pipeline; the one read here is the usual one: a Transformer (BERT, from
config.json and model.safetensors, with its WordPiece tokenizer and `max_seq_length` from
sentence_bert_config.json), then Pooling (1_Pooling/config.json: the mean of the token states over the
attention mask, or the [CLS] state, or the maximum), then optionally Normalize (each vector divided by its
L2 norm). Any other module type is refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..autograd import no_grad
from ..nn.bert import BertModel
from ..text.wordpiece import WordPiece

KNOWN = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
         "sentence_transformers.models.Normalize"}


class SentenceEncoder:
    """A BERT encoder, a pooling mode and optional L2 normalisation, as sentence-transformers runs them."""

    def __init__(self, model: BertModel, tokenizer: WordPiece, pooling: str = "mean", normalize: bool = True,
                 max_seq_length: int = 256) -> None:
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"pooling must be mean, cls or max, got {pooling!r}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pooling, self.normalize, self.max_seq_length = pooling, normalize, max_seq_length

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SentenceEncoder:
        d = Path(directory)
        modules_file = d / "modules.json"
        if not modules_file.is_file():
            raise FileNotFoundError(f"{modules_file}: not found (a sentence-transformers model directory has it)")
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        unknown = [m.get("type") for m in modules if m.get("type") not in KNOWN]
        if unknown:
            raise ValueError(f"{modules_file}: unsupported module types {', '.join(map(str, unknown))}")
        types = {m["type"].rsplit(".", 1)[1]: m for m in modules}
        if "Transformer" not in types:
            raise ValueError(f"{modules_file}: no Transformer module")
        base = d / types["Transformer"].get("path", "")
        pooling, normalize = "mean", "Normalize" in types
        if "Pooling" in types:
            pc = json.loads((d / types["Pooling"]["path"] / "config.json").read_text(encoding="utf-8"))
            modes = [m for m in ("mean_tokens", "cls_token", "max_tokens") if pc.get(f"pooling_mode_{m}")]
            others = [k for k, v in pc.items() if k.startswith("pooling_mode_") and v
                      and k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
            if len(modes) != 1 or others:
                raise ValueError(f"{d / types['Pooling']['path']}/config.json: one of mean, cls or max pooling is "
                                 f"supported, got {', '.join(modes + others) or 'none'}")
            pooling = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}[modes[0]]
        max_len = 256
        sb = base / "sentence_bert_config.json"
        if sb.is_file():
            max_len = int(json.loads(sb.read_text(encoding="utf-8")).get("max_seq_length", max_len))
        return cls(BertModel.from_pretrained(base), WordPiece.from_pretrained(base), pooling, normalize, max_len)

    @no_grad()
    def encode(self, sentences: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """Sentences -> (N, C) float32 embeddings (one sentence -> (C,)), in the input order. Sentences are
        batched by length (as sentence-transformers does) so that little padding is computed."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for b0 in range(0, len(texts), batch_size):
            idx = order[b0:b0 + batch_size]
            batch = self.tokenizer([texts[i] for i in idx], max_length=self.max_seq_length)
            h, _ = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            h = h.numpy()                                                              # (B, T, C)
            mask = batch["attention_mask"][..., None].astype(np.float32)              # (B, T, 1)
            if self.pooling == "mean":
                v = (h * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            elif self.pooling == "cls":
                v = h[:, 0]
            else:
                v = np.where(mask > 0, h, -1e9).max(axis=1)
            if self.normalize:
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            out[idx] = v
        return out[0] if single else out
