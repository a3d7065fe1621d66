"""Optimizers and learning-rate schedules with PyTorch's names: SGD, Adam, AdamW, lr_scheduler."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer, weight_decay_groups
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler", "weight_decay_groups"]


from ..porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
