"""Decoding for sequence-to-sequence models: batched greedy search and batched beam search.

Both drive a `next_logits(rows, prefixes)` function: `rows` (N,) says which source sentence each prefix
belongs to and `prefixes` (N, t) holds <bos> and the tokens chosen so far; it returns the logits of the
next token, (N, V). The model side (encoding the sources once, indexing the memory by `rows`) lives with the
model; these functions only search.

Beam search keeps `beam` hypotheses per sentence; each step extends every live hypothesis by every token,
keeps the best 2 * beam extensions, moves those ending in <eos> that rank among the best `beam` to the
finished list (so that width 1 is exactly greedy search) with the score
log p / lp(length), lp(L) = ((5 + L) / 6) ** length_penalty (GNMT's length penalty; 0 means raw log
probabilities), and stops a sentence once it has `beam` finished hypotheses, or at max_len.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .common import BOS, EOS, PAD

NextLogits = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _valid(logits: np.ndarray) -> np.ndarray:
    """<pad> and <bos> are never an output token: their logits are set to -inf."""
    logits = np.array(logits, dtype=np.float64)
    logits[:, [PAD, BOS]] = -np.inf
    return logits


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)  # subtract the row max: exp never overflows
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def greedy(next_logits: NextLogits, n: int, max_len: int) -> list[list[int]]:
    """The most probable next token at each step, for n sources at once -> n token lists (without <bos>
    and <eos>)."""
    ys = np.full((n, 1), BOS, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    rows = np.arange(n)
    for _ in range(max_len):
        live = rows[~done]
        nxt = np.full(n, PAD, dtype=np.int64)
        nxt[live] = _valid(next_logits(live, ys[live])).argmax(axis=-1)
        ys = np.concatenate([ys, nxt[:, None]], axis=1)
        done |= nxt == EOS
        if done.all():
            break
    out = []
    for row in ys[:, 1:]:
        toks = []
        for t in row:
            if t in (EOS, PAD):  # PAD marks the steps after a row finished
                break
            toks.append(int(t))
        out.append(toks)
    return out


def beam_search(next_logits: NextLogits, n: int, max_len: int, beam: int = 4,
                length_penalty: float = 0.6) -> list[list[int]]:
    """The best hypothesis of a beam search per source (see the module docstring) -> n token lists."""
    if beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam}")
    seqs: list[list[list[int]]] = [[[BOS]] for _ in range(n)]       # live hypotheses per source
    scores: list[list[float]] = [[0.0] for _ in range(n)]           # their summed log-probabilities
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    active = list(range(n))

    def lp(length: int) -> float:
        return ((5.0 + length) / 6.0) ** length_penalty

    for _ in range(max_len):
        rows = np.array([i for i in active for _ in seqs[i]], dtype=np.int64)
        if rows.size == 0:
            break
        prefixes = np.array([s for i in active for s in seqs[i]], dtype=np.int64)   # all have the same length
        logp = _log_softmax(_valid(next_logits(rows, prefixes)))                   # (N, V)
        k = 0
        still = []
        for i in active:
            h = len(seqs[i])
            cand = (np.asarray(scores[i])[:, None] + logp[k:k + h]).ravel()       # (h * V,)
            k += h
            V = logp.shape[1]
            top = np.argsort(-cand, kind="stable")[:2 * beam]
            new_seqs, new_scores = [], []
            for rank, c in enumerate(top):
                src, tok = divmod(int(c), V)
                if not np.isfinite(cand[c]):
                    continue
                seq = seqs[i][src] + [tok]
                if tok == EOS:
                    if rank < beam:  # an ending counts only if it ranks among the best `beam` extensions
                        finished[i].append((float(cand[c]) / lp(len(seq) - 1), seq))
                elif len(new_seqs) < beam:
                    new_seqs.append(seq)
                    new_scores.append(float(cand[c]))
            seqs[i], scores[i] = new_seqs, new_scores
            if len(finished[i]) < beam and new_seqs:
                still.append(i)
        active = still
    out = []
    for i in range(n):
        pool = finished[i] or [(s / lp(len(q) - 1), q) for s, q in zip(scores[i], seqs[i], strict=True)]
        best = max(pool, key=lambda x: x[0])[1]
        out.append([t for t in best[1:] if t != EOS])
    return out
