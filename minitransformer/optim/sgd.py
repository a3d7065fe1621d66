"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay, exactly as
torch.optim.SGD:
    g = grad (+ weight_decay * p);  buf = momentum * buf + (1 - dampening) * g  (buf = g at the first step)
    g = g + momentum * buf (nesterov) or buf;  p = p - lr * g
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        # foreach/fused: PyTorch's implementation choices, accepted; the update here is one loop either way
        if differentiable:
            raise NotImplementedError("SGD(differentiable=True) is not supported: the step is not recorded")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD options: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g
