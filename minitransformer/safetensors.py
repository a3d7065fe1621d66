"""The safetensors file format, read and written with NumPy alone (no dependency on the `safetensors`
package; tests check compatibility with it when it is installed).

Layout: 8 bytes little-endian unsigned header length N, N bytes of JSON header, then the data buffer.
The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the
buffer) and may hold "__metadata__" (a str -> str map). Data is little-endian, C order, packed without
gaps. A file that breaks any of these rules raises ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
           "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
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


def deserialize(buf: bytes, name: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes -> (tensors, metadata). Raises ValueError naming `name` on any defect."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{name}: not a valid safetensors file: {why}")

    if len(buf) < 8:
        raise bad(f"only {len(buf)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER or 8 + n > len(buf):
        raise bad(f"header length {n} does not fit in a file of {len(buf)} bytes (truncated?)")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(buf)[8 + n:]
    spans = []
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {key!r} lacks a valid dtype, shape or data_offsets") from None
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * dtype.itemsize or begin < 0 or end > len(data):
            raise bad(f"tensor {key!r} ({info['dtype']} {list(shape)}) does not fit its data_offsets "
                      f"[{begin}, {end}] in a buffer of {len(data)} bytes (truncated?)")
        spans.append((begin, end))
        out[key] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise bad(f"data offsets overlap or leave a gap at byte {pos}")
        pos = end
    if pos != len(data):
        raise bad(f"{len(data) - pos} bytes after the last tensor")
    return out, metadata


def save_file(tensors: Mapping[str, Any], path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file atomically (a temporary file, fsync, then rename)."""
    from .checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), serialize(tensors, metadata))


def load_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file."""
    return load_file_with_metadata(path)[0]


def load_file_with_metadata(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    path = Path(path)
    return deserialize(path.read_bytes(), str(path))
