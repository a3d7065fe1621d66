"""Fused scaled dot-product attention as one graph node; the math is the `attention_forward` /
`attention_backward` kernel pair of the active backend (FlashAttention-style tiles on the CPU with Numba,
plain NumPy in the reference). F.scaled_dot_product_attention and MultiheadAttention call it whenever no
dropout is applied to the attention weights and the weights themselves are not requested."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module


class Attention(Function):
    """q (..., L, E), k (..., S, E), v (..., S, Ev) -> (..., L, Ev). The arrays go to the kernels as they are
    (views with any strides; the kernels do not copy them)."""

    kernels = ("attention_forward", "attention_backward")

    def forward(self, q, k, v, mask, scale, causal):
        self.q, self.k, self.v = q, k, v
        self.mask, self.scale, self.causal = mask, scale, causal
        self.out, self.lse = backend.kernel("attention_forward")(q, k, v, mask, scale, causal)
        self.bwd = backend.kernel("attention_backward")
        return self.out

    def backward(self, dout):
        return self.bwd(dout, self.q, self.k, self.v, self.out, self.lse, self.mask, self.scale, self.causal)


class QKVAttention(Function):
    """Multi-head self-attention straight from a packed projection: qkv (B, T, 3C) holds q, k and v side
    by side, each C = nh * hs wide; the result (B, T, C) has the heads side by side. One node for what
    is otherwise split + view + transpose (x3) + attention + transpose + contiguous + view: q, k, v go to
    the kernel as strided views of qkv, the output comes back already in (B, T, nh, hs) memory order, and
    the backward writes dq, dk, dv straight into one packed (B, T, 3C) gradient."""

    kernels = ("attention_forward", "attention_backward")

    def forward(self, qkv, n_head, mask, scale, causal):
        B, T, C3 = qkv.shape
        self.heads = qkv.reshape(B, T, 3, n_head, C3 // (3 * n_head))        # a view: Linear's output is contiguous
        q, k, v = (self.heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, nh, T, hs) views
        self.mask, self.scale, self.causal = mask, scale, causal
        self.out, self.lse = backend.kernel("attention_forward")(q, k, v, mask, scale, causal)
        self.bwd = backend.kernel("attention_backward")
        return self.out.transpose(0, 2, 1, 3).reshape(B, T, C3 // 3)        # free when out is (B, T, nh, hs) in memory

    def backward(self, dout):
        B, T, _, nh, hs = self.heads.shape
        xp = array_module(dout)
        dheads = xp.zeros(self.heads.shape, dout.dtype)                      # (B, T, 3, nh, hs)
        q, k, v = (self.heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        grads = tuple(dheads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        dy = dout.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)                # (B, nh, T, hs) view
        self.bwd(dy, q, k, v, self.out, self.lse, self.mask, self.scale, self.causal, grads=grads)
        return (dheads.reshape(B, T, 3 * nh * hs),)


def additive_mask(blocked: Any, bias: Any, lead: tuple[int, ...], L: int, S: int, dtype: Any) -> Any:
    """Merge a bool `blocked` mask (True = may not attend) and a float `bias`, each broadcastable to
    (*lead, L, S), into the kernels' layout: a float array (Bm, Lm, S), Bm in {1, prod(lead)}, Lm in {1, L},
    with -inf where blocked. Returns None when there is no mask; raises ValueError if it does not fit."""
    if blocked is None and bias is None:
        return None
    xp = array_module(blocked if bias is None else bias)
    if blocked is None:
        m = bias.astype(dtype, copy=False)
    else:
        m = xp.where(blocked, dtype.type(-np.inf), dtype.type(0) if bias is None else bias.astype(dtype))
    if m.ndim < 2:
        m = m.reshape(1, -1)
    m = xp.broadcast_to(m, m.shape[:-1] + (S,))
    Lm = m.shape[-2]
    if Lm not in (1, L) or len(m.shape) - 2 > len(lead):
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to {(*lead, L, S)}")
    if all(d == 1 for d in m.shape[:-2]):
        return m.reshape(1, Lm, S)
    B = int(np.prod(lead)) if lead else 1
    return xp.ascontiguousarray(xp.broadcast_to(m, (*lead, Lm, S))).reshape(B, Lm, S)


def attention(q: Tensor, k: Tensor, v: Tensor, blocked: Any = None, bias: Any = None, causal: bool = False,
              scale: float = 1.0) -> Tensor:
    """softmax(q k^T * scale + mask) v as one fused op. q (..., L, E), k (..., S, E), v (..., S, Ev) with the
    same leading dims; blocked/bias as in `additive_mask`."""
    mask = additive_mask(blocked, bias, q.shape[:-2], q.shape[-2], k.shape[-2], q.dtype)
    return Attention.apply(q, k, v, mask=mask, scale=scale, causal=causal)


def decode_attention(q: Any, k: Any, v: Any, first: Any, scale: float, length: int) -> Any:
    """One generation step's attention on plain arrays: q (B, nh, hs), the cached keys and values k, v
    (B, nh, cap, hs) of which the first `length` are filled -> (B, nh, hs); row b sees keys first[b] on."""
    return backend.kernel("decode_attention_forward")(q, k, v, first, scale, length)


def attention_arrays(q: Any, k: Any, v: Any, mask: Any, scale: float, causal: bool = False) -> Any:
    """softmax(q k^T * scale + mask) v on plain arrays, recording nothing (a prompt's step in generation): the
    `attention_forward` kernel the Attention node runs. q (..., L, E), k (..., S, E), v (..., S, Ev); mask in
    `additive_mask`'s layout or None; causal: query i sees keys up to i (L == S)."""
    return backend.kernel("attention_forward")(q, k, v, mask, scale, causal)[0]
