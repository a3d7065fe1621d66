"""Turning a list of samples into a batch, as `torch.utils.data`: `default_collate` (used when the
DataLoader batches) and `default_convert` (used with `batch_size=None`).

The rules follow the type of the first sample and recurse into containers:

    Tensor                -> mt.stack(samples)              (a new leading batch dimension)
    NumPy array           -> stacked Tensor, dtype kept      (string and object arrays are refused)
    NumPy scalar          -> Tensor of the scalars, dtype kept
    float                 -> float64 Tensor                  (as torch: not the default float32)
    int / bool            -> mt.tensor(samples): int64 / bool
    str / bytes           -> the samples as given (a list; a tuple inside a tuple or namedtuple)
    Mapping               -> the same kind of mapping, each key collated
    namedtuple            -> the same namedtuple, each field collated
    other Sequence        -> a list (tuples too) of the collated positions; lists keep their type
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

import numpy as np

from ...creation import tensor as _tensor
from ...ops.join import stack
from ...tensor import Tensor

_NUMPY_SCALARS = (np.bool_, np.number, np.object_)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _check_numeric(arr: np.ndarray, fn: str) -> None:
    if arr.dtype.kind in "SaUO":
        raise TypeError(f"{fn}: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                        f"found a numpy array of dtype {arr.dtype}")


def _numpy_tensor(x: Any) -> Tensor:
    """A tensor that keeps NumPy's dtype (mt.tensor would turn float64 scalars into float32)."""
    return Tensor(np.array(x))


def default_collate(batch: Sequence[Any]) -> Any:
    """Collate a list of samples into a batch (rules in this module's docstring)."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if isinstance(elem, np.ndarray):
        _check_numeric(elem, "default_collate")
        return stack([Tensor(np.asarray(b)) for b in batch], 0)
    if isinstance(elem, _NUMPY_SCALARS):
        return _numpy_tensor(batch)
    if isinstance(elem, float):
        return _tensor(batch, dtype=np.float64)
    if isinstance(elem, int):
        return _tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        return _same_kind_mapping(elem, {key: default_collate([d[key] for d in batch]) for key in elem})
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(field) for field in zip(*batch, strict=True)))
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(sample) != size for sample in batch):
            sizes = sorted({len(sample) for sample in batch})
            raise RuntimeError(f"default_collate: each element in list of batch should be of equal size, "
                               f"got sizes {sizes}")
        columns = [default_collate(column) for column in zip(*batch, strict=True)]
        if isinstance(elem, tuple):
            return columns
        return _same_kind(elem, columns)
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem)}")


def _same_kind_mapping(like: Mapping, items: dict[Any, Any]) -> Any:
    """`items` in a mapping of `like`'s type: a copy of a mutable mapping updated with them, else
    `type(like)(items)`, else the dict itself (a type that cannot be built from one)."""
    if isinstance(like, MutableMapping):
        clone = copy.copy(like)
        clone.update(items)
        return clone
    try:
        return type(like)(items)
    except TypeError:
        return items


def _same_kind(like: Sequence, items: list[Any]) -> Any:
    """`items` in a sequence of `like`'s type, as torch returns them: a copy of a mutable sequence with its
    items replaced, else `type(like)(items)`, else the list itself (a type that cannot be built from one)."""
    if isinstance(like, MutableSequence):
        clone = copy.copy(like)
        for i, item in enumerate(items):
            clone[i] = item
        return clone
    try:
        return type(like)(items)
    except TypeError:
        return items


def default_convert(data: Any) -> Any:
    """Convert one sample without batching: NumPy arrays and scalars to Tensors, recursing into
    containers; everything else is returned unchanged."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "SaUO" else Tensor(data)
    if isinstance(data, _NUMPY_SCALARS):
        return _numpy_tensor(data)
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, Mapping):
        return _same_kind_mapping(data, {key: default_convert(value) for key, value in data.items()})
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, Sequence):
        return _same_kind(data, [default_convert(d) for d in data])
    return data
