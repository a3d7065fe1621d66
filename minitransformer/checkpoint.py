"""Checkpoints: a directory that always holds one complete, verified training state.

    checkpoint.json          what the checkpoint is: model config, tokenizer, optimizer options, step,
                             RNG states, training options, loss history, and the SHA-256 of each file below
    model-<step>.safetensors the model's state_dict
    optim-<step>.safetensors the optimizer's arrays (Adam moments)
    tokenizer.json           the tokenizer, also readable alone

Every file is written atomically (temporary file in the same directory, fsync, rename). The weight files of
a new checkpoint get new names; checkpoint.json, replaced last, is what makes them current; the previous
ones are deleted only after that. Killing the process at any moment therefore leaves the last complete
checkpoint in place. Loading verifies every checksum first and raises `CheckpointError` naming the file
at fault; nothing is loaded half-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "minitransformer-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or corrupt."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # what open() would give; mkstemp's 0600 would hide the file from others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(directory: str | Path, step: int, model_state: dict[str, np.ndarray], optim_arrays: dict[str, np.ndarray],
         manifest: dict[str, Any]) -> None:
    """Write a checkpoint for `step`; `manifest` is the JSON-serialisable rest of the state."""
    from .safetensors import serialize

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {"model": f"model-{step:08d}.safetensors", "optimizer": f"optim-{step:08d}.safetensors"}
    blobs = {"model": serialize(model_state), "optimizer": serialize(optim_arrays)}
    for key, name in files.items():
        atomic_write_bytes(d / name, blobs[key])
    if "tokenizer" in manifest:
        atomic_write_bytes(d / "tokenizer.json", json.dumps(manifest["tokenizer"], ensure_ascii=False).encode())
    doc = {"format": FORMAT, "version": VERSION, "step": step, **manifest, "files": files,
           "sha256": {k: _sha256(b) for k, b in blobs.items()}}
    atomic_write_bytes(d / "checkpoint.json", json.dumps(doc, indent=1, ensure_ascii=False).encode())
    for old in list(d.glob("model-*.safetensors")) + list(d.glob("optim-*.safetensors")):
        if old.name not in files.values():
            old.unlink(missing_ok=True)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """checkpoint.json of the checkpoint in `directory`, checked to be one this library reads (the weight
    files are neither read nor verified: `load` does that)."""
    meta_path = Path(directory) / "checkpoint.json"
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint in {Path(directory)}: {meta_path.name} not found")
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint manifest ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a minitransformer checkpoint")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{meta_path}: checkpoint version {doc.get('version')}, this library reads {VERSION}")
    return doc


def load(directory: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """-> (manifest, model_state, optim_arrays), after checking that every file is complete and intact."""
    from .safetensors import deserialize

    d = Path(directory)
    doc = read_manifest(d)
    arrays = {}
    for key in ("model", "optimizer"):
        path = d / doc["files"][key]
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (the checkpoint in {d} is incomplete)")
        blob = path.read_bytes()
        if _sha256(blob) != doc["sha256"][key]:
            raise CheckpointError(f"{path}: corrupt or truncated (its SHA-256 does not match checkpoint.json)")
        try:
            arrays[key] = deserialize(blob, str(path))[0]
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    return doc, arrays["model"], arrays["optimizer"]


def load_task(directory: str | Path, task: str, what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(manifest, model_state) of a checkpoint written by the job `task` ("lm" when unnamed); another job's
    checkpoint raises CheckpointError saying it is not `what` (e.g. "a classifier's")."""
    doc, state, _ = load(directory)
    if doc.get("task", "lm") != task:
        raise CheckpointError(f"{directory}: a {doc.get('task', 'lm')} checkpoint, not {what}")
    return doc, state
