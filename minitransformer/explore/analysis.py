"""What the explorer's page shows, computed from a model and its tokenizer, without HTTP: one forward pass
with forward hooks (nn/module.py) on the layers whose outputs are wanted, then plain NumPy on what they
caught. Every function here takes token ids that are already checked (api.py checks requests).

Language model (GPT), `analyze_lm`:
- the next-token distribution: the model's own last-position logits (the forward's return value);
- attention: the hook on each block's attn.c_attn catches q, k, v (B, T, 3C); the probabilities are
  softmax(q k^T / sqrt(hs)) with the causal mask, per head (the model's fused kernel never forms them);
- the logit lens: the hook on each Block catches the residual stream after it; ln_f and lm_head turn it into
  a distribution at every position. After the last block this is the model's own prediction.

Translation model (Seq2SeqTransformer), `analyze_translation`: a hook on every MultiheadAttention runs its
forward again on the same inputs with need_weights (per head) and keeps the weights: cross-attention (target
rows over source columns), decoder and encoder self-attention; the decoder's logit lens goes through
decoder.norm and the generator.

Not here: HTTP, request parsing and checkpoint loading (api.py), the page (static/).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import creation
from ..autograd import no_grad
from ..nn.generation import sample_next, sampling_distribution
from ..nn.module import Module, RemovableHandle
from ..tasks.common import BOS, EOS, SPECIALS

TOP = 20           # the distribution's rows
LENS_TOP = 5       # the logit lens's candidates per cell (the page shows them on hover)
DIGITS = 6         # decimals of the attention weights and the logit lens's probabilities in the answers


# ---- tokens as text -------------------------------------------------------------------------------------
def token_texts(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token's own text: a character, a word, or a BPE token's bytes (bytes that are not whole UTF-8
    characters written as \\xNN)."""
    if getattr(tokenizer, "kind", None) == "bpe":
        return [tokenizer.vocab[int(i)].decode("utf-8", errors="backslashreplace") for i in ids]
    if hasattr(tokenizer, "itos"):  # a task's Vocab: <pad>, <bos>, <eos>, <unk>, then its tokens
        return [tokenizer.itos[int(i)] if 0 <= int(i) < len(tokenizer.itos) else SPECIALS[3] for i in ids]
    return [tokenizer.chars[int(i)] for i in ids]


def _tokens(tokenizer: Any, ids: Sequence[int]) -> list[dict[str, Any]]:
    return [{"id": int(i), "text": t} for i, t in zip(ids, token_texts(tokenizer, ids), strict=True)]


# ---- the arithmetic on what the hooks caught ---------------------------------------------------------------
def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (max subtracted: exp cannot overflow)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def causal_attention(qkv: np.ndarray, n_head: int) -> np.ndarray:
    """q, k, v side by side (T, 3C), as c_attn writes them -> attention probabilities (nh, T, T): row i is
    how query i spreads over keys 0..i (zero above the diagonal)."""
    T, C3 = qkv.shape
    hs = C3 // 3 // n_head
    q, k, _ = qkv.astype(np.float64).reshape(T, 3, n_head, hs).transpose(1, 2, 0, 3)  # 3 x (nh, T, hs)
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hs)                                 # (nh, T, T)
    scores[:, np.triu(np.ones((T, T), dtype=bool), k=1)] = -np.inf                    # the future: -inf
    return softmax(scores)


def distribution(logits: np.ndarray, tokenizer: Any, top: int = TOP) -> dict[str, Any]:
    """Logits (V,) -> every logit (the page applies temperature, top-k and top-p to them) and the `top` most
    likely tokens with their logit and probability (at temperature 1), most likely first."""
    logits = np.asarray(logits, dtype=np.float32)
    probs = softmax(logits)
    order = np.argsort(-logits, kind="stable")[:top]
    texts = token_texts(tokenizer, order)
    return {"logits": logits.astype(np.float64).tolist(),  # float32 values, exactly
            "top": [{"id": int(i), "text": t, "logit": float(logits[i]), "prob": float(probs[i])}
                    for i, t in zip(order, texts, strict=True)]}


def lens_table(logits: np.ndarray, tokenizer: Any) -> list[list[dict[str, Any]]]:
    """Logit-lens logits (L, T, V) -> per layer and position the top token, its probability and the next
    LENS_TOP candidates as [id, text, probability]."""
    probs = softmax(logits)                                                           # (L, T, V)
    best = np.argsort(-probs, axis=-1, kind="stable")[..., :LENS_TOP]                 # (L, T, LENS_TOP)
    table = []
    for layer_best, layer_probs in zip(best, probs, strict=True):
        row = []
        for ids, p in zip(layer_best, layer_probs, strict=True):
            texts = token_texts(tokenizer, ids)
            row.append({"id": int(ids[0]), "text": texts[0], "prob": round(float(p[ids[0]]), DIGITS),
                        "top": [[int(i), t, round(float(p[i]), DIGITS)] for i, t in zip(ids, texts, strict=True)]})
        table.append(row)
    return table


def _rounded(a: np.ndarray) -> list[Any]:
    return np.round(a, DIGITS).tolist()


class _Catcher:
    """Forward hooks that keep what they see, removed together (also when the forward fails)."""

    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []

    def output(self, module: Module, into: list[Any], pick: Callable[[Any], Any] = lambda out: out) -> None:
        self.handles.append(module.register_forward_hook(lambda m, args, out: into.append(pick(out))))

    def attention_weights(self, mha: Module, into: list[Any]) -> None:
        """Keep the weights per head (N, H, L, S) of `mha` (a MultiheadAttention): after each call, its forward
        again on the same inputs with need_weights. The call's own output, from the fused path, is left as it
        is, so the model's logits are the ones it computes without the hooks."""
        def weights(m: Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            again = m.forward(*args, **{**kwargs, "need_weights": True, "average_attn_weights": False})
            into.append(again[1].numpy())

        self.handles.append(mha.register_forward_hook(weights, with_kwargs=True))

    def __enter__(self) -> _Catcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()


# ---- the language model ------------------------------------------------------------------------------------
def analyze_lm(model: Any, tokenizer: Any, ids: Sequence[int]) -> dict[str, Any]:
    """Everything the page shows for the prompt `ids` (1 <= len <= block_size) of a GPT in eval mode:

    tokens [{id, text}]; logits [V] and top [{id, text, logit, prob}] of the next token; attention
    [layer][head][query][key]; lens [layer][position] {id, text, prob, top}."""
    blocks = model.transformer.h
    qkv: list[np.ndarray] = []
    resid: list[Any] = []
    with _Catcher() as catch, no_grad():
        for block in blocks:
            catch.output(block.attn.c_attn, qkv, lambda out: out.numpy()[0])       # (T, 3C)
            catch.output(block, resid)                                             # (1, T, C)
        logits, _ = model(creation.tensor([list(ids)]))                            # (1, 1, V)
    with no_grad():
        # the logit lens: every layer's residual stream read out the way the last one is
        lens = np.stack([model.lm_head(model.transformer.ln_f(h)).numpy()[0] for h in resid])  # (L, T, V)
    attention = [causal_attention(a, block.attn.n_head) for a, block in zip(qkv, blocks, strict=True)]
    return {"tokens": _tokens(tokenizer, ids), "text": tokenizer.decode(ids),
            **distribution(logits.numpy()[0, -1], tokenizer),
            "attention": [_rounded(a) for a in attention], "lens": lens_table(lens, tokenizer)}


def choose(logits: np.ndarray, tokenizer: Any, token: int | None, temperature: float, top_k: int | None,
           top_p: float | None, seed: int | None) -> dict[str, Any]:
    """The next token: `token` when given, else one drawn by GPT's sample_next (seeded with `seed`) ->
    {id, text, prob (the model's, at temperature 1), sampling_prob (with temperature, top-k and top-p; 0 for
    a token they filter out)}."""
    x = np.asarray(logits, dtype=np.float32)[None]                                 # (1, V)
    if token is None:
        token = int(sample_next(x, temperature, top_k, top_p, rng=np.random.default_rng(seed)).numpy()[0, 0])
    return {"id": token, "text": token_texts(tokenizer, [token])[0], "prob": float(softmax(x[0])[token]),
            "sampling_prob": float(sampling_probs(x[0], temperature, top_k, top_p)[token])}


def sampling_probs(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> np.ndarray:
    """The probabilities sample_next draws from (V,) (generation.sampling_distribution), renormalised to sum
    to 1. The page's app.js does the same arithmetic live."""
    p = sampling_distribution(np.asarray(logits)[None], temperature, top_k, top_p)[0]
    return p / p.sum()


def step_lm(model: Any, tokenizer: Any, ids: Sequence[int], token: int | None = None, temperature: float = 1.0,
            top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> dict[str, Any]:
    """One generation step: append `token` (or a sampled one) to `ids` (shorter than block_size) ->
    {token (see choose), ids, text, analysis (of the longer prompt)}."""
    with no_grad():
        logits = model(creation.tensor([list(ids)]))[0].numpy()[0, -1]
    chosen = choose(logits, tokenizer, token, temperature, top_k, top_p, seed)
    new = [*ids, chosen["id"]]
    return {"token": chosen, "ids": new, "text": tokenizer.decode(new), "analysis": analyze_lm(model, tokenizer, new)}


# ---- the translation model ---------------------------------------------------------------------------------
def analyze_translation(model: Any, src_vocab: Any, tgt_vocab: Any, src_ids: Sequence[int],
                        tgt_ids: Sequence[int]) -> dict[str, Any]:
    """Everything the page shows for a source and the target so far (without <bos>; the decoder reads <bos>
    first): source_tokens, target_tokens (<bos> first); logits and top of the next target token;
    cross_attention [layer][head][target][source]; decoder_attention [layer][head][target][target];
    encoder_attention [layer][head][source][source]; lens [decoder layer][target position]."""
    tgt_in = [BOS, *tgt_ids]
    encoder, decoder = model.transformer.encoder, model.transformer.decoder
    enc: list[np.ndarray] = []
    self_att: list[np.ndarray] = []
    cross: list[np.ndarray] = []
    resid: list[Any] = []
    with _Catcher() as catch, no_grad():
        for layer in encoder.layers:
            catch.attention_weights(layer.self_attn, enc)
        for layer in decoder.layers:
            catch.attention_weights(layer.self_attn, self_att)
            catch.attention_weights(layer.multihead_attn, cross)
            catch.output(layer, resid)
        logits = model(creation.tensor([list(src_ids)]), creation.tensor([tgt_in])).numpy()[0, -1]  # (V,)
    with no_grad():
        norm = decoder.norm if decoder.norm is not None else (lambda h: h)
        lens = np.stack([model.generator(norm(h)).numpy()[0] for h in resid])   # (L, T, V)
    return {"source_tokens": _tokens(src_vocab, src_ids), "target_tokens": _tokens(tgt_vocab, tgt_in),
            "target": tgt_vocab.decode(tgt_ids), **distribution(logits, tgt_vocab),
            "cross_attention": [_rounded(a[0]) for a in cross],
            "decoder_attention": [_rounded(a[0]) for a in self_att],
            "encoder_attention": [_rounded(a[0]) for a in enc], "lens": lens_table(lens, tgt_vocab)}


def step_translation(model: Any, src_vocab: Any, tgt_vocab: Any, src_ids: Sequence[int], tgt_ids: Sequence[int],
                     token: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, seed: int | None = None) -> dict[str, Any]:
    """One decoding step of the target -> {token, target_ids, target, done (the token is <eos>), analysis}."""
    with no_grad():
        logits = model(creation.tensor([list(src_ids)]), creation.tensor([[BOS, *tgt_ids]])).numpy()[0, -1]
    chosen = choose(logits, tgt_vocab, token, temperature, top_k, top_p, seed)
    new = [*tgt_ids, chosen["id"]]
    return {"token": chosen, "target_ids": new, "target": tgt_vocab.decode(new), "done": chosen["id"] == EOS,
            "analysis": analyze_translation(model, src_vocab, tgt_vocab, src_ids, new)}
