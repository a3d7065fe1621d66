"""The server under bursts, slow or lying clients and hostile bodies (minitransformer/deploy/serve.py): a tiny model
on a free loopback port with a 1 s socket timeout, spoken to with http.client and raw sockets. Every case has a
bounded wait, and after each one the server must still answer."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from minitransformer.deploy.serve import make_server
from minitransformer.tasks.language_model import TrainConfig, train

MODEL = "tiny"
TIMEOUT = 1.0       # the server's socket timeout in these tests
MAX_BODY = 20000


def start(out, **kw):
    srv = make_server(str(out), "127.0.0.1", 0, max_new_tokens_limit=16, max_body_bytes=MAX_BODY, timeout=TIMEOUT,
                      **kw)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-limits")
    (d / "text.txt").write_text("hello there, general kenobi. " * 300, encoding="utf-8")
    train(TrainConfig(data=str(d / "text.txt"), out=str(d / MODEL), n_layer=1, n_head=2, n_embd=16, block_size=16,
                      max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    return d / MODEL


@pytest.fixture(scope="module")
def port(model_dir):
    srv = start(model_dir)
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def call(port, method, path, body=None, raw=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), payload


def healthy(port):
    return call(port, "GET", "/health")[0] == 200


def raw_exchange(port, data, wait=5.0):
    """Send raw bytes, then read one HTTP response: (status, parsed JSON body, seconds taken)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        body = json.loads(resp.read())
    return resp.status, body, time.monotonic() - t0


def closed_after(sock, wait=5.0):
    """Seconds until the server closes a connection that sent `sock`'s bytes so far (recv gives b"")."""
    t0 = time.monotonic()
    sock.settimeout(wait)
    while sock.recv(4096):
        pass
    return time.monotonic() - t0


def test_a_burst_of_100_clients_is_answered_without_resets(port):
    barrier, results = threading.Barrier(100), [None] * 100

    def client(i):
        barrier.wait(timeout=10)
        try:
            if i % 5 == 0:
                status, _, payload = call(port, "POST", "/v1/completions",
                                          {"model": MODEL, "prompt": "he", "max_tokens": 4, "seed": i}, timeout=30)
                results[i] = status if status != 200 else len(json.loads(payload)["choices"])
            else:
                results[i] = call(port, "GET", "/health", timeout=30)[0]
        except OSError as e:  # a reset, a refused connection or a timeout
            results[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [1 if i % 5 == 0 else 200 for i in range(100)]


def test_an_idle_client_is_disconnected_and_blocks_nobody(port):
    with socket.create_connection(("127.0.0.1", port)) as idle:
        assert healthy(port)  # served while the idle connection is open
        assert 0.5 * TIMEOUT < closed_after(idle) < TIMEOUT + 2
    assert healthy(port)


def test_half_the_headers_is_disconnected_after_the_timeout(port):
    with socket.create_connection(("127.0.0.1", port)) as half:
        half.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        assert healthy(port)
        assert 0.5 * TIMEOUT < closed_after(half) < TIMEOUT + 2
    assert healthy(port)


def test_headers_dripped_a_byte_at_a_time_are_cut_off(port):
    head = b"GET /health HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 100
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as drip:
        try:
            for i in range(len(head)):  # each byte well within the socket timeout of the one before
                drip.sendall(head[i:i + 1])
                time.sleep(TIMEOUT / 4)
                if time.monotonic() - t0 > TIMEOUT + 2:
                    break
            closed_after(drip, wait=1)
        except OSError:  # the server shut its side: a reset on send is an answer too
            pass
    assert time.monotonic() - t0 < TIMEOUT + 2
    assert healthy(port)


HEAD = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BODY = b'{"model": "tiny", "prompt": "hi", "max_tokens": 2}'


@pytest.mark.parametrize("path", [b"/v1/completions", b"/v1/generate"])
@pytest.mark.parametrize("headers,body,status", [
    (b"", b"", 411),                                           # no Content-Length
    (b"Content-Length: -1\r\n", BODY, 400),                    # negative: once read as "until the client closes"
    (b"Content-Length: abc\r\n", BODY, 400),
    (b"Content-Length: +51\r\n", BODY, 400),
    (b"Content-Length: 51\r\nContent-Length: 52\r\n", BODY, 400),
    (b"Content-Length: %d\r\n" % (MAX_BODY + 1), b"", 413),     # refused before any of the body is sent
    (b"Content-Length: 99999999999999999999999\r\n", b"", 413),
    (b"Content-Length: 500\r\n", BODY, 408),                    # promises more than it sends, keeps the line open
])
def test_a_lying_content_length_gets_its_status_quickly(port, path, headers, body, status):
    got, payload, took = raw_exchange(port, HEAD % path + headers + b"\r\n" + body)
    assert got == status and took < TIMEOUT + 2
    error = payload["error"]
    assert isinstance(error, str) if path == b"/v1/generate" else set(error) == {"message", "type", "param", "code"}
    assert healthy(port)


def test_a_body_cut_short_by_the_client_gets_400(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(HEAD % b"/v1/completions" + b"Content-Length: 500\r\n\r\n" + BODY)
        s.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        assert resp.status == 400 and json.loads(resp.read())["error"]["code"] == "incomplete_body"
    assert healthy(port)


@pytest.mark.parametrize("request_bytes,status", [
    (b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
    (b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
])
def test_the_standard_librarys_refusals_are_json_too(port, request_bytes, status):
    got, payload, _ = raw_exchange(port, request_bytes)
    assert got == status and set(payload["error"]) == {"message", "type", "param", "code"}
    assert healthy(port)


def test_the_connection_cap_answers_503_at_once_and_recovers(model_dir):
    srv = start(model_dir, max_connections=4)
    port = srv.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        deadline = time.monotonic() + 5
        while srv.open_connections < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        status, headers, payload = call(port, "GET", "/health")
        assert status == 503 and time.monotonic() - t0 < 0.5 * TIMEOUT
        assert headers["Retry-After"] == "1" and json.loads(payload)["error"]["code"] == "too_many_connections"
        for s in idle:
            s.close()
        while srv.open_connections > 0 and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        assert srv.open_connections == 0 and healthy(port)
        assert call(port, "POST", "/v1/completions", {"model": MODEL, "prompt": "he", "max_tokens": 2})[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


HOSTILE = {
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "1e999": b"1e999",
    "a 5000-digit integer": b"1" * 5000,
    "a 5000-digit float": b"0." + b"1" * 5000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_non_finite_and_huge_numbers_get_400(port, name):
    status, _, payload = call(port, "POST", "/v1/completions",
                              raw=b'{"model": "tiny", "prompt": "hi", "temperature": ' + HOSTILE[name] + b"}")
    assert status == 400 and json.loads(payload)["error"]["code"] == "invalid_json"
    status, _, payload = call(port, "POST", "/v1/generate", raw=b'{"temperature": ' + HOSTILE[name] + b"}")
    assert status == 400 and json.loads(payload)["error"].startswith("malformed JSON")


@pytest.mark.parametrize("depth", [33, 5000])
def test_deep_nesting_gets_400(port, depth):
    deep = b"[" * depth + b"]" * depth
    status, _, payload = call(port, "POST", "/v1/completions", raw=b'{"model": "tiny", "prompt": ' + deep + b"}")
    assert status == 400 and "levels deep" in json.loads(payload)["error"]["message"]
    status, _, payload = call(port, "POST", "/v1/generate", raw=b'{"prompt": ' + deep + b"}")
    assert status == 400 and "levels deep" in json.loads(payload)["error"]
    assert healthy(port)


def test_a_query_string_is_ignored(port):
    assert call(port, "GET", "/health?x=1")[0] == 200
    status, _, payload = call(port, "GET", "/v1/models?limit=5")
    assert status == 200 and json.loads(payload)["data"][0]["id"] == MODEL
    assert call(port, "GET", f"/v1/models/{MODEL}?x=1")[0] == 200
    assert call(port, "GET", "/nowhere?x=1")[0] == 404


@pytest.mark.parametrize("option,value", [
    ("max_new_tokens_limit", 0), ("max_body_bytes", 0), ("max_batch_size", 0), ("max_queue", -1),
    ("max_connections", 0), ("timeout", 0), ("timeout", -1.5), ("timeout", float("nan")),
])
def test_make_server_refuses_a_bad_limit(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        make_server(str(tmp_path / "no-model"), "127.0.0.1", 0, **{option: value})
