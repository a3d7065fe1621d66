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
    def forward(self, q, k, v, mask, scale, causal):
        lead, (L, E), (S, Ev) = q.shape[:-2], q.shape[-2:], v.shape[-2:]
        self.q = q.reshape(-1, L, E)                                 # (B, L, E), B = prod(lead)
        self.k = k.reshape(-1, S, E)
        self.v = v.reshape(-1, S, Ev)
        self.mask, self.scale, self.causal = mask, scale, causal
        self.out, self.lse = backend.kernel("attention_forward")(self.q, self.k, self.v, mask, scale, causal)
        self.bwd = backend.kernel("attention_backward")
        self.shapes = (q.shape, k.shape, v.shape)
        return self.out.reshape(*lead, L, Ev)

    def backward(self, dout):
        dq, dk, dv = self.bwd(dout.reshape(self.out.shape), self.q, self.k, self.v, self.out, self.lse,
                              self.mask, self.scale, self.causal)
        return tuple(g.reshape(s) for g, s in zip((dq, dk, dv), self.shapes, strict=True))


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
