"""OpenAI's completions API (POST /v1/completions, the "legacy" text completions): the request's fields with
OpenAI's names, defaults and ranges, the sequences a request becomes, and the response, stream-chunk and error
shapes. The HTTP layer (minitransformer/deploy/serve.py) moves the bytes; the scheduler (scheduler.py) generates.

Fields: model (required: this server's model id), prompt (a string, a list of strings, a list of token ids or
a list of such lists; "" starts from token 0), max_tokens (16; 0 only with echo), temperature (1; 0 = greedy),
top_p (1), n (1), stop (a string or up to 4), seed, stream, stream_options ({"include_usage": bool}),
logprobs (0..5), echo, user (ignored). presence_penalty, frequency_penalty, best_of, logit_bias and suffix are
accepted at their defaults only; any other field is refused. With a seed, choice i draws from its own
generator seeded seed + i. Log-probabilities are those of the model's own distribution (temperature 1), and
text_offset counts characters from the start of the prompt, echoed or not.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import jsonbody
from .scheduler import Entry, Event, Request, Sampling, Sequence

MAX_N = 128          # choices per prompt, as OpenAI's limit
MAX_STOP = 4
MAX_LOGPROBS = 5
FIELDS = ("model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "stream_options",
          "logprobs", "echo", "user", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "suffix")
DEFAULT_ONLY = {"presence_penalty": 0, "frequency_penalty": 0, "best_of": 1, "logit_bias": {}, "suffix": ""}


class APIError(Exception):
    """An error answer: its HTTP status and OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@dataclass
class Prompt:
    ids: list[int]
    text: str


@dataclass
class Completion:
    """A validated request."""

    model: str
    prompts: list[Prompt]
    sampling: Sampling
    n: int = 1
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    echo: bool = False
    id: str = field(default_factory=lambda: "cmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))


def _field(req: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any, what: str) -> Any:
    v = req.get(name)
    if v is None:
        return default
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        raise APIError(400, f"{name} must be {what}, got {json.dumps(v)[:40]}", name, "invalid_type")
    return v


def _range(name: str, v: float, lo: float, hi: float, lo_open: bool = False) -> None:
    if v < lo or v > hi or (lo_open and v == lo):
        raise APIError(400, f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}", name, "invalid_value")


def _prompts(raw: Any, tokenizer: Any, block_size: int) -> list[Prompt]:
    def is_id(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    items: list[Any]
    if isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        items = raw
    elif isinstance(raw, list) and raw and all(is_id(x) for x in raw):
        items = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, list) and x and all(is_id(t) for t in x) for x in raw):
        items = raw
    else:
        raise APIError(400, "prompt must be a string, a list of strings, a list of token ids or a list of "
                            "non-empty lists of token ids", "prompt", "invalid_type")
    prompts = []
    for item in items:
        if isinstance(item, str):
            try:
                ids = tokenizer.encode(item) or [0]
            except ValueError as e:  # a character the character vocabulary never saw
                raise APIError(400, f"prompt: {e}", "prompt", "invalid_value") from None
            prompts.append(Prompt(ids, item))
        else:
            bad = [t for t in item if not 0 <= t < tokenizer.vocab_size]
            if bad:
                raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary "
                                    f"(0..{tokenizer.vocab_size - 1})", "prompt", "invalid_value")
            prompts.append(Prompt(list(item), tokenizer.decode(item)))
        if len(prompts[-1].ids) > block_size:
            raise APIError(400, f"this model's context is {block_size} tokens, but the prompt has "
                                f"{len(prompts[-1].ids)}; shorten it", "prompt", "context_length_exceeded")
    return prompts


def parse(body: bytes, model_id: str, tokenizer: Any, block_size: int, max_tokens_limit: int,
          max_sequences: int) -> Completion:
    """The request body -> a Completion, or APIError saying which field is wrong and why."""
    try:
        req = jsonbody.loads(body)
    except ValueError as e:  # a syntax error, bytes not UTF-8, NaN, too deep, a number too long
        raise APIError(400, f"the body is not valid JSON: {e}", None, "invalid_json") from None
    if not isinstance(req, dict):
        raise APIError(400, "the body must be a JSON object", None, "invalid_json")
    for k in req:
        if k not in FIELDS:
            raise APIError(400, f"unrecognized request argument supplied: {k}", k, "unknown_parameter")
    for k, default in DEFAULT_ONLY.items():
        if req.get(k) is not None and req[k] != default:
            raise APIError(400, f"{k} is not supported by this server (only its default, {json.dumps(default)})",
                           k, "unsupported_parameter")
    model = _field(req, "model", (str,), None, "a string")
    if model is None:
        raise APIError(400, "you must provide a model parameter", "model", "missing_required_parameter")
    if model != model_id:
        raise APIError(404, f"the model {model!r} does not exist; this server has {model_id!r}", "model",
                       "model_not_found")
    echo = _field(req, "echo", (bool,), False, "a boolean")
    max_tokens = _field(req, "max_tokens", (int,), 16, "an integer")
    if not (0 if echo else 1) <= max_tokens <= max_tokens_limit:
        raise APIError(400, f"max_tokens must be between {0 if echo else 1} and {max_tokens_limit}, got "
                            f"{max_tokens}", "max_tokens", "invalid_value")
    temperature = _field(req, "temperature", (int, float), 1.0, "a number")
    _range("temperature", temperature, 0, 2)
    top_p = _field(req, "top_p", (int, float), 1.0, "a number")
    _range("top_p", top_p, 0, 1, lo_open=True)
    n = _field(req, "n", (int,), 1, "an integer")
    _range("n", n, 1, MAX_N)
    stop = _field(req, "stop", (str, list), [], "a string or a list of strings")
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise APIError(400, f"stop must be a non-empty string or a list of at most {MAX_STOP} of them", "stop",
                       "invalid_value")
    seed = _field(req, "seed", (int,), None, "an integer")
    if seed is not None:
        _range("seed", seed, 0, 2**63 - 1)
    logprobs = _field(req, "logprobs", (int,), None, "an integer")
    if logprobs is not None:
        _range("logprobs", logprobs, 0, MAX_LOGPROBS)
    stream = _field(req, "stream", (bool,), False, "a boolean")
    options = _field(req, "stream_options", (dict,), {}, "an object")
    if options and not stream:
        raise APIError(400, "stream_options is only allowed when stream is true", "stream_options", "invalid_value")
    if set(options) - {"include_usage"} or not isinstance(options.get("include_usage", False), bool):
        raise APIError(400, "stream_options takes one field, include_usage (a boolean)", "stream_options",
                       "invalid_value")
    _field(req, "user", (str,), None, "a string")
    prompts = _prompts(req.get("prompt", ""), tokenizer, block_size)
    if len(prompts) * n > max_sequences:
        raise APIError(400, f"{len(prompts)} prompt(s) x n={n} is more sequences than this server queues "
                            f"({max_sequences})", "n", "invalid_value")
    sampling = Sampling(max_tokens, float(temperature), float(top_p), None, tuple(stop), logprobs)
    return Completion(model, prompts, sampling, n, seed, stream, bool(options.get("include_usage")), echo)


def sequences(c: Completion, request: Request) -> list[Sequence]:
    """One sequence per choice, index = prompt * n + choice, each with its own generator."""
    out = []
    for p, prompt in enumerate(c.prompts):
        for j in range(c.n):
            i = p * c.n + j
            rng = np.random.default_rng(c.seed + i if c.seed is not None else None)
            out.append(Sequence(request, i, prompt.ids, c.sampling, rng, text_offset=len(prompt.text),
                                echo_logprobs=c.echo and c.sampling.logprobs is not None, group=(id(request), p)))
    return out


def logprobs_object(entries: list[Entry]) -> dict[str, list[Any]]:
    return {"tokens": [e[0] for e in entries], "token_logprobs": [e[1] for e in entries],
            "top_logprobs": [e[2] for e in entries], "text_offset": [e[3] for e in entries]}


def prefix(c: Completion, index: int) -> str:
    """What comes before the generated text of a choice: its prompt when echoing."""
    return c.prompts[index // c.n].text if c.echo else ""


def chunk(c: Completion, ev: Event, text_prefix: str = "") -> dict[str, Any]:
    """One stream chunk: a choice's new text (and log-probabilities), with finish_reason on its last."""
    lp = logprobs_object(ev.logprobs) if c.sampling.logprobs is not None else None
    return {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model,
            "choices": [{"text": text_prefix + ev.text, "index": ev.index, "logprobs": lp,
                         "finish_reason": ev.finish}]}


def usage(c: Completion, completion_tokens: int) -> dict[str, int]:
    prompt_tokens = sum(len(p.ids) for p in c.prompts)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def usage_chunk(c: Completion, completion_tokens: int) -> dict[str, Any]:
    """The stream's last chunk when stream_options.include_usage is set: no choices, the usage."""
    return {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model, "choices": [],
            "usage": usage(c, completion_tokens)}


class Collector:
    """Gathers a request's events into OpenAI's completion object."""

    def __init__(self, c: Completion) -> None:
        k = len(c.prompts) * c.n
        self.c = c
        self.text = [prefix(c, i) for i in range(k)]
        self.entries: list[list[Entry]] = [[] for _ in range(k)]
        self.finish: list[str | None] = [None] * k
        self.tokens = [0] * k

    def add(self, ev: Event) -> None:
        self.text[ev.index] += ev.text
        self.entries[ev.index] += ev.logprobs
        if ev.finish is not None:
            self.finish[ev.index], self.tokens[ev.index] = ev.finish, ev.tokens

    def response(self) -> dict[str, Any]:
        c = self.c
        choices = [{"text": t, "index": i, "finish_reason": f,
                    "logprobs": logprobs_object(e) if c.sampling.logprobs is not None else None}
                   for i, (t, e, f) in enumerate(zip(self.text, self.entries, self.finish, strict=True))]
        return {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model,
                "choices": choices, "usage": usage(c, sum(self.tokens))}
