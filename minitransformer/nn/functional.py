"""Stateless neural-network ops, named and called as in `torch.nn.functional`."""

from __future__ import annotations

from ..ops import dropout, embedding, gelu, log_softmax, relu, softmax

__all__ = ["dropout", "embedding", "gelu", "log_softmax", "relu", "softmax"]
