"""Adam/AdamW update for a list of parameters, in place (docs/derivations/adam.md):
    (AdamW) p *= 1 - lr wd;   (Adam) g += wd p
    m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2;   vmax = max(vmax, v) (amsgrad)
    p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)
The NumPy version makes about ten passes over each array with temporaries; cpu/adam.py makes one.
"""

from __future__ import annotations

import math
from typing import Any

from ._xp import xp_of


def adam_update(params: list[Any], grads: list[Any], exp_avgs: list[Any], exp_avg_sqs: list[Any],
                max_exp_avg_sqs: list[Any] | None, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool, step: int, maximize: bool) -> None:
    """One step for every (param, grad, m, v[, vmax]) of the lists; `step` is t after increment."""
    step_size = lr / (1 - beta1**step)
    bc2_sqrt = math.sqrt(1 - beta2**step)
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True)):
        xp = xp_of(p)
        g = -g if maximize else g
        if weight_decay:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        if max_exp_avg_sqs is not None:
            vmax = max_exp_avg_sqs[i]
            xp.maximum(vmax, v, out=vmax)
            denom = xp.sqrt(vmax) / bc2_sqrt + eps
        else:
            denom = xp.sqrt(v) / bc2_sqrt + eps
        p -= step_size * (m / denom)
