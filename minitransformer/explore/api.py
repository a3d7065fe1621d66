"""The explorer's JSON API, without HTTP: `open_checkpoint(out)` loads a checkpoint directory with the
loaders of `minitransformer sample` and `translate` and says which kind it is; `Explorer.handle(method, path,
body)` answers a request as (HTTP status, JSON object). docs/explore.md lists the fields.

    GET  /api/info      the model: kind ("lm" or "translate"), sizes, vocabulary, limits
    POST /api/analyze   language model: {"prompt": "text"} or {"ids": [...]}
                        translation: {"source": "text", "target": "text"} or {"source", "target_ids": [...]}
                        -> tokens, the next-token distribution, attention, the logit lens (analysis.py)
    POST /api/step      the same fields, plus "token" (an id to append, or null to sample) and the sampling
                        options "temperature", "top_k", "top_p", "seed" -> the token, the longer input and
                        its analysis

Every refusal is an Error with a status and one line ({"error": "..."}): 413 a body over MAX_BODY bytes,
400 malformed JSON, an unknown field, a wrong type, an input too long for the model (checked on the text's
length before it is encoded, then on the token count), a character or word not in the vocabulary, a token
id out of range, a sampling option out of range; 404 an unknown path, 405 a wrong method. Sizes are checked
before any work. One lock lets one request at a time use the model (the hooks live on it while it runs).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..deploy import jsonbody
from ..io import checkpoint
from ..io.checkpoint import CheckpointError
from ..nn.quantized import parameter_count
from ..tasks import translation
from ..tasks.common import EOS, UNK
from ..tasks.language_model import load_model
from . import analysis

MAX_BODY = 1 << 16          # bytes of a request body
BPE_CHARS_PER_TOKEN = 16    # a BPE prompt longer than block_size * this many characters is refused unread
WORD_CHARS = 64             # likewise per word of a word-level vocabulary
SAMPLING = {"token": (int, type(None)), "temperature": (int, float), "top_k": (int, type(None)),
            "top_p": (int, float, type(None)), "seed": (int, type(None))}


class Error(ValueError):
    """A request refused with `status` and a one-line message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


def parse_body(body: bytes, fields: dict[str, Any]) -> dict[str, Any]:
    """A request body -> its JSON object, every field known and of its type (`fields`: name -> types)."""
    if len(body) > MAX_BODY:
        raise Error(f"body of {len(body)} bytes is over the limit of {MAX_BODY}", 413)
    try:
        return jsonbody.fields_object(body, fields)
    except ValueError as e:
        raise Error(str(e)) from None


def check_ids(ids: list[Any], vocab_size: int, limit: int, what: str) -> list[int]:
    """A list of token ids: at most `limit` of them (checked first), each an integer in [0, vocab_size)."""
    if len(ids) > limit:
        raise Error(f"{what}: {len(ids)} tokens, more than the model takes ({limit})")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size:
            raise Error(f"{what}: {i!r} is not a token id (0 to {vocab_size - 1})")
    return ids


def sampling_options(req: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The step options of a request, checked with sample_next's rules (and the command line's for seed)."""
    o = {"token": req.get("token"), "temperature": float(req.get("temperature", 1.0)), "top_k": req.get("top_k"),
         "top_p": req.get("top_p"), "seed": req.get("seed")}
    if o["token"] is not None and not 0 <= o["token"] < vocab_size:
        raise Error(f"token {o['token']} is not a token id (0 to {vocab_size - 1})")
    if not o["temperature"] > 0:
        raise Error(f"temperature must be positive, got {o['temperature']}")
    if o["top_k"] is not None and o["top_k"] < 1:
        raise Error(f"top_k must be at least 1, got {o['top_k']}")
    if o["top_p"] is not None and not 0 < o["top_p"] <= 1:
        raise Error(f"top_p must be in (0, 1], got {o['top_p']}")
    if o["seed"] is not None and not 0 <= o["seed"] < 2**128:
        raise Error(f"seed must be between 0 and 2**128 - 1, got {o['seed']}")
    return o


class Explorer:
    """One loaded model behind the API; LanguageModel and Translation fill in the kind-specific parts."""

    kind = ""
    FIELDS: dict[str, Any] = {}

    def __init__(self, out: str | Path, doc: dict[str, Any]) -> None:
        self.out, self.doc = str(out), doc
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
        """One API request -> (status, JSON object); a refusal is (its status, {"error": "one line"})."""
        routes = {"/api/info": "GET", "/api/analyze": "POST", "/api/step": "POST"}
        try:
            if path not in routes:
                raise Error(f"no such path {path!r}; the API has GET /api/info, POST /api/analyze, "
                            "POST /api/step", 404)
            if method != routes[path]:
                raise Error(f"{path} takes {routes[path]}, not {method}", 405)
            if path == "/api/info":
                return 200, self.info()
            step = path == "/api/step"
            req = parse_body(body, {**self.FIELDS, **(SAMPLING if step else {})})
            with self.lock:
                return 200, (self.step(req) if step else self.analyze(req))
        except Error as e:
            return e.status, {"error": str(e)}

    def info(self) -> dict[str, Any]:
        raise NotImplementedError

    def analyze(self, req: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def step(self, req: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class LanguageModel(Explorer):
    """A GPT checkpoint (`minitransformer train`)."""

    kind = "lm"
    FIELDS = {"prompt": str, "ids": list}

    def __init__(self, out: str | Path, model: Any, tokenizer: Any, doc: dict[str, Any]) -> None:
        super().__init__(out, doc)
        self.model, self.tokenizer = model, tokenizer
        self.block_size = model.config.block_size
        per_token = 1 if tokenizer.kind == "char" else BPE_CHARS_PER_TOKEN
        self.max_chars = self.block_size * per_token

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"kind": self.kind, "name": Path(self.out).resolve().name, "step": self.doc["step"],
                "parameters": int(parameter_count(self.model)), "config": self.doc["model_config"],
                "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "n_layer": c.n_layer, "n_head": c.n_head, "block_size": self.block_size,
                "max_prompt_chars": self.max_chars, "top": analysis.TOP, "max_body_bytes": MAX_BODY}

    def ids(self, req: dict[str, Any], room: int = 0) -> list[int]:
        """The prompt's token ids, from "ids" or "prompt" (exactly one), with `room` left for new tokens."""
        limit = self.block_size - room
        context = f"the model's context holds {self.block_size} tokens" + (", one kept for the next" if room else "")
        if ("ids" in req) == ("prompt" in req):
            raise Error('give the prompt as "prompt" (text) or as "ids" (token ids), one of the two')
        if "ids" in req:
            if len(req["ids"]) > limit:
                raise Error(f"ids: {len(req['ids'])} tokens, too many: {context}")
            ids = check_ids(req["ids"], self.tokenizer.vocab_size, limit, "ids")
        else:
            prompt = req["prompt"]
            if len(prompt) > self.max_chars - room:
                raise Error(f"prompt: {len(prompt)} characters, too long: {context}")
            try:
                ids = self.tokenizer.encode(prompt)
            except ValueError as e:  # a character the character vocabulary never saw
                raise Error(f"prompt: {e}") from None
            if len(ids) > limit:
                raise Error(f"prompt: {len(ids)} tokens, too many: {context}")
        if not ids:
            raise Error("the prompt is empty: give at least one token")
        return ids

    def analyze(self, req: dict[str, Any]) -> dict[str, Any]:
        return analysis.analyze_lm(self.model, self.tokenizer, self.ids(req))

    def step(self, req: dict[str, Any]) -> dict[str, Any]:
        o = sampling_options(req, self.tokenizer.vocab_size)
        return analysis.step_lm(self.model, self.tokenizer, self.ids(req, room=1), **o)


class Translation(Explorer):
    """An encoder-decoder translation checkpoint (`minitransformer translate train`)."""

    kind = "translate"
    FIELDS = {"source": str, "target": str, "target_ids": list}

    def __init__(self, out: str | Path, model: Any, src_vocab: Any, tgt_vocab: Any, doc: dict[str, Any]) -> None:
        super().__init__(out, doc)
        self.model, self.src, self.tgt = model, src_vocab, tgt_vocab
        self.max_len = model.config.max_len

    def info(self) -> dict[str, Any]:
        c = self.model.config
        return {"kind": self.kind, "name": Path(self.out).resolve().name, "step": self.doc["step"],
                "parameters": int(sum(p.numel() for p in self.model.parameters())), "config": self.doc["model_config"],
                "src_tokenizer": self.src.kind, "tgt_tokenizer": self.tgt.kind, "src_vocab": len(self.src),
                "tgt_vocab": len(self.tgt), "n_encoder_layer": c.num_encoder_layers,
                "n_layer": c.num_decoder_layers, "n_head": c.nhead, "max_len": self.max_len, "eos": EOS,
                "top": analysis.TOP, "max_body_bytes": MAX_BODY}

    def _encode(self, vocab: Any, text: str, limit: int, what: str) -> list[int]:
        """Text -> ids of `vocab`, at most `limit` of them; a character or word the vocabulary lacks is refused."""
        per_token = 1 if vocab.kind == "char" else WORD_CHARS
        if len(text) > limit * per_token:
            raise Error(f"{what}: {len(text)} characters, more than the model's {limit} positions hold")
        pieces = vocab.split(text)
        ids = vocab.encode(text)
        unknown = [p for p, i in zip(pieces, ids, strict=True) if i == UNK and p != "<unk>"]
        if unknown:
            word = "character" if vocab.kind == "char" else "word"
            raise Error(f"{what}: {word} {unknown[0]!r} is not in this vocabulary ({len(vocab)} tokens)")
        if len(ids) > limit:
            raise Error(f"{what}: {len(ids)} tokens, more than the model's {limit} positions hold")
        return ids

    def ids(self, req: dict[str, Any], room: int = 0) -> tuple[list[int], list[int]]:
        """(source ids, target ids) of a request; the decoder reads <bos> first, and `room` more tokens."""
        if "source" not in req:
            raise Error('give the "source" text')
        if "target" in req and "target_ids" in req:
            raise Error('give the target as "target" (text) or as "target_ids", not both')
        src = self._encode(self.src, req["source"], self.max_len, "source")
        if not src:
            raise Error("the source is empty: give at least one token")
        limit = self.max_len - 1 - room
        if "target_ids" in req:
            tgt = check_ids(req["target_ids"], len(self.tgt), limit, "target_ids")
        else:
            tgt = self._encode(self.tgt, req.get("target", ""), limit, "target")
        return src, tgt

    def analyze(self, req: dict[str, Any]) -> dict[str, Any]:
        return analysis.analyze_translation(self.model, self.src, self.tgt, *self.ids(req))

    def step(self, req: dict[str, Any]) -> dict[str, Any]:
        o = sampling_options(req, len(self.tgt))
        return analysis.step_translation(self.model, self.src, self.tgt, *self.ids(req, room=1), **o)


def open_checkpoint(out: str | Path) -> Explorer:
    """The checkpoint in `out` as a LanguageModel or a Translation; CheckpointError for anything else."""
    task = checkpoint.read_manifest(out).get("task", "lm")
    if task == "lm":
        model, tokenizer, doc = load_model(out)
        return LanguageModel(out, model, tokenizer, doc)
    if task == "translate":
        model, src, tgt, doc = translation.load(out)
        return Translation(out, model, src, tgt, doc)
    raise CheckpointError(f"{out}: a {task} checkpoint; explore shows a language model (minitransformer train) or "
                          "a translation model (minitransformer translate train)")
