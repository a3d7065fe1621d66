"""Stateless neural-network ops, named and called as in `torch.nn.functional`.

The fused ops (layer_norm, gelu, softmax, log_softmax, cross_entropy) are single graph nodes whose math
the backend table can swap for a faster kernel; linear is one node too, a plain GEMM. Attention is fused as
well: scaled_dot_product_attention, qkv_attention and multi_head_attention_forward (without weights or
dropout) run the Attention / QKVAttention node of ops/attention.py, which keeps only the output and each row's
log-sum-exp and recomputes the weights in backward. Written here as a composition of differentiable ops
(matmul, masking, softmax, dropout), attention is the reference, and the path taken when the weights are
dropped out or returned, or a mask does not fit the kernels' layout (docs/derivations/attention.md derives
both and says which test checks which).
"""

from __future__ import annotations

import math
from typing import Any

from ..ops import dropout, embedding, gelu, log_softmax, one_hot, pad, relu, softmax
from ..ops.activation import bias_gelu
from ..ops.attention import Attention, QKVAttention, additive_mask, attention
from ..ops.linalg import linear
from ..ops.loss import cross_entropy, ctc_loss, mse_loss, nll_loss
from ..ops.norm import layer_norm
from ..tensor import Tensor
from ..xp import array_module

__all__ = [
    "bias_gelu", "cross_entropy", "ctc_loss", "dropout", "embedding", "gelu", "layer_norm", "linear", "log_softmax",
    "mse_loss",
    "multi_head_attention_forward", "nll_loss", "one_hot", "pad", "qkv_attention", "relu",
    "scaled_dot_product_attention", "softmax",
]


def _masked_softmax(scores: Tensor, blocked: Any, bias: Any) -> Tensor:
    """softmax(scores + bias) over the last dim with `blocked` positions (bool array, True = may not
    attend) set to -inf. A row with nothing left to attend to gives all-zero weights (and no gradient)
    instead of NaN, as PyTorch's scaled_dot_product_attention does."""
    xp = array_module(scores.data)
    if bias is not None:
        neg_inf = xp.isneginf(bias)                 # -inf in a float mask blocks, exactly like True
        if neg_inf.any():
            blocked = neg_inf if blocked is None else blocked | neg_inf
            bias = xp.where(neg_inf, 0, bias)
        scores = scores + Tensor(bias.astype(scores.dtype, copy=False))
    if blocked is None:
        return softmax(scores, dim=-1)
    blocked = xp.broadcast_to(blocked, scores.shape)
    empty = blocked.all(axis=-1, keepdims=True)     # (..., L, 1): rows with every key blocked
    if empty.any():
        weights = softmax(scores.masked_fill(blocked & ~empty, float("-inf")), dim=-1)
        return weights.masked_fill(xp.broadcast_to(empty, scores.shape), 0.0)
    # -inf, never a large finite number: a finite "mask" still lets exp() give the future some weight
    return softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)


def _mask_parts(mask: Any, name: str, allowed_is_true: bool) -> tuple[Any, Any]:
    """Split a mask into (blocked bool array, additive float array); either may be None."""
    if mask is None:
        return None, None
    m = mask.data if isinstance(mask, Tensor) else mask
    if m.dtype.kind == "b":
        return (~m if allowed_is_true else m), None
    if m.dtype.kind == "f":
        return None, m
    raise TypeError(f"{name}: only bool and floating masks are supported, got {m.dtype}")


def _merge(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    blocked = a[0] if b[0] is None else b[0] if a[0] is None else a[0] | b[0]
    bias = a[1] if b[1] is None else b[1] if a[1] is None else a[1] + b[1]
    return blocked, bias


def _attention_composed(query: Tensor, key: Tensor, value: Tensor, blocked: Any, bias: Any, scale: float,
                        dropout_p: float) -> Tensor:
    """The same attention written with differentiable ops, whose backward keeps the weights (..., L, S): the
    reference for the fused node, and the path taken when dropout is applied to the weights or a mask does not
    fit the fused kernels' layout."""
    scores = (query @ key.transpose(-2, -1)) * scale                  # (..., L, S)
    weights = _masked_softmax(scores, blocked, bias)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return weights @ value                                            # (..., L, Ev)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v for q (..., L, E), k (..., S, E), v (..., S, Ev) -> (..., L, Ev), as
    one fused Attention node when dropout_p is 0 and q, k, v share their leading dims (else the composition).

    attn_mask: bool (True = *may* attend, as in PyTorch's SDPA) or float (added to the scores),
    broadcastable to (..., L, S). is_causal applies a lower-triangular mask (no attn_mask allowed then).
    scale defaults to 1/sqrt(E). Dropout with probability dropout_p is applied to the weights.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: expected (..., L, E) inputs, got shapes "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
                         f"{value.shape} do not fit: need q/k feature sizes equal and k/v lengths equal")
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    xp = array_module(query.data)
    parts = _mask_parts(attn_mask, "scaled_dot_product_attention", allowed_is_true=True)
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
        parts = (~xp.tril(xp.ones((L, S), dtype=bool)), None)  # key j > query i is the future
    if dropout_p == 0.0 and query.shape[:-2] == key.shape[:-2] == value.shape[:-2]:
        causal = is_causal and L <= S  # a causal mask with L > S blocks whole rows: use the general mask
        fused_parts = (None, None) if causal else parts
        try:
            mask = additive_mask(*fused_parts, query.shape[:-2], L, S, query.dtype)
        except ValueError:
            pass  # a mask the fused kernel's layout cannot hold: the composition below takes it
        else:
            return Attention.apply(query, key, value, mask=mask, scale=scale, causal=causal)
    return _attention_composed(query, key, value, *parts, scale, dropout_p)


def qkv_attention(qkv: Tensor, n_head: int, attn_mask: Any = None, is_causal: bool = False,
                  scale: float | None = None) -> Tensor:
    """Multi-head self-attention of a packed projection as one fused node (no dropout on the weights).
    qkv (B, T, 3C): q, k, v side by side, as nanoGPT's c_attn produces them; n_head heads of size
    hs = C / n_head -> (B, T, C) with the heads side by side. The same as splitting qkv into q, k, v, viewing
    each as (B, nh, T, hs), scaled_dot_product_attention with these mask arguments (broadcastable to
    (B, nh, T, T)), and putting the heads back, without the copies in between."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(f"qkv_attention: expected qkv of shape (B, T, 3 * C) with C divisible by n_head={n_head}, "
                         f"got {qkv.shape}")
    if is_causal and attn_mask is not None:
        raise ValueError("qkv_attention: pass either attn_mask or is_causal=True, not both")
    B, T, C3 = qkv.shape
    hs = C3 // (3 * n_head)
    parts = _mask_parts(attn_mask, "qkv_attention", allowed_is_true=True)
    mask = additive_mask(*parts, (B, n_head), T, T, qkv.dtype)
    scale = 1.0 / math.sqrt(hs) if scale is None else scale
    return QKVAttention.apply(qkv, n_head=n_head, mask=mask, scale=scale, causal=is_causal)


def _check_mask_shape(mask: Any, shapes: list[tuple[int, ...]], name: str) -> None:
    if mask is not None and tuple(mask.shape) not in shapes:
        raise ValueError(f"the shape of {name} is {tuple(mask.shape)}, but should be one of {shapes}")


def multi_head_attention_forward(
    query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
    in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Any, bias_v: Any,
    add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
    training: bool = True, key_padding_mask: Any = None, need_weights: bool = True, attn_mask: Any = None,
    use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None, static_k: Any = None,
    static_v: Any = None, average_attn_weights: bool = True, is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """PyTorch's multi-head attention, sequence-first: query (L, N, E), key/value (S, N, kdim/vdim), or
    unbatched (L, E). Returns the output (L, N, E) and the attention weights (N, L, S), averaged over
    heads (or (N, H, L, S)), or None when need_weights is False.

    Masks: key_padding_mask (N, S) and attn_mask (L, S) or (N*H, L, S), each bool (True = may NOT
    attend) or float (added to the scores).
    """
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None or static_v is not None:
        raise NotImplementedError("bias_k/bias_v, add_zero_attn and static_k/static_v are not supported")
    batched = query.ndim == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None] if isinstance(key_padding_mask, Tensor) \
                else key_padding_mask.reshape(1, -1)
    L, N, E = query.shape
    S = key.shape[0]
    H = num_heads
    if E != embed_dim_to_check:
        raise ValueError(f"multi_head_attention: query has embedding size {E}, the module expects "
                         f"{embed_dim_to_check}")
    if E % H:
        raise ValueError(f"multi_head_attention: embed_dim {E} is not divisible by num_heads {H}")
    if key.shape[:2] != value.shape[:2] or key.shape[1] != N:
        raise ValueError(f"multi_head_attention: key {key.shape} and value {value.shape} must share "
                         f"(S, N) and match the query's batch size {N}")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint")
    hs = E // H

    # ---- input projections: q (L, N, E), k (S, N, E), v (S, N, E)
    if in_proj_bias is not None:
        b_q, b_k, b_v = in_proj_bias.chunk(3)
    else:
        b_q = b_k = b_v = None
    if not use_separate_proj_weight:
        if query is key and key is value:  # self-attention: one packed GEMM
            q, k, v = linear(query, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_k, w_v = in_proj_weight.chunk(3)
            q, k, v = linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)
    else:
        q, k, v = (linear(query, q_proj_weight, b_q), linear(key, k_proj_weight, b_k),
                   linear(value, v_proj_weight, b_v))

    # ---- heads: (L, N, E) -> (L, N, H, hs) -> (N, H, L, hs)
    q = q.reshape(L, N, H, hs).permute(1, 2, 0, 3)
    k = k.reshape(S, N, H, hs).permute(1, 2, 0, 3)
    v = v.reshape(S, N, H, hs).permute(1, 2, 0, 3)

    # ---- masks, combined in the (N, H, L, S) layout of the scores
    _check_mask_shape(attn_mask, [(L, S), (N * H, L, S)], "attn_mask")
    _check_mask_shape(key_padding_mask, [(N, S)], "key_padding_mask")
    blocked, bias = _mask_parts(attn_mask, "attn_mask", allowed_is_true=False)
    if attn_mask is not None and attn_mask.ndim == 3:
        blocked = None if blocked is None else blocked.reshape(N, H, L, S)
        bias = None if bias is None else bias.reshape(N, H, L, S)
    kp_blocked, kp_bias = _mask_parts(key_padding_mask, "key_padding_mask", allowed_is_true=False)
    kp = (None if kp_blocked is None else kp_blocked.reshape(N, 1, 1, S),
          None if kp_bias is None else kp_bias.reshape(N, 1, 1, S))
    blocked, bias = _merge((blocked, bias), kp)

    if not need_weights and not (training and dropout_p > 0.0):
        out = attention(q, k, v, blocked, bias, scale=1.0 / math.sqrt(hs))  # fused: (N, H, L, hs)
        out = linear(out.permute(2, 0, 1, 3).reshape(L, N, E), out_proj_weight, out_proj_bias)
        return (out if batched else out.squeeze(1)), None
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))       # (N, H, L, S)
    weights = _masked_softmax(scores, blocked, bias)
    if training and dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    out = weights @ v                                                  # (N, H, L, hs)
    out = out.permute(2, 0, 1, 3).reshape(L, N, E)                     # back to (L, N, E)
    out = linear(out, out_proj_weight, out_proj_bias)
    if not batched:
        out = out.squeeze(1)
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = weights.mean(dim=1)                                  # (N, L, S)
    return out, (weights if batched else weights.squeeze(0))
