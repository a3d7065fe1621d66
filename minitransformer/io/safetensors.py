"""The safetensors file format, read and written with NumPy alone (no dependency on the `safetensors`
package; tests check compatibility with it when it is installed).

Layout: 8 bytes little-endian unsigned header length N, N bytes of JSON header, then the data buffer.
The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the
buffer) and may hold "__metadata__" (a str -> str map). Data is little-endian, C order, packed without
gaps. A file that breaks any of these rules raises ValueError naming the file and what is wrong.

`header_length` and `parse_header` read the header alone, so that a caller (checkpoint.load) can compare a
file's declared tensors, dtypes and size with what it expects before reading its data. Sizes are computed
with Python integers: no declared shape can overflow them.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .atomic import atomic_write_bytes

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
           "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
# bytes per value of every dtype a header may declare: BF16 too, which is read (as float32), never written
ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in _DTYPES.items()}, "BF16": 2}
MAX_HEADER = 100 * 2**20


def serialize(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding `tensors` (name -> array)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(np.asarray(tensors[name]))
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if np.dtype(dt) not in _NAMES:
            raise TypeError(f"safetensors: cannot store dtype {arr.dtype} (tensor {name!r})")
        data = arr.astype(dt.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[np.dtype(dt)], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad the header so the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


class Entry(NamedTuple):
    """One tensor as the header declares it; begin and end are offsets into the data buffer."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _bad(name: str, why: str) -> ValueError:
    return ValueError(f"{name}: not a valid safetensors file: {why}")


def header_length(first8: bytes, size: int, name: str = "<bytes>") -> int:
    """N, the header's length, from the first 8 bytes of a file of `size` bytes; checked to fit in it."""
    if len(first8) < 8 or size < 8:
        raise _bad(name, f"only {min(len(first8), size)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", first8[:8])
    if n > MAX_HEADER or 8 + n > size:
        raise _bad(name, f"header length {n} does not fit in a file of {size} bytes (truncated?)")
    return n


def parse_header(raw: bytes, data_size: int, name: str = "<bytes>") -> tuple[dict[str, Entry], dict[str, str]]:
    """The N header bytes -> (entries, metadata), checked against a data buffer of `data_size` bytes: known
    dtypes, shapes of non-negative integers, each entry's offsets exactly its size, and the entries packed
    end to end without overlap, gap or trailing bytes. Sizes are Python integers, so a declared shape as
    large as [2**32, 2**32] is refused here rather than overflowing."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, an integer too long, nesting too deep
        raise _bad(name, f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(name, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(name, "__metadata__ is not a map of strings to strings")
    entries: dict[str, Entry] = {}
    for key, info in header.items():
        dtype = info.get("dtype") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (dtype not in ITEMSIZE or not isinstance(shape, list) or not all(_is_count(s) for s in shape)
                or not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(x) for x in offsets)):
            raise _bad(name, f"entry {key!r} lacks a valid dtype, shape or data_offsets")
        begin, end = offsets
        nbytes = math.prod(shape) * ITEMSIZE[dtype]  # Python ints: no overflow
        if end - begin != nbytes or end > data_size:
            raise _bad(name, f"tensor {key!r} ({dtype} {shape}) does not fit its data_offsets [{begin}, {end}] "
                             f"in a buffer of {data_size} bytes (truncated?)")
        entries[key] = Entry(dtype, tuple(shape), begin, end)
    pos = 0
    for e in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if e.begin != pos:
            raise _bad(name, f"data offsets overlap or leave a gap at byte {pos}")
        pos = e.end
    if pos != data_size:
        raise _bad(name, f"{data_size - pos} bytes after the last tensor")
    return entries, metadata


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def deserialize(buf: bytes, name: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes -> (tensors, metadata). Raises ValueError naming `name` on any defect."""
    n = header_length(buf[:8], len(buf), name)
    entries, metadata = parse_header(buf[8:8 + n], len(buf) - 8 - n, name)
    data = memoryview(buf)[8 + n:]
    return {key: decode(data[e.begin:e.end], e.dtype, e.shape) for key, e in entries.items()}, metadata


def decode(raw: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The bytes of one tensor -> a native-order array; BF16 becomes float32 (exactly: a bfloat16 is the
    top half of a float32)."""
    if dtype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    le = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    return np.frombuffer(raw, dtype=le).reshape(shape).astype(le.newbyteorder("="))


def save_file(tensors: Mapping[str, Any], path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file atomically (a temporary file, fsync, then rename)."""

    atomic_write_bytes(Path(path), serialize(tensors, metadata))


def load_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file."""
    return load_file_with_metadata(path)[0]


def load_file_with_metadata(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    path = Path(path)
    return deserialize(path.read_bytes(), str(path))
