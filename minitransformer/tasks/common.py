"""What the task modules share: the sequence vocabulary (characters or words, with padding, start, end and
unknown tokens), TSV corpora, padded batches, and the metrics written here (exact match, chrF, accuracy,
macro-F1, confusion matrix).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


class Vocab:
    """Tokens <-> ids for one side of a task. `kind` "char" splits a string into characters, "word" into
    whitespace-separated words (decoding joins them with one space). Ids 0-3 are <pad>, <bos>, <eos>, <unk>;
    a token never seen when the vocabulary was built encodes as <unk>."""

    def __init__(self, tokens: Sequence[str], kind: str) -> None:
        if kind not in ("char", "word"):
            raise ValueError(f"vocabulary kind must be 'char' or 'word', got {kind!r}")
        self.kind = kind
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Sequence[str], kind: str) -> Vocab:
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(t if kind == "char" else t.split())
        return cls(sorted(counts), kind)

    def __len__(self) -> int:
        return len(self.itos)

    def split(self, text: str) -> list[str]:
        return list(text) if self.kind == "char" else text.split()

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(t, UNK) for t in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids up to the first <eos> -> text (padding and <bos> skipped)."""
        tokens = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            tokens.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return ("" if self.kind == "char" else " ").join(tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        return cls(d["tokens"], d["kind"])


def read_tsv(path: str | Path, columns: int = 2) -> list[tuple[str, ...]]:
    """A UTF-8 file of `columns` tab-separated fields per line (empty lines skipped). A malformed line raises
    ValueError naming the file and the line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != columns or not all(x.strip() for x in fields):
                raise ValueError(f"{path}, line {number}: expected {columns} non-empty tab-separated fields, got "
                                 f"{len(fields)}: {line[:60]!r}")
            rows.append(tuple(fields))
    if not rows:
        raise ValueError(f"{path}: no data lines")
    return rows


def pad_batch(seqs: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Sequences of ids -> (B, T) int64 array, right-padded with <pad> to the longest (or `length`)."""
    T = length if length is not None else max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(T, 1)), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s[:T]
    return out


# ---- metrics --------------------------------------------------------------------------------------------
def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference, character for character."""
    if len(predictions) != len(references):
        raise ValueError(f"exact_match: {len(predictions)} predictions for {len(references)} references")
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / max(len(references), 1)


def _char_ngrams(text: str, n: int) -> Counter[str]:
    s = text.replace(" ", "")  # chrF ignores whitespace
    return Counter(s[i:i + n] for i in range(len(s) - n + 1))


def chrf(predictions: Sequence[str], references: Sequence[str], n: int = 6, beta: float = 2.0) -> float:
    """Corpus-level chrF (Popović 2015, as sacreBLEU computes it), in percent: character n-gram precision
    and recall for n = 1..6 (whitespace removed), each averaged over n from the n-gram counts summed over
    the corpus, combined as F-beta with beta = 2 (recall weighs twice as much)."""
    precisions, recalls = [], []
    for k in range(1, n + 1):
        match = hyp_total = ref_total = 0
        for p, r in zip(predictions, references, strict=True):
            hp, rf = _char_ngrams(p, k), _char_ngrams(r, k)
            match += sum((hp & rf).values())
            hyp_total += sum(hp.values())
            ref_total += sum(rf.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p, r = float(np.mean(precisions)), float(np.mean(recalls))
    if p + r == 0:
        return 0.0
    return 100.0 * (1 + beta**2) * p * r / (beta**2 * p + r)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def macro_f1(cm: np.ndarray) -> float:
    """The unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN), from a confusion matrix; a class
    that never occurs and is never predicted is left out."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present])) if present.any() else 0.0


def format_confusion(cm: np.ndarray, labels: Sequence[str]) -> str:
    """The confusion matrix as aligned text (rows true, columns predicted)."""
    w = max(6, *(len(x) for x in labels)) + 1
    lines = ["true \\ pred".ljust(w) + "".join(x.rjust(w) for x in labels)]
    for label, row in zip(labels, cm, strict=True):
        lines.append(label.ljust(w) + "".join(str(int(v)).rjust(w) for v in row))
    return "\n".join(lines)
