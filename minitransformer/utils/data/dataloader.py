"""The DataLoader, as `torch.utils.data.DataLoader`: a dataset, a sampler and a collate function turned
into an iterable of batches, loaded in the main process (`num_workers=0`) or in worker processes.

With workers, the main process hands each worker lists of indices in turn (round robin), keeps
`prefetch_factor` tasks in flight per worker, and returns the results in the order it sent the tasks,
so the batches are the same as with `num_workers=0`. Workers are started by `iter(loader)` and stopped
when the iterator is exhausted, deleted or hits an error (or, with `persistent_workers`, when the loader
is deleted). `pin_memory` is accepted and does nothing: batches already live in CPU memory.

Not here: `IterDataPipe`s, distributed sampling, and the warnings torch prints about the number of
workers or an IterableDataset yielding more items than its `__len__`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import pickle
import queue
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ... import random as _random
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset
from .fetch import make_fetcher
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from .worker import RESUME, RESUMED, ExceptionWrapper, IterableEnd, worker_loop

_WAIT_S = 0.5  # how often the main process, waiting for a batch, checks that the workers are alive
_JOIN_S = 5.0  # how long shutdown waits for the workers to exit before terminating them
_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


class _InfiniteConstantSampler(Sampler):
    """The sampler of an IterableDataset: placeholder indices (None) for as long as they are asked for."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


def _default_context() -> multiprocessing.context.BaseContext:
    """fork on Linux (workers inherit the dataset without pickling it), the platform default elsewhere."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class DataLoader:
    """Batches from `dataset`, as `torch.utils.data.DataLoader`, with PyTorch's arguments and defaults.

    - `batch_size` samples per batch (None: no batching, each sample goes through `default_convert`);
      `shuffle` draws a `RandomSampler(dataset, generator=generator)`; or give a `sampler`, or a
      `batch_sampler` that yields whole lists of indices.
    - `collate_fn` joins the samples (default `default_collate`); `drop_last` drops a short last batch.
    - `num_workers > 0` loads in that many processes (see the module docstring); `timeout` seconds to
      wait for one batch (0: forever), `worker_init_fn(worker_id)` runs first in each worker,
      `multiprocessing_context` ('fork', 'spawn', 'forkserver' or a context; default fork on Linux),
      `prefetch_factor` tasks in flight per worker (default 2), `persistent_workers` keeps them between
      epochs. With 'spawn' the dataset, collate_fn and worker_init_fn must be picklable.
    - `pin_memory` and `pin_memory_device` are accepted and do nothing (all memory here is CPU memory).
    """

    _initialized = False

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable[Any] | None = None,
                 batch_sampler: Sampler | Iterable[list[Any]] | None = None, num_workers: int = 0,
                 collate_fn: Callable[[list[Any]], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: _random.Generator | None = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "") -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers option should be a non-negative integer, got {num_workers!r}; "
                             "use num_workers=0 to disable multiprocessing")
        if timeout < 0:
            raise ValueError(f"timeout option should be non-negative, got {timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing: let "
                             "num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and (not isinstance(prefetch_factor, int) or prefetch_factor < 1):
            raise ValueError(f"prefetch_factor option should be a positive integer, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        if isinstance(dataset, IterableDataset):
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, "
                                     f"but got {name}={value!r}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")

        if sampler is None:
            if isinstance(dataset, IterableDataset):
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else default_convert)
        self.persistent_workers = persistent_workers
        self._iterator: _MultiProcessIter | None = None
        self._initialized = True

    @property
    def multiprocessing_context(self) -> multiprocessing.context.BaseContext | None:
        return self._mp_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context: Any) -> None:
        if context is not None:
            if self.num_workers == 0:
                raise ValueError(f"multiprocessing_context can only be used with multi-process loading "
                                 f"(num_workers > 0), but got num_workers={self.num_workers}")
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError(f"multiprocessing_context option should specify a valid start method in "
                                     f"{methods!r}, but got multiprocessing_context={context!r}")
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError(f"multiprocessing_context option should be a valid context object or a string "
                                f"naming the start method, but got multiprocessing_context={context!r}")
        object.__setattr__(self, "_mp_context", context)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._initialized and name in _FROZEN:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        """What the iterator draws one batch's index (or list of indices) from."""
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator._stopped:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator._reset()
        return self._iterator

    def __len__(self) -> int:
        """The number of batches: from the sampler, or for an IterableDataset from `len(dataset)` (which
        counts each item once, whatever the number of workers, as torch)."""
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._index_sampler)


class _BaseIter:
    """What both iterators share: the sampler's iterator, the base seed for workers, the batch count."""

    def __init__(self, loader: DataLoader) -> None:
        self._dataset = loader.dataset
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._collate_fn = loader.collate_fn
        self._index_sampler = loader._index_sampler
        self._sampler_iter = iter(self._index_sampler)
        self._base_seed = int(_random.rng_of(loader.generator).integers(0, 1 << 63))

    def __iter__(self) -> _BaseIter:
        return self

    def __next__(self) -> Any:
        return self._next_data()

    def __len__(self) -> int:
        return len(self._index_sampler)

    def _next_data(self) -> Any:
        raise NotImplementedError


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._fetcher = make_fetcher(self._dataset, self._auto_collation, self._collate_fn, self._drop_last)

    def _next_data(self) -> Any:
        index = next(self._sampler_iter)  # StopIteration ends the epoch
        return self._fetcher.fetch(index)  # so does an exhausted IterableDataset


class _MultiProcessIter(_BaseIter):
    """Batches loaded by `num_workers` processes, returned in the order their tasks were sent.

    Task ids count up from 0 each epoch: `_send_idx` is the next to send, `_rcvd_idx` the next to
    return; `_results` holds replies that came early, `_active[k]` is False once worker k's copy of an
    IterableDataset is exhausted (it gets no more tasks).
    """

    def __init__(self, loader: DataLoader) -> None:
        super().__init__(loader)
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor
        self._timeout = loader.timeout
        self._persistent = loader.persistent_workers
        ctx = loader.multiprocessing_context or _default_context()
        self._result_queue = ctx.Queue()
        self._done_event = ctx.Event()
        self._index_queues, self._workers = [], []
        self._stopped = False
        for worker_id in range(self._num_workers):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()  # never let a dead worker's queue block this process's exit
            worker = ctx.Process(
                target=worker_loop, daemon=True,
                args=(self._dataset, index_queue, self._result_queue, self._done_event, self._auto_collation,
                      self._collate_fn, self._drop_last, self._base_seed, loader.worker_init_fn, worker_id,
                      self._num_workers),
            )
            worker.start()
            self._index_queues.append(index_queue)
            self._workers.append(worker)
        self._reset(first=True)

    def _reset(self, first: bool = False) -> None:
        """Start an epoch: new sampler iterator, task ids from 0, and `prefetch_factor` tasks per worker.
        A later epoch (persistent workers) first waits until every worker has acknowledged RESUME, which
        also drains the replies to any tasks left over from the previous epoch."""
        if not first:
            self._sampler_iter = iter(self._index_sampler)
            for index_queue in self._index_queues:
                index_queue.put(RESUME)
            waiting = self._num_workers
            while waiting:
                task_id, _ = self._get_reply()
                waiting -= task_id == RESUMED
        self._send_idx = self._rcvd_idx = 0
        self._results: dict[int, Any] = {}
        self._active = [True] * self._num_workers
        self._next_worker = 0
        self._sampler_done = False
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_put_index(self) -> None:
        """Send the sampler's next index to the next active worker, if there is one of each."""
        if self._sampler_done or not any(self._active):
            return
        while not self._active[self._next_worker]:
            self._next_worker = (self._next_worker + 1) % self._num_workers
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            self._sampler_done = True
            return
        self._index_queues[self._next_worker].put((self._send_idx, index))
        self._next_worker = (self._next_worker + 1) % self._num_workers
        self._send_idx += 1

    def _next_data(self) -> Any:
        while True:
            if self._stopped:
                raise StopIteration
            if self._rcvd_idx == self._send_idx:  # nothing in flight: try to send one more task
                self._try_put_index()
                if self._rcvd_idx == self._send_idx:
                    if not self._persistent:
                        self._shutdown_workers()
                    raise StopIteration
            if self._rcvd_idx not in self._results:
                task_id, blob = self._get_reply()
                if task_id != RESUMED:
                    self._results[task_id] = payload = pickle.loads(blob)
                    if isinstance(payload, IterableEnd):
                        self._active[payload.worker_id] = False
                continue
            payload = self._results.pop(self._rcvd_idx)
            self._rcvd_idx += 1
            self._try_put_index()
            if isinstance(payload, IterableEnd):
                continue
            if isinstance(payload, ExceptionWrapper):
                self._shutdown_workers()
                payload.reraise()
            return payload

    def _get_reply(self) -> tuple[int, Any]:
        """The next reply from any worker; raises if a worker died or `timeout` seconds passed."""
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = _WAIT_S if deadline is None else max(0.0, min(_WAIT_S, deadline - time.monotonic()))
            try:
                return self._result_queue.get(timeout=wait)
            except queue.Empty:
                pass
            dead = [w.pid for w in self._workers if not w.is_alive()]
            if dead:
                self._shutdown_workers(wait=0.0)
                raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(map(str, dead))}) exited unexpectedly")
            if deadline is not None and time.monotonic() >= deadline:
                self._shutdown_workers(wait=0.0)  # a worker this slow is not waited for again
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")

    def _shutdown_workers(self, wait: float = _JOIN_S) -> None:
        """Stop every worker: ask, wait up to `wait` seconds in all, then terminate what is left.
        Safe to call again."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._done_event.set()
            for index_queue in self._index_queues:
                index_queue.put(None)
            deadline = time.monotonic() + wait
            for worker in self._workers:
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
            for q in (*self._index_queues, self._result_queue):
                q.cancel_join_thread()
                q.close()
        finally:
            for worker in self._workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()

    def __del__(self) -> None:
        if hasattr(self, "_stopped"):
            self._shutdown_workers()
