"""A generation server for a trained language model (`minitransformer serve --out DIR`), on the standard
library's threading HTTP server.

    GET  /health        {"status": "ok"}
    GET  /v1/model      the model's config, parameter count, vocabulary and quantization
    POST /v1/generate   {"prompt": "...", "max_new_tokens": 100, "temperature": 0.8, "top_k": null,
                         "top_p": null, "seed": null, "stream": false} -> {"text": "...", "tokens": N}
                        with "stream": true the text comes as it is sampled (chunked transfer encoding)

A bad request gets a 4xx status and {"error": "..."} saying what is wrong (malformed JSON, an unknown field, a
value of the wrong type or range, max_new_tokens above the server's limit, a prompt the tokenizer cannot
encode, a body over the size limit, an unknown path); an unexpected failure gets a 500; the server keeps
serving either way. Requests are handled in threads; generation itself runs one request at a time (a lock),
because the sampling generator and the model's caches are shared.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIELDS = {"prompt": str, "max_new_tokens": int, "temperature": (int, float), "top_k": (int, type(None)),
          "top_p": (int, float, type(None)), "seed": (int, type(None)), "stream": bool}


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Generator:
    """The model, its tokenizer and the limits; `parse` validates a request, `stream` yields text pieces."""

    def __init__(self, out: str, max_new_tokens_limit: int = 1000, max_body_bytes: int = 1 << 20) -> None:
        from .train import load_model

        self.model, self.tokenizer, self.doc = load_model(out)
        self.limit, self.max_body = max_new_tokens_limit, max_body_bytes
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        from .nn.quantized import parameter_count

        n = parameter_count(self.model)
        return {"model_config": self.doc["model_config"], "parameters": int(n), "step": self.doc["step"],
                "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "quantization": self._quantization(), "pruning": self.doc.get("pruning"),
                "max_new_tokens_limit": self.limit}

    def _quantization(self) -> str | dict[str, Any]:
        q = self.doc.get("quantization")
        if not q:
            return "none"
        return {"bits": q["bits"], "group": q["group"], "layers": len(q["linears"]),
                "embedding": bool(q["embeddings"])}

    def parse(self, body: bytes) -> dict[str, Any]:
        try:
            req = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"malformed JSON: {e}") from None
        if not isinstance(req, dict):
            raise BadRequest("the body must be a JSON object")
        unknown = sorted(set(req) - set(FIELDS))
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
        for k, v in req.items():
            if not isinstance(v, FIELDS[k]) or (isinstance(v, bool) and FIELDS[k] is not bool):
                raise BadRequest(f"field {k!r} has the wrong type ({type(v).__name__})")
        r = {"prompt": "\n", "max_new_tokens": min(100, self.limit), "temperature": 0.8, "top_k": None,
             "top_p": None, "seed": None, "stream": False, **req}
        if not 1 <= r["max_new_tokens"] <= self.limit:
            raise BadRequest(f"max_new_tokens must be between 1 and {self.limit}, got {r['max_new_tokens']}")
        if r["temperature"] <= 0:
            raise BadRequest(f"temperature must be positive, got {r['temperature']}")
        if r["top_k"] is not None and r["top_k"] < 1:
            raise BadRequest(f"top_k must be at least 1, got {r['top_k']}")
        if r["top_p"] is not None and not 0 < r["top_p"] <= 1:
            raise BadRequest(f"top_p must be in (0, 1], got {r['top_p']}")
        if r["seed"] is not None and r["seed"] < 0:
            raise BadRequest(f"seed must be non-negative, got {r['seed']}")
        try:
            r["ids"] = self.tokenizer.encode(r["prompt"]) if r["prompt"] else [0]
        except ValueError as e:  # a character the character vocabulary never saw
            raise BadRequest(f"prompt: {e}") from None
        if not r["ids"]:
            r["ids"] = [0]
        return r

    def stream(self, r: dict[str, Any]):  # noqa: ANN201
        """Yield the prompt's continuation piece by piece (whole UTF-8 characters)."""
        import codecs

        import minitransformer as mt

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self.lock, mt.no_grad():
            if r["seed"] is not None:
                mt.manual_seed(r["seed"])
            for tok in self.model.generate_stream(mt.tensor([r["ids"]]), r["max_new_tokens"], float(r["temperature"]),
                                                  r["top_k"], r["top_p"]):
                t = int(tok.item())
                piece = (decoder.decode(self.tokenizer.vocab[t]) if self.tokenizer.kind == "bpe"
                         else self.tokenizer.decode([t]))
                if piece:
                    yield piece
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail


def make_handler(gen: Generator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "minitransformer"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # quiet; the caller prints what it wants

        def _json(self, status: int, obj: dict[str, Any]) -> None:
            body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._json(200, {"status": "ok"})
            elif self.path == "/v1/model":
                self._json(200, gen.info())
            else:
                self._json(404, {"error": f"no such path {self.path!r}: GET /health, GET /v1/model, "
                                          "POST /v1/generate"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                if self.path != "/v1/generate":
                    raise BadRequest(f"no such path {self.path!r}: POST /v1/generate", 404)
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    raise BadRequest("a Content-Length header is required", 411) from None
                if length > gen.max_body:
                    self.close_connection = True  # the body is not read: the connection cannot be reused
                    raise BadRequest(f"body of {length} bytes is over the limit of {gen.max_body}", 413)
                r = gen.parse(self.rfile.read(length))
                if not r["stream"]:
                    text = "".join(gen.stream(r))
                    self._json(200, {"text": text, "prompt": r["prompt"]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in gen.stream(r):
                    data = piece.encode("utf-8")
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except BadRequest as e:
                self._json(e.status, {"error": str(e)})
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as e:  # never let one request take the server down
                self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    return Handler


def make_server(out: str, host: str = "127.0.0.1", port: int = 8000, max_new_tokens_limit: int = 1000,
                max_body_bytes: int = 1 << 20) -> ThreadingHTTPServer:
    """A server ready to `serve_forever()` (port 0 picks a free port: `server.server_address[1]`)."""
    gen = Generator(out, max_new_tokens_limit, max_body_bytes)
    server = ThreadingHTTPServer((host, port), make_handler(gen))
    server.daemon_threads = True
    return server
