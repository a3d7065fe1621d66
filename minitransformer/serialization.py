"""`save` and `load`, as torch.save and torch.load: a checkpoint dict of tensors, arrays, numbers and strings
in one file.

The format `save` writes is a zip archive (stored, not compressed) that holds no pickle:

    minitransformer.json   {"format": "minitransformer.save", "version": 1, "byteorder": "little",
                            "arrays":  [{"dtype", "shape", "device"}, ...],   array i is the record data/i
                            "tensors": [{"kind", "array", "requires_grad"}, ...],
                            "root": the saved object, as tagged JSON (see `_Writer.encode`)}
    data/0, data/1, ...    each array's bytes, little-endian, C order

Loading it builds nothing but containers, numbers, strings, arrays and Tensors, so it never runs code from the
file. Tensors that share one array (tied weights in a state dict) share it again after loading; the same
Tensor object saved twice loads as one object. `load` also reads the zip files that torch.save writes
(`io/torch_format.py`, with the same guarantee). It deliberately does not read pickles, TorchScript archives or
torch's legacy (pre-1.6) format. docs/pytorch.md ("Saving and loading") describes both formats and map_location.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .dtypes import is_floating
from .io import torch_format
from .io.atomic import atomic_write_bytes
from .nn.module import Parameter
from .tensor import Tensor
from .xp import device_of, normalize_device, to_device

FORMAT = "minitransformer.save"
VERSION = 1
DOC = "minitransformer.json"
DTYPES = torch_format.DTYPES  # dtype names either format stores: bool, (u)int8-64, float16-64, complex, bfloat16
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same object always gives the same bytes
_LEGACY_TORCH = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch < 1.6 files


class SerializationError(ValueError):
    """A file that `load` cannot read: not ours nor PyTorch's, corrupt, truncated, or holding code."""


# ------------------------------------------------------------------------------------------------------
# save
def save(obj: Any, f: str | os.PathLike | BinaryIO, pickle_module: Any = None, pickle_protocol: Any = None,
         _use_new_zipfile_serialization: bool = True) -> None:
    """Write `obj` (nested dict/list/tuple/set of Tensors, NumPy arrays, numbers, strings, bytes, None) to
    `f`, a path (written atomically: the old file stays whole until the new one is complete) or a binary
    file object. The pickle arguments of torch.save are accepted and ignored: no pickle is written.
    Raises TypeError naming the place in `obj` of anything else (a Module, a function, a class instance)."""
    writer = _Writer()
    root = writer.encode(obj, "obj")
    doc = {"format": FORMAT, "version": VERSION, "byteorder": "little", "arrays": writer.meta,
           "tensors": writer.tensors, "root": root}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(zipfile.ZipInfo(DOC, _FIXED_TIME), json.dumps(doc, separators=(",", ":"), allow_nan=False))
        for i, arr in enumerate(writer.arrays):
            info = zipfile.ZipInfo(f"data/{i}", _FIXED_TIME)
            info.file_size = arr.nbytes  # lets zipfile pick zip64 up front for records past 2 GiB
            with zf.open(info, "w") as out:
                out.write(_record_bytes(arr))
    if isinstance(f, (str, os.PathLike)):
        atomic_write_bytes(Path(f), buf.getvalue())
    else:
        f.write(buf.getbuffer())


def _record_bytes(arr: np.ndarray) -> memoryview:
    """The raw bytes of a contiguous little-endian host array (any dtype, 0-d included)."""
    return memoryview(arr.reshape(-1).view(np.uint8))


class _Writer:
    """Turns the object into tagged JSON. JSON's own null, true/false, integers, finite floats, strings and
    arrays stand for None, bool, int, float, str and list; every JSON object is a one-key tag:
    {"$float": "nan"|"inf"|"-inf"}, {"$tuple": [...]}, {"$dict"|"$odict": [[key, value], ...]} (keys of any
    type this encodes, order kept), {"$set"|"$frozenset": [...]}, {"$bytes": base64}, {"$dtype": name},
    {"$tensor": i} (entry i of the tensor table: a Tensor, Parameter, NumPy array or NumPy scalar)."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []  # host copies, contiguous little-endian, in record order
        self.meta: list[dict[str, Any]] = []
        self.tensors: list[dict[str, Any]] = []
        self._array_ids: dict[int, int] = {}  # id(array object) -> record index
        self._tensor_ids: dict[int, int] = {}  # id(Tensor / ndarray object) -> tensor table index
        self._alive: list[Any] = []  # keeps every id above valid while saving
        self._open: set[int] = set()  # containers being encoded, to refuse cycles

    def encode(self, obj: Any, path: str) -> Any:
        t = type(obj)
        if obj is None or t in (bool, int, str):
            return obj
        if t is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if t is bytes:
            return {"$bytes": base64.b64encode(obj).decode("ascii")}
        if isinstance(obj, Tensor) or isinstance(obj, np.generic) or _is_array(obj):
            return {"$tensor": self._tensor(obj, path)}
        if isinstance(obj, np.dtype):
            return {"$dtype": self._dtype_name(obj, path)}
        if t in (list, tuple, dict, OrderedDict, set, frozenset):
            if id(obj) in self._open:
                raise TypeError(f"mt.save: {path} contains itself (a reference cycle); cannot save it")
            self._open.add(id(obj))
            try:
                if t is list:
                    return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]
                if t is tuple:
                    return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]}
                if t in (set, frozenset):
                    return {"$" + t.__name__: [self.encode(v, f"{path}{{...}}") for v in obj]}
                tag = "$odict" if t is OrderedDict else "$dict"
                return {tag: [[self.encode(k, f"{path} key {k!r}"), self.encode(v, f"{path}[{k!r}]")]
                              for k, v in obj.items()]}
            finally:
                self._open.discard(id(obj))
        hint = " (save model.state_dict() instead)" if hasattr(obj, "state_dict") else (
            " (save its state_dict() or a dict of plain values instead)")
        raise TypeError(f"mt.save cannot save {path}: an object of type {t.__module__}.{t.__qualname__}; "
                        f"only tensors, NumPy arrays, numbers, strings, bytes, None and dict/list/tuple/set of "
                        f"them can be saved{hint}")

    def _tensor(self, obj: Any, path: str) -> int:
        if id(obj) in self._tensor_ids:
            return self._tensor_ids[id(obj)]
        if isinstance(obj, Tensor):
            kind = "parameter" if isinstance(obj, Parameter) else "tensor"
            arr, requires_grad = obj.data, obj.requires_grad
        else:
            kind = "scalar" if isinstance(obj, np.generic) else "ndarray"
            arr, requires_grad = np.asarray(obj) if kind == "scalar" else obj, False
        self.tensors.append({"kind": kind, "array": self._array(arr, path), "requires_grad": requires_grad})
        self._tensor_ids[id(obj)] = len(self.tensors) - 1
        self._alive.append(obj)
        return len(self.tensors) - 1

    def _array(self, arr: Any, path: str) -> int:
        if id(arr) in self._array_ids:
            return self._array_ids[id(arr)]
        name = self._dtype_name(arr.dtype, path)
        host = to_device(arr, "cpu")  # a CuPy array is copied to the host here
        if host.dtype.byteorder == ">" or not host.flags.c_contiguous:
            host = host.astype(host.dtype.newbyteorder("<"), order="C")  # (np.ascontiguousarray makes 0-d 1-d)
        self.arrays.append(host)
        self.meta.append({"dtype": name, "shape": list(host.shape), "device": device_of(arr)})
        self._array_ids[id(arr)] = len(self.arrays) - 1
        self._alive.append(arr)
        return len(self.arrays) - 1

    @staticmethod
    def _dtype_name(dtype: np.dtype, path: str) -> str:
        if dtype.name not in DTYPES:
            raise TypeError(f"mt.save cannot save {path}: dtype {dtype} is not supported (supported: "
                            f"{', '.join(sorted(DTYPES))})")
        return dtype.name


def _is_array(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or (type(obj).__module__.startswith("cupy") and hasattr(obj, "dtype"))


# ------------------------------------------------------------------------------------------------------
# load
def load(f: str | os.PathLike | BinaryIO, map_location: Any = None, pickle_module: Any = None, *,
         weights_only: bool | None = True, mmap: bool | None = None) -> Any:
    """Read what `save` wrote, or a zip file written by torch.save (tensors come back as mt.Tensor).

    map_location says where tensors go: None or 'cpu' (the CPU, whatever device they were saved from),
    'cuda' / 'cuda:N' / a torch.device-like object (the GPU, through CuPy), a dict {saved location: device}
    ('cpu' for locations it does not name), or a callable fn(storage, location) that gets each storage as a
    1-D CPU Tensor and returns it on the device wanted (None for the CPU). Neither format ever runs code from
    the file, so weights_only=False changes nothing but the wording of the error for a PyTorch file that
    holds Python objects other than tensors, containers and numbers. mmap is accepted and ignored: the
    data is always read into memory. pickle_module must be None (no pickle module is used)."""
    if pickle_module is not None and pickle_module.__name__ != "pickle":
        raise TypeError("mt.load uses no pickle module; pass pickle_module=None")
    place = _placement(map_location)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return _load_stream(fh, str(f), place, weights_only)
    name = str(getattr(f, "name", None) or f"<{type(f).__name__}>")
    if not getattr(f, "seekable", lambda: False)():
        f = io.BytesIO(f.read())
    return _load_stream(f, name, place, weights_only)


def _load_stream(fh: BinaryIO, name: str, place: Callable[[np.ndarray, str], Any], weights_only: Any) -> Any:
    start = fh.tell()
    head = fh.read(len(_LEGACY_TORCH))
    end = fh.seek(0, os.SEEK_END)  # records must lie before this: checked before reading any
    fh.seek(start)
    if head.startswith(_LEGACY_TORCH):
        raise SerializationError(f"{name}: written by torch.save in PyTorch's legacy format (torch < 1.6 or "
                                 "_use_new_zipfile_serialization=False), which mt.load does not read; load it with "
                                 "PyTorch and save it again with a recent torch.save")
    if head[:1] == b"\x80":
        raise SerializationError(f"{name}: a plain pickle, which mt.load does not read (unpickling can run "
                                 "arbitrary code); save the tensors with mt.save or torch.save instead")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise SerializationError(f"{name}: not a file written by mt.save or torch.save"
                                 + (" (the file is empty)" if end == start else ""))
    try:
        zf = zipfile.ZipFile(fh)
        names = zf.namelist()
    except torch_format.ZIP_ERRORS as e:
        raise SerializationError(f"{name}: corrupt or truncated zip archive ({e})") from None
    try:
        if DOC in names:
            return _read_ours(zf, name, end, place)
        prefix = names[0].split("/", 1)[0] if names else ""
        if f"{prefix}/constants.pkl" in names or any(n.startswith(f"{prefix}/code/") for n in names):
            raise SerializationError(f"{name}: a TorchScript archive (torch.jit.save), which mt.load does not "
                                     "read; save the model's state_dict() with torch.save instead")
        if f"{prefix}/data.pkl" in names:
            return torch_format.read_archive(zf, prefix, name, end, place, weights_only is False)
        raise SerializationError(f"{name}: a zip archive, but not one written by mt.save or torch.save "
                                 f"(it holds neither {DOC} nor <archive>/data.pkl)")
    except torch_format.FormatError as e:
        raise SerializationError(str(e)) from None
    finally:
        zf.close()


def _placement(map_location: Any) -> Callable[[np.ndarray, str], Any]:
    """map_location -> place(cpu_array, saved_location), which returns the array on its device."""
    if map_location is None:
        return lambda arr, loc: arr
    if isinstance(map_location, dict):
        table = {str(k): normalize_device(v) for k, v in map_location.items()}
        return lambda arr, loc: to_device(arr, table.get(loc, "cpu"))
    if callable(map_location):
        def place(arr: np.ndarray, loc: str) -> Any:
            out = map_location(Tensor(arr.reshape(-1)), loc)
            if out is None:
                return arr
            device = out.device if isinstance(out, Tensor) else device_of(out)
            return to_device(arr, normalize_device(device))
        return place
    device = normalize_device(str(map_location))
    return lambda arr, loc: to_device(arr, device)


def _read_ours(zf: zipfile.ZipFile, name: str, size: int, place: Callable[[np.ndarray, str], Any]) -> Any:
    try:
        doc = json.loads(torch_format.read_entry(zf, DOC, name))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SerializationError(f"{name}: corrupt {DOC} ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SerializationError(f"{name}: {DOC} does not describe a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise SerializationError(f"{name}: {FORMAT} version {doc.get('version')!r}; this library reads "
                                 f"version {VERSION}")
    entry = DOC
    try:
        records = []
        for i, meta in enumerate(doc["arrays"]):
            entry = f"data/{i}"
            records.append((torch_format.read_record(zf, entry, name, size, meta["dtype"], meta["shape"],
                                                     big_endian=doc["byteorder"] == "big"), meta["device"]))
    except _MALFORMED as e:
        raise _malformed(name, entry, e) from None
    arrays = [place(arr, location) for arr, location in records]  # map_location's errors are not the file's
    try:
        tensors = []
        for i, t in enumerate(doc["tensors"]):
            entry = f"tensor {i} of {DOC}"
            if not (type(t["array"]) is int and 0 <= t["array"] < len(arrays)):
                raise IndexError(f"no array {t['array']!r}")
            tensors.append(_build(t["kind"], arrays[t["array"]], t["requires_grad"]))
        entry = f"root of {DOC}"
        return _decode(doc["root"], tensors)
    except _MALFORMED as e:
        raise _malformed(name, entry, e) from None


_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError)


def _malformed(name: str, entry: str, e: Exception) -> Exception:
    if isinstance(e, torch_format.FormatError):
        return e
    return SerializationError(f"{name}: malformed {entry} ({type(e).__name__}: {e})")


def _build(kind: str, arr: Any, requires_grad: bool) -> Any:
    if type(requires_grad) is not bool or (requires_grad and not is_floating(arr.dtype)):
        raise ValueError(f"requires_grad={requires_grad!r} for a {arr.dtype} array")
    if kind == "tensor":
        return Tensor(arr, requires_grad=requires_grad)
    if kind == "parameter":
        return Parameter(arr, requires_grad=requires_grad)
    if kind == "ndarray":
        return arr
    if kind == "scalar" and arr.ndim == 0:
        return to_device(arr, "cpu")[()]
    raise ValueError(f"unknown tensor kind {kind!r}")


def _decode(v: Any, tensors: list[Any]) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is list:
        return [_decode(x, tensors) for x in v]
    if type(v) is not dict or len(v) != 1:
        raise ValueError(f"unexpected JSON value {str(v)[:60]}")
    ((tag, body),) = v.items()
    if tag == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "$tensor" and type(body) is int and 0 <= body < len(tensors):
        return tensors[body]
    if tag == "$bytes":
        return base64.b64decode(body, validate=True)
    if tag == "$dtype" and body in DTYPES:
        return torch_format.numpy_dtype(body)
    if tag in ("$tuple", "$set", "$frozenset") and type(body) is list:
        return {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag](_decode(x, tensors) for x in body)
    if tag in ("$dict", "$odict") and type(body) is list:
        items = ((_decode(k, tensors), _decode(x, tensors)) for k, x in body)
        return OrderedDict(items) if tag == "$odict" else dict(items)
    raise ValueError(f"unknown tag {tag!r}")
