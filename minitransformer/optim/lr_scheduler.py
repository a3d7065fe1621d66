"""Learning-rate schedules with PyTorch's interface (`scheduler.step()` after `optimizer.step()`,
`get_last_lr()`, `state_dict()`): LambdaLR, StepLR, CosineAnnealingLR, and WarmupCosineLR, the
linear-warmup-then-cosine schedule of nanoGPT whose first step's learning rate is not 0.

Each schedule computes lr from `last_epoch` in closed form, so saving `last_epoch` is enough to resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .optimizer import Optimizer


class LRScheduler:
    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        for i, g in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                g.setdefault("initial_lr", g["lr"])
            elif "initial_lr" not in g:
                raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step and set each group's lr."""
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step), one lambda for all groups or one per group."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"expected {n} lr_lambdas, got {len(self.lr_lambdas)}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas, strict=True)]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


def warmup_cosine(it: int, lr: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """nanoGPT's get_lr, the one copy the training loop, WarmupCosineLR and the benchmarks use: linear warmup
    from lr / (warmup_iters + 1) (never 0) to lr over warmup_iters steps, cosine decay to min_lr at
    lr_decay_iters, min_lr after."""
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters or lr_decay_iters == warmup_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


class WarmupCosineLR(LRScheduler):
    """nanoGPT's schedule: linear warmup to base_lr over warmup_iters steps, starting at
    base_lr / (warmup_iters + 1) rather than 0; cosine decay to min_lr at lr_decay_iters; min_lr after.
    min_lr is an absolute learning rate (the same for every group), as in nanoGPT."""

    def __init__(self, optimizer: Optimizer, warmup_iters: int, lr_decay_iters: int, min_lr: float = 0.0,
                 last_epoch: int = -1) -> None:
        if lr_decay_iters < warmup_iters:
            raise ValueError(f"lr_decay_iters ({lr_decay_iters}) must be at least warmup_iters ({warmup_iters})")
        self.warmup_iters, self.lr_decay_iters, self.min_lr = warmup_iters, lr_decay_iters, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [warmup_cosine(self.last_epoch, base, self.min_lr, self.warmup_iters, self.lr_decay_iters)
                for base in self.base_lrs]
