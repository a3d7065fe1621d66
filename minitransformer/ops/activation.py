"""Activations and normalised exponentials: relu, gelu, softmax, log_softmax.

gelu, softmax and log_softmax are hot ops: their math lives in the kernels (one forward/backward pair per
backend, chosen by `minitransformer.backend`); the classes here only adapt tensors and dims to the
kernels' last-axis convention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ..xp import array_module
from .base import norm_dim


class ReLU(Function):
    saves_inputs = ()
    saves_output = True

    def forward(self, x):
        self.out = array_module(x).maximum(x, 0)
        return self.out

    def backward(self, dout):
        return (dout * (self.out > 0),)  # gradient 0 at x == 0, as PyTorch


def relu(input: Tensor) -> Tensor:
    return ReLU.apply(input)


class GELU(Function):
    kernels = ("gelu_forward", "gelu_backward")

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        self.bwd = backend.kernel("gelu_backward")
        out, self.gate = backend.kernel("gelu_forward")(x, approximate)
        return out

    def backward(self, dout):
        return (self.bwd(dout, self.x, self.approximate, self.gate),)


class BiasGELU(Function):
    """gelu(x + bias) in one pass (the MLP's first Linear without its bias, then this):
    dx = dy * gelu'(x + bias), dbias = dx summed over every axis but the last."""

    kernels = ("bias_gelu_forward", "bias_gelu_backward")

    def forward(self, x, bias, approximate):
        self.x, self.bias, self.approximate = x, bias, approximate
        self.bwd = backend.kernel("bias_gelu_backward")
        out, self.gate = backend.kernel("bias_gelu_forward")(x, bias, approximate)
        return out

    def backward(self, dout):
        dx = self.bwd(dout, self.x, self.bias, self.approximate, self.gate)
        return dx, dx.reshape(-1, dx.shape[-1]).sum(axis=0)


def bias_gelu(input: Tensor, bias: Tensor, approximate: str = "none") -> Tensor:
    """gelu(input + bias) fused; input (..., M), bias (M,). Equal to F.gelu(input + bias, approximate)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"bias_gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if bias.shape != input.shape[-1:]:
        raise ValueError(f"bias_gelu: bias of shape {bias.shape} does not match input of shape {input.shape}")
    if bias.dtype != input.dtype:
        raise TypeError(f"bias_gelu: bias is {bias.dtype} but the input is {input.dtype}")
    return BiasGELU.apply(input, bias, approximate=approximate)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (approximate='none') or its tanh approximation (approximate='tanh')."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if input.dtype.kind != "f":
        raise TypeError(f"gelu: expected a floating tensor, got {input.dtype}")
    return GELU.apply(input, approximate=approximate)


class _LastAxis(Function):
    """Runs a last-axis kernel pair on any `dim` by moving that dim last and back (views, no copy)."""

    saves_inputs = ()
    saves_output = True
    name = ""

    def forward(self, x, dim):
        xp = array_module(x)
        self.dim = dim
        last = dim == x.ndim - 1 or x.ndim == 0
        xm = x if last else xp.moveaxis(x, dim, -1)
        out = backend.kernel(self.name + "_forward")(xm)
        self.out = out
        return out if last else xp.moveaxis(out, -1, dim)

    def backward(self, dout):
        xp = array_module(dout)
        last = self.dim == dout.ndim - 1 or dout.ndim == 0
        g = dout if last else xp.moveaxis(dout, self.dim, -1)
        dx = backend.kernel(self.name + "_backward")(g, self.out)
        return (dx if last else xp.moveaxis(dx, -1, self.dim),)


class Softmax(_LastAxis):
    name = "softmax"
    kernels = ("softmax_forward", "softmax_backward")


class LogSoftmax(_LastAxis):
    name = "log_softmax"
    kernels = ("log_softmax_forward", "log_softmax_backward")


def _softmax_like(cls: type[_LastAxis], input: Tensor, dim: int | None, dtype: Any, op: str) -> Tensor:
    if dim is None:
        raise TypeError(f"{op}: pass dim explicitly (PyTorch's implicit choice of dim is deprecated)")
    if dtype is not None:
        input = input.to(dtype)
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating tensor, got {input.dtype}")
    if input.ndim == 0:
        input = input.reshape(1)
        return cls.apply(input, dim=0).reshape(())
    return cls.apply(input, dim=norm_dim(dim, input.ndim, op))


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`; finite for logits of any magnitude."""
    return _softmax_like(Softmax, input, dim, dtype, "softmax")


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """x - logsumexp(x) along `dim`; finite where softmax underflows to zero."""
    return _softmax_like(LogSoftmax, input, dim, dtype, "log_softmax")


def gelu_fn(approximate: str = "none") -> Callable[[Any], Any]:
    """GELU on plain arrays, recording nothing (generation's decode step): the `gelu_forward` kernel the GELU
    node's forward runs."""
    kernel = backend.kernel("gelu_forward")
    return lambda x: kernel(x, approximate)[0]
