"""The HTTP connections of the server (minitransformer/deploy/serve.py), bounded in number and in time; what is said on
them is serve.py's business.

GuardedServer (a ThreadingHTTPServer) keeps at most max_connections open, one thread each: the thread that
accepts connections answers the next one at once with 503 (OpenAI's error object, Retry-After: 1) without
starting a thread for it, and keeps the refused socket half-open for `linger` seconds so that the client reads
the answer rather than a reset. GuardedHandler sets its socket's timeout (the class attribute `timeout`), which
bounds each wait for bytes, and gives each request head a deadline of `timeout` seconds, which the accepting
thread enforces (at most one poll interval late): a client that drips its headers a byte at a time is cut off
too. `read_body` reads a body against the same deadline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .completions import APIError


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose request heads and bodies must arrive within `timeout` seconds."""

    timeout: float = 30.0
    server: GuardedServer

    def handle_one_request(self) -> None:
        self.server.watch(self.connection, time.monotonic() + self.timeout)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.server.unwatch(self.connection)
        return super().parse_request()

    def finish(self) -> None:
        self.server.unwatch(self.connection)
        super().finish()

    # every method goes to one router, which answers the ones it does not take (405, as JSON)
    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def _route(self, method: str) -> None:
        raise NotImplementedError

    def read_sized_body(self, limit: int) -> bytes:
        """The body, its Content-Length checked before a byte is read (present: 411; one plain decimal: 400;
        at most `limit`: 413), then read against the deadline."""
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise APIError(411, "a Content-Length header is required", None, "length_required")
        raw = values[0].strip()
        # int() would also take "-1", "+5", " 5" and "1_000": only plain digits are a length
        if len(set(values)) > 1 or not (raw.isascii() and raw.isdigit()):
            raise APIError(400, f"Content-Length must be one non-negative decimal integer, got "
                                f"{', '.join(values)[:40]!r}", None, "invalid_content_length")
        length = int(raw)
        if length > limit:
            raise APIError(413, f"body of {length} bytes is over the limit of {limit}", None, "body_too_large")
        return self.read_body(length)

    def read_body(self, length: int) -> bytes:
        """`length` bytes, all of which must arrive within `timeout` seconds (408 otherwise)."""
        deadline, parts, got = time.monotonic() + self.timeout, [], 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                part = self.rfile.read1(min(length - got, 1 << 16))
                if not part:
                    raise APIError(400, f"the body ended after {got} of its {length} bytes", None,
                                   "incomplete_body")
                parts.append(part)
                got += len(part)
        except TimeoutError:
            raise APIError(408, f"the body did not arrive within {self.timeout:g} s", None,
                           "request_timeout") from None
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(parts)


class GuardedServer(ThreadingHTTPServer):
    """At most max_connections open connections, one thread each; 503 at once for the next one."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: socketserver's 5 resets connections in a burst of clients
    linger = 1.0              # seconds a turned-away connection stays half-open, so the client reads its 503
    max_lingering = 1024      # turned-away connections kept at most (the oldest are closed first)

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler], max_connections: int = 256) -> None:
        self.max_connections = max_connections
        self.open_connections = 0
        self._lock = threading.Lock()
        self._turned_away: deque[tuple[socket.socket, float]] = deque()
        self._heads: dict[socket.socket, float] = {}  # connections reading a request head: their deadline
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """In the accepting thread: a handler thread for the connection, or 503 at once when all are taken."""
        with self._lock:
            full = self.open_connections >= self.max_connections
            self.open_connections += not full
        if full:
            self._turn_away(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread was started: it will not give the place back
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def watch(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._heads[sock] = deadline

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock:
            self._heads.pop(sock, None)

    def _cut_slow_heads(self) -> None:
        """Stop reading from the connections whose request head is past its deadline: their handler's read
        returns at once, it answers what it has (or nothing) and the connection closes."""
        now = time.monotonic()
        with self._lock:
            late = [sock for sock, deadline in self._heads.items() if deadline <= now]
            for sock in late:
                del self._heads[sock]
        for sock in late:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _release(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _turn_away(self, sock: socket.socket) -> None:
        """503 without reading the request (it may not have arrived): written without blocking, then the
        connection is half-closed and kept for `linger` seconds, since closing a socket with unread input
        resets it and the client could lose the answer."""
        body = json.dumps(APIError(503, f"the server is at its limit of {self.max_connections} open connections; "
                                        "retry later", None, "too_many_connections").body()).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            sock.send(head + body)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._turned_away.append((sock, time.monotonic() + self.linger))
        self._close_turned_away(self.max_lingering)

    def _close_turned_away(self, keep_at_most: int) -> None:
        """Close the turned-away connections whose time is up, and the oldest beyond keep_at_most."""
        now, waiting = time.monotonic(), self._turned_away
        while waiting and (len(waiting) > keep_at_most or waiting[0][1] <= now):
            sock = waiting.popleft()[0]
            try:
                while sock.recv(1 << 16):  # what the client sent meanwhile, so that close sends no reset
                    pass
            except OSError:
                pass
            sock.close()

    def service_actions(self) -> None:  # serve_forever calls it at least every poll_interval
        super().service_actions()
        self._close_turned_away(self.max_lingering)
        self._cut_slow_heads()

    def server_close(self) -> None:
        super().server_close()
        self._close_turned_away(0)
