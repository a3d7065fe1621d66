"""Layer normalisation as one fused op whose math lives in the kernels (`layernorm_forward`,
`layernorm_backward`); this class flattens the normalised trailing dims into rows of C values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from .base import as_tensor


class LayerNorm(Function):
    kernels = ("layernorm_forward", "layernorm_backward")

    def forward(self, x, *affine, eps, n_norm, has_weight, has_bias):
        weight = affine[0] if has_weight else None
        bias = affine[-1] if has_bias else None
        C = 1
        for n in x.shape[x.ndim - n_norm:]:
            C *= n
        self.shape, self.has_weight, self.has_bias = x.shape, has_weight, has_bias
        x2 = x.reshape(-1, C)                                        # (N, C): one row per position
        w2 = None if weight is None else weight.reshape(C)
        b2 = None if bias is None else bias.reshape(C)
        out, self.mean, self.rstd = backend.kernel("layernorm_forward")(x2, w2, b2, eps)
        self.x2, self.w2, self.affine_shape = x2, w2, x.shape[x.ndim - n_norm:]
        self.bwd = backend.kernel("layernorm_backward")
        return out.reshape(x.shape)

    def backward(self, dout):
        need_affine = any(t.requires_grad for t in self.inputs[1:])
        dx, dw, db = self.bwd(dout.reshape(self.x2.shape), self.x2, self.w2, self.mean, self.rstd,
                              need_affine)
        grads = [dx.reshape(self.shape)]
        if self.has_weight:
            grads.append(None if dw is None else dw.reshape(self.affine_shape))
        if self.has_bias:
            grads.append(None if db is None else db.reshape(self.affine_shape))
        return tuple(grads)


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims to zero mean and unit (biased) variance,
    then scale by `weight` and shift by `bias` (both of shape normalized_shape, optional)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape):] != shape or len(shape) > input.ndim:
        raise ValueError(f"layer_norm: normalized_shape {shape} does not match the trailing dimensions of "
                         f"an input of shape {input.shape}")
    affine = []
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            t = as_tensor(t, like=input)
            if t.shape != shape:
                raise ValueError(f"layer_norm: {name} has shape {t.shape}, expected {shape}")
            if t.dtype != input.dtype:
                raise TypeError(f"layer_norm: {name} is {t.dtype} but the input is {input.dtype}")
            affine.append(t)
    return LayerNorm.apply(input, *affine, eps=eps, n_norm=len(shape), has_weight=weight is not None,
                           has_bias=bias is not None)


def layer_norm_fn(weight: Any, bias: Any, eps: float) -> Callable[[Any], Any]:
    """Layer norm over the last axis on plain arrays, recording nothing (generation's decode step): the same
    `layernorm_forward` kernel the LayerNorm node's forward runs. weight, bias (C,) arrays or None."""
    kernel = backend.kernel("layernorm_forward")

    def run(x: Any) -> Any:
        return kernel(x.reshape(-1, x.shape[-1]), weight, bias, eps)[0].reshape(x.shape)   # rows (N, C)

    return run
