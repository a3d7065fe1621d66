"""The explorer's HTTP server (`minitransformer explore --out DIR`): the page's three files from static/ and the
JSON API of api.py, on the standard library's threading HTTP server with the connection limits of
deploy/connections.py (as `minitransformer serve`). It listens where it is told, 127.0.0.1 by default.

    GET  /, /app.js, /style.css      the page (plain files: no build step; nothing is fetched from elsewhere,
                                     and the Content-Security-Policy header allows this server only)
    GET  /api/info, POST /api/analyze, POST /api/step     api.py

A POST needs Content-Length (411 without it, 400 unless plain digits, 413 over api.MAX_BODY), all decided
before a byte of the body is read; every error is {"error": "one line"}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..deploy.completions import APIError
from ..deploy.connections import GuardedHandler, GuardedServer
from .api import MAX_BODY, Explorer, open_checkpoint

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html"), "/index.html": ("index.html", "text/html"),
         "/app.js": ("app.js", "text/javascript"), "/style.css": ("style.css", "text/css")}
# the page may load its own files and call its own API, nothing else
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def make_handler(explorer: Explorer, files: dict[str, bytes], socket_timeout: float) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        protocol_version = "HTTP/1.1"
        server_version = "minitransformer-explore"
        timeout = socket_timeout
        disable_nagle_algorithm = True  # the head and the body leave in separate writes

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type + "; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", POLICY)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: dict[str, Any]) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json")

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The standard library's own refusals (a malformed request line, an unknown method) as JSON."""
            self.close_connection = True
            self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})

        def do_HEAD(self) -> None:  # noqa: N802
            self._route("HEAD")

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                if path in PAGES:
                    if method not in ("GET", "HEAD"):
                        raise APIError(405, f"{path} takes GET, not {method}")
                    name, kind = PAGES[path]
                    self._send(200, files[name], kind)
                    return
                if method == "POST" and path in ("/api/analyze", "/api/step"):
                    body = self.read_sized_body(MAX_BODY)
                else:
                    # nothing to read: a body sent anyway stays unread, so the connection cannot be reused
                    self.close_connection = self.headers.get("Content-Length", "0").strip() not in ("", "0")
                    body = b""
                status, obj = explorer.handle("GET" if method == "HEAD" else method, path, body)
                self._json(status, obj)
            except APIError as e:  # from _body or read_body: the length, a short or a late body
                self.close_connection = True
                self._json(e.status, {"error": str(e)})
            except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client went away
                self.close_connection = True
            except Exception as e:  # one request never takes the server down
                self.close_connection = True
                self._json(500, {"error": f"internal error: {type(e).__name__}: {' '.join(str(e).split())}"})

    return Handler


class Server(GuardedServer):
    """The HTTP server with its Explorer (`server.explorer`)."""

    def __init__(self, address: tuple[str, int], explorer: Explorer, timeout: float = 30.0,
                 max_connections: int = 64) -> None:
        self.explorer = explorer
        files = {name: (STATIC / name).read_bytes() for name, _ in PAGES.values()}
        super().__init__(address, make_handler(explorer, files, timeout), max_connections)


def make_server(out: str | Path | Explorer, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """A server ready to `serve_forever()` for the checkpoint in `out` (or an Explorer already open); port 0
    picks a free port (`server.server_address[1]`)."""
    explorer = out if isinstance(out, Explorer) else open_checkpoint(out)
    return Server((host, port), explorer)


def serve(out: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """`minitransformer explore`: open the checkpoint, say which kind it is and where the page is, serve
    until Ctrl-C. An address that cannot be listened on is a ValueError of one line."""
    explorer = open_checkpoint(out)
    try:
        server = make_server(explorer, host, port)
    except OSError as e:
        if e.filename is not None:  # a file of the page (main prints its name and the reason)
            raise
        # the address: a port in use, a host name that does not resolve, an address not on this machine
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    info = explorer.info()
    kind = "a language model" if info["kind"] == "lm" else "a translation model"
    bound_host, bound_port = server.server_address[:2]
    print(f"exploring {out}: {kind}, {info['parameters']:,} parameters, step {info['step']}; "
          f"open http://{bound_host}:{bound_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
