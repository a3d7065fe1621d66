"""Checkpoints: a directory that always holds one complete, verified training state.

    checkpoint.json          what the checkpoint is: model config, tokenizer, optimizer options, step,
                             RNG states, training options, loss history, the size and SHA-256 of each file
                             below, and the SHA-256 of checkpoint.json itself (`manifest_sha256`)
    model-<step>.safetensors the model's state_dict
    optim-<step>.safetensors the optimizer's arrays (Adam moments)
    tokenizer.json           the tokenizer, also readable alone

Every file is written atomically (temporary file in the same directory, fsync, rename). The weight files of
a new checkpoint get new names; checkpoint.json, replaced last, is what makes them current; the previous
ones are deleted only after that. Killing the process at any moment therefore leaves the last complete
checkpoint in place; the temporary file a killed write leaves behind is removed by the next save.

The directory is a trust boundary: whatever it holds, loading ends in a correct load or a CheckpointError
naming the file and what is wrong, before anything large is read or allocated. checkpoint.json is checked
against its own checksum and against checkpoint_schema (every field the library reads); the weight files
must be plain files inside the directory (bare names, no symbolic links) whose size matches the one
recorded (or, for checkpoints written before sizes were recorded, the one their safetensors header
declares), whose dtypes are the model's, whose checksums match and whose values are finite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint_schema as schema
from .atomic import atomic_write_bytes
from .safetensors import Entry, deserialize, header_length, parse_header, serialize

FORMAT = "minitransformer-checkpoint"
VERSION = 1
MAX_MANIFEST_BYTES = 64 * 2**20
FLOAT_DTYPES = ("F16", "F32", "F64")
# entries save() writes itself; a manifest's own values for them are not carried over
_RESERVED = ("format", "version", "step", "files", "sha256", "bytes", "manifest_sha256")
# what atomic_write_bytes leaves behind when killed mid-write: mkstemp's ".<name>.<8 characters>.tmp" for a
# file that save() writes
_TEMP = re.compile(r"\.(checkpoint\.json|tokenizer\.json|(model|optim)-\d{8,}\.safetensors)\.[a-z0-9_]{8}\.tmp")


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or corrupt."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of `doc` without its manifest_sha256 (sorted keys, no spaces, ASCII)."""
    body = {k: v for k, v in doc.items() if k != "manifest_sha256"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii"))


def remove_temporaries(directory: str | Path) -> list[str]:
    """Delete the temporary files that killed writes of a checkpoint left in `directory` (only plain files
    whose names match atomic_write_bytes's pattern for a checkpoint file); returns their names."""
    removed = []
    for entry in os.scandir(directory):
        if _TEMP.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def save(directory: str | Path, step: int, model_state: dict[str, np.ndarray], optim_arrays: dict[str, np.ndarray],
         manifest: dict[str, Any]) -> None:
    """Write a checkpoint for `step`; `manifest` is the JSON-serialisable rest of the state."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    remove_temporaries(d)
    files = {"model": f"model-{step:08d}.safetensors", "optimizer": f"optim-{step:08d}.safetensors"}
    blobs = {"model": serialize(model_state), "optimizer": serialize(optim_arrays)}
    for key, name in files.items():
        atomic_write_bytes(d / name, blobs[key])
    if "tokenizer" in manifest:
        atomic_write_bytes(d / "tokenizer.json", json.dumps(manifest["tokenizer"], ensure_ascii=False).encode())
    doc = {"format": FORMAT, "version": VERSION, "step": step,
           **{k: v for k, v in manifest.items() if k not in _RESERVED}, "files": files,
           "sha256": {k: _sha256(b) for k, b in blobs.items()}, "bytes": {k: len(b) for k, b in blobs.items()}}
    doc["manifest_sha256"] = manifest_digest(doc)
    atomic_write_bytes(d / "checkpoint.json", json.dumps(doc, indent=1, ensure_ascii=False).encode())
    for old in list(d.glob("model-*.safetensors")) + list(d.glob("optim-*.safetensors")):
        if old.name not in files.values():
            old.unlink(missing_ok=True)


def _plain_size(path: Path, what: str) -> int:
    """Size of `path`, which must be a regular file and not a symbolic link (nothing is opened)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the checkpoint in {path.parent} is incomplete)") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(f"{path}: a symbolic link; a checkpoint's {what} must be a plain file inside its "
                              "directory")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    return st.st_size


def _open_plain(path: Path, size: int) -> Any:
    """`path` opened for reading, not following a symbolic link, and checked to be the regular file of
    `size` bytes that _plain_size saw."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be opened ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        os.close(fd)
        raise CheckpointError(f"{path}: replaced while being read")
    return os.fdopen(fd, "rb")


def refuse_to_replace(directory: str | Path, advice: str) -> None:
    """Raise ValueError when `directory` already holds a checkpoint (a command about to write one there would
    replace it): the message names the directory and its step, then `advice` (what to pass instead)."""
    d = Path(directory)
    if not os.path.lexists(d / "checkpoint.json"):
        return
    try:
        step = f"step {read_manifest(d)['step']}"
    except (CheckpointError, OSError):
        step = "unreadable"
    raise ValueError(f"{d} already holds a checkpoint ({step}); {advice}")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """checkpoint.json of the checkpoint in `directory`, checked against its checksum and checkpoint_schema
    (the weight files are neither read nor verified: `load` does that)."""
    meta_path = Path(directory) / "checkpoint.json"
    if not os.path.lexists(meta_path):
        raise CheckpointError(f"no checkpoint in {Path(directory)}: {meta_path.name} not found")
    size = _plain_size(meta_path, "manifest")
    if size > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{meta_path}: {size:,} bytes, more than a checkpoint manifest may hold "
                              f"({MAX_MANIFEST_BYTES:,})")
    with _open_plain(meta_path, size) as f:
        raw = f.read(size)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, or an integer too long to convert
        raise CheckpointError(f"{meta_path}: corrupt checkpoint manifest ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{meta_path}: not a minitransformer checkpoint")
    if "manifest_sha256" in doc:
        try:
            schema.sha256_hex(doc["manifest_sha256"], "manifest_sha256")
            intact = manifest_digest(doc) == doc["manifest_sha256"].lower()
        except schema.SchemaError as e:
            raise CheckpointError(f"{meta_path}: {e}") from None
        except (ValueError, RecursionError):
            intact = False
        if not intact:
            raise CheckpointError(f"{meta_path}: corrupt (its contents do not match its manifest_sha256)")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a minitransformer checkpoint")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{meta_path}: checkpoint version {doc.get('version')!r}, this library reads "
                              f"{VERSION}")
    try:
        schema.check(doc)
    except schema.SchemaError as e:
        raise CheckpointError(f"{meta_path}: {e}") from None
    return doc


def _check_entries(path: Path, doc: dict[str, Any], key: str, entries: dict[str, Entry]) -> None:
    """The tensors a weight file's header declares, against what checkpoint.json says the file holds:
    float dtypes, except the integer weights of the quantized layers; every quantized layer's tensors
    present; the optimizer's arrays named <parameter index>.<state>, as loop._optim_join reads them."""
    integers = schema.quantized_names(doc) if key == "model" else {}
    for name, e in entries.items():
        want = integers.get(name)
        if want is not None and e.dtype != want:
            raise CheckpointError(f"{path}: tensor {name!r} is {e.dtype}; the checkpoint's "
                                  f"{doc['quantization']['bits']}-bit quantization stores {want} there")
        if want is None and e.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} is {e.dtype}; a float model's weights are "
                                  f"{', '.join(FLOAT_DTYPES)}")
        if key == "optimizer" and not re.fullmatch(r"[0-9]+\.\w+", name):
            raise CheckpointError(f"{path}: tensor {name!r} is not named <parameter index>.<state>")
    for name in integers:
        for part in (name, name.removesuffix("qweight") + "scale"):
            if part not in entries:
                raise CheckpointError(f"{path}: no tensor {part!r}, which checkpoint.json's quantization names")


def _read_weights(d: Path, doc: dict[str, Any], key: str) -> bytes:
    """The bytes of weight file `key`, after every check that needs only its size and header."""
    path = d / doc["files"][key]
    size = _plain_size(path, "weight files")
    recorded = doc.get("bytes", {}).get(key)
    if recorded is not None and size != recorded:
        raise CheckpointError(f"{path}: corrupt or truncated ({size:,} bytes; checkpoint.json records "
                              f"{recorded:,})")
    if key == "model":
        try:
            schema.check_weight_file(doc, size, path.name)
        except schema.SchemaError as e:
            raise CheckpointError(f"{d / 'checkpoint.json'}: {e}") from None
    with _open_plain(path, size) as f:
        try:
            n = header_length(f.read(8), size, str(path))
            entries, _ = parse_header(f.read(n), size - 8 - n, str(path))
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        limit = schema.max_data_bytes(doc, key)
        if limit is not None and size - 8 - n > limit:
            raise CheckpointError(f"{path}: {size - 8 - n:,} bytes of data, more than the model that "
                                  f"checkpoint.json's model_config describes can have ({limit:,})")
        _check_entries(path, doc, key, entries)
        f.seek(0)
        blob = f.read(size)
    if len(blob) != size or _sha256(blob) != doc["sha256"][key].lower():
        raise CheckpointError(f"{path}: corrupt or truncated (its SHA-256 does not match checkpoint.json)")
    return blob


def load(directory: str | Path, allow_nonfinite: bool = False
         ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """-> (manifest, model_state, optim_arrays), after checking that every file is complete and intact.
    Weights holding NaN or infinity raise CheckpointError naming them, unless `allow_nonfinite`."""
    d = Path(directory)
    doc = read_manifest(d)
    arrays = {}
    for key in ("model", "optimizer"):
        path = d / doc["files"][key]
        try:
            arrays[key] = deserialize(_read_weights(d, doc, key), str(path))[0]
        except ValueError as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(str(e)) from None
        bad = [name for name, a in arrays[key].items()
               if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad and not allow_nonfinite:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CheckpointError(f"{path}: NaN or infinite values in {len(bad)} tensor(s): {shown} (load with "
                                  "allow_nonfinite=True, or sample/eval --allow-nonfinite, to inspect them)")
    return doc, arrays["model"], arrays["optimizer"]


def load_task(directory: str | Path, task: str, what: str, allow_nonfinite: bool = False
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(manifest, model_state) of a checkpoint written by the job `task` ("lm" when unnamed); another job's
    checkpoint raises CheckpointError saying it is not `what` (e.g. "a classifier's")."""
    doc, state, _ = load(directory, allow_nonfinite)
    if doc.get("task", "lm") != task:
        raise CheckpointError(f"{directory}: a {doc.get('task', 'lm')} checkpoint, not {what}")
    return doc, state


@contextlib.contextmanager
def building(directory: str | Path, doc: dict[str, Any]) -> Iterator[None]:
    """Around building a model from a loaded checkpoint and filling it with its weights: the errors that
    mean the weights do not fit the model that model_config describes (load_state_dict's RuntimeError, a
    ValueError or AttributeError from preparing the layers) become a CheckpointError naming the weight file.

        doc, state = checkpoint.load_task(out, "lm", "a language model's")
        model = GPT(GPTConfig(**doc["model_config"]))
        with checkpoint.building(out, doc):
            model.load_state_dict(state)
    """
    try:
        yield
    except (RuntimeError, ValueError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        why = " ".join(str(e).split())
        raise CheckpointError(f"{Path(directory) / doc['files']['model']}: its weights do not fit the model that "
                              f"checkpoint.json's model_config describes ({why[:500]})") from None
