"""BERT (Devlin et al., 2019) with Hugging Face's module and parameter names, so that a pretrained model
directory (config.json + model.safetensors) loads as it is: `BertModel.from_pretrained(dir)`.

How it differs from the GPT here: attention is bidirectional (every token sees every other token, only
padding is masked out); layers are post-LN (x = LayerNorm(x + sublayer(x)), eps 1e-12) with exact GELU;
the input is the sum of word, position and token-type (segment) embeddings, layer-normed; an optional pooler
(dense + tanh on the [CLS] state) summarises the sequence.

Shapes: B batch, T tokens, C hidden size, nh heads, hs = C / nh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import creation
from ..io.safetensors import deserialize
from ..tensor import Tensor
from . import functional as F
from . import init
from .layers import Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleList


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """config.json of a Hugging Face BERT-family model; other architectures are refused by name."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        kind = d.get("model_type", "?")
        if kind != "bert":
            raise ValueError(f"{path}: model_type {kind!r} ({', '.join(d.get('architectures') or [])}) is not "
                             "supported; BertModel reads model_type 'bert'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: position_embedding_type {d['position_embedding_type']!r} is not supported")
        if d.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"{path}: hidden_act {d['hidden_act']!r} is not supported")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class BertEmbeddings(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        T = input_ids.shape[1]
        pos = creation.arange(T)                                                         # (T,)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(pos)
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(x))                                           # (B, T, C)


class BertSelfAttention(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.nh, self.hs = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.query = Linear(c.hidden_size, c.hidden_size)
        self.key = Linear(c.hidden_size, c.hidden_size)
        self.value = Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x: Tensor, allowed: np.ndarray) -> Tensor:
        """x (B, T, C), allowed (B, 1, 1, T) bool (False at padding) -> (B, T, C)."""
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.nh, self.hs).transpose(1, 2)                # (B, nh, T, hs)
                   for lin in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout_p if self.training else 0.0)   # (B, nh, T, hs)
        return y.transpose(1, 2).contiguous().view(B, T, C)


class BertOutput(Module):
    """dense, dropout, then LayerNorm of the residual sum: the post-LN end of both sublayers
    (attention.output with in_features = C, output with in_features = the intermediate size)."""

    def __init__(self, c: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = Linear(in_features, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + x)                          # post-LN residual


class BertAttention(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(c)  # Hugging Face's name: attention.self.query, ...
        self.output = BertOutput(c, c.hidden_size)

    def forward(self, x: Tensor, allowed: np.ndarray) -> Tensor:
        return self.output(self.self(x, allowed), x)


class BertIntermediate(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size)
        self.act = c.hidden_act

    def forward(self, x: Tensor) -> Tensor:
        h = self.dense(x)
        if self.act == "relu":
            return F.relu(h)
        return F.gelu(h, approximate="none" if self.act == "gelu" else "tanh")  # BERT's "gelu" is the exact one


class BertLayer(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c, c.intermediate_size)

    def forward(self, x: Tensor, allowed: np.ndarray) -> Tensor:
        x = self.attention(x, allowed)
        return self.output(self.intermediate(x), x)


class BertEncoder(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])


class BertPooler(Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x[:, 0]).tanh()                                              # the [CLS] state


class BertModel(Module):
    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not divisible by num_attention_heads "
                             f"{config.num_attention_heads}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(self, input_ids: Any, attention_mask: Any = None,
                token_type_ids: Any = None) -> tuple[Tensor, Tensor | None]:
        """input_ids (B, T), attention_mask (B, T) (1 = a real token, 0 = padding), token_type_ids (B, T)
        -> (last hidden states (B, T, C), pooled [CLS] state (B, C) or None without a pooler)."""
        ids = np.asarray(input_ids.numpy() if isinstance(input_ids, Tensor) else input_ids)
        if ids.ndim != 2:
            raise ValueError(f"BertModel expects input_ids of shape (B, T), got {ids.shape}")
        B, T = ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {T} tokens, the model has {self.config.max_position_embeddings} "
                             "positions")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got {ids.min()}..{ids.max()}")
        mask = np.ones((B, T), bool) if attention_mask is None else np.asarray(
            attention_mask.numpy() if isinstance(attention_mask, Tensor) else attention_mask).astype(bool)
        types = np.zeros((B, T), np.int64) if token_type_ids is None else np.asarray(
            token_type_ids.numpy() if isinstance(token_type_ids, Tensor) else token_type_ids)
        allowed = mask[:, None, None, :]                                                # (B, 1, 1, T): keys
        x = self.embeddings(creation.tensor(ids), creation.tensor(types))
        for layer in self.encoder.layer:
            x = layer(x, allowed)
        pooled = None if self.pooler is None else self.pooler(x)
        return x, pooled

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> BertModel:
        """A Hugging Face BERT directory: config.json and model.safetensors (names with or without a `bert.`
        prefix; buffers such as position_ids and heads of other tasks are ignored). Missing weights raise
        an error that names them."""

        d = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: not found (a Hugging Face model directory has config.json "
                                        "and model.safetensors)")
        config = BertConfig.from_json(d / "config.json")
        tensors = deserialize((d / "model.safetensors").read_bytes(), str(d / "model.safetensors"))[0]
        state = {k.removeprefix("bert."): v for k, v in tensors.items()}
        model = cls(config, add_pooling_layer=any(k.startswith("pooler.") for k in state))
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise ValueError(f"{d / 'model.safetensors'}: missing weights {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        model.load_state_dict({k: np.asarray(state[k], dtype=np.float32) for k in expected})
        return model.eval()



class BertForSequenceClassification(Module):
    """A pretrained encoder with a classification head, fine-tuned end to end through the autograd, as
    Hugging Face's class of the same name: logits = classifier(dropout(pooled [CLS] state)). Parameter names
    `bert.*` and `classifier.*`."""

    def __init__(self, config: BertConfig, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, num_labels)
        init.normal_(self.classifier.weight, 0.0, 0.02)
        init.zeros_(self.classifier.bias)

    @classmethod
    def from_pretrained(cls, directory: str | Path, num_labels: int) -> BertForSequenceClassification:
        """The encoder (and pooler) from a BERT directory; the head starts new (N(0, 0.02), zero bias)."""
        encoder = BertModel.from_pretrained(directory)
        if encoder.pooler is None:
            raise ValueError(f"{directory}: the model has no pooler weights, which the classification head reads")
        model = cls(encoder.config, num_labels)
        model.bert = encoder
        return model.train()

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Tensor:
        """-> logits (B, num_labels)."""
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(pooled))
