"""BERT's tokenizer, written here: the basic tokenizer (text cleanup, CJK characters split, accents
stripped, lower-casing, whitespace and punctuation split), then greedy longest-match WordPiece with `##`
continuations, then [CLS] ... [SEP], truncation, padding and attention masks for a batch.

It reads a Hugging Face model directory (`vocab.txt` plus `tokenizer_config.json` or `tokenizer.json`) and
gives exactly the ids that the directory's own `tokenizer.json` defines (tests/test_wordpiece.py compares
with the `tokenizers` package when it is installed). The steps follow that file's BertNormalizer and
BertPreTokenizer, in their order:

1. clean: drop NUL, U+FFFD and control characters; every whitespace character becomes a space;
2. CJK: a space on each side of every CJK ideograph, so each one is a word of its own;
3. strip accents (by default when lower-casing): NFD decomposition, then drop the combining marks (Mn);
4. lower-case, one character at a time;
5. split on whitespace, and split off every punctuation character (ASCII punctuation and Unicode P*);
6. WordPiece per word: the longest vocabulary entry that starts the word, then the longest `##` entry that
   continues it, and so on; a word with a part no entry covers, or longer than 100 characters, is [UNK].
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_control(c: str) -> bool:
    if c in "\t\n\r":
        return False  # whitespace, kept (as a space)
    return unicodedata.category(c).startswith("C")


def _is_whitespace(c: str) -> bool:
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_punctuation(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # all ASCII non-letters/digits, such as $ + < = > ^ ` | ~, count as punctuation
    return unicodedata.category(c).startswith("P")


class WordPiece:
    """BERT's tokenizer for one vocabulary (a list of tokens: id = position)."""

    kind = "wordpiece"

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, clean_text: bool = True, unk_token: str = "[UNK]",
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 mask_token: str = "[MASK]", max_input_chars_per_word: int = 100,
                 model_max_length: int = 512) -> None:
        self.vocab = list(vocab)
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        for name, tok in (("unk", unk_token), ("cls", cls_token), ("sep", sep_token), ("pad", pad_token)):
            if tok not in self.ids:
                raise ValueError(f"the vocabulary has no {name} token {tok!r}")
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.tokenize_chinese_chars, self.clean_text = tokenize_chinese_chars, clean_text
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self.model_max_length = model_max_length

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> WordPiece:
        """Read `vocab.txt` and the options of `tokenizer_config.json` (or the normalizer of `tokenizer.json`)."""
        d = Path(directory)
        vocab_file = d / "vocab.txt"
        if not vocab_file.is_file():
            raise FileNotFoundError(f"{vocab_file}: not found (a BERT model directory has vocab.txt)")
        vocab = vocab_file.read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":
            vocab.pop()
        opts: dict[str, Any] = {}
        config = d / "tokenizer_config.json"
        if config.is_file():
            c = json.loads(config.read_text(encoding="utf-8"))
            opts = {"lowercase": c.get("do_lower_case", True), "strip_accents": c.get("strip_accents"),
                    "tokenize_chinese_chars": c.get("tokenize_chinese_chars", True)}
            for name in ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token"):
                if isinstance(c.get(name), str):
                    opts[name] = c[name]
            if isinstance(c.get("model_max_length"), int) and c["model_max_length"] < 10**6:
                opts["model_max_length"] = c["model_max_length"]
        full = d / "tokenizer.json"
        if full.is_file():  # its normalizer is what the model's own tokenizer applies: it wins
            n = json.loads(full.read_text(encoding="utf-8")).get("normalizer") or {}
            if n.get("type") == "BertNormalizer":
                opts.update(lowercase=n.get("lowercase", True), strip_accents=n.get("strip_accents"),
                            tokenize_chinese_chars=n.get("handle_chinese_chars", True),
                            clean_text=n.get("clean_text", True))
        return cls(vocab, **opts)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ---- text -> words -> word pieces ------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        if self.clean_text:
            text = "".join(" " if _is_whitespace(c) else c for c in text
                           if not (c == "\0" or c == "\ufffd" or _is_control(c)))
        if self.tokenize_chinese_chars:
            text = "".join(f" {c} " if _is_cjk(ord(c)) else c for c in text)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = "".join(c.lower() for c in text)  # per character (no context-dependent final sigma)
        return text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """Whitespace-separated words, with every punctuation character a word of its own."""
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for c in chunk:
                if _is_punctuation(c):
                    if current:
                        words.append(current)
                    words.append(c)
                    current = ""
                else:
                    current += c
            if current:
                words.append(current)
        return words

    def wordpieces(self, word: str) -> list[str]:
        """Greedy longest-match-first split of one word; [UNK] when a part cannot be matched."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    break
                end -= 1
            if end == start:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [p for w in self.pre_tokenize(self.normalize(text)) for p in self.wordpieces(w)]

    # ---- ids ----------------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Token ids of `text`: [CLS] pieces [SEP], truncated (pieces dropped from the end) to max_length."""
        ids = [self.ids[p] for p in self.tokenize(text)]
        limit = self.model_max_length if max_length is None else max_length
        if add_special_tokens:
            return [self.ids[self.cls_token]] + ids[:max(limit - 2, 0)] + [self.ids[self.sep_token]]
        return ids[:limit]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text, `##` pieces glued to the piece before them (lower-casing and accents are not undone)."""
        special = {self.cls_token, self.sep_token, self.pad_token, self.mask_token}
        out = ""
        for i in ids:
            tok = self.vocab[int(i)]
            if skip_special_tokens and tok in special:
                continue
            out += tok[2:] if tok.startswith("##") else (" " + tok if out else tok)
        return out

    def __call__(self, texts: str | Sequence[str], max_length: int | None = None,
                 padding: bool = True) -> dict[str, np.ndarray]:
        """A batch: input_ids, attention_mask (1 = a real token) and token_type_ids, each (B, T) int64,
        right-padded with [PAD] to the longest sequence of the batch."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        seqs = [self.encode(t, max_length=max_length) for t in batch]
        T = max((len(s) for s in seqs), default=0) if padding else None
        if T is None and len({len(s) for s in seqs}) > 1:
            raise ValueError("sequences of different lengths need padding=True")
        T = T if T is not None else len(seqs[0])
        ids = np.full((len(seqs), T), self.ids[self.pad_token], dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
