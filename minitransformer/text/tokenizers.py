"""Tokenizers for the language-model job: characters (as nanoGPT's shakespeare_char) and a byte-level BPE
trained from scratch on the user's text (as GPT-2's, without its vocabulary). BERT's WordPiece, for
pretrained models, lives in wordpiece.py and is re-exported here as `mt.tokenizers.WordPiece`.

Byte-level BPE: text is pre-split with GPT-2's regular expression (contractions, letters, digits, other
symbols, whitespace), each piece becomes its UTF-8 bytes (ids 0-255), and merges learned by repeatedly
counting adjacent pairs and merging the most frequent one give ids 256 and up. Every byte is in the
vocabulary, so encode/decode round-trips any string exactly, including text never seen in training.
Both save to and load from one JSON file of our own, and are written to and read from Hugging Face's
tokenizer.json format by `save_hf_tokenizer` / `load_hf_tokenizer` (the end of this file).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_bytes
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
    atomic_write_bytes(Path(path), json.dumps(tok.to_dict(), ensure_ascii=False).encode("utf-8"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    try:
        return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer file ({e})") from None


# ---- Hugging Face `tokenizers` format ----------------------------------------------------------------------
# A tokenizer.json that `tokenizers.Tokenizer.from_file` and transformers' PreTrainedTokenizerFast load, and
# that encodes and decodes exactly as ours:
#   char: Split(every character) -> WordLevel over our characters (an unknown one is an error, as ours)
#         -> Fuse decoder (tokens joined with nothing between them)
#   bpe:  Split(GPT2_SPLIT, isolated) -> ByteLevel (each byte as GPT-2's printable character, no regex of its
#         own) -> BPE with our 256 bytes and merges (rank i makes id 256 + i) -> ByteLevel decoder (bytes, then
#         UTF-8 with U+FFFD for invalid sequences, as `decode`).
# GPT2_SPLIT's classes (\s, letters, \d) are written out as code-point ranges taken from this Python's `re`,
# so the Rust regex engine splits exactly where `re` does, whatever its own Unicode tables say.

HF_ANY_CHAR = r"[\s\S]"


def gpt2_byte_chars() -> list[str]:
    """GPT-2's byte -> character table: a byte that is a printable, non-space Latin-1 character stands for
    itself; the other 68 bytes take the characters 256, 257, ... in byte order."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _class_ranges(one_char: str) -> str:
    """The code points (surrogates left out) that the `re` class `one_char` matches, as an Oniguruma class
    body of \\x{...} ranges."""
    parts = []
    for lo_block, hi_block in ((0, 0xD800), (0xE000, 0x110000)):
        text = "".join(map(chr, range(lo_block, hi_block)))    # every code point of the block, in order
        for m in re.finditer(f"(?:{one_char})+", text):
            lo, hi = lo_block + m.start(), lo_block + m.end() - 1
            parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return "".join(parts)


@cache
def hf_split_pattern() -> str:
    """GPT2_SPLIT as an Oniguruma regex with its character classes written out (see above)."""
    s, letters, digits = (_class_ranges(c) for c in (r"\s", r"[^\W\d_]", r"\d"))
    # ours: 's|'t|'re|'ve|'m|'ll|'d| ?L+| ?D+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+ where "other" is neither space
    # nor letter nor digit (\w is exactly letters, digits and "_", so other = [^ space letters digits])
    return (f"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{digits}]+| ?[^{s}{letters}{digits}]+"
            f"|[{s}]+(?![^{s}])|[{s}]+")


def _split(pattern: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def _byte_level() -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def hf_tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    """Our tokenizer as the JSON document of a Hugging Face `tokenizers` tokenizer (see above). A byte-level
    BPE whose merges make the same byte string twice is refused: Hugging Face's vocabulary maps each string
    to one id."""
    doc: dict[str, Any] = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                           "normalizer": None, "post_processor": None}
    if isinstance(tok, CharTokenizer):
        for c in tok.chars:
            if len(c) != 1 or "\ud800" <= c <= "\udfff":
                raise ValueError(f"character {c!r} cannot be written to a tokenizer.json (not one Unicode "
                                 "scalar value)")
        doc.update(pre_tokenizer=_split(HF_ANY_CHAR), decoder={"type": "Fuse"},
                   model={"type": "WordLevel", "vocab": dict(tok.stoi), "unk_token": "<unk>"})
        return doc
    if not isinstance(tok, ByteBPETokenizer):
        raise TypeError(f"cannot write a {type(tok).__name__} as a Hugging Face tokenizer.json")
    table = gpt2_byte_chars()
    names = ["".join(table[b] for b in token) for token in tok.vocab]
    vocab: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in vocab:
            raise ValueError(f"tokens {vocab[name]} and {i} are both {tok.vocab[i]!r}: a Hugging Face BPE "
                             "vocabulary cannot hold the same string twice")
        vocab[name] = i
    doc.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [_split(hf_split_pattern()), _byte_level()]},
               decoder=_byte_level(),
               model={"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab,
                      "merges": [f"{names[a]} {names[b]}" for a, b in tok.merges]})
    return doc


def tokenizer_from_hf_json(doc: dict[str, Any], name: str = "tokenizer.json") -> Tokenizer:
    """The tokenizer of a tokenizer.json in the layout `hf_tokenizer_json` writes (also after the
    `tokenizers` package saved it again). Anything else (another model, normalizer, special tokens, a
    vocabulary whose ids are not ours) raises ValueError saying what differs: ours could not encode the same."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"{name}: not a tokenizer minitransformer can use: {what}")

    need(isinstance(doc, dict) and isinstance(doc.get("model"), dict), "no model")
    model, pre, dec = doc["model"], doc.get("pre_tokenizer") or {}, doc.get("decoder") or {}
    need(doc.get("normalizer") is None, "it has a normalizer")
    need(not doc.get("added_tokens"), "it has added (special) tokens")
    need(doc.get("post_processor") is None or (doc["post_processor"] or {}).get("type") == "ByteLevel",
         "its post-processor adds tokens")
    vocab = model.get("vocab")
    need(isinstance(vocab, dict) and sorted(vocab.values()) == list(range(len(vocab))),
         "the vocabulary's ids are not 0 .. n-1")

    def same_split(p: dict[str, Any], pattern: str) -> bool:
        return (p.get("type") == "Split" and p.get("pattern") == {"Regex": pattern}
                and p.get("behavior") == "Isolated" and not p.get("invert"))

    if model.get("type") == "WordLevel":
        need(same_split(pre, HF_ANY_CHAR) and dec.get("type") == "Fuse",
             "a WordLevel model without the split into single characters and the Fuse decoder")
        chars = sorted(vocab, key=vocab.__getitem__)
        need(all(len(c) == 1 for c in chars) and chars == sorted(chars),
             "a WordLevel vocabulary that is not single characters in sorted order")
        return CharTokenizer(chars)
    need(model.get("type") == "BPE", f"model type {model.get('type')!r} (char or byte-level BPE expected)")
    parts = pre.get("pretokenizers") or [{}, {}]
    need(pre.get("type") == "Sequence" and len(parts) == 2 and same_split(parts[0], hf_split_pattern())
         and parts[1].get("type") == "ByteLevel" and not parts[1].get("add_prefix_space")
         and not parts[1].get("use_regex", True),
         "the pre-tokenizer is not minitransformer's GPT-2 split (with this Python's Unicode tables) and ByteLevel")
    need(dec.get("type") == "ByteLevel", "the decoder is not ByteLevel")
    need(not model.get("dropout") and not model.get("continuing_subword_prefix")
         and not model.get("end_of_word_suffix") and not model.get("ignore_merges"),
         "BPE options (dropout, prefixes, ignore_merges) that ours does not have")
    table = gpt2_byte_chars()
    need(all(vocab.get(c) == b for b, c in enumerate(table)), "ids 0-255 are not the 256 bytes in order")
    merges = []
    for i, m in enumerate(model.get("merges") or []):
        pair = m.split(" ") if isinstance(m, str) else m
        need(isinstance(pair, list) and len(pair) == 2, f"merge {i} ({m!r}) is not two tokens")
        a, b = pair
        need(a in vocab and b in vocab and vocab.get(a + b) == 256 + i, f"merge {i} ({a} {b}) does not make id "
             f"{256 + i}")
        merges.append((vocab[a], vocab[b]))
    need(len(vocab) == 256 + len(merges), "tokens that no merge makes")
    return ByteBPETokenizer(merges)


def save_hf_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write `tok` as a Hugging Face tokenizer.json."""

    atomic_write_bytes(Path(path), json.dumps(hf_tokenizer_json(tok), ensure_ascii=False).encode("utf-8"))


def load_hf_tokenizer(path: str | Path) -> Tokenizer:
    """Read a Hugging Face tokenizer.json written by `save_hf_tokenizer` (see tokenizer_from_hf_json)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    try:
        return tokenizer_from_hf_json(doc, str(path))
    except (AttributeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer.json ({e!r})") from None
