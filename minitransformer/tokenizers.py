"""Tokenizers for the language-model job: characters (as nanoGPT's shakespeare_char) and a byte-level BPE
trained from scratch on the user's text (as GPT-2's, without its vocabulary). BERT's WordPiece, for
pretrained models, lives in wordpiece.py and is re-exported here as `mt.tokenizers.WordPiece`.

Byte-level BPE: text is pre-split with GPT-2's regular expression (contractions, letters, digits, other
symbols, whitespace), each piece becomes its UTF-8 bytes (ids 0-255), and merges learned by repeatedly
counting adjacent pairs and merging the most frequent one give ids 256 and up. Every byte is in the
vocabulary, so encode/decode round-trips any string exactly, including text never seen in training.
Both save to and load from one JSON file.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .wordpiece import WordPiece as WordPiece  # BERT's tokenizer, for pretrained models (re-exported here)

# GPT-2's pre-split pattern, written for Python's `re`, which lacks \p{L} and \p{N}:
# letters are [^\W\d_], digits \d, and "other" is anything that is neither space, letter nor digit.
GPT2_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order."""

    kind = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("cannot build a character vocabulary from empty text")
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in this character vocabulary "
                             f"({self.vocab_size} characters seen in training)") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}


class ByteBPETokenizer:
    """Byte-level BPE: 256 byte tokens plus `merges`, each (a, b) -> 256 + its index."""

    kind = "bpe"

    def __init__(self, merges: list[tuple[int, int]]) -> None:
        self.merges = [tuple(m) for m in merges]
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    @classmethod
    def train(cls, text: str, vocab_size: int, verbose: bool = False) -> ByteBPETokenizer:
        """Learn vocab_size - 256 merges from `text` by counting pairs within pre-split pieces."""
        if vocab_size < 256:
            raise ValueError(f"a byte-level BPE vocabulary has at least 256 tokens, got vocab_size={vocab_size}")
        # each distinct piece once, with its count: merges are applied to the unique pieces, and only the
        # pieces that contain the merged pair are re-counted (an index from pair to pieces keeps that cheap)
        pieces = Counter(GPT2_SPLIT.findall(text))
        words = [list(p.encode("utf-8")) for p in pieces]
        counts = list(pieces.values())
        pair_counts: Counter[tuple[int, int]] = Counter()
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for i, (w, c) in enumerate(zip(words, counts, strict=True)):
            for pair in zip(w, w[1:], strict=False):
                pair_counts[pair] += c
                where[pair].add(i)
        merges: list[tuple[int, int]] = []
        for new_id in range(256, vocab_size):
            if not pair_counts:
                break
            best = max(pair_counts, key=lambda p: (pair_counts[p], -p[0], -p[1]))  # ties: smaller ids first
            merges.append(best)
            a, b = best
            for i in where.pop(best):
                w, c = words[i], counts[i]
                for pair in zip(w, w[1:], strict=False):
                    pair_counts[pair] -= c
                    if pair_counts[pair] <= 0:
                        del pair_counts[pair]
                out, j = [], 0
                while j < len(w):
                    if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                        out.append(new_id)
                        j += 2
                    else:
                        out.append(w[j])
                        j += 1
                words[i] = out
                for pair in zip(out, out[1:], strict=False):
                    pair_counts[pair] += c
                    where[pair].add(i)
            if verbose and len(merges) % 200 == 0:
                print(f"bpe: {len(merges)} merges", flush=True)
        return cls(merges)

    def _encode_piece(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        ids = list(piece.encode("utf-8"))
        while len(ids) > 1:
            # apply the earliest-learned merge present, as training did
            ranked = [(self.ranks.get(p, len(self.ranks)), k) for k, p in enumerate(zip(ids, ids[1:], strict=False))]
            rank, k = min(ranked)
            if rank == len(self.ranks):
                break
            ids = ids[:k] + [256 + rank] + ids[k + 2:]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in GPT2_SPLIT.findall(text):
            out.extend(self._encode_piece(piece))
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.vocab[int(i)] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "merges": [list(m) for m in self.merges]}


Tokenizer = CharTokenizer | ByteBPETokenizer


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    if d.get("kind") == "char":
        return CharTokenizer(d["chars"])
    if d.get("kind") == "bpe":
        return ByteBPETokenizer([tuple(m) for m in d["merges"]])
    raise ValueError(f"unknown tokenizer kind {d.get('kind')!r}: expected 'char' or 'bpe'")


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    from .checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), json.dumps(tok.to_dict(), ensure_ascii=False).encode("utf-8"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    try:
        return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer file ({e})") from None

