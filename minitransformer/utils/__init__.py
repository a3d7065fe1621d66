"""Utilities that mirror `torch.utils`: `data` (datasets, samplers, collation and the DataLoader)."""

from __future__ import annotations

from . import data
