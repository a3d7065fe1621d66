"""A generation server for a trained language model (`minitransformer serve --out DIR`): OpenAI's completions
API with continuous batching, on the standard library's threading HTTP server.

    GET  /health              {"status": "ok"}
    GET  /v1/models           {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}
    GET  /v1/models/{id}      that model (404 for any other id); the id is the checkpoint folder's name unless
                              model_name says otherwise
    POST /v1/completions      OpenAI's completions request and response (completions.py lists the
                              fields); with "stream": true, Server-Sent Events `data: {chunk}` ... `data: [DONE]`
    GET  /v1/model            the model's config, parameter count, vocabulary and quantization
    POST /v1/generate         {"prompt": "...", "max_new_tokens": 100, "temperature": 0.8, "top_k": null,
                               "top_p": null, "seed": null, "stream": false} -> {"text": "...", "prompt": "..."};
                              with "stream": true the text comes as it is sampled (chunked transfer encoding)

Request threads read and validate; their sequences go to one scheduler thread that owns the model and decodes
every running sequence as one batch, newcomers joining at the next step (scheduler.py says how); each
request reads its own results from a queue. Errors on the OpenAI paths are {"error": {"message", "type",
"param", "code"}}: 400 a bad field, 404 an unknown model or path, 405 a wrong method, 411/413 a missing or too
large body, 503 a full queue (retry later); /v1/generate answers its own 4xx as {"error": "..."}. A failure
inside the model fails the requests being decoded (500) and the server keeps serving.

Limits: the body (max_body_bytes: Content-Length is required on a POST, 411 without it, 400 unless it is a
non-negative decimal integer, 413 over the limit, all decided before a byte of the body is read, which must then
arrive within `timeout` seconds or get 408), the tokens a request may ask for (max_new_tokens_limit, for max_tokens
too), the prompt (a completions prompt longer than block_size is refused, 400 context_length_exceeded, rather
than silently cropped; /v1/generate crops it as GPT.generate does), the rows decoded together (max_batch_size)
and the sequences waiting (max_queue). A generation may run past block_size: as in GPT.generate, the context
then slides (the last block_size tokens, recomputed at each step).

Slow and idle clients: every connection's socket has a timeout (`timeout`, 30 s), and each request head must
arrive within it: a client that sends nothing, drips its headers (even a byte at a time) or sends a short body
is disconnected, as is an idle keep-alive connection. At most max_connections connections are open at once; the
thread that accepts them answers the next one at once with 503 (an OpenAI-shaped error, Retry-After: 1) and
closes it, without starting a thread for it (connections.py). Request bodies are parsed strictly
(jsonbody.py: no NaN or Infinity, bounded nesting and number lengths). A query string is ignored:
/health?x=1 is /health.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..nn.quantized import parameter_count
from ..tasks.language_model import load_model
from . import completions, jsonbody
from .completions import APIError
from .connections import GuardedHandler, GuardedServer
from .scheduler import Event, QueueFull, Request, Sampling, Scheduler, Sequence

FIELDS = {"prompt": str, "max_new_tokens": int, "temperature": (int, float), "top_k": (int, type(None)),
          "top_p": (int, float, type(None)), "seed": (int, type(None)), "stream": bool}
ROUTES = {"/health": "GET", "/v1/model": "GET", "/v1/models": "GET", "/v1/completions": "POST",
          "/v1/generate": "POST"}


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """The model, its tokenizer, the limits and the scheduler; `parse_generate` validates a /v1/generate body."""

    def __init__(self, out: str, max_new_tokens_limit: int = 1000, max_body_bytes: int = 1 << 20,
                 max_batch_size: int = 16, max_queue: int = 64, model_name: str | None = None) -> None:
        self.model, self.tokenizer, self.doc = load_model(out)
        self.limit, self.max_body = max_new_tokens_limit, max_body_bytes
        self.model_id = model_name or Path(out).resolve().name
        self.created = int(Path(out).stat().st_mtime)
        self.scheduler = Scheduler(self.model, self.tokenizer, max_batch_size, max_queue)

    def info(self) -> dict[str, Any]:
        return {"model_config": self.doc["model_config"], "parameters": int(parameter_count(self.model)),
                "step": self.doc["step"], "tokenizer": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size,
                "quantization": self._quantization(), "pruning": self.doc.get("pruning"),
                "max_new_tokens_limit": self.limit, "id": self.model_id,
                "max_batch_size": self.scheduler.max_batch_size, "max_queue": self.scheduler.max_queue,
                "batching": dict(self.scheduler.stats)}

    def card(self) -> dict[str, Any]:
        return {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "minitransformer"}

    def _quantization(self) -> str | dict[str, Any]:
        q = self.doc.get("quantization")
        if not q:
            return "none"
        return {"bits": q["bits"], "group": q["group"], "layers": len(q["linears"]),
                "embedding": bool(q["embeddings"])}

    def parse_generate(self, body: bytes) -> dict[str, Any]:
        try:
            req = jsonbody.fields_object(body, FIELDS)
        except ValueError as e:
            raise BadRequest(str(e)) from None
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
            r["ids"] = (self.tokenizer.encode(r["prompt"]) if r["prompt"] else []) or [0]
        except ValueError as e:  # a character the character vocabulary never saw
            raise BadRequest(f"prompt: {e}") from None
        return r

    def generate_sequence(self, r: dict[str, Any], request: Request) -> Sequence:
        """A /v1/generate request as one sequence (a longer prompt is cropped by the prefill, as in generate)."""
        s = Sampling(r["max_new_tokens"], float(r["temperature"]), r["top_p"], r["top_k"])
        return Sequence(request, 0, r["ids"], s, np.random.default_rng(r["seed"]))


class ServerFailure(RuntimeError):
    pass


def events(service: Service, request: Request, n: int) -> Iterator[Event]:
    """A request's events until its n choices have finished; a failed step raises ServerFailure."""
    done = 0
    while done < n:
        try:
            ev = request.events.get(timeout=1.0)
        except queue.Empty:
            if not service.scheduler.thread.is_alive():
                raise ServerFailure("the scheduler has stopped") from None
            continue
        if ev.error is not None:
            raise ServerFailure(ev.error)
        done += ev.finish is not None
        yield ev


def make_handler(service: Service, socket_timeout: float = 30.0) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        protocol_version = "HTTP/1.1"
        server_version = "minitransformer"
        # the socket's timeout (StreamRequestHandler.setup sets it): a silent client, one stuck in its headers
        # or an idle keep-alive connection gives its thread back when it passes
        timeout = socket_timeout
        # headers and body leave in separate writes: with Nagle's algorithm the body would wait for the
        # client's delayed ACK (~40 ms on Linux) on every answer, and every streamed piece would too
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # quiet; the caller prints what it wants

        def _json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The standard library's own refusals (a malformed request line, too many or too long headers, an
            unknown method) in the endpoint's error shape rather than as HTML; the connection then closes."""
            self.close_connection = True
            text = message or self.responses.get(code, ("error",))[0]
            generate = urlsplit(getattr(self, "path", "") or "").path == "/v1/generate"
            body = json.dumps({"error": text} if generate else APIError(code, text).body()).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            """One chunk of a chunked body (b"" ends the body)."""
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _body(self) -> bytes:
            body = self.read_sized_body(service.max_body)
            self._unread = 0
            return body

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                self._unread = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._unread = 1
            try:
                model_path = path.startswith("/v1/models/")
                allowed = "GET" if model_path else ROUTES.get(path)
                if allowed is None:
                    raise APIError(404, f"no such path {path!r}; this server has GET /v1/models, GET /v1/models/"
                                        "{id}, POST /v1/completions, GET /health, GET /v1/model, POST /v1/generate",
                                   None, "not_found")
                if method != allowed:
                    raise APIError(405, f"{path} takes {allowed}, not {method}", None, "method_not_allowed")
                if path == "/v1/generate":
                    self._generate()
                elif path == "/v1/completions":
                    self._completions()
                elif model_path:
                    if path[len("/v1/models/"):] != service.model_id:
                        raise APIError(404, f"the model {path[len('/v1/models/'):]!r} does not exist; this server "
                                            f"has {service.model_id!r}", None, "model_not_found")
                    self._json(200, service.card())
                elif path == "/v1/models":
                    self._json(200, {"object": "list", "data": [service.card()]})
                elif path == "/v1/model":
                    self._json(200, service.info())
                else:
                    self._json(200, {"status": "ok"})
            except APIError as e:
                self._refuse(e.status, e.body(), {"Allow": ROUTES.get(path, "GET")} if e.status == 405 else None)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client went away or stopped reading
                self.close_connection = True
            except Exception as e:  # never let one request take the server down
                self._refuse(500, APIError(500, f"internal error: {type(e).__name__}: {e}").body())

        def _refuse(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            if self._unread:
                self.close_connection = True  # the body was not read: the connection cannot be reused
            self._json(status, body, headers)

        def _generate(self) -> None:
            """POST /v1/generate, with its own error shape."""
            request = Request(stream=False)
            try:
                try:
                    r = service.parse_generate(self._body())
                    request.stream = r["stream"]
                    service.scheduler.submit([service.generate_sequence(r, request)])
                except APIError as e:
                    raise BadRequest(str(e), e.status) from None
                except QueueFull as e:
                    raise BadRequest(str(e), 503) from None
                if not r["stream"]:
                    text = "".join(ev.text for ev in events(service, request, 1))
                    self._json(200, {"text": text, "prompt": r["prompt"]})
                    return
                self._start_chunked("text/plain; charset=utf-8")
                try:
                    for ev in events(service, request, 1):
                        if ev.text:
                            self._chunk(ev.text.encode("utf-8"))
                except ServerFailure:  # too late for a status: an unterminated body tells the client
                    self.close_connection = True
                    return
                self._chunk(b"")
            except BadRequest as e:
                self._refuse(e.status, {"error": str(e)})
            except ServerFailure as e:
                self._refuse(500, {"error": str(e)})
            finally:
                request.cancelled = True  # a no-op once done; stops the sequence if the client went away

        def _completions(self) -> None:
            """POST /v1/completions: one JSON answer, or Server-Sent Events."""
            c = completions.parse(self._body(), service.model_id, service.tokenizer, service.model.config.block_size,
                                  service.limit, service.scheduler.max_queue)
            request = Request(stream=c.stream)
            try:
                service.scheduler.submit(completions.sequences(c, request))
            except QueueFull as e:
                raise APIError(503, str(e), None, "queue_full") from None
            try:
                if not c.stream:
                    collected = completions.Collector(c)
                    try:
                        for ev in events(service, request, len(c.prompts) * c.n):
                            collected.add(ev)
                    except ServerFailure as e:
                        raise APIError(500, str(e)) from None
                    self._json(200, collected.response())
                    return
                self._start_chunked("text/event-stream")
                started, tokens = set(), 0
                try:
                    for ev in events(service, request, len(c.prompts) * c.n):
                        pre = "" if ev.index in started else completions.prefix(c, ev.index)
                        started.add(ev.index)
                        tokens += ev.tokens if ev.finish else 0
                        self._event(completions.chunk(c, ev, pre))
                    if c.include_usage:
                        self._event(completions.usage_chunk(c, tokens))
                except ServerFailure as e:
                    self._event(APIError(500, str(e)).body())
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            finally:
                request.cancelled = True

        def _event(self, obj: dict[str, Any]) -> None:
            self._chunk(b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n")

    return Handler


class Server(GuardedServer):
    """The HTTP server with its Service (connections.py bounds its connections); server_close also stops
    the scheduler thread."""

    def __init__(self, address: tuple[str, int], service: Service, timeout: float = 30.0,
                 max_connections: int = 256) -> None:
        self.service = service
        super().__init__(address, make_handler(service, timeout), max_connections)

    @property
    def scheduler(self) -> Scheduler:
        return self.service.scheduler

    def server_close(self) -> None:
        super().server_close()
        self.service.scheduler.close()


def make_server(out: str, host: str = "127.0.0.1", port: int = 8000, max_new_tokens_limit: int = 1000,
                max_body_bytes: int = 1 << 20, max_batch_size: int = 16, max_queue: int = 64,
                model_name: str | None = None, timeout: float = 30.0, max_connections: int = 256) -> Server:
    """A server ready to `serve_forever()` (port 0 picks a free port: `server.server_address[1]`). The limits
    are checked first: one out of range raises ValueError naming it, before the model is loaded."""
    at_least_one = {"max_new_tokens_limit": max_new_tokens_limit, "max_body_bytes": max_body_bytes,
                    "max_batch_size": max_batch_size, "max_queue": max_queue, "max_connections": max_connections}
    for name, value in at_least_one.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    service = Service(out, max_new_tokens_limit, max_body_bytes, max_batch_size, max_queue, model_name)
    try:
        return Server((host, port), service, timeout, max_connections)
    except OSError:
        service.scheduler.close()
        raise
