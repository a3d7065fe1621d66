"""Reading the zip files that torch.save writes, without PyTorch and without running code from the file; and
the raw array records that this format and mt.save's share.

A torch.save file (PyTorch >= 1.6) is a zip archive whose entries sit under one folder, <prefix>/:
    data.pkl          the object, pickled; each tensor is a call of torch._utils._rebuild_tensor_v2(storage,
                      storage_offset, size, stride, requires_grad, hooks), its storage a persistent id
                      ('storage', torch.FloatStorage, key, location, numel)
    data/<key>        each storage's raw bytes (numel elements of the storage's dtype)
    byteorder         'little' or 'big' (absent in old files: little), version, .data/serialization_id, ...

data.pkl is read by an unpickler that resolves only the globals listed in `_TorchReader.find_global` (tensor
rebuilding, storage types, dtypes, torch.Size, torch.device, OrderedDict, set, frozenset and the bytes helper
of pickle protocol 2): the same kind of allowlist as torch.load(weights_only=True). Any other global raises
FormatError naming it, before anything is called. Storages and tensors become NumPy arrays and mt.Tensors: a
view that is contiguous in its storage shares the storage's memory (as in torch, so tied weights stay tied);
any other view is copied into a contiguous array. bfloat16 stays bfloat16 where ml_dtypes is installed and
loads as float32 (exactly) otherwise. Sparse, quantized and nested tensors and tensor subclasses are refused,
like every global not listed.
"""

from __future__ import annotations

import _compat_pickle  # pickle's own table of Python 2 -> 3 names
import io
import math
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..dtypes import bfloat16_dtype, is_floating
from ..nn.module import Parameter
from ..tensor import Tensor
from ..xp import device_of, to_device

DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                    "float32", "float64", "complex64", "complex128", "bfloat16"})
_STORAGE_TYPES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
                  "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                  "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                  "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
                  "UntypedStorage": "uint8"}


class FormatError(ValueError):
    """A record or pickle that cannot be read; the message names the file and the entry."""


def numpy_dtype(name: str) -> np.dtype:
    """The dtype an array stored as `name` loads with: itself; bfloat16 without ml_dtypes loads as float32."""
    if name == "bfloat16":
        bf16 = bfloat16_dtype()  # from the optional ml_dtypes package, as mt.bfloat16
        return bf16 if bf16 is not None else np.dtype(np.float32)
    return np.dtype(name)


# ------------------------------------------------------------------------------------------------------
# raw records
# what zipfile raises for a damaged archive: bad CRC or header, a record cut short, a flag it cannot handle
ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


def read_entry(zf: zipfile.ZipFile, entry: str, name: str) -> bytes:
    """The bytes of a small record (a document or a pickle), any zip damage turned into FormatError."""
    try:
        return zf.read(entry)
    except ZIP_ERRORS as e:
        raise FormatError(f"{name}: {entry} is corrupt or truncated ({e})") from None


def read_record(zf: zipfile.ZipFile, entry: str, name: str, archive_size: int, dtype: Any, shape: Any,
                big_endian: bool = False) -> np.ndarray:
    """The array of `shape` stored in record `entry`, checked to be exactly the right size before any memory
    is allocated for it."""
    if dtype not in DTYPES:
        raise FormatError(f"{name}: {entry} has an unsupported dtype {dtype!r}")
    if type(shape) not in (list, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise FormatError(f"{name}: {entry} has an invalid shape {shape!r}")
    stored = np.dtype(np.uint16 if dtype == "bfloat16" else dtype).newbyteorder(">" if big_endian else "<")
    count = math.prod(shape)
    try:
        info = zf.getinfo(entry)
    except KeyError:
        raise FormatError(f"{name}: the record {entry} is missing") from None
    if info.file_size != count * stored.itemsize:
        raise FormatError(f"{name}: {entry} should hold {dtype} {list(shape)} ({count * stored.itemsize} bytes) "
                          f"but holds {info.file_size} bytes")
    if info.compress_type != zipfile.ZIP_STORED:
        raise FormatError(f"{name}: {entry} is compressed; mt.save and torch.save store records uncompressed")
    if info.header_offset + info.file_size > archive_size:
        raise FormatError(f"{name}: {entry} reaches past the end of the file (truncated?)")
    arr = np.empty(count, stored)
    buf, filled = memoryview(arr.view(np.uint8)), 0
    try:
        with zf.open(info) as fh:
            while filled < len(buf):
                n = fh.readinto(buf[filled:])
                if not n:
                    raise EOFError(f"{len(buf) - filled} bytes missing")
                filled += n
            fh.read(1)  # reaching the end makes zipfile compare the CRC-32
    except ZIP_ERRORS as e:
        raise FormatError(f"{name}: {entry} is corrupt or truncated ({e})") from None
    # to native byte order: a relabelling when the file's order is the machine's, a byte swap otherwise
    arr = arr.view(stored.newbyteorder("=")) if stored.isnative else arr.astype(stored.newbyteorder("="))
    if dtype == "bfloat16" and bfloat16_dtype() is not None:
        arr = arr.view(bfloat16_dtype())
    elif dtype == "bfloat16":  # a bfloat16 is the top half of a float32: shifting its bits up is exact
        warnings.warn(f"{name}: bfloat16 tensors are loaded as float32 (exactly; install ml_dtypes to keep "
                      "bfloat16)", stacklevel=2)
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(tuple(shape))


# ------------------------------------------------------------------------------------------------------
# torch.save's archives
class _StorageType:
    """What torch.FloatStorage and friends resolve to: only usable inside a persistent id."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _Storage:
    """One storage record: its flat array on the CPU, where it was saved, and the arrays made from it."""

    __slots__ = ("key", "dtype", "location", "array", "views")

    def __init__(self, key: str, dtype: str, location: str, array: np.ndarray) -> None:
        self.key, self.dtype, self.location, self.array = key, dtype, location, array
        self.views: list[tuple[np.ndarray, np.dtype, int, tuple[int, ...], bool]] = []

    def __repr__(self) -> str:
        return f"<storage {self.key} of {self.array.size} x {self.dtype} at {self.location}>"


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, reader: _TorchReader) -> None:
        super().__init__(io.BytesIO(data))
        self.reader = reader

    def find_class(self, module: str, name: str) -> Any:
        return self.reader.find_global(module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        return self.reader.storage(pid)


class _TorchReader:
    def __init__(self, zf: zipfile.ZipFile, prefix: str, name: str, size: int, big_endian: bool,
                 weights_only_false: bool) -> None:
        self.zf, self.prefix, self.name, self.size, self.big_endian = zf, prefix, name, size, big_endian
        self.weights_only_false = weights_only_false
        self.storages: dict[str, _Storage] = {}
        self.arrays: dict[tuple[Any, ...], np.ndarray] = {}  # one array per distinct view
        self.tensors: list[Tensor] = []
        self.allowed: dict[str, Any] = {
            "collections.OrderedDict": OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset,
            "builtins.bytes": _empty_bytes, "_codecs.encode": _latin1_bytes,
            "torch._utils._rebuild_tensor_v2": self.rebuild_tensor,
            "torch._utils._rebuild_tensor_v3": self.rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": self.rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self.rebuild_parameter,
            "torch.Size": tuple, "torch.device": _device, "torch.storage.UntypedStorage": _StorageType("uint8")}

    def find_global(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as pickle protocol 2 writes them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full in self.allowed:
            return self.allowed[full]
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(_STORAGE_TYPES[name])
        if module == "torch" and name in DTYPES:  # torch.float32 and friends, as values or in _rebuild_tensor_v3
            return numpy_dtype(name)
        why = ("; weights_only=False does not lift this: mt.load never runs code from a file (load it with "
               "PyTorch and save plain tensors instead)" if self.weights_only_false else "")
        raise FormatError(f"mt.load refused to load '{full}' from {self.name}: only tensors, containers and "
                          f"numbers are allowed{why}")

    def storage(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str and type(pid[4]) is int):
            raise FormatError(f"{self.name}: unexpected persistent id {str(pid)[:80]} in {self.prefix}/data.pkl")
        _, kind, key, location, numel = pid
        if key not in self.storages:
            entry = f"{self.prefix}/data/{key}"
            arr = read_record(self.zf, entry, self.name, self.size, kind.dtype, [numel], self.big_endian)
            self.storages[key] = _Storage(key, kind.dtype, str(location), arr)
        st = self.storages[key]
        if st.dtype != kind.dtype or st.array.size != numel:
            raise FormatError(f"{self.name}: storage {key} is declared twice with different types or sizes")
        return st

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any = None, metadata: Any = None, dtype: np.dtype | None = None) -> Tensor:
        if not isinstance(storage, _Storage) or type(requires_grad) is not bool:
            raise FormatError(f"{self.name}: a tensor in {self.prefix}/data.pkl has malformed arguments")
        if dtype is None:
            dtype = storage.array.dtype
        arr = self.view(storage, dtype, offset, tuple(size), tuple(stride))
        if requires_grad and not is_floating(arr.dtype):
            raise FormatError(f"{self.name}: a {arr.dtype} tensor that requires grad (minitransformer tensors "
                              "of that dtype cannot)")
        t = Tensor(arr, requires_grad=requires_grad)
        self.tensors.append(t)
        return t

    def rebuild_tensor_v3(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                          hooks: Any, dtype: Any, metadata: Any = None) -> Tensor:
        """A tensor over an untyped (byte) storage, for dtypes without a storage class (uint16, ...)."""
        if not isinstance(dtype, np.dtype):
            raise FormatError(f"{self.name}: a tensor in {self.prefix}/data.pkl has no valid dtype")
        return self.rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata, dtype)

    def rebuild_parameter(self, data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Parameter:
        if not isinstance(data, Tensor) or type(requires_grad) is not bool or state:
            raise FormatError(f"{self.name}: a parameter in {self.prefix}/data.pkl has arguments mt.load does "
                              "not read (only data and requires_grad)")
        p = Parameter(data.data, requires_grad=requires_grad)
        self.tensors.append(p)
        return p

    def view(self, st: _Storage, dtype: np.dtype, offset: Any, size: tuple, stride: tuple) -> np.ndarray:
        """The array torch's as_strided(storage, size, stride, offset) would see, contiguous; shared with the
        storage (and with identical views) when its elements are contiguous there."""
        flat = st.array
        if dtype != flat.dtype:  # an untyped storage seen as `dtype`
            if flat.dtype != np.uint8 or flat.size % dtype.itemsize:
                raise FormatError(f"{self.name}: storage {st.key} cannot be viewed as {dtype}")
            flat = flat.view(dtype)
        ints = [offset, *size, *stride]
        if len(size) != len(stride) or not all(type(i) is int and i >= 0 for i in ints):
            raise FormatError(f"{self.name}: a tensor on storage {st.key} has an invalid offset, size or stride "
                              f"({offset}, {size}, {stride})")
        key = (st.key, dtype, offset, size, stride)
        if key in self.arrays:
            return self.arrays[key]
        count = math.prod(size)
        last = offset + sum((d - 1) * s for d, s in zip(size, stride, strict=True))
        if count and last >= flat.size:
            raise FormatError(f"{self.name}: a tensor of size {list(size)} at offset {offset} does not fit in "
                              f"storage {st.key} of {flat.size} elements")
        contiguous = _is_contiguous(size, stride)
        if count == 0:
            arr = np.zeros(size, dtype)
        elif contiguous:
            arr = flat[offset:offset + count].reshape(size)
        else:  # a read-only strided window on the storage, copied out
            if count * dtype.itemsize > 8 * self.size + (256 << 20):
                # strides of 0 (an expanded tensor) repeat values: a few bytes on disk could ask for terabytes
                raise FormatError(f"{self.name}: a tensor of size {list(size)} with strides {list(stride)} would "
                                  f"need {count * dtype.itemsize:,} bytes in memory, far more than the file's "
                                  f"{self.size:,}; refused")
            window = as_strided(flat[offset:], size, [s * dtype.itemsize for s in stride], writeable=False)
            arr = window.copy(order="C")
        st.views.append((arr, dtype, offset, size, contiguous and count > 0))
        self.arrays[key] = arr
        return arr

    def place(self, place: Callable[[np.ndarray, str], Any]) -> None:
        """Move each storage where map_location says, and with it every tensor made from it."""
        moved: dict[int, Any] = {}
        for st in self.storages.values():
            target = place(st.array, st.location)
            if target is st.array:
                continue
            for arr, dtype, offset, size, shared in st.views:
                if shared:
                    flat = target if dtype == target.dtype else target.view(dtype)
                    moved[id(arr)] = flat[offset:offset + math.prod(size)].reshape(size)
                else:
                    moved[id(arr)] = to_device(arr, device_of(target))
        for t in self.tensors:
            t.data = moved.get(id(t.data), t.data)


def _is_contiguous(size: tuple, stride: tuple) -> bool:
    expected = 1
    for d, s in zip(reversed(size), reversed(stride), strict=True):
        if d != 1 and s != expected:
            return False
        expected *= d
    return True


def _empty_bytes(*args: Any) -> bytes:
    """builtins.bytes, as pickle protocol 2 uses it: for b'' only."""
    if args:
        raise FormatError("builtins.bytes is only allowed without arguments")
    return b""


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """_codecs.encode, as pickle protocol 2 uses it for bytes: only str -> latin-1."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise FormatError("_codecs.encode is only allowed as pickle uses it for bytes (latin-1)")
    return text.encode("latin-1")


def _device(kind: Any, index: Any = None) -> str:
    if type(kind) is not str or (index is not None and type(index) is not int):
        raise FormatError(f"invalid torch.device({kind!r}, {index!r})")
    return kind if index is None else f"{kind}:{index}"


def read_archive(zf: zipfile.ZipFile, prefix: str, name: str, size: int,
                 place: Callable[[np.ndarray, str], Any], weights_only_false: bool) -> Any:
    """The object in a torch.save archive whose entries live under `prefix`/."""
    has_order = f"{prefix}/byteorder" in zf.namelist()
    order = read_entry(zf, f"{prefix}/byteorder", name) if has_order else b"little"
    if order not in (b"little", b"big"):
        raise FormatError(f"{name}: unknown byte order {order[:20]!r} in {prefix}/byteorder")
    reader = _TorchReader(zf, prefix, name, size, order == b"big", weights_only_false)
    try:
        obj = _Unpickler(read_entry(zf, f"{prefix}/data.pkl", name), reader).load()
    except FormatError:
        raise
    except Exception as e:  # any malformed pickle: truncated, unknown opcode, a call with wrong arguments
        raise FormatError(f"{name}: corrupt {prefix}/data.pkl ({type(e).__name__}: {e})") from None
    reader.place(place)
    return obj
