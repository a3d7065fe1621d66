"""The running batch of a continuous-batching server: the key/value caches of every sequence being decoded, kept
as one left-padded batch that the model's batched decode step reads, with rows joining and leaving between
two steps. It knows nothing of requests, sampling or text (scheduler.py does).

GPT.generate_batch left-pads its prompts to one width and tells the decode step where each row's tokens begin
(`first`): a row's positions count from there and its padding is never attended to. The rows here are laid out
the same way and right-aligned: every row's newest key sits in the last column, so the width S is the longest
row's length, which never passes block_size.

    prefill the prompts that arrive together are run in one pass, left-padded to one length (the model's
            batched decode step on the whole prompts, as GPT.generate_batch's first step)
    join    their keys and values are left-padded to S (or the batch is padded on the left up to their length)
            and appended as new rows, each prompt's `copies` times for its n choices
    step    one token per row -> logits (B, V): one pass over the weights for every row
    leave   rows are dropped; columns that only padding fills any more are cut off the left

A sequence whose next token would pass block_size cannot continue from its cache: GPT.generate then recomputes
its last block_size tokens from scratch at every step, and `window_logits` does the same for such rows.
The model has no public call to add rows to a running cache, so `join` and `leave` rebuild the per-layer cache
dicts ({"k", "v"}: Tensors (B, nh, S, hs), what nn/generation.py's caches hold); the decode step re-creates
its growth buffers at the next step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import no_grad
from ..nn.generation import decode_step, left_pad, new_caches
from ..nn.gpt import GPT
from ..tensor import Tensor


def _left_pad(a: np.ndarray, S: int) -> np.ndarray:
    """a (B, nh, L, hs) -> (B, nh, S, hs), zeros on the left (never attended to: `first` masks them)."""
    if a.shape[2] == S:
        return a
    out = np.zeros(a.shape[:2] + (S, a.shape[3]), dtype=a.dtype)
    out[:, :, S - a.shape[2]:] = a
    return out


def prefill(model: GPT, prompts: list[list[int]]) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """New prompts in one pass, left-padded to one length as GPT.generate_batch does (each cropped to its last
    block_size tokens, as GPT.generate does) -> (logits of each one's last position (K, V), their caches (K rows),
    first (K,): the column where each row's tokens begin)."""
    tokens, first = left_pad([p[-model.config.block_size:] for p in prompts])   # (K, L), left-padded
    caches = new_caches(model)
    logits = decode_step(model, tokens, 0, caches, first)                         # (K, 1, V), no graph
    return logits[:, 0], caches, first


def window_logits(model: GPT, rows: list[list[int]]) -> np.ndarray:
    """Sequences longer than block_size -> logits (B, V) of the token after each one's last block_size tokens,
    recomputed without reusing a cache (their positions have shifted), as GPT.generate does past block_size."""
    x = np.asarray([r[-model.config.block_size:] for r in rows], dtype=np.int64)   # (B, block_size)
    with no_grad():
        logits, _ = model(Tensor(x))
    return logits.numpy()[:, -1]


def prompt_logits(model: GPT, ids: list[int]) -> np.ndarray:
    """The logits at every position of one prompt (T, V), for the log-probabilities of an echoed prompt."""
    x = Tensor(np.asarray([ids[-model.config.block_size:]], dtype=np.int64))
    with no_grad():
        logits, _ = model(x, targets=x)   # with targets the model returns every position's logits
    return logits.numpy()[0]


class DecodeBatch:
    """Rows of cached keys and values, left-padded to one width; see the module docstring."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.caches: list[dict[str, Any]] | None = None   # one dict per layer, as generation.new_caches()
        self.first = np.zeros(0, dtype=np.int64)            # (B,) the column of each row's first token
        self.width = 0                                      # S: the longest row's length

    def __len__(self) -> int:
        return len(self.first)

    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(c["k"].numpy(), c["v"].numpy()) for c in self.caches] if self.caches else []

    def _set(self, kv: list[tuple[np.ndarray, np.ndarray]], first: np.ndarray, width: int) -> None:
        self.caches = [{"k": Tensor(k), "v": Tensor(v)} for k, v in kv] if len(first) else None
        self.first, self.width = first, width if len(first) else 0

    def join(self, caches: list[dict[str, Any]], first: np.ndarray, copies: list[int]) -> None:
        """Append prefilled rows (caches of K rows of length L, `first` (K,) as `prefill` gives them), row k
        `copies[k]` times (the choices of one prompt; 0 leaves it out)."""
        L = caches[0]["k"].shape[2]
        S = max(self.width, L)
        old = self._arrays()
        kv = []
        for i, c in enumerate(caches):
            pair = []
            for j, name in enumerate(("k", "v")):
                new = np.repeat(_left_pad(c[name].numpy(), S), copies, axis=0)   # (sum(copies), nh, S, hs)
                pair.append(np.concatenate([_left_pad(old[i][j], S), new]) if old else new)
            kv.append((pair[0], pair[1]))
        first = np.concatenate([self.first + (S - self.width), np.repeat(first + (S - L), copies)])
        self._set(kv, first, S)

    def leave(self, keep: np.ndarray) -> None:
        """Keep only the rows where keep (B,) is True; trim the padding columns every kept row has."""
        first = self.first[keep]
        m = int(first.min()) if len(first) else 0
        kv = [(k[keep][:, :, m:self.width], v[keep][:, :, m:self.width]) for k, v in self._arrays()]
        self._set(kv, first - m, self.width - m)

    def step(self, tokens: list[int]) -> np.ndarray:
        """Feed one token per row (each row's newest, at position width - first[b]) -> logits (B, V)."""
        idx = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)                      # (B, 1)
        logits = decode_step(self.model, idx, self.width, self.caches, self.first)   # (B, 1, V), no graph
        self.width += 1
        return logits[:, 0]
