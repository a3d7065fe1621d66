"""minitransformer.utils.data: samplers (sequence, permutation, replacement statistics, laziness, seeding),
datasets and random_split, default_collate on every kind of sample, the DataLoader in one process and
with worker processes (same batches, errors, shutdown, seeding, timeouts), and cross-checks against
torch.utils.data where PyTorch is installed."""

from __future__ import annotations

import collections
import gc
import itertools
import math
import os
import random
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    WorkerInfo,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)
from minitransformer.utils.data.dataloader import DataLoader as DataLoaderByPath

Point = collections.namedtuple("Point", ["x", "y"])


def _chi_square(counts: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sum((counts - expected) ** 2 / expected))


def _chi_square_bound(df: int) -> float:
    """mean + 6 standard deviations of a chi-square with df degrees of freedom (mean df, variance 2 df):
    a correct sampler exceeds it with probability far below 1e-4, a biased one lands far above it."""
    return df + 6 * math.sqrt(2 * df)


def _seeded(seed: int) -> mt.Generator:
    return mt.Generator().manual_seed(seed)


def _flat(batches):
    return [v for b in batches for v in (b.tolist() if isinstance(b, mt.Tensor) else b)]


# ---------------------------------------------------------------------------------------------------
# datasets used by the DataLoader tests (module level, so they pickle for the 'spawn' context)

class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


class Stream(IterableDataset):
    """range(n) as a stream; with split=True each worker takes every num_workers-th item."""

    def __init__(self, n, split=False):
        self.n, self.split = n, split

    def __iter__(self):
        items = range(self.n)
        info = get_worker_info()
        if self.split and info is not None:
            items = items[info.id::info.num_workers]
        return iter(items)


class SizedStream(Stream):
    def __len__(self):
        return self.n


class FailsAt(Dataset):
    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"cannot load item {i}")
        return i


class DiesAt(Squares):
    def __getitem__(self, i):
        if i == 2:
            os._exit(3)
        return i


class Slow(Squares):
    def __getitem__(self, i):
        time.sleep(1.0)
        return i


class SlowFirst(Squares):
    """Item 0 arrives last from the workers unless the loader puts the replies back in order."""

    def __getitem__(self, i):
        if i == 0:
            time.sleep(0.3)
        return i


class WhoLoads(Dataset):
    """Each item: the worker's id and seed, what its init function drew, and draws made now."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = get_worker_info()
        return {"id": info.id, "seed": info.seed, "init": _INIT_DRAW.get("randn"),
                "randn": mt.randn(2).tolist(), "random": random.random(), "pid": os.getpid()}


_INIT_DRAW: dict = {}


def _record_init(worker_id):
    _INIT_DRAW["randn"] = mt.randn(3).tolist()


# ---------------------------------------------------------------------------------------------------
# samplers

@given(st.integers(0, 50))
def test_sequential_sampler_is_range(n):
    s = SequentialSampler(range(n))
    assert list(s) == list(range(n)) and len(s) == n


@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1, 100))
def test_random_sampler_without_replacement_is_permutations(n, seed, num_samples):
    out = list(RandomSampler(range(n), num_samples=num_samples, generator=_seeded(seed)))
    assert len(out) == num_samples
    for start in range(0, num_samples, n):  # each full block is a permutation, the last one's prefix
        block = out[start:start + n]
        assert len(set(block)) == len(block) and set(block) <= set(range(n))


def test_random_sampler_shuffles():
    out = list(RandomSampler(range(20), generator=_seeded(0)))
    assert sorted(out) == list(range(20)) and out != list(range(20))


def test_random_sampler_with_replacement_is_uniform():
    n, draws = 10, 20_000
    out = np.array(list(RandomSampler(range(n), replacement=True, num_samples=draws, generator=_seeded(1))))
    assert out.min() >= 0 and out.max() < n
    counts = np.bincount(out, minlength=n)
    assert _chi_square(counts, np.full(n, draws / n)) < _chi_square_bound(n - 1)
    # draws repeat (with 20000 draws from 10 values), which a permutation never does
    assert counts.max() > 1


def test_random_sampler_huge_num_samples_is_lazy():
    t0 = time.perf_counter()
    s = RandomSampler(range(7), replacement=True, num_samples=10**10, generator=_seeded(2))
    first = list(itertools.islice(iter(s), 100))
    s2 = RandomSampler(range(7), num_samples=10**10, generator=_seeded(2))
    first2 = list(itertools.islice(iter(s2), 100))
    assert time.perf_counter() - t0 < 1.0
    assert len(s) == 10**10 and len(first) == 100 and set(first) <= set(range(7))
    assert set(first2) <= set(range(7)) and sorted(first2[:7]) == list(range(7))


def test_random_sampler_generator_and_global_seed_repeat():
    a = list(RandomSampler(range(30), generator=_seeded(5)))
    b = list(RandomSampler(range(30), generator=_seeded(5)))
    c = list(RandomSampler(range(30), generator=_seeded(6)))
    assert a == b and a != c
    s = RandomSampler(range(30), replacement=True, num_samples=50)
    mt.manual_seed(11)
    first, second = list(s), list(s)  # a fresh seed from the global generator at each iter()
    mt.manual_seed(11)
    assert list(s) == first and list(s) == second and first != second


@pytest.mark.parametrize("kwargs, error", [
    ({"num_samples": 0}, ValueError),
    ({"num_samples": 1e10}, ValueError),
    ({"replacement": "yes"}, TypeError),
])
def test_random_sampler_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        RandomSampler(range(5), **kwargs)


def test_subset_random_sampler():
    indices = [3, 10, 11, 40, 41, 99]
    out = list(SubsetRandomSampler(indices, generator=_seeded(0)))
    assert sorted(out) == indices and len(SubsetRandomSampler(indices)) == 6
    assert out == list(SubsetRandomSampler(indices, generator=_seeded(0)))
    orders = {tuple(SubsetRandomSampler(indices, generator=_seeded(s))) for s in range(10)}
    assert len(orders) > 1


def test_weighted_random_sampler_follows_weights():
    weights = [0.0, 1.0, 2.0, 5.0, 0.0, 2.0]
    draws = 20_000
    out = np.array(list(WeightedRandomSampler(weights, draws, generator=_seeded(3))))
    counts = np.bincount(out, minlength=len(weights))
    assert counts[0] == counts[4] == 0
    p = np.array(weights)[[1, 2, 3, 5]] / sum(weights)
    assert _chi_square(counts[[1, 2, 3, 5]], draws * p) < _chi_square_bound(3)
    once = list(WeightedRandomSampler(mt.tensor(weights), 4, replacement=False, generator=_seeded(3)))
    assert sorted(once) == [1, 2, 3, 5]
    with pytest.raises(ValueError, match="num_samples"):
        WeightedRandomSampler(weights, 5, replacement=False)
    with pytest.raises(ValueError, match="1d"):
        WeightedRandomSampler([[1.0, 2.0]], 1)


@given(st.integers(0, 40), st.integers(1, 9), st.booleans())
def test_batch_sampler_groups_in_order(n, batch_size, drop_last):
    bs = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    batches = list(bs)
    assert len(batches) == len(bs)
    assert all(len(b) == batch_size for b in batches[:-1])
    if drop_last:
        assert _flat(batches) == list(range(n // batch_size * batch_size))
    else:
        assert _flat(batches) == list(range(n))


@pytest.mark.parametrize("batch_size, drop_last", [(0, False), (True, False), (2.0, False), (2, "no")])
def test_batch_sampler_rejects_bad_arguments(batch_size, drop_last):
    with pytest.raises(ValueError, match="drop_last" if drop_last == "no" else "batch_size"):
        BatchSampler(range(5), batch_size, drop_last)


# ---------------------------------------------------------------------------------------------------
# datasets and random_split

def test_tensor_dataset():
    x, y = mt.arange(12).reshape(6, 2), mt.arange(6) * 10
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert xi.tolist() == [8, 9] and yi.item() == 40
    with pytest.raises(ValueError, match=r"\(6, 2\), \(5,\)"):
        TensorDataset(x, mt.arange(5))


def test_concat_dataset_and_add():
    a, b = Squares(3), Squares(4)
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 7 and both.cumulative_sizes == [3, 7]
    assert [both[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]
    assert both[-1] == 9 and both[-7] == 0
    with pytest.raises(ValueError, match="out of range"):
        both[-8]
    with pytest.raises(IndexError):
        both[7]
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([a, Stream(3)])
    chained = SizedStream(2) + SizedStream(3)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 0, 1, 2] and len(chained) == 5
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]


def test_subset_uses_indices_and_getitems():
    sub = Subset(Squares(10), [9, 2, 5])
    assert len(sub) == 3 and [sub[i] for i in range(3)] == [81, 4, 25]
    assert sub.__getitems__([2, 0]) == [25, 81]
    loader = DataLoader(sub, batch_size=2)
    assert [b.tolist() for b in loader] == [[81, 4], [25]]


@pytest.mark.filterwarnings("ignore:random_split")  # lengths like [1, 0] on n=1 read as fractions, as torch
@given(st.integers(0, 60), st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(0, 1000))
def test_random_split_sizes_and_disjointness(n, parts, seed):
    lengths = [n * p // sum(parts) for p in parts]
    lengths[0] += n - sum(lengths)
    splits = random_split(range(n), lengths, generator=_seeded(seed))
    assert [len(s) for s in splits] == lengths
    items = [s[i] for s in splits for i in range(len(s))]
    assert sorted(items) == list(range(n))  # disjoint and covering
    again = random_split(range(n), lengths, generator=_seeded(seed))
    assert [list(s.indices) for s in again] == [list(s.indices) for s in splits]


@pytest.mark.parametrize("n, fractions, expected", [
    (10, [0.3, 0.3, 0.4], [3, 3, 4]),
    (11, [0.5, 0.5], [6, 5]),
    (7, [0.1, 0.1, 0.8], [1, 1, 5]),
    (100, [0.9, 0.1], [90, 10]),
])
def test_random_split_fractions(n, fractions, expected):
    splits = random_split(range(n), fractions, generator=_seeded(0))
    assert [len(s) for s in splits] == expected
    assert sorted(i for s in splits for i in s.indices) == list(range(n))


def test_random_split_is_shuffled():
    first, _ = random_split(range(50), [25, 25], generator=_seeded(0))
    other, _ = random_split(range(50), [25, 25], generator=_seeded(1))
    assert first.indices != sorted(first.indices) and first.indices != other.indices


def test_random_split_warns_about_an_empty_split():
    with pytest.warns(UserWarning, match="index 1 is 0"):
        splits = random_split(range(2), [0.1, 0.1, 0.8])
    assert [len(s) for s in splits] == [1, 0, 1]


def test_random_split_rejects_bad_lengths():
    with pytest.raises(ValueError, match="sum to 9"):
        random_split(range(10), [4, 5])
    with pytest.raises(ValueError, match="index 0"):
        random_split(range(10), [1.5, -0.5])


# ---------------------------------------------------------------------------------------------------
# default_collate and default_convert

def test_collate_tensors_and_arrays():
    out = default_collate([mt.ones(2, 3), mt.zeros(2, 3)])
    assert isinstance(out, mt.Tensor) and out.shape == (2, 2, 3) and out.dtype == mt.float32
    assert out.numpy()[0].sum() == 6 and out.numpy()[1].sum() == 0
    arr = default_collate([np.arange(3, dtype=np.int16), np.arange(3, dtype=np.int16) + 1])
    assert isinstance(arr, mt.Tensor) and arr.dtype == np.int16 and arr.tolist() == [[0, 1, 2], [1, 2, 3]]
    with pytest.raises(TypeError, match="<U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


@pytest.mark.parametrize("batch, dtype", [
    ([1, 2, 3], np.int64),
    ([1.5, 2.0], np.float64),  # as torch: Python floats collate to float64, not the default float32
    ([True, False], np.bool_),
    ([1, 2.5], np.float32),  # a float after an int: the default dtype, as torch.tensor([1, 2.5])
    ([np.float64(1), np.float64(2)], np.float64),
    ([np.float32(1), np.float32(2)], np.float32),
    ([np.int32(3), np.int32(4)], np.int32),
    ([np.bool_(True), np.bool_(False)], np.bool_),
])
def test_collate_numbers(batch, dtype):
    out = default_collate(batch)
    assert isinstance(out, mt.Tensor) and out.dtype == np.dtype(dtype) and out.tolist() == [float(b) for b in batch]


def test_collate_containers():
    assert default_collate(["a", "b"]) == ["a", "b"] and default_collate([b"x", b"y"]) == [b"x", b"y"]
    pairs = default_collate([(1, 2.0), (3, 4.0)])
    assert isinstance(pairs, list) and pairs[0].tolist() == [1, 3] and pairs[1].dtype == mt.float64
    lists = default_collate([[1, 2], [3, 4]])
    assert isinstance(lists, list) and [t.tolist() for t in lists] == [[1, 3], [2, 4]]
    d = default_collate([{"x": 1, "y": [1.0, 2.0]}, {"x": 2, "y": [3.0, 4.0]}])
    assert list(d) == ["x", "y"] and d["x"].tolist() == [1, 2] and [t.tolist() for t in d["y"]] == [[1, 3], [2, 4]]
    od = default_collate([collections.OrderedDict(a=1), collections.OrderedDict(a=2)])
    assert type(od) is collections.OrderedDict and od["a"].tolist() == [1, 2]
    p = default_collate([Point(1, mt.ones(2)), Point(2, mt.zeros(2))])
    assert type(p) is Point and p.x.tolist() == [1, 2] and p.y.shape == (2, 2)
    nested = default_collate([{"pt": Point(np.zeros(2), "s"), "n": [True]}] * 3)
    assert nested["pt"].x.shape == (3, 2) and nested["pt"].y == ("s",) * 3 and nested["n"][0].dtype == np.bool_


def test_collate_errors():
    with pytest.raises(TypeError, match="found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.float64(2.0), "s"), "c": Point(np.zeros(1), 5)})
    assert isinstance(out["a"], mt.Tensor) and out["a"].dtype == np.int64
    assert isinstance(out["b"], list) and out["b"][0].dtype == np.float64 and out["b"][1] == "s"
    assert type(out["c"]) is Point and isinstance(out["c"].x, mt.Tensor) and out["c"].y == 5
    t = mt.ones(2)
    assert default_convert(t) is t and default_convert(3) == 3


# ---------------------------------------------------------------------------------------------------
# DataLoader in the main process

def test_import_paths():
    assert DataLoaderByPath is DataLoader
    from minitransformer.utils import data

    assert data.Dataset is Dataset and data.default_collate is default_collate


@given(st.integers(1, 30), st.integers(1, 8), st.booleans())
def test_loader_batches_in_order(n, batch_size, drop_last):
    ds = TensorDataset(mt.arange(n), mt.arange(n) * 2)
    batches = list(DataLoader(ds, batch_size=batch_size, drop_last=drop_last))
    assert len(batches) == len(DataLoader(ds, batch_size=batch_size, drop_last=drop_last))
    xs = _flat(b[0] for b in batches)
    assert xs == list(range(n // batch_size * batch_size if drop_last else n))
    assert all(isinstance(b, list) and b[1].tolist() == [2 * v for v in b[0].tolist()] for b in batches)


def test_loader_shuffle_sampler_batch_sampler_collate():
    ds = Squares(10)
    mt.manual_seed(0)
    first = _flat(DataLoader(ds, batch_size=3, shuffle=True))
    mt.manual_seed(0)
    assert _flat(DataLoader(ds, batch_size=3, shuffle=True)) == first
    assert sorted(first) == [i * i for i in range(10)] and first != [i * i for i in range(10)]
    by_gen = [_flat(DataLoader(ds, batch_size=4, shuffle=True, generator=_seeded(7))) for _ in range(2)]
    assert by_gen[0] == by_gen[1]
    assert _flat(DataLoader(ds, sampler=[9, 0, 3], batch_size=2)) == [81, 0, 9]
    assert [b.tolist() for b in DataLoader(ds, batch_sampler=[[1, 2], [5]])] == [[1, 4], [25]]
    assert list(DataLoader(ds, batch_size=4, collate_fn=sum)) == [14, 126, 145]
    unbatched = list(DataLoader(ds, batch_size=None))
    assert unbatched == [i * i for i in range(10)]
    arrays = list(DataLoader([np.ones(2)] * 2, batch_size=None))
    assert all(isinstance(a, mt.Tensor) and a.shape == (2,) for a in arrays)


@pytest.mark.parametrize("kwargs", [
    {"shuffle": True, "sampler": [0, 1]},
    {"batch_sampler": [[0]], "batch_size": 2},
    {"batch_sampler": [[0]], "shuffle": True},
    {"batch_sampler": [[0]], "sampler": [0]},
    {"batch_sampler": [[0]], "drop_last": True},
    {"batch_size": None, "drop_last": True},
    {"num_workers": -1},
    {"timeout": -1},
    {"prefetch_factor": 2},
    {"persistent_workers": True},
    {"multiprocessing_context": "fork"},
    {"num_workers": 1, "multiprocessing_context": "no-such-method"},
])
def test_loader_argument_conflicts(kwargs):
    with pytest.raises(ValueError):
        DataLoader(Squares(4), **kwargs)


@pytest.mark.parametrize("kwargs", [{"shuffle": True}, {"sampler": [0]}, {"batch_sampler": [[0]]}])
def test_iterable_loader_refuses_sampling_options(kwargs):
    with pytest.raises(ValueError, match=f"unspecified {next(iter(kwargs))}"):
        DataLoader(Stream(4), **kwargs)


def test_loader_attributes_are_frozen():
    loader = DataLoader(Squares(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute"):
        loader.batch_size = 3
    loader.num_workers = 0  # not one of the frozen attributes, as in torch


def test_iterable_dataset_in_main_process():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert list(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]
    assert len(DataLoader(SizedStream(7), batch_size=3)) == 3
    with pytest.raises(TypeError):
        len(DataLoader(Stream(7), batch_size=3))
    assert get_worker_info() is None


def test_makemore_infinite_loader():
    """Karpathy's makemore InfiniteDataLoader, with only the imports changed."""
    class InfiniteDataLoader:
        def __init__(self, dataset, **kwargs):
            train_sampler = RandomSampler(dataset, replacement=True, num_samples=int(1e10))
            self.train_loader = DataLoader(dataset, sampler=train_sampler, **kwargs)
            self.data_iter = iter(self.train_loader)

        def next(self):
            try:
                batch = next(self.data_iter)
            except StopIteration:
                self.data_iter = iter(self.train_loader)
                batch = next(self.data_iter)
            return batch

    ds = TensorDataset(mt.arange(40).reshape(20, 2), mt.arange(20))
    loader = InfiniteDataLoader(ds, batch_size=5, pin_memory=True, num_workers=0)
    for _ in range(3):
        x, y = loader.next()
        assert x.shape == (5, 2) and (x.numpy()[:, 0] == 2 * y.numpy()).all()


# ---------------------------------------------------------------------------------------------------
# DataLoader with worker processes

def _stopped(workers):
    return all(not w.is_alive() for w in workers)


def test_workers_give_the_same_batches_as_main_process():
    ds = TensorDataset(mt.arange(46).reshape(23, 2), mt.arange(23))
    runs = []
    for workers in (0, 2):
        mt.manual_seed(123)
        runs.append([[t.tolist() for t in b] for b in DataLoader(ds, batch_size=4, shuffle=True,
                                                                 num_workers=workers)])
    assert runs[0] == runs[1] and len(runs[0]) == 6
    same = [[t.tolist() for t in b] for b in DataLoader(ds, batch_size=5, num_workers=3, drop_last=True)]
    assert same == [[t.tolist() for t in b] for b in DataLoader(ds, batch_size=5, drop_last=True)]
    assert _flat(DataLoader(SlowFirst(6), batch_size=1, num_workers=2)) == list(range(6))


def test_prefetch_keeps_tasks_in_flight():
    it = iter(DataLoader(Squares(40), batch_size=1, num_workers=2, prefetch_factor=3))
    assert it._send_idx == 6  # prefetch_factor tasks per worker sent at the start
    next(it)
    assert it._send_idx == 7  # one more sent for each batch returned
    workers = it._workers
    del it
    assert _stopped(workers)


def test_iterable_dataset_with_workers():
    whole = _flat(DataLoader(Stream(10), batch_size=3, num_workers=2))
    assert sorted(whole) == sorted(list(range(10)) * 2)  # every worker iterates its own copy
    batches = [b.tolist() for b in DataLoader(Stream(10), batch_size=3, num_workers=2)]
    assert batches[:2] == [[0, 1, 2], [0, 1, 2]]  # round robin between the workers
    split = [b.tolist() for b in DataLoader(Stream(10, split=True), batch_size=3, num_workers=2)]
    assert split == [[0, 2, 4], [1, 3, 5], [6, 8], [7, 9]]
    dropped = _flat(DataLoader(Stream(10, split=True), batch_size=3, num_workers=2, drop_last=True))
    assert dropped == [0, 2, 4, 1, 3, 5]
    assert sorted(DataLoader(Stream(5, split=True), batch_size=None, num_workers=2)) == [0, 1, 2, 3, 4]


def test_worker_exception_is_reraised_with_worker_id():
    it = iter(DataLoader(FailsAt(3), batch_size=1, num_workers=2))
    workers = it._workers
    assert [next(it).item() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError) as info:
        next(it)
    message = str(info.value)
    assert "worker process 1" in message and "cannot load item 3" in message
    assert "Traceback" in message and "__getitem__" in message
    assert _stopped(workers)
    with pytest.raises(StopIteration):
        next(it)


def test_worker_that_dies_is_reported():
    it = iter(DataLoader(DiesAt(6), batch_size=1, num_workers=2))
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(it)
    assert _stopped(it._workers)


def test_unpicklable_batch_is_an_error_not_a_hang():
    loader = DataLoader(Squares(4), batch_size=2, num_workers=1, collate_fn=lambda batch: (lambda: batch))
    with pytest.raises(Exception, match="pickle"):
        next(iter(loader))


def test_timeout_is_honoured():
    it = iter(DataLoader(Slow(4), batch_size=1, num_workers=1, timeout=0.2))
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="timed out after 0.2 seconds"):
        next(it)
    assert time.perf_counter() - t0 < 0.9  # raised before the item could have arrived
    assert _stopped(it._workers)


def test_workers_stop_when_iterator_is_deleted_or_exhausted():
    it = iter(DataLoader(Squares(100), batch_size=2, num_workers=2))
    next(it)
    workers = it._workers
    assert not _stopped(workers)
    del it
    gc.collect()
    assert _stopped(workers) and all(w.exitcode == 0 for w in workers)  # asked to stop, not killed
    it = iter(DataLoader(Squares(6), batch_size=2, num_workers=2))
    assert len(list(it)) == 3 and _stopped(it._workers)


def test_worker_seeds_and_init_fn():
    def load():
        loader = DataLoader(WhoLoads(), batch_size=None, num_workers=2, worker_init_fn=_record_init)
        return list(loader)

    mt.manual_seed(99)
    items = load()
    mt.manual_seed(99)
    again = load()
    for a, b in zip(items, again, strict=True):
        assert {k: a[k] for k in a if k != "pid"} == {k: b[k] for k in b if k != "pid"}
    w0, w1 = items[0], items[1]
    assert (w0["id"], w1["id"]) == (0, 1) and w1["seed"] == w0["seed"] + 1
    assert w0["randn"] != w1["randn"] and w0["random"] != w1["random"] and w0["pid"] != w1["pid"]
    for item in (w0, w1):  # the worker's generator was seeded with its seed before worker_init_fn ran
        mt.manual_seed(item["seed"])
        assert np.allclose(mt.randn(3).tolist(), item["init"])


def test_worker_info_is_read_only():
    info = WorkerInfo(id=1, num_workers=2, seed=7, dataset=None)
    assert (info.id, info.num_workers, info.seed) == (1, 2, 7) and "seed=7" in repr(info)
    with pytest.raises(RuntimeError, match="cannot assign"):
        info.id = 0


def test_persistent_workers_are_reused():
    loader = DataLoader(WhoLoads(), batch_size=None, num_workers=2, persistent_workers=True)
    pids = [{item["pid"] for item in loader} for _ in range(2)]
    assert pids[0] == pids[1] and len(pids[0]) == 2
    workers = loader._iterator._workers
    stream = DataLoader(Stream(6, split=True), batch_size=2, num_workers=2, persistent_workers=True)
    half = iter(stream)
    next(half)  # leave the first epoch unfinished: its leftover replies must not leak into the next
    assert [_flat(stream) for _ in range(2)] == [[0, 2, 1, 3, 4, 5]] * 2
    shuffled = DataLoader(Squares(12), batch_size=2, shuffle=True, num_workers=2, persistent_workers=True)
    half = iter(shuffled)
    next(half)
    for _ in range(2):  # a new order each epoch, and no batch of the unfinished one in it
        assert sorted(_flat(shuffled)) == [i * i for i in range(12)]
    del loader, stream, shuffled, half
    gc.collect()
    assert _stopped(workers)


def test_spawn_context_with_picklable_dataset():
    ds = TensorDataset(mt.arange(10), mt.arange(10) * 3)
    loader = DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    got = [[t.tolist() for t in b] for b in loader]
    assert got == [[t.tolist() for t in b] for b in DataLoader(ds, batch_size=4)]


def test_mingpt_style_loop():
    """minGPT's trainer: an endless random sampler, workers, pin_memory, next() a few times, then drop."""
    block = 8
    data = mt.tensor(np.arange(200) % 17)
    ds = TensorDataset(mt.stack([data[i:i + block] for i in range(100)]),
                       mt.stack([data[i + 1:i + 1 + block] for i in range(100)]))
    train_loader = DataLoader(ds, sampler=RandomSampler(ds, replacement=True, num_samples=int(1e10)),
                              shuffle=False, pin_memory=True, batch_size=16, num_workers=2)
    data_iter = iter(train_loader)
    workers = data_iter._workers
    for _ in range(4):
        batch = next(data_iter)
        assert isinstance(batch, list) and len(batch) == 2
        x, y = batch
        assert x.shape == y.shape == (16, block) and x.dtype == mt.int64
        assert (x.numpy()[:, 1:] == y.numpy()[:, :-1]).all()
    assert len(train_loader) == int(1e10) // 16
    del data_iter
    assert _stopped(workers)


# ---------------------------------------------------------------------------------------------------
# cross-checks against torch.utils.data

def _canon(x):
    """A plain structure to compare a collate result from either library: containers by kind and type
    name, tensors by dtype name, shape and values."""
    if isinstance(x, mt.Tensor):
        return ("tensor", str(x.dtype), x.shape, x.tolist())
    if type(x).__module__.startswith("torch") and hasattr(x, "dtype"):
        return ("tensor", str(x.dtype).removeprefix("torch."), tuple(x.shape), x.tolist())
    if isinstance(x, dict):
        return (type(x).__name__, {k: _canon(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_canon(v) for v in x])
    return ("leaf", x)


COLLATE_CASES = [
    [1, 2, 3],
    [1.5, 2.0],
    [True, False],
    [True, 2],
    [1, 2.5],
    [np.float64(1), np.float64(2)],
    [np.float32(1)],
    [np.int32(3), np.int32(4)],
    ["a", "b"],
    [(1, 2.0), (3, 4.0)],
    [[1, 2], [3, 4]],
    [{"x": 1, "y": [1.0, 2.0]}, {"x": 2, "y": [3.0, 4.0]}],
    [Point(1, 2.0), Point(3, 4.0)],
    [np.zeros((2, 3), np.float16), np.ones((2, 3), np.float16)],
    [np.array(3), np.array(4)],
    [{"pt": Point(np.arange(2), "s"), "n": (True, 1.0)}] * 3,
]


@pytest.mark.parametrize("batch", COLLATE_CASES, ids=range(len(COLLATE_CASES)))
def test_default_collate_matches_torch(batch):
    torch = pytest.importorskip("torch")
    assert _canon(default_collate(batch)) == _canon(torch.utils.data.default_collate(batch))


def test_samplers_match_torch():
    torch = pytest.importorskip("torch")
    tud = torch.utils.data
    for n, batch_size, drop_last in itertools.product([0, 1, 7, 12], [1, 3, 5], [False, True]):
        ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
        theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), batch_size, drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        assert list(SequentialSampler(range(n))) == list(tud.SequentialSampler(range(n)))


def test_loader_len_matches_torch():
    torch = pytest.importorskip("torch")
    tud = torch.utils.data

    class TorchSizedStream(tud.IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n

    for n, batch_size, drop_last in itertools.product([1, 7, 12], [1, 3, 5, None], [False, True]):
        if batch_size is None and drop_last:
            continue
        kw = {"batch_size": batch_size, "drop_last": drop_last}
        assert len(DataLoader(Squares(n), **kw)) == len(tud.DataLoader(list(range(n)), **kw))
        assert len(DataLoader(SizedStream(n), **kw)) == len(tud.DataLoader(TorchSizedStream(n), **kw))
        sampler_kw = {"replacement": True, "num_samples": 3 * n + 1}
        ours = DataLoader(Squares(n), sampler=RandomSampler(range(n), **sampler_kw), **kw)
        theirs = tud.DataLoader(list(range(n)), sampler=tud.RandomSampler(range(n), **sampler_kw), **kw)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize("n, lengths", [
    (10, [0.3, 0.3, 0.4]), (11, [0.5, 0.5]), (7, [0.1, 0.1, 0.8]), (13, [0.25, 0.25, 0.25, 0.25]),
    (5, [0.5, 0.5]), (10, [3, 7]), (10, [0, 10]), (3, [0.2, 0.2, 0.6]),
])
def test_random_split_lengths_match_torch(n, lengths):
    torch = pytest.importorskip("torch")
    ours = [len(s) for s in random_split(range(n), lengths)]
    theirs = [len(s) for s in torch.utils.data.random_split(range(n), lengths)]
    assert ours == theirs


@pytest.mark.parametrize("kwargs", [
    {"shuffle": True, "sampler": [0, 1]},
    {"batch_sampler": [[0]], "batch_size": 2},
    {"batch_sampler": [[0]], "drop_last": True},
    {"batch_size": None, "drop_last": True},
    {"batch_sampler": [[0]]},
    {"batch_size": None, "shuffle": True},
])
def test_argument_conflicts_match_torch(kwargs):
    torch = pytest.importorskip("torch")

    def raises(make):
        try:
            make()
        except ValueError:
            return True
        return False

    assert raises(lambda: DataLoader(Squares(4), **kwargs)) == raises(
        lambda: torch.utils.data.DataLoader(list(range(4)), **kwargs))


# ---- DistributedSampler ---------------------------------------------------------------------------------------
@given(n=st.integers(0, 40), replicas=st.integers(1, 5), drop_last=st.booleans(), seed=st.integers(0, 99),
       epoch=st.integers(0, 3))
def test_distributed_sampler_partitions_the_dataset(n, replicas, drop_last, seed, epoch):
    from minitransformer.utils.data import DistributedSampler

    parts = []
    for rank in range(replicas):
        s = DistributedSampler(range(n), replicas, rank, shuffle=True, seed=seed, drop_last=drop_last)
        s.set_epoch(epoch)
        parts.append(list(s))
        assert len(parts[-1]) == len(s)
    assert len({len(p) for p in parts}) == 1                      # every rank gets the same count
    everything = [i for p in parts for i in p]
    if drop_last:
        assert len(set(everything)) == len(everything) == replicas * (n // replicas)
    else:
        assert set(everything) == set(range(n)) and len(everything) == replicas * -(-n // replicas)
    again = DistributedSampler(range(n), replicas, 0, shuffle=True, seed=seed, drop_last=drop_last)
    again.set_epoch(epoch)
    assert list(again) == parts[0]                                # the same permutation on every call


def test_distributed_sampler_matches_torch_without_shuffle():
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler

    from minitransformer.utils.data import DistributedSampler

    for n, replicas, drop_last in [(10, 3, False), (10, 3, True), (7, 4, False), (2, 5, False), (9, 3, True)]:
        for rank in range(replicas):
            ours = list(DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last))
            theirs = list(TorchSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last))
            assert ours == theirs, (n, replicas, rank, drop_last)
    with pytest.raises(ValueError, match="rank"):
        DistributedSampler(range(4), 2, 2)
