"""What runs inside a DataLoader worker process, and what the main process needs to talk to it:
`get_worker_info`, the task and reply messages, and `ExceptionWrapper` (an exception made picklable, so
it can be raised again in the main process with the worker's traceback in its message).

Messages. The main process puts `(task_id, index)` on a worker's own index queue, `RESUME` to start a
new epoch with persistent workers, and `None` to stop it. The worker answers on the shared result queue
with `(task_id, pickled payload)`, the payload being the batch, an `ExceptionWrapper` or `IterableEnd`,
and answers `RESUME` with `(RESUMED, worker_id)`.

Seeding: worker k seeds minitransformer's global generator and Python's `random` with `base_seed + k`
(the main process draws `base_seed` once per iterator), and NumPy's legacy global generator from
[k, base_seed + k], so random augmentations differ between workers and repeat when the main process is
seeded.
"""

from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import random as _random
from .fetch import make_fetcher

POLL_S = 0.5  # how often a waiting worker checks that the main process is alive
RESUME = "resume"
RESUMED = -1


class WorkerInfo:
    """What `get_worker_info()` returns inside a worker: `id`, `num_workers`, `seed` and the worker's
    own copy of `dataset`. Read-only."""

    __initialized = False

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.__keys = tuple(kwargs)
        self.__initialized = True

    def __setattr__(self, key: str, value: Any) -> None:
        if self.__initialized:
            raise RuntimeError(f"cannot assign attributes to {type(self).__name__} objects (tried {key!r})")
        super().__setattr__(key, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)}" for k in self.__keys)
        return f"{type(self).__name__}({fields})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its `WorkerInfo`; in the main process, None.

    An `IterableDataset.__iter__` uses it to give each worker a different part of the stream, e.g.
    `info = get_worker_info(); items = items[info.id::info.num_workers] if info else items`.
    """
    return _worker_info


class IterableEnd:
    """A worker's reply once its copy of an IterableDataset is exhausted."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class _KeyErrorMessage(str):
    """KeyError shows repr() of its message; this keeps a traceback's newlines readable."""

    def __repr__(self) -> str:
        return str(self)


class ExceptionWrapper:
    """The exception being handled, with its traceback as text, to raise again in another process."""

    def __init__(self, where: str) -> None:
        exc_type, exc, tb = sys.exc_info()
        self.exc_type = exc_type
        self.message = "".join(traceback.format_exception(exc_type, exc, tb))
        self.where = where

    def reraise(self) -> None:
        message = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.message}"
        if self.exc_type is KeyError:
            message = _KeyErrorMessage(message)
        try:
            exc = self.exc_type(message)
        except Exception:  # an exception type whose constructor needs other arguments
            raise RuntimeError(message) from None
        raise exc


def _dumps(payload: Any, where: str) -> bytes:
    """Pickle a reply in the worker, so a batch that cannot be pickled becomes an error the main process
    sees (a queue's background thread would only print it, and the main process would wait forever)."""
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if not isinstance(payload, ExceptionWrapper):
            payload = ExceptionWrapper(where)  # the pickling error itself
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # the exception type is not picklable (defined inside a function): send its text
        payload.message = f"{payload.exc_type.__name__}: {payload.message}"
        payload.exc_type = RuntimeError
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def seed_worker(seed: int, worker_id: int) -> None:
    _random.manual_seed(seed)
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, seed]).generate_state(4))  # noqa: NPY002 (legacy RNG)


def worker_loop(dataset: Any, index_queue: Any, result_queue: Any, done_event: Any, auto_collation: bool,
                collate_fn: Callable[[Any], Any], drop_last: bool, base_seed: int,
                init_fn: Callable[[int], None] | None, worker_id: int, num_workers: int) -> None:
    """The body of worker process `worker_id`: answer tasks until told to stop or the parent is gone."""
    global _worker_info
    parent_pid = os.getppid()
    where = f"in DataLoader worker process {worker_id}"
    try:
        seed = base_seed + worker_id
        seed_worker(seed, worker_id)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        init_error, fetcher = None, None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_error = ExceptionWrapper(where)  # sent as the answer to every task
        ended = False
        while True:
            try:
                task = index_queue.get(timeout=POLL_S)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the main process died without stopping us
                    break
                continue
            if task is None:
                break
            if done_event.is_set():  # shutting down: skip what is left until the None
                continue
            if task == RESUME:
                if init_error is None:
                    try:
                        fetcher = make_fetcher(dataset, auto_collation, collate_fn, drop_last)
                    except Exception:
                        init_error = ExceptionWrapper(where)
                ended = False
                result_queue.put((RESUMED, worker_id))
                continue
            task_id, index = task
            if init_error is not None:
                payload = init_error
            elif ended:
                payload = IterableEnd(worker_id)
            else:
                try:
                    payload = fetcher.fetch(index)
                except StopIteration:
                    ended, payload = True, IterableEnd(worker_id)
                except Exception:
                    payload = ExceptionWrapper(where)
            result_queue.put((task_id, _dumps(payload, where)))
            del payload
    except KeyboardInterrupt:  # the main process gets it too and shuts the workers down
        pass
    if done_event.is_set():  # results nobody will read must not keep this process alive
        result_queue.cancel_join_thread()
        result_queue.close()
