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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import creation
from ..optim import AdamW, weight_decay_groups
from ..tensor import Tensor
from . import functional as F
from . import generation, hf_gpt2, init
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

    @staticmethod
    def wiring(x: Any, c_attn: Callable[[Any], Any], attend: Callable[[Any], Any],
               c_proj: Callable[[Any], Any]) -> Any:
        """The layer, written once for Tensors (forward) and for plain arrays (nn/generation.py's decode step,
        which passes its own cached `attend`): x (B, T, C) -> q, k, v side by side (B, T, 3C) -> the heads'
        outputs side by side (B, T, C) -> projected back (B, T, C)."""
        return c_proj(attend(c_attn(x)))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, C) -> (B, T, C), each position attending to itself and the positions before it."""
        return self.resid_dropout(self.wiring(x, self.c_attn, self.attend, self.c_proj))

    def attend(self, qkv: Tensor) -> Tensor:
        """Causal multi-head attention of a packed projection qkv (B, T, 3C) -> (B, T, C)."""
        B, T, C3 = qkv.shape
        if not (self.training and self.dropout > 0):
            return F.qkv_attention(qkv, self.n_head, is_causal=True)  # one fused node, no copies in between
        # dropout on the attention weights: the composition, which has the weights to drop
        nh, hs = self.n_head, C3 // (3 * self.n_head)
        q, k, v = qkv.split(self.n_embd, dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)                 # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)
        v = v.view(B, T, nh, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=True)  # (B, nh, T, hs)
        return y.transpose(1, 2).contiguous().view(B, T, C3 // 3)  # the heads side by side again


class MLP(Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU(approximate=config.gelu_approximate)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    @staticmethod
    def wiring(x: Any, expand: Callable[[Any], Any], c_proj: Callable[[Any], Any]) -> Any:
        """The layer, written once for Tensors and plain arrays: gelu(c_fc(x)) (`expand`, (B, T, 4C)) -> c_proj."""
        return c_proj(expand(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.wiring(x, self.expand, self.c_proj))

    def expand(self, x: Tensor) -> Tensor:
        """gelu(c_fc(x)) (B, T, 4C); with a float c_fc that has a bias, the bias is added inside the fused GELU
        pass (the same function, one pass fewer)."""
        if self.c_fc.bias is None or not isinstance(self.c_fc, Linear):  # no bias, or a quantized layer
            return self.gelu(self.c_fc(x))
        return F.bias_gelu(F.linear(x, self.c_fc.weight), self.c_fc.bias, self.gelu.approximate)


class Block(Module):
    """Pre-LayerNorm residual block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    @staticmethod
    def wiring(x: Any, ln_1: Callable[[Any], Any], attn: Callable[[Any], Any], ln_2: Callable[[Any], Any],
               mlp: Callable[[Any], Any]) -> Any:
        """The block, written once for Tensors (forward) and plain arrays (the decode step)."""
        x = x + attn(ln_1(x))
        return x + mlp(ln_2(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.wiring(x, self.ln_1, self.attn, self.ln_2, self.mlp)


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

    @staticmethod
    def wiring(idx: Any, pos: Any, wte: Callable[[Any], Any], wpe: Callable[[Any], Any],
               blocks: Iterable[Callable[[Any], Any]], ln_f: Callable[[Any], Any], lm_head: Callable[[Any], Any],
               last_only: bool, drop: Callable[[Any], Any] = lambda x: x) -> Any:
        """The model, written once for Tensors (forward) and plain arrays (nn/generation.py's decode step):
        token ids idx (B, T) at positions pos -> embeddings (B, T, C) -> the blocks -> ln_f -> lm_head, the
        logits (B, T, V), or of the last position only (B, 1, V) when `last_only`."""
        x = drop(wte(idx) + wpe(pos))
        for block in blocks:
            x = block(x)
        return lm_head(ln_f(x[:, -1:] if last_only else x))

    def forward(self, idx: Any, targets: Any = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> (logits, loss). With targets (B, T): logits of every position (B, T, V) and
        the mean cross-entropy (targets equal to -1 are ignored). Without: logits of the last position only,
        (B, 1, V), and loss None. Generation (nn/generation.py) reuses the keys and values of earlier positions
        instead of calling this for the whole sequence at every token."""
        idx = idx if isinstance(idx, Tensor) else creation.tensor(idx)
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {idx.shape}")
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"cannot forward a sequence of length {T}: block_size is {self.config.block_size}")
        t = self.transformer
        pos = creation.arange(0, T, device=idx.device)                    # (T,)
        logits = self.wiring(idx, pos, t.wte, t.wpe, t.h, t.ln_f, self.lm_head, last_only=targets is None,
                             drop=t.drop)
        if targets is None:
            return logits, None                                           # (B, 1, V)
        tg = targets if isinstance(targets, Tensor) else creation.tensor(targets)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), tg.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float] = (0.9, 0.95)) -> Any:
        """AdamW with weight decay on the 2-D weights only (matmuls and embeddings), as nanoGPT."""
        return AdamW(weight_decay_groups(self, weight_decay), lr=learning_rate, betas=betas)

    def generate(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True) -> Tensor:
        """nanoGPT's generate: append max_new_tokens sampled tokens to idx (B, T); see nn/generation.py."""
        return generation.generate(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache)

    def generate_stream(self, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, use_cache: bool = True) -> Iterator[Tensor]:
        """Each new token (B, 1) as it is sampled; see nn/generation.py."""
        return generation.generate_stream(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache)

    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                       pad_id: int = 0) -> list[list[int]]:
        """Several prompts of any lengths continued as one batch; see nn/generation.py."""
        return generation.generate_batch(self, prompts, max_new_tokens, temperature, top_k, top_p, use_cache,
                                         pad_id)
