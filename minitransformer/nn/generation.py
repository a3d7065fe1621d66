"""Generation for GPT-style models: the key/value cache, the decode step on plain arrays, the sampling loop
(`generate`, `generate_stream`, `generate_batch`, which GPT's methods of the same names call) and
`sample_next`.

The decode step does not restate the model. The GPT's layers write their structure once, as static
`wiring` functions that take their sublayers as callables (GPT.wiring, Block.wiring,
CausalSelfAttention.wiring, MLP.wiring); `forward` passes the modules, the decode step passes each layer's
array-level function (Linear.array_fn, LayerNorm.array_fn, GELU.array_fn, Embedding.array_forward: the same
kernels the modules' forward runs) and its own attention, the only part that differs: the new positions'
keys and values are appended to the cache and each query attends to every cached key (one fused kernel call
for a single new token). No graph is recorded: there is nothing to differentiate while generating, and
recording is most of the cost of a one-token step. tests/test_gpt.py checks the decode step against the
model's forward on the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import creation
from .. import random as mt_random
from ..autograd import no_grad
from ..ops import cat
from ..ops.attention import additive_mask, attention_arrays, decode_attention
from ..tensor import Tensor
from ..xp import array_module, to_device


def new_caches(model: Any) -> list[dict[str, Any]]:
    """Empty key/value caches, one per layer: {"k", "v"}: Tensors (B, nh, S, hs) of the positions so far,
    views of growth buffers ("k_buf", "v_buf"); the first also keeps the layers' array functions ("plan")."""
    return [{} for _ in model.transformer.h]


def _append(cache: dict[str, Any], name: str, new: Any, start: int) -> Any:
    """cache[name] (B, nh, start, hs) followed by new (B, nh, T, hs): written into a buffer with room to spare
    (doubling when full), so each step copies only its own keys and values -> the filled part (B, nh, start+T,
    hs), which the cache also keeps as a Tensor view."""
    buf = cache.get(name + "_buf")
    end = start + new.shape[2]
    if buf is None or buf.shape[2] < end or buf.shape[:2] != new.shape[:2] or buf.dtype != new.dtype:
        xp = array_module(new)
        buf = xp.empty(new.shape[:2] + (max(2 * end, 16), new.shape[3]), dtype=new.dtype)
        if start:
            buf[:, :, :start] = cache[name].data        # rows given from outside (the server's batch)
        cache[name + "_buf"] = buf
    buf[:, :, start:end] = new
    view = buf[:, :, :end]
    cache[name] = Tensor(view)
    return view


def _plan(model: Any) -> tuple[list[tuple[Callable[[Any], Any], ...]], tuple[Callable[[Any], Any], ...]]:
    """The array-level function of every layer the decode step calls, fetched once per generation: per block
    (ln_1, c_attn, c_proj, ln_2, expand = gelu(c_fc(.)), mlp c_proj), then (wte, wpe, ln_f, lm_head)."""
    def expand(mlp: Any) -> Callable[[Any], Any]:
        c_fc, gelu = mlp.c_fc.array_fn(), mlp.gelu.array_fn()
        return lambda x: gelu(c_fc(x))

    blocks = [(b.ln_1.array_fn(), b.attn.c_attn.array_fn(), b.attn.c_proj.array_fn(), b.ln_2.array_fn(),
               expand(b.mlp), b.mlp.c_proj.array_fn()) for b in model.transformer.h]
    t = model.transformer
    return blocks, (t.wte.array_forward, t.wpe.array_forward, t.ln_f.array_fn(), model.lm_head.array_fn())


def decode_step(model: Any, idx: Any, start: int, caches: list[dict[str, Any]], first: Any = None) -> Any:
    """The model's logits for tokens that continue the cached ones, on plain arrays: idx (B, T) at positions
    start .. start+T-1 -> logits of the last one (B, 1, V); their keys and values are appended to `caches`.
    `first` (B,): where each row's tokens begin when the rows were left-padded to one length (batched
    generation); a row's positions count from there and its padding is never attended to."""
    B, T = idx.shape
    xp = array_module(next(model.parameters()).data)                                # where the weights are
    idx = xp.asarray(idx)
    nh = model.config.n_head
    hs = model.config.n_embd // nh
    scale = 1.0 / math.sqrt(hs)
    if "plan" not in caches[0]:
        caches[0]["plan"] = _plan(model)
    blocks, (wte, wpe, ln_f, lm_head) = caches[0]["plan"]
    first = xp.zeros(B, np.int64) if first is None else xp.asarray(first)           # no padding: rows start at 0
    pos = xp.maximum(xp.arange(start, start + T)[None, :] - first[:, None], 0)       # (B, T)
    mask = None
    causal = T > 1 and start == 0 and not bool(first.any())                         # a whole, unpadded prompt
    if T > 1 and not causal:
        keys = xp.arange(start + T)
        # query i (column start + i) sees keys start + i and before, from its row's first token on
        blocked = ((keys[None, None, :] > keys[start:, None][None])                  # (B, T, start+T)
                   | ((keys[None, None, :] < first[:, None, None])
                      & (keys[start:][None, :, None] >= first[:, None, None])))[:, None]   # (B, 1, T, S)
        mask = additive_mask(blocked, None, (B, nh), T, start + T, np.dtype(np.float32))

    def layer(arrays: tuple[Callable[[Any], Any], ...], block: Any, cache: dict[str, Any]) -> Callable[[Any], Any]:
        ln_1, c_attn, c_proj, ln_2, expand, mlp_proj = arrays

        def attend(qkv: Any) -> Any:                                                  # (B, T, 3C) -> (B, T, C)
            q, k, v = (qkv.reshape(B, T, 3, nh, hs)[:, :, j].transpose(0, 2, 1, 3) for j in range(3))  # (B, nh, T, hs)
            k, v = _append(cache, "k", k, start), _append(cache, "v", v, start)
            if T == 1:  # one fused kernel call: the new query sees every cached key (from first[b] on)
                y = decode_attention(q[:, :, 0], cache["k_buf"], cache["v_buf"], first, scale, start + 1)
            elif causal:  # a whole prompt: the model's causal attention kernel, no mask array to read
                y = attention_arrays(q, k, v, None, scale, causal=True).transpose(0, 2, 1, 3)
            else:       # a continued or left-padded prompt: the model's attention kernel, masked
                y = attention_arrays(q, k, v, mask.astype(q.dtype, copy=False), scale).transpose(0, 2, 1, 3)
            return y.reshape(B, T, nh * hs)

        return lambda x: block.wiring(x, ln_1, lambda h: block.attn.wiring(h, c_attn, attend, c_proj), ln_2,
                                      lambda h: block.mlp.wiring(h, expand, mlp_proj))

    layers = [layer(a, b, c) for a, b, c in zip(blocks, model.transformer.h, caches, strict=True)]
    return model.wiring(idx, pos, wte, wpe, layers, ln_f, lm_head, last_only=True)  # (B, 1, V)


def generate_stream(model: Any, idx: Any, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                    first: Any = None) -> Iterator[Tensor]:
    """Yield each new token (B, 1) as it is sampled; see `generate`. Each step runs without recording a graph;
    the caller's code between two tokens runs in the caller's own grad mode (a `no_grad` decorator on a
    generator would only cover the creation of the generator, not its steps). `first` (B,): rows left-padded
    to one length start at these columns (see generate_batch)."""
    idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"the prompt must have at least one token, as a (B, T) tensor with T >= 1; got shape "
                         f"{tuple(idx.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    block = model.config.block_size
    caches, fed = None, 0  # fed: how many tokens of idx the caches hold
    tokens = idx.data      # the growing sequence as a plain array: nothing here is differentiated
    xp = array_module(tokens)
    for _ in range(max_new_tokens):
        with no_grad():
            if use_cache and caches is not None and tokens.shape[1] <= block:
                logits = decode_step(model, tokens[:, fed:], fed, caches, first)        # only the new token
            elif first is None and not use_cache:
                logits = model(Tensor(tokens[:, -block:]))[0].data                     # the model's own forward
            else:
                # no cache yet, or the context outgrew block_size: the positions of every kept token shift, so
                # the cache cannot be reused; start again from the cropped context
                crop = max(0, tokens.shape[1] - block)
                if first is not None:
                    first = xp.maximum(first - crop, 0)
                caches = new_caches(model)
                logits = decode_step(model, tokens[:, crop:], 0, caches, first)
                caches = caches if use_cache else None
            fed = tokens.shape[1]
            idx_next = sample_next(logits[:, -1, :], temperature, top_k, top_p)        # (B, 1)
            tokens = xp.concatenate([tokens, xp.asarray(idx_next.data, dtype=tokens.dtype)], axis=1)
        yield idx_next


def generate(model: Any, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, use_cache: bool = True) -> Tensor:
    """Append max_new_tokens sampled tokens to idx (B, T), feeding each prediction back in. The context is
    cropped to the last block_size tokens; with use_cache, keys and values of earlier positions are reused
    (the result is the same as without, which runs the model's forward on the whole context at each token).
    Call model.eval() first if it has dropout; seed with mt.manual_seed for repeatable samples."""
    idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
    new = list(generate_stream(model, idx, max_new_tokens, temperature, top_k, top_p, use_cache))
    return cat([idx, *new], dim=1) if new else idx


def generate_batch(model: Any, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                   pad_id: int = 0) -> list[list[int]]:
    """Continue several prompts of any lengths at once -> the max_new_tokens new tokens of each.

    The prompts are left-padded to one length (with pad_id, never attended to) and decoded as one batch: each
    step is one pass over the weights for every row. Each row's positions count from its own first token, so
    a row's greedy continuation is the one it gets alone. Runs the inference computation (no dropout) on the
    CPU."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate_batch needs at least one prompt, each of at least one token")
    tokens, first = left_pad(prompts, pad_id)
    new = list(generate_stream(model, Tensor(tokens), max_new_tokens, temperature, top_k, top_p, use_cache,
                               first=first))
    return np.concatenate([t.numpy() for t in new], axis=1).tolist() if new else [[] for _ in prompts]


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Prompts of any lengths as one batch: (tokens (B, width) left-padded with pad_id, first (B,): the column
    where each row's tokens begin), the layout decode_step's `first` describes."""
    width = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), width), pad_id, dtype=np.int64)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return tokens, np.array([width - len(p) for p in prompts], dtype=np.int64)


def sampling_distribution(logits: Any, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> np.ndarray:
    """What sample_next draws from, per row of logits (B, V) -> float64 weights (B, V): the logits scaled by
    1/temperature, only the top_k largest kept (ties with the k-th too), softmax, then only the smallest set of
    tokens, most likely first, whose probability reaches top_p (not renormalised: the draw scales to the total)."""
    # on plain float64 host arrays: sampling is not differentiated, and Tensor ops cost more than the arithmetic
    # (one new array, then in place: a decode step's sampling is a dozen calls on a row of V numbers, each of
    # which costs more than its arithmetic)
    x = to_device(logits.data if isinstance(logits, Tensor) else logits, "cpu").astype(np.float64)
    x /= temperature
    if top_k is not None:
        k = min(top_k, x.shape[-1])
        kth = np.partition(x, -k, axis=-1)[:, -k, None]                 # the k-th largest, (B, 1)
        x[x < kth] = -np.inf
    x -= x.max(axis=-1, keepdims=True)                                    # max subtracted: exp cannot overflow
    probs = np.exp(x, out=x)
    probs /= probs.sum(axis=-1, keepdims=True)                            # (B, V)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first always stays)
        drop = np.cumsum(sorted_p, axis=-1) - sorted_p >= top_p
        sorted_p[drop] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_p, axis=-1)
    return probs


def sample_next(logits: Any, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> Tensor:
    """Sample one token per row from logits (B, V): scaled by 1/temperature, restricted to the top_k most
    likely tokens and/or the smallest set whose probability reaches top_p (nucleus sampling;
    `sampling_distribution`). The uniform draws come from `rng` (a NumPy generator: the server gives each
    sequence its own), else the global one."""
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    # inverse CDF, one uniform draw per row: token i when cdf[i-1] <= u * total < cdf[i]; a zero-probability
    # token has cdf[i] == cdf[i-1] and can never be drawn
    cdf = np.cumsum(probs, axis=-1, out=probs)
    u = (mt_random.generator() if rng is None else rng).random(len(cdf))[:, None] * cdf[:, -1:]
    idx = np.minimum((cdf <= u).sum(axis=-1, keepdims=True, dtype=np.int64), cdf.shape[-1] - 1)
    return Tensor(idx)                                                    # (B, 1) int64
