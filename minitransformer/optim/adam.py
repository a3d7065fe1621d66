"""Adam and AdamW, as torch.optim (derivation in docs/derivations/adam.md); the arithmetic is the
`adam_update` kernel of the active backend. With t the step count:
    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
Adam adds weight_decay * p to g (L2 regularisation); AdamW instead multiplies p by (1 - lr * weight_decay)
before the update (decoupled weight decay). amsgrad uses the running maximum of v.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from .. import backend, profiler
from ..autograd import enable_grad
from ..tensor import Tensor
from ..xp import array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        # foreach/fused select PyTorch's multi-tensor and fused implementations; here every group is always
        # one fused kernel call, so both are accepted and change nothing. capturable (CUDA graphs) likewise.
        if differentiable:
            raise NotImplementedError(f"{type(self).__name__}(differentiable=True) is not supported: "
                                      "the optimizer step is not recorded in the graph")
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid {type(self).__name__} options: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def step(self, closure: Any = None) -> Any:
        """One update of every parameter with a gradient: one fused kernel call per group (and per step
        count, in the rare case that parameters of a group have taken different numbers of steps)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        update = backend.kernel("adam_update")
        for group in self.param_groups:
            by_step: dict[int, list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    xp = array_module(p.data)
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            b1, b2 = group["betas"]
            for t, params in by_step.items():
                states = [self.state[p] for p in params]
                timed = (profiler.kernel_region(f"Optimizer.step#{type(self).__name__}.step",
                                                *_update_cost(params, group["amsgrad"]))
                         if profiler.is_profiling() else contextlib.nullcontext())
                with timed:
                    update([p.data for p in params], [p.grad.data for p in params], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states],
                           [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None,
                           group["lr"], b1, b2, group["eps"], group["weight_decay"], self.decoupled, t,
                           group["maximize"])
                for p in params:
                    p._version[0] += 1
        return loss


def _update_cost(params: list[Tensor], amsgrad: bool) -> tuple[float, float, str]:
    """(FLOPs, bytes, tier) of one fused update, for the profiler: about 12 FLOPs per parameter (two moving
    averages, bias corrections, square root, division, decay); it reads the parameter, gradient and both moments
    and writes back the parameter and moments (two more arrays with AMSGrad)."""
    n = sum(p.data.size for p in params)
    arrays = 7 + (2 if amsgrad else 0)
    return 12.0 * n, float(arrays * n * params[0].data.itemsize), backend.tier_of("adam_update", params[0].data)


class AdamW(Adam):
    decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused)
