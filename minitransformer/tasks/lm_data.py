"""Text data for the language-model job: the built-in corpus, tokenising a file of any size into a memmap,
the 90/10 train/val split, and random batches of block_size windows.

The built-in corpus needs no download: the Python standard library's own source files, a fixed sorted
selection of about 1 MB found through `sysconfig`, so it exists wherever Python does.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..text.tokenizers import ByteBPETokenizer, CharTokenizer, Tokenizer

STDLIB_TARGET_BYTES = 1_000_000
CHUNK_CHARS = 1 << 20


def stdlib_files(target_bytes: int = STDLIB_TARGET_BYTES) -> list[Path]:
    """Top-level modules of the standard library, sorted by name, until about target_bytes of source."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_") or not path.is_file():
            continue
        size = path.stat().st_size
        if size > 120_000:  # keep many modules rather than a few huge ones
            continue
        out.append(path)
        total += size
        if total >= target_bytes:
            break
    if not out:
        raise FileNotFoundError(f"no standard-library sources found under {root}")
    return out


def stdlib_corpus(files: list[Path] | None = None) -> str:
    """The built-in corpus as one string (the files of `stdlib_files()` joined by blank lines)."""
    files = stdlib_files() if files is None else files
    return "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def read_chunks(path: Path) -> Iterator[str]:
    """A UTF-8 text file in pieces of about CHUNK_CHARS characters (never the whole file at once)."""
    try:
        with open(path, encoding="utf-8") as f:
            while chunk := f.read(CHUNK_CHARS):
                yield chunk
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): pass a UTF-8 file with --data") from None


def build_tokenizer(kind: str, sample: str, vocab_size: int | None) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(sample)
    if kind == "bpe":
        return ByteBPETokenizer.train(sample, vocab_size or 512)
    raise ValueError(f"unknown tokenizer {kind!r}: expected 'char' or 'bpe'")


class TokenData:
    """Token ids of a corpus in a memmap (`tokens.bin`), split 90% train / 10% validation."""

    def __init__(self, path: Path, dtype: str) -> None:
        self.tokens = np.memmap(path, dtype=dtype, mode="r")
        n = len(self.tokens)
        self.split = int(0.9 * n)
        self.train, self.val = self.tokens[:self.split], self.tokens[self.split:]

    def batch(self, split: str, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x, y (batch_size, block_size) int64: random windows and the same windows shifted by one."""
        data = self.train if split == "train" else self.val
        if len(data) <= block_size:
            raise ValueError(f"the {split} split has {len(data)} tokens, fewer than block_size + 1 = "
                             f"{block_size + 1}: use more text or a smaller --block-size")
        ix = rng.integers(0, len(data) - block_size, batch_size)
        x = np.stack([data[i:i + block_size] for i in ix]).astype(np.int64)
        y = np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64)
        return x, y


def prepare(data: str | None, out: Path, tokenizer: Tokenizer | None, kind: str,
            vocab_size: int | None) -> tuple[TokenData, Tokenizer, dict[str, Any]]:
    """Tokenise the corpus into out/data/tokens.bin once (reused while the source and tokenizer are
    unchanged); build the tokenizer from the text unless one is given (a resumed run)."""
    if data is None:
        files = stdlib_files()
        text = stdlib_corpus(files)
        source = {"corpus": "python-stdlib", "files": len(files), "chars": len(text)}
        chunks = lambda: iter([text])  # noqa: E731
        sample = text
    else:
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"--data {data}: no such file")
        st = path.stat()
        source = {"path": str(path.resolve()), "bytes": st.st_size, "mtime": st.st_mtime_ns}
        chunks = lambda: read_chunks(path)  # noqa: E731
        sample = None
    if tokenizer is None:
        if sample is None:
            if kind == "char":  # the vocabulary needs every character: one streaming pass
                seen: set[str] = set()
                for c in chunks():
                    seen.update(c)
                tokenizer = CharTokenizer(seen)
            else:  # BPE merges are learned on the first 4 MB
                sample = "".join(c for _, c in zip(range(4), chunks(), strict=False))
                tokenizer = build_tokenizer(kind, sample, vocab_size)
        else:
            tokenizer = build_tokenizer(kind, sample, vocab_size)
    tok_hash = hashlib.sha256(json.dumps(tokenizer.to_dict()).encode()).hexdigest()[:16]
    ddir = out / "data"
    meta_path, bin_path = ddir / "data.json", ddir / "tokens.bin"
    dtype = "uint16" if tokenizer.vocab_size <= 65536 else "uint32"
    meta = {"source": source, "tokenizer": tok_hash, "dtype": dtype}
    try:
        cached = json.loads(meta_path.read_text()) if meta_path.is_file() and bin_path.is_file() else None
    except json.JSONDecodeError:
        cached = None
    if cached is None or {k: cached.get(k) for k in meta} != meta:
        ddir.mkdir(parents=True, exist_ok=True)
        tmp = bin_path.with_suffix(".tmp")
        n = 0
        with open(tmp, "wb") as f:
            for chunk in chunks():
                ids = np.asarray(tokenizer.encode(chunk), dtype=dtype)
                f.write(ids.tobytes())
                n += len(ids)
        tmp.replace(bin_path)

        atomic_write_bytes(meta_path, json.dumps({**meta, "tokens": n}).encode())
    return TokenData(bin_path, dtype), tokenizer, source
