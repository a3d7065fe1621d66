"""`DistributedSampler`: each of the N processes of a data-parallel run reads its own 1/N of the dataset.

With `shuffle` the indices are permuted by a generator seeded with `seed + epoch` (call `set_epoch` at the
start of each epoch, as with PyTorch), the same permutation on every rank; rank r then takes every N-th
index starting at r. Without `drop_last` the list is padded by repeating its start so all ranks get the
same count (some samples are seen twice per epoch); with it, the tail is dropped instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

from ... import distributed as dist
from ...random import Generator
from .sampler import Sampler


class DistributedSampler(Sampler):
    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: the default process group is not initialized: call "
                                   "mt.distributed.init_process_group() first, or pass num_replicas and rank")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            indices = Generator().manual_seed(self.seed + self.epoch).rng.permutation(n).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[:self.total_size]
        elif self.total_size > n and n:
            indices += (indices * math.ceil((self.total_size - n) / n))[:self.total_size - n]
        # rank r takes positions r, r + N, r + 2N, ...
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: Any) -> None:
        """Seed the next epoch's permutation with `seed + epoch` (call it before each epoch)."""
        self.epoch = int(epoch)
