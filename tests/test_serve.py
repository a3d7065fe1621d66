"""The generation server (minitransformer/deploy/serve.py), started on a free loopback port and spoken to with a
real HTTP client: answers, streaming, a burst of concurrent requests, and a batch of malformed ones that each
get a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from minitransformer.deploy.serve import make_server
from minitransformer.tasks.language_model import TrainConfig, train


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    (d / "text.txt").write_text("hello there, general kenobi. " * 300, encoding="utf-8")
    train(TrainConfig(data=str(d / "text.txt"), out=str(d / "out"), n_layer=1, n_head=2, n_embd=16, block_size=16,
                      max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    srv = make_server(str(d / "out"), "127.0.0.1", 0, max_new_tokens_limit=50, max_body_bytes=2000)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def request(port, method, path, body=None, headers=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, resp.getheader("Transfer-Encoding"), payload


def generate(port, **body):
    status, _, payload = request(port, "POST", "/v1/generate", body)
    assert status == 200, payload
    return json.loads(payload)["text"]


def test_health_model_and_seeded_generation(server):
    assert request(server, "GET", "/health")[2] == b'{"status": "ok"}'
    info = json.loads(request(server, "GET", "/v1/model")[2])
    assert info["tokenizer"] == "char" and info["parameters"] > 0 and info["quantization"] == "none"
    a = generate(server, prompt="hello", max_new_tokens=20, seed=3, temperature=0.9)
    assert len(a) == 20 and a == generate(server, prompt="hello", max_new_tokens=20, seed=3, temperature=0.9)
    assert a != generate(server, prompt="hello", max_new_tokens=20, seed=4, temperature=0.9)


def test_streaming_sends_the_same_text_in_chunks(server):
    status, encoding, payload = request(server, "POST", "/v1/generate",
                                        {"prompt": "gen", "max_new_tokens": 15, "seed": 7, "stream": True})
    assert status == 200 and encoding == "chunked"  # http.client has already joined the chunks
    assert payload.decode() == generate(server, prompt="gen", max_new_tokens=15, seed=7)


def test_a_burst_of_concurrent_requests(server):
    expected = {s: generate(server, prompt="he", max_new_tokens=10, seed=s) for s in range(8)}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: generate(server, prompt="he", max_new_tokens=10, seed=s % 8), range(32)))
    assert got == [expected[s % 8] for s in range(32)]


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"prompt": "hi", "colour": "red"}', 400, "unknown field(s): colour"),
    (b'{"max_new_tokens": "ten"}', 400, "'max_new_tokens' has the wrong type"),
    (b'{"max_new_tokens": 51}', 400, "between 1 and 50"),
    (b'{"temperature": 0}', 400, "temperature must be positive"),
    (b'{"top_p": 1.5}', 400, "top_p must be in (0, 1]"),
    (b'{"prompt": "hi \\u00e9"}', 400, "not in this character vocabulary"),
    (b'{"prompt": "' + b"x" * 3000 + b'"}', 413, "over the limit of 2000"),
])
def test_malformed_requests_get_a_4xx_json_error(server, body, status, message):
    got, _, payload = request(server, "POST", "/v1/generate", raw=body)
    assert got == status and message in json.loads(payload)["error"]


def test_wrong_paths_and_the_server_survives(server):
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "POST", "/v1/other", {"prompt": "x"})[0] == 404
    assert request(server, "GET", "/health")[0] == 200
