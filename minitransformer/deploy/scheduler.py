"""Continuous batching: one thread owns the model and decodes every running sequence together.

A request becomes sequences (one per choice: n per prompt), which wait in a bounded queue (`submit` raises
QueueFull past max_queue); the request reads its results from a queue of its own (`Request.events`). Between
two decode steps the scheduler loop

    1. admits waiting sequences while the batch has room (max_batch_size rows): their prompts are prefilled
       together in one left-padded pass (once for the n choices of one prompt), each choice samples its first
       token, and the prompts' cache rows join the running batch (batch.DecodeBatch.join);
    2. runs one decode step for all rows at once (one pass over the weights), plus one pass for the rows whose
       context has outgrown block_size (recomputed from their last block_size tokens, as GPT.generate does);
    3. samples each row's next token with that sequence's own settings and random generator, turns the tokens
       into text, looks for the stop strings, and sends what is new to the request; rows that are finished, or
       whose request went away, leave the batch.

So sequences that arrive together are prefilled and decoded together, a newcomer joins at the next step
boundary, and a short request never waits for a long one. Each row sees exactly the keys and positions it would
see alone (as in GPT.generate_batch), so a greedy (temperature 0) sequence gives GPT.generate's tokens for its
prompt (top_k=1); with a seed, choice i draws from np.random.default_rng(seed + i) with GPT.generate's
sampling arithmetic, so it gives what GPT.generate gives after mt.manual_seed(seed + i), alone or batched.
(Equal up to float32 rounding: a batch sums in another order than one row, which changes a token only where
two are within a rounding error of each other, as for GPT.generate_batch.)

What it does not do: share cache rows between requests with a common prefix, or page the cache: a join or a
leave copies the running rows' keys and values once.
"""

from __future__ import annotations

import codecs
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.generation import sample_next
from ..nn.gpt import GPT
from .batch import DecodeBatch, prefill, prompt_logits, window_logits

Entry = tuple[str, Any, Any, int]   # (token text, its log-probability, {token: logprob} of the likeliest, offset)


class QueueFull(RuntimeError):
    pass


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0              # 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None           # alternatives to report per token (0..5); None: no log-probabilities


@dataclass
class Event:
    """What a request hears about one of its choices: new text (and its tokens' log-probabilities), the finish
    reason once it is done (with how many tokens it took), or an error."""

    index: int
    text: str = ""
    logprobs: list[Entry] = field(default_factory=list)
    finish: str | None = None
    tokens: int = 0
    error: str | None = None


class Request:
    """The queue a request's choices report to; `cancelled` (set when the client goes away) stops them.
    Without `stream` each choice reports once, when it is done: a thread woken for every token would cost the
    scheduler the interpreter lock at every step."""

    def __init__(self, stream: bool = True) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.cancelled, self.stream = False, stream


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max()                                           # max subtracted: exp cannot overflow
    return x - np.log(np.exp(x).sum())


def sample(logits: np.ndarray, s: Sampling, rng: np.random.Generator) -> int:
    """One token from logits (V,): the argmax at temperature 0, else nn.generation.sample_next on this one row with
    the sequence's own generator in place of the global one."""
    if s.temperature == 0:
        return int(np.argmax(logits))
    return int(sample_next(logits[None], s.temperature, s.top_k, s.top_p, rng=rng).numpy()[0, 0])


class Detokenizer:
    """Token ids -> text as they come: whole characters only (a BPE token may end inside a UTF-8 character)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bpe = tokenizer.kind == "bpe"

    def decoder(self) -> Any:
        return codecs.getincrementaldecoder("utf-8")(errors="replace") if self.bpe else None

    def piece(self, t: int, decoder: Any, final: bool = False) -> str:
        if not self.bpe:
            return self.tokenizer.decode([t])
        return decoder.decode(self.tokenizer.vocab[t]) + (decoder.decode(b"", final=True) if final else "")

    def token(self, t: int) -> str:
        """One token's own text, for log-probability listings."""
        return self.tokenizer.vocab[t].decode("utf-8", errors="replace") if self.bpe else self.tokenizer.decode([t])


class Sequence:
    """One choice being generated: its tokens, settings, generator, and the text not yet sent."""

    def __init__(self, request: Request, index: int, ids: list[int], sampling: Sampling, rng: np.random.Generator,
                 text_offset: int = 0, echo_logprobs: bool = False, group: Any = None) -> None:
        self.request, self.index, self.sampling, self.rng = request, index, sampling, rng
        self.prompt, self.tokens = list(ids), list(ids)
        self.text_offset = text_offset     # where the generated text starts (log-probability offsets count from it)
        self.echo_logprobs = echo_logprobs
        self.group = group                 # choices with the same group share one prefill
        self.text, self.sent, self.pending = "", 0, []
        self.finish: str | None = None
        self.decoder: Any = None

    @property
    def done(self) -> bool:
        return self.finish is not None or self.request.cancelled

    def push(self, t: int, logits: np.ndarray, detok: Detokenizer) -> None:
        """Take the sampled token t (logits: what it was drawn from) and send what can be sent."""
        s = self.sampling
        self.tokens.append(t)
        new = len(self.tokens) - len(self.prompt)
        start = len(self.text)
        self.text += detok.piece(t, self.decoder, final=new >= s.max_tokens)
        if s.logprobs is not None:
            lp = log_softmax(logits)
            top = {detok.token(int(i)): float(lp[i]) for i in np.argsort(-lp, kind="stable")[:s.logprobs]}
            top.setdefault(detok.token(t), float(lp[t]))   # the sampled token is always listed
            self.pending.append((detok.token(t), float(lp[t]), top, start))
        if s.stop:  # a stop string ends in the new text or not at all: look only near the end
            hits = [i for i in (self.text.find(x, max(0, start - len(x) + 1)) for x in s.stop) if i >= 0]
            if hits:
                self.text, self.finish = self.text[:min(hits)], "stop"
        if self.finish is None and new >= s.max_tokens:
            self.finish = "length"
        self.send()

    def send(self) -> None:
        """Send the text not sent yet, less a tail that may be the start of a stop string."""
        if self.finish is None and not self.request.stream:
            return
        upto = len(self.text)
        if self.finish is None:
            for x in self.sampling.stop:
                for n in range(min(len(x) - 1, upto), 0, -1):
                    if self.text.endswith(x[:n]):
                        upto = min(upto, len(self.text) - n)
                        break
        upto = max(upto, self.sent)
        if self.finish == "length":  # every token counts, even one whose bytes ended no character
            entries, self.pending = self.pending, []
        else:  # a token that starts at or past a stop string's cut is not part of the answer
            entries = [e for e in self.pending if e[3] < upto]
            self.pending = [e for e in self.pending if e[3] >= upto] if self.finish is None else []
        if upto > self.sent or entries or self.finish:
            self.request.events.put(Event(self.index, self.text[self.sent:upto],
                                          [(a, b, c, o + self.text_offset) for a, b, c, o in entries],
                                          self.finish, len(self.tokens) - len(self.prompt)))
            self.sent = upto


class Scheduler:
    """The thread that owns the model; see the module docstring. `stats` counts decode steps, the rows they
    decoded (rows / steps: the mean batch), the largest batch decoded in one step, and sequences admitted."""

    def __init__(self, model: GPT, tokenizer: Any, max_batch_size: int = 16, max_queue: int = 64) -> None:
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError(f"max_batch_size and max_queue must be at least 1, got {max_batch_size}, {max_queue}")
        self.model, self.detok = model, Detokenizer(tokenizer)
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.waiting: deque[Sequence] = deque()
        self.cond = threading.Condition()
        self.batch = DecodeBatch(model)
        self.rows: list[Sequence] = []        # the batch's rows, in its order
        self.windowed: list[Sequence] = []    # sequences past block_size, recomputed each step
        self.stats = {"steps": 0, "rows": 0, "max_batch": 0, "sequences": 0}
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="minitransformer-scheduler", daemon=True)
        self.thread.start()

    def submit(self, seqs: list[Sequence]) -> None:
        with self.cond:
            if self.closed:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) + len(seqs) > self.max_queue:
                raise QueueFull(f"the queue is full ({len(self.waiting)} of {self.max_queue} sequences waiting); "
                                "retry later")
            self.waiting.extend(seqs)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not (self.closed or self.waiting or self.rows or self.windowed):
                    self.cond.wait()
                if self.closed:
                    self._fail([*self.waiting, *self.rows, *self.windowed], "the server is shutting down")
                    return
                room = self.max_batch_size - len(self.rows) - len(self.windowed)
                new = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
            try:
                self._admit(new)
                self._step()
            except Exception as e:  # a failed step fails the sequences in it, never the server
                self._fail([*new, *self.rows, *self.windowed], f"internal error: {type(e).__name__}: {e}")
                self.batch, self.rows, self.windowed = DecodeBatch(self.model), [], []

    def _fail(self, seqs: list[Sequence], message: str) -> None:
        for s in seqs:
            if s.finish is None:
                s.finish = "error"
                s.request.events.put(Event(s.index, error=message))

    def _admit(self, new: list[Sequence]) -> None:
        """Prefill the new prompts together (once for the n choices of one prompt), sample every choice's first
        token, and add the rows that go on to the batch."""
        groups: dict[Any, list[Sequence]] = {}
        for s in new:
            if not s.request.cancelled:
                groups.setdefault(s.group if s.group is not None else id(s), []).append(s)
        todo = []
        for seqs in groups.values():
            self.stats["sequences"] += len(seqs)
            if any(s.echo_logprobs for s in seqs):
                self._send_prompt_logprobs(seqs)
            if seqs[0].sampling.max_tokens == 0:  # echo only: nothing to generate
                for s in seqs:
                    s.finish = "length"
                    s.send()
            else:
                todo.append(seqs)
        if not todo:
            return
        logits, caches, first = prefill(self.model, [seqs[0].prompt for seqs in todo])   # (K, V)
        block, copies = self.model.config.block_size, []
        for seqs, row in zip(todo, logits, strict=True):
            for s in seqs:
                s.decoder = self.detok.decoder()
                s.push(sample(row, s.sampling, s.rng), row, self.detok)
            joining = [s for s in seqs if not s.done and len(s.tokens) <= block]
            self.windowed += [s for s in seqs if not s.done and len(s.tokens) > block]
            self.rows += joining
            copies.append(len(joining))
        if sum(copies):
            self.batch.join(caches, first, copies)

    def _send_prompt_logprobs(self, seqs: list[Sequence]) -> None:
        """The prompt's own tokens with their log-probabilities (the first has none), for echo."""
        ids, detok = seqs[0].prompt, self.detok
        lps = [log_softmax(row) for row in prompt_logits(self.model, ids)]
        entries, offset = [(detok.token(ids[0]), None, None, 0)], len(detok.token(ids[0]))
        for i in range(1, len(ids)):
            lp, k = lps[i - 1], seqs[0].sampling.logprobs or 0
            top = {detok.token(int(j)): float(lp[j]) for j in np.argsort(-lp, kind="stable")[:k]}
            top.setdefault(detok.token(ids[i]), float(lp[ids[i]]))
            entries.append((detok.token(ids[i]), float(lp[ids[i]]), top, offset))
            offset += len(detok.token(ids[i]))
        for s in seqs:
            s.request.events.put(Event(s.index, logprobs=entries))

    def _step(self) -> None:
        """One decode step for every running row, then the finished rows leave."""
        B = len(self.rows) + len(self.windowed)
        if B == 0:
            return
        self.stats["steps"] += 1
        self.stats["rows"] += B
        self.stats["max_batch"] = max(self.stats["max_batch"], B)
        if self.rows:
            logits = self.batch.step([s.tokens[-1] for s in self.rows])          # (B, V)
            for s, row in zip(self.rows, logits, strict=True):
                s.push(sample(row, s.sampling, s.rng), row, self.detok)
        if self.windowed:
            logits = window_logits(self.model, [s.tokens for s in self.windowed])
            for s, row in zip(self.windowed, logits, strict=True):
                s.push(sample(row, s.sampling, s.rng), row, self.detok)
        block = self.model.config.block_size
        keep = np.array([not s.done and len(s.tokens) <= block for s in self.rows], dtype=bool)
        self.windowed = ([s for s in self.windowed if not s.done]
                         + [s for s in self.rows if not s.done and len(s.tokens) > block])
        if not keep.all():
            self.batch.leave(keep)
            self.rows = [s for s, k in zip(self.rows, keep, strict=True) if k]
