"""Matrix multiplication with PyTorch's `matmul` rules: 1-D operands are promoted (and the added
dimension removed afterwards), leading batch dimensions broadcast.

    out = a @ b          da = dout @ b^T          db = a^T @ dout
(each summed back over broadcast batch dimensions). When one side is a plain matrix and the other is
batched (a Linear layer's (B, T, C) @ (C, O)), the batch is folded into the rows so BLAS sees one large
GEMM instead of B small ones.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import broadcast_shape, operands, unbroadcast


def _mm(a: Any, b: Any) -> Any:
    """a @ b, folding a's batch dims into rows when b is 2-D: (..., M, K) @ (K, N) -> (..., M, N)."""
    if b.ndim == 2 and a.ndim > 2:
        lead = a.shape[:-1]
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(*lead, b.shape[-1])  # (B*M, K) @ (K, N)
    return a @ b


def _swap(x: Any) -> Any:
    return array_module(x).swapaxes(x, -1, -2)


class MatMul(Function):
    def forward(self, a, b):
        self.shape_a, self.shape_b = a.shape, b.shape
        self.a = a[None, :] if a.ndim == 1 else a      # (K,) -> (1, K)
        self.b = b[:, None] if b.ndim == 1 else b      # (K,) -> (K, 1)
        out = _mm(self.a, self.b)
        self.out_shape = out.shape
        if a.ndim == 1:
            out = out.squeeze(-2)
        if b.ndim == 1:
            out = out.squeeze(-1)
        return out

    def backward(self, dout):
        g = dout.reshape(self.out_shape)  # restore the promoted dimensions
        a, b = self.a, self.b
        da = db = None
        if self.inputs[0].requires_grad:
            da = unbroadcast(_mm(g, _swap(b)), a.shape).reshape(self.shape_a)
        if self.inputs[1].requires_grad:
            if b.ndim == 2 and a.ndim > 2:
                # sum over the batch inside one GEMM: (K, B*M) @ (B*M, N)
                db = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                db = unbroadcast(_swap(a) @ g, b.shape)
            db = db.reshape(self.shape_b)
        return da, db


def matmul(input: Any, other: Any) -> Tensor:
    """input @ other with broadcasting batch dims; ValueError naming both shapes when they do not fit."""
    a, b = operands(input, other, "matmul")
    sa, sb = a.shape, b.shape
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if b.ndim == 1 else sb[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {sa} and {sb} cannot be multiplied ({k_a} != {k_b})")
    if a.ndim > 2 and b.ndim > 2:
        broadcast_shape(sa[:-2], sb[:-2], "matmul (batch dimensions)")
    return MatMul.apply(a, b)


class Linear(Function):
    """out = x @ weight^T + bias for x (..., in), weight (out, in), bias (out,) in one node:
    dx = dout @ weight, dweight = dout^T @ x and dbias = sum(dout) over all rows (batch folded in)."""

    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        x2 = x.reshape(-1, x.shape[-1])                            # (N, in), N = prod of leading dims
        out = x2 @ weight.T
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, dout):
        g = dout.reshape(-1, dout.shape[-1])                       # (N, out)
        need = [t.requires_grad for t in self.inputs]
        dx = (g @ self.weight).reshape(self.x.shape) if need[0] else None
        dweight = g.T @ self.x.reshape(-1, self.x.shape[-1]) if need[1] else None
        if not self.has_bias:
            return dx, dweight
        return dx, dweight, (g.sum(axis=0) if need[2] else None)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input (..., in) @ weight (out, in)^T + bias (out,) -> (..., out)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    x, w = operands(input, weight, "linear")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {w.shape} "
                         f"(expected last input dimension {w.shape[1]})")
    if bias is None:
        return Linear.apply(x, w)
    _, b = operands(x, bias, "linear")
    if b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias of shape {b.shape} does not match weight of shape {w.shape}")
    return Linear.apply(x, w, b)
