"""A decoder-only GPT with nanoGPT's structure, parameter names and initialisation, in dependency
order: CausalSelfAttention -> MLP -> Block -> GPTConfig -> GPT. Shape letters: B batch, T time,
C channels (n_embd), nh heads, hs head size, V vocabulary.

A nanoGPT (or Hugging Face GPT-2, transposing its Conv1D weights) state_dict loads with
`load_state_dict` under the same names: transformer.wte/wpe/h.{i}.ln_1/attn.c_attn/attn.c_proj/ln_2/
mlp.c_fc/mlp.c_proj/ln_f, lm_head (tied to wte).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend, creation
from .. import random as mt_random
from ..autograd import is_grad_enabled, no_grad
from ..ops import cat
from ..optim import AdamW, weight_decay_groups
from ..tensor import Tensor
from ..xp import array_module
from . import functional as F
from . import hf_gpt2, init
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .module import IncompatibleKeys, Module, ModuleDict, ModuleList


class CausalSelfAttention(Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} must be divisible by n_head {config.n_head}")
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x: Tensor, cache: dict[str, Any] | None = None) -> Tensor:
        """x (B, T, C). With a `cache` (generation), keys and values of earlier positions are reused
        from it and this call's are appended, so only the new positions are computed."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x)                                     # (B, T, 3C): q, k, v side by side
        if cache is None and not (self.training and self.dropout > 0):
            # the same computation as below in one fused node, without the copies between the steps
            y = F.qkv_attention(qkv, nh, is_causal=True)         # (B, T, C)
            return self.resid_dropout(self.c_proj(y))
        q, k, v = qkv.split(self.n_embd, dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)                 # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        if cache is not None and cache.get("k") is not None:
            past = cache["k"].shape[2]
            k, v = cat([cache["k"], k], dim=2), cat([cache["v"], v], dim=2)   # (B, nh, past + T, hs)
            # new query i sits at position past + i: it may see keys 0 .. past + i
            allowed = np.tril(np.ones((T, past + T), dtype=bool), k=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)  # (B, nh, T, hs)
        if cache is not None:
            cache["k"], cache["v"] = k.detach(), v.detach()
        y = y.transpose(1, 2).contiguous().view(B, T, C)         # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


def _append_to_cache(cache: dict[str, Any], name: str, new: np.ndarray, start: int) -> np.ndarray:
    """cache[name] (B, nh, start, hs) followed by new (B, nh, T, hs): written into a buffer with room to
    spare (doubling when full), so each step copies only its own keys and values. The cache keeps a Tensor
    view of the filled part, which the graph path reads as before."""
    buf = cache.get(name + "_buf")
    end = start + new.shape[2]
    if buf is None or buf.shape[2] < end or buf.shape[:2] != new.shape[:2] or buf.dtype != new.dtype:
        buf = np.empty(new.shape[:2] + (max(2 * end, 16), new.shape[3]), dtype=new.dtype)
        if start:
            buf[:, :, :start] = cache[name].numpy()
        cache[name + "_buf"] = buf
    elif cache[name].numpy().base is not buf and not np.shares_memory(cache[name].numpy(), buf):
        buf[:, :, :start] = cache[name].numpy()  # the graph path replaced the cache since the last fast step
    buf[:, :, start:end] = new
    view = buf[:, :, :end]
    cache[name] = Tensor(view)
    return view


class MLP(Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU(approximate=config.gelu_approximate)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.c_fc.bias is None or not isinstance(self.c_fc, Linear):  # no bias, or a quantized layer
            h = self.gelu(self.c_fc(x))
        else:  # the same function, with c_fc's bias added inside the fused GELU pass
            h = F.bias_gelu(F.linear(x, self.c_fc.weight), self.c_fc.bias, self.gelu.approximate)
        return self.dropout(self.c_proj(h))


class Block(Module):
    """Pre-LayerNorm residual block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: dict[str, Any] | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


# nanoGPT's (and GPT-2's) causal-mask buffers: state_dict entries that are not weights
_MASK_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 rounded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, as GPT-2; False is a bit better and faster
    gelu_approximate: str = "none"  # "none": exact GELU (nanoGPT); "tanh": GPT-2's gelu_new
    layer_norm_eps: float = 1e-5


class GPT(Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError(f"vocab_size and block_size must be positive, got {config}")
        self.config = config
        self.transformer = ModuleDict(dict(
            wte=Embedding(config.vocab_size, config.n_embd),
            wpe=Embedding(config.block_size, config.n_embd),
            drop=Dropout(config.dropout),
            h=ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
        ))
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the output projection reuses the token embedding
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that feed the residual stream
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: Module) -> None:
        if isinstance(module, Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, Embedding):
            init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> GPT:
        """A local Hugging Face GPT-2 directory -> the same model, in eval mode: config.json (model_type
        "gpt2") and model.safetensors, or the shards that model.safetensors.index.json lists. Weight names
        with or without `transformer.`; Conv1D weights (in, out) are transposed to our Linear's (out, in);
        lm_head.weight may be absent (it is wte) and the attn.bias / attn.masked_bias buffers are ignored.
        The GELU form (activation_function "gelu_new" = tanh, "gelu" = exact) and layer_norm_epsilon go into
        the GPTConfig, so a checkpoint saved from the model keeps them. Names and shapes are checked against
        config.json before anything is allocated;
        nn/hf_gpt2.py says what is refused. F32, F16, BF16 and F64 weights load as float32."""
        spec = hf_gpt2.read_config(directory)
        state = hf_gpt2.read_weights(directory, spec)
        model = cls(GPTConfig(**spec.config, gelu_approximate=spec.approximate, layer_norm_eps=spec.eps))
        model.load_state_dict(state)
        return model.eval()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Module.load_state_dict, also taking nanoGPT's checkpoints as they are saved: the prefixes
        `_orig_mod.` (a torch.compile'd model) and `module.` (DDP) are stripped, in any nesting, and the
        causal-mask buffers `transformer.h.{i}.attn.bias` / `.attn.masked_bias` (nanoGPT without flash
        attention, GPT-2) are dropped. When only one of the tied `transformer.wte.weight` and `lm_head.weight`
        is given, it fills both. Hugging Face's Conv1D layout is not transposed here: use from_pretrained."""
        clean: dict[str, Any] = {}
        for key, value in state_dict.items():
            name = key
            while name.startswith(("_orig_mod.", "module.")):
                name = name.split(".", 1)[1]
            if _MASK_BUFFER.fullmatch(name):
                continue
            if name in clean:
                raise RuntimeError(f"Error(s) in loading state_dict for GPT:\n\t{key!r} and another key both "
                                   f"give {name!r}")
            clean[name] = value
        own = self.state_dict(keep_vars=True)
        tied = ("transformer.wte.weight", "lm_head.weight")
        for a, b in (tied, tied[::-1]):
            if a in clean and b not in clean and b in own:  # (a quantized lm_head has other names)
                clean[b] = clean[a]
        return super().load_state_dict(clean, strict=strict, assign=assign)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (the token embedding counts,
        because it is shared with lm_head), as nanoGPT reports it."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: Any, targets: Any = None,
                caches: list[dict[str, Any]] | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> (logits, loss). With targets (B, T): logits (B, T, V) and the mean
        cross-entropy (targets equal to -1 are ignored). Without: logits of the last position only,
        (B, 1, V), and loss None (all that generation needs). `caches` (one dict per layer, from
        `new_caches()`) makes idx the continuation of the tokens already cached."""
        idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {idx.shape}")
        B, T = idx.shape
        start = 0 if not caches or caches[0].get("k") is None else caches[0]["k"].shape[2]
        if start + T > self.config.block_size:
            raise ValueError(f"cannot forward a sequence of length {start + T}: block_size is "
                             f"{self.config.block_size}")
        if (caches is not None and start > 0 and targets is None and not self.training
                and not is_grad_enabled() and isinstance(idx.data, np.ndarray)):
            return Tensor(self._decode_step(idx.numpy(), start, caches)), None
        pos = creation.arange(start, start + T, device=idx.device)        # (T,)
        tok_emb = self.transformer.wte(idx)                               # (B, T, C)
        pos_emb = self.transformer.wpe(pos)                               # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if caches is None else caches[i])
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)                                      # (B, T, V)
            t = targets if isinstance(targets, Tensor) else creation.tensor(targets)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), t.view(-1), ignore_index=-1)
            return logits, loss
        return self.lm_head(x[:, -1:, :]), None                           # (B, 1, V)

    def _decode_plan(self) -> list[Any]:
        """What _decode_step reads, fetched once per generation: per block (ln_1, c_attn, c_proj, ln_2, c_fc,
        mlp c_proj, gelu form) with each LayerNorm as (weight, bias, eps) and each linear layer as a
        function of a plain array (a float or quantized layer's own), then (ln_f, lm_head)."""
        def ln(mod: LayerNorm) -> tuple[Any, Any, float]:
            return (None if mod.weight is None else mod.weight.numpy(),
                    None if mod.bias is None else mod.bias.numpy(), mod.eps)

        blocks = [(ln(b.ln_1), b.attn.c_attn.array_fn(), b.attn.c_proj.array_fn(), ln(b.ln_2),
                   b.mlp.c_fc.array_fn(), b.mlp.c_proj.array_fn(), b.mlp.gelu.approximate)
                  for b in self.transformer.h]
        return [blocks, ln(self.transformer.ln_f), self.lm_head.array_fn()]

    def _decode_step(self, idx: np.ndarray, start: int, caches: list[dict[str, Any]],
                     first: np.ndarray | None = None) -> np.ndarray:
        """The same computation as forward() for tokens that continue the cached ones, on plain arrays: no
        graph is built (there is nothing to differentiate while generating), which is most of the cost of a
        one-token step. idx (B, T) at positions start .. start+T-1 -> logits of the last one (B, 1, V).
        `first` (B,): where each row's tokens begin when the rows were left-padded to one length (batched
        generation); a row's positions count from there and its padding is never attended to.
        tests/test_gpt.py checks it against forward() on the same caches."""

        ln_kernel, gelu_kernel = backend.kernel("layernorm_forward"), backend.kernel("gelu_forward")
        attend = backend.kernel("decode_attention_forward")
        B, T = idx.shape
        C, nh = self.config.n_embd, self.config.n_head
        hs = C // nh
        scale = 1.0 / math.sqrt(hs)
        if "plan" not in caches[0]:
            caches[0]["plan"] = self._decode_plan()
        blocks, ln_f, lm_head = caches[0]["plan"]

        def ln(x: np.ndarray, p: tuple[Any, Any, float]) -> np.ndarray:
            return ln_kernel(x.reshape(-1, C), *p)[0].reshape(x.shape)

        first = np.zeros(B, np.int64) if first is None else first                     # no padding: rows start at 0
        pos = np.maximum(np.arange(start, start + T)[None, :] - first[:, None], 0)      # (B, T)
        keys = np.arange(start + T)
        # query i (column start + i) sees keys start + i and before, from its row's first token on
        blocked = ((keys[None, None, :] > keys[start:, None][None])                    # (B, T, start+T)
                   | ((keys[None, None, :] < first[:, None, None])
                      & (keys[start:][None, :, None] >= first[:, None, None])))[:, None]  # (B, 1, T, S)
        x = self.transformer.wte.array_forward(idx) + self.transformer.wpe.weight.numpy()[pos]  # (B, T, C)
        for (ln_1, c_attn, c_proj, ln_2, c_fc, mlp_proj, approx), cache in zip(blocks, caches, strict=True):
            qkv = c_attn(ln(x, ln_1)).reshape(B, T, 3, nh, hs)
            q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))         # (B, nh, T, hs) views
            k, v = _append_to_cache(cache, "k", k, start), _append_to_cache(cache, "v", v, start)
            if T == 1:  # one fused kernel call: the new query sees every cached key (from first[b] on)
                y = attend(q[:, :, 0], cache["k_buf"], cache["v_buf"], first, scale, start + 1)  # (B, nh, hs)
            else:
                s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(scale)                 # (B, nh, T, start+T)
                s = np.where(blocked, -np.inf, s)
                s = np.exp(s - s.max(axis=-1, keepdims=True))                        # max subtracted: no overflow
                y = ((s / s.sum(axis=-1, keepdims=True)) @ v).transpose(0, 2, 1, 3)  # (B, T, nh, hs)
            x = x + c_proj(y.reshape(B, T, C))
            x = x + mlp_proj(gelu_kernel(c_fc(ln(x, ln_2)), approx)[0])
        return lm_head(ln(x[:, -1:], ln_f)).astype(x.dtype, copy=False)              # (B, 1, V)

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float] = (0.9, 0.95)) -> Any:
        """AdamW with weight decay on the 2-D weights only (matmuls and embeddings), as nanoGPT."""

        return AdamW(weight_decay_groups(self, weight_decay), lr=learning_rate, betas=betas)

    def new_caches(self) -> list[dict[str, Any]]:
        """Empty key/value caches, one per layer, for incremental decoding."""
        return [{} for _ in self.transformer.h]

    def generate_stream(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, use_cache: bool = True,
                        first: np.ndarray | None = None) -> Iterator[Tensor]:
        """Yield each new token (B, 1) as it is sampled; see `generate`. Each step runs without recording a
        graph; the caller's code between two tokens runs in the caller's own grad mode (a `no_grad`
        decorator on a generator would only cover the creation of the generator, not its steps).
        `first` (B,): rows left-padded to one length start at these columns (see generate_batch)."""
        idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(f"the prompt must have at least one token, as a (B, T) tensor with T >= 1; got shape "
                             f"{tuple(idx.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        block = self.config.block_size
        caches, fed = None, 0  # fed: how many tokens of idx the caches hold
        tokens = idx.data      # the growing sequence as a plain array: nothing here is differentiated
        xp = array_module(tokens)
        for _ in range(max_new_tokens):
            with no_grad():
                if use_cache and caches is not None and tokens.shape[1] <= block:
                    if first is None:
                        logits, _ = self(Tensor(tokens[:, fed:]), caches=caches)   # only the new token
                    else:
                        logits = Tensor(self._decode_step(tokens[:, fed:], fed, caches, first))
                else:
                    # no cache yet, or the context outgrew block_size: the positions of every kept token
                    # shift, so the cache cannot be reused; start again from the cropped context
                    if first is None:
                        caches = self.new_caches() if use_cache else None
                        logits, _ = self(Tensor(tokens[:, -block:]), caches=caches)
                    else:  # padded rows: the graph-free path, whose masks know where each row begins
                        crop = max(0, tokens.shape[1] - block)
                        first = np.maximum(first - crop, 0)
                        caches = self.new_caches()
                        logits = Tensor(self._decode_step(tokens[:, crop:], 0, caches, first))
                        caches = caches if use_cache else None
                fed = tokens.shape[1]
                idx_next = sample_next(logits.data[:, -1, :], temperature, top_k, top_p)   # (B, 1)
                tokens = xp.concatenate([tokens, xp.asarray(idx_next.data, dtype=tokens.dtype)], axis=1)
            yield idx_next

    def generate(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True) -> Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T), feeding each prediction back in. The
        context is cropped to the last block_size tokens; with use_cache, keys and values of earlier
        positions are reused (the result is the same as without). Call model.eval() first if it has
        dropout; seed with mt.manual_seed for repeatable samples."""
        idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache))
        return cat([idx, *new], dim=1) if new else idx

    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                       pad_id: int = 0) -> list[list[int]]:
        """Continue several prompts of any lengths at once -> the max_new_tokens new tokens of each.

        The prompts are left-padded to one length (with pad_id, never attended to) and decoded as one batch:
        each step is one pass over the weights for every row. Each row's positions count from its own first
        token, so a row's greedy continuation is the one it gets alone. Runs the inference computation
        (no dropout) on the CPU."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate_batch needs at least one prompt, each of at least one token")
        width = max(len(p) for p in prompts)
        tokens = np.full((len(prompts), width), pad_id, dtype=np.int64)             # (B, width), left-padded
        for i, p in enumerate(prompts):
            tokens[i, width - len(p):] = p
        first = np.array([width - len(p) for p in prompts], dtype=np.int64)
        new = list(self.generate_stream(Tensor(tokens), max_new_tokens, temperature, top_k, top_p, use_cache,
                                        first=first))
        return np.concatenate([t.numpy() for t in new], axis=1).tolist() if new else [[] for _ in prompts]


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> Tensor:
    """Sample one token per row from logits (B, V): scaled by 1/temperature, restricted to the top_k most
    likely tokens and/or the smallest set whose probability reaches top_p (nucleus sampling). The uniform
    draws come from `rng` (a NumPy generator: the server gives each sequence its own), else the global one."""

    # on plain float64 arrays: sampling is not differentiated, and Tensor ops cost more than the arithmetic
    x = (logits.numpy() if isinstance(logits, Tensor) else np.asarray(logits)).astype(np.float64) / temperature
    if top_k is not None:
        k = min(top_k, x.shape[-1])
        kth = np.partition(x, -k, axis=-1)[:, -k:].min(axis=-1, keepdims=True)  # the k-th largest, (B, 1)
        x = np.where(x < kth, -np.inf, x)
    x = x - x.max(axis=-1, keepdims=True)                                 # max subtracted: exp cannot overflow
    probs = np.exp(x)
    probs /= probs.sum(axis=-1, keepdims=True)                            # (B, V)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first always stays)
        drop = np.cumsum(sorted_p, axis=-1) - sorted_p >= top_p
        sorted_p[drop] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_p, axis=-1)
    # inverse CDF, one uniform draw per row: token i when cdf[i-1] <= u * total < cdf[i]; a zero-probability
    # token has cdf[i] == cdf[i-1] and can never be drawn
    cdf = np.cumsum(probs, axis=-1)
    u = (mt_random.generator() if rng is None else rng).random(len(cdf))[:, None] * cdf[:, -1:]
    idx = np.minimum((cdf <= u).sum(axis=-1, keepdims=True), cdf.shape[-1] - 1)
    return Tensor(idx.astype(np.int64))                                   # (B, 1)
