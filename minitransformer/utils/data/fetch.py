"""Fetchers: how one index (or list of indices) from the sampler becomes one collated batch, for a
map-style dataset (index it) or an iterable one (take the next items of its stream). The DataLoader's
main process and its worker processes share them, so batches are made the same way in both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .dataset import Dataset, IterableDataset


class MapFetcher:
    """With auto-collation, `index` is a list of indices; without it, one index passed to the dataset."""

    def __init__(self, dataset: Dataset, auto_collation: bool, collate_fn: Callable[[Any], Any],
                 drop_last: bool) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn

    def fetch(self, index: Any) -> Any:
        if self.auto_collation:
            getitems = getattr(self.dataset, "__getitems__", None)
            data = getitems(index) if callable(getitems) else [self.dataset[i] for i in index]
        else:
            data = self.dataset[index]
        return self.collate_fn(data)


class IterableFetcher:
    """Takes `len(index)` items from the dataset's iterator (the index values are placeholders).

    Raises StopIteration once the stream is exhausted: at once when no item is left, after a last short
    batch otherwise (or instead of it when `drop_last`).
    """

    def __init__(self, dataset: IterableDataset, auto_collation: bool, collate_fn: Callable[[Any], Any],
                 drop_last: bool) -> None:
        self.iterator = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            try:
                item = next(self.iterator)
            except StopIteration:
                self.ended = True
                raise
            return self.collate_fn(item)
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def make_fetcher(dataset: Dataset, auto_collation: bool, collate_fn: Callable[[Any], Any],
                 drop_last: bool) -> MapFetcher | IterableFetcher:
    kind = IterableFetcher if isinstance(dataset, IterableDataset) else MapFetcher
    return kind(dataset, auto_collation, collate_fn, drop_last)
