"""The OpenAI-compatible server (minitransformer/deploy/): a tiny model trained for 2 steps served
on a free loopback port, spoken to with http.client and raw Server-Sent Events parsing, and with the official
`openai` client where it is installed. Checked against GPT.generate: greedy text equals generate's, a seeded
sampled text equals generate's after mt.manual_seed(seed), alone or in a batch of concurrent requests; the
scheduler is also driven directly to check a sequence joining a running batch mid-flight."""

from __future__ import annotations

import http.client
import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import minitransformer as mt
from minitransformer.deploy.completions import Completion, Prompt, sequences
from minitransformer.deploy.scheduler import QueueFull, Request, Sampling, Scheduler, Sequence
from minitransformer.deploy.serve import make_server
from minitransformer.tasks.language_model import TrainConfig, load_model, train

MODEL = "tiny-model"
BLOCK = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-openai")
    (d / "text.txt").write_text("hello there, general kenobi. " * 300, encoding="utf-8")
    out = d / MODEL
    train(TrainConfig(data=str(d / "text.txt"), out=str(out), n_layer=2, n_head=2, n_embd=32, block_size=BLOCK,
                      max_iters=2, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
    srv = make_server(str(out), "127.0.0.1", 0, max_new_tokens_limit=64, max_body_bytes=4000, max_batch_size=8)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    model, tokenizer, _ = load_model(out)
    yield srv, model, tokenizer
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def port(served):
    return served[0].server_address[1]


def call(port, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), payload


def complete(port, **body):
    status, _, payload = call(port, "POST", "/v1/completions", {"model": MODEL, **body})
    assert status == 200, payload
    return json.loads(payload)


def stream_events(port, **body):
    """The `data:` payloads of a streamed completion, parsed as Server-Sent Events."""
    status, ctype, payload = call(port, "POST", "/v1/completions", {"model": MODEL, "stream": True, **body})
    assert status == 200 and ctype == "text/event-stream", payload
    events = [e for e in payload.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    return [json.loads(e[len("data: "):]) for e in events[:-1]]


def generated(model, tokenizer, prompt, n, seed=None, **kw):
    """GPT.generate's continuation of one prompt: greedy (top_k=1) unless a seed and temperature are given."""
    ids = tokenizer.encode(prompt)
    if seed is not None:
        mt.manual_seed(seed)
    out = model.generate(mt.tensor([ids]), n, **(kw or {"top_k": 1})).numpy()[0, len(ids):]
    return tokenizer.decode(out.tolist())


def test_models_list_and_retrieve(port):
    status, _, payload = call(port, "GET", "/v1/models")
    listing = json.loads(payload)
    assert status == 200 and listing["object"] == "list" and [m["id"] for m in listing["data"]] == [MODEL]
    card = json.loads(call(port, "GET", f"/v1/models/{MODEL}")[2])
    assert card == listing["data"][0] and card["object"] == "model" and isinstance(card["created"], int)
    status, _, payload = call(port, "GET", "/v1/models/other")
    assert status == 404 and json.loads(payload)["error"]["code"] == "model_not_found"


def test_completion_shape_and_usage(port):
    r = complete(port, prompt="hello", max_tokens=7, seed=1)
    assert r["id"].startswith("cmpl-") and r["object"] == "text_completion" and r["model"] == MODEL
    (choice,) = r["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert len(choice["text"]) == 7  # a character tokenizer: one character per token
    assert r["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert len(complete(port, prompt="hi")["choices"][0]["text"]) == 16  # OpenAI's default max_tokens


def test_greedy_and_seeded_text_equal_generate_past_the_context(served, port):
    _, model, tok = served
    # 12 + 40 tokens > block_size 32: the context slides as in GPT.generate
    assert complete(port, prompt="general keno", max_tokens=40, temperature=0)["choices"][0]["text"] == \
        generated(model, tok, "general keno", 40)
    got = complete(port, prompt="hello", max_tokens=30, temperature=0.9, top_p=0.95, seed=11)["choices"][0]["text"]
    assert got == generated(model, tok, "hello", 30, seed=11, temperature=0.9, top_p=0.95)


def test_seed_n_and_stop(served, port):
    a = complete(port, prompt="the", max_tokens=20, seed=5, n=2)["choices"]
    assert [c["index"] for c in a] == [0, 1] and a[0]["text"] != a[1]["text"]
    assert complete(port, prompt="the", max_tokens=20, seed=5, n=2)["choices"] == a
    # choice i draws from a generator seeded seed + i
    assert complete(port, prompt="the", max_tokens=20, seed=6)["choices"][0]["text"] == a[1]["text"]
    full = complete(port, prompt="hello", max_tokens=30, temperature=0)["choices"][0]["text"]
    stop = full[10:12]
    cut = complete(port, prompt="hello", max_tokens=30, temperature=0, stop=[stop, "QQ"])["choices"][0]
    assert cut == {"text": full[:full.index(stop)], "index": 0, "logprobs": None, "finish_reason": "stop"}
    streamed = stream_events(port, prompt="hello", max_tokens=30, temperature=0, stop=stop)
    assert "".join(c["choices"][0]["text"] for c in streamed) == cut["text"]
    assert streamed[-1]["choices"][0]["finish_reason"] == "stop"


def test_logprobs_and_echo(served, port):
    _, model, tok = served
    r = complete(port, prompt="hello", max_tokens=6, temperature=0, logprobs=3)["choices"][0]
    lp = r["logprobs"]
    assert "".join(lp["tokens"]) == r["text"] and lp["text_offset"] == list(range(5, 11))
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert logprob <= 0 and len(top) == 3 and top[token] == logprob == max(top.values())  # greedy: the likeliest
    e = complete(port, prompt="hello", max_tokens=3, temperature=0, logprobs=1, echo=True)["choices"][0]
    assert e["text"] == "hello" + r["text"][:3]
    assert e["logprobs"]["tokens"] == list("hello") + lp["tokens"][:3]
    assert e["logprobs"]["token_logprobs"][0] is None and e["logprobs"]["text_offset"] == list(range(8))
    only = complete(port, prompt="hello", max_tokens=0, echo=True)
    assert only["choices"][0]["text"] == "hello" and only["usage"]["completion_tokens"] == 0


def test_stream_concatenates_to_the_plain_answer(port):
    plain = complete(port, prompt=["hello", "gen"], max_tokens=12, seed=3, n=2)
    chunks = stream_events(port, prompt=["hello", "gen"], max_tokens=12, seed=3, n=2,
                           stream_options={"include_usage": True})
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    texts = ["", "", "", ""]
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        texts[choice["index"]] += choice["text"]
    assert texts == [c["text"] for c in plain["choices"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


@pytest.mark.parametrize("body,status,param,code", [
    ({"prompt": "hi", "colour": "red"}, 400, "colour", "unknown_parameter"),
    ({"prompt": "hi", "presence_penalty": 0.5}, 400, "presence_penalty", "unsupported_parameter"),
    ({"prompt": "hi", "best_of": 3}, 400, "best_of", "unsupported_parameter"),
    ({"prompt": "hi", "max_tokens": 65}, 400, "max_tokens", "invalid_value"),
    ({"prompt": "hi", "max_tokens": 0}, 400, "max_tokens", "invalid_value"),
    ({"prompt": "hi", "temperature": 2.5}, 400, "temperature", "invalid_value"),
    ({"prompt": "hi", "top_p": 0}, 400, "top_p", "invalid_value"),
    ({"prompt": "hi", "n": "two"}, 400, "n", "invalid_type"),
    ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_value"),
    ({"prompt": "hi", "logprobs": 6}, 400, "logprobs", "invalid_value"),
    ({"prompt": "hi", "stream": "yes"}, 400, "stream", "invalid_type"),
    ({"prompt": "hi \u00e9"}, 400, "prompt", "invalid_value"),
    ({"prompt": [1, 999]}, 400, "prompt", "invalid_value"),
    ({"prompt": "h" * (BLOCK + 1)}, 400, "prompt", "context_length_exceeded"),
    ({"prompt": "hi", "model": "nope"}, 404, "model", "model_not_found"),
    ({"prompt": "hi", "model": None}, 400, "model", "missing_required_parameter"),
])
def test_bad_requests_get_openai_errors(port, body, status, param, code):
    got, _, payload = call(port, "POST", "/v1/completions", {"model": MODEL, **body})
    err = json.loads(payload)["error"]
    assert (got, err["param"], err["code"], err["type"]) == (status, param, code, "invalid_request_error")
    assert err["message"]


def test_defaults_accepted_and_transport_errors(port):
    ok = complete(port, prompt=[[1, 2, 3]], max_tokens=2, presence_penalty=0, frequency_penalty=0.0, best_of=1,
                  logit_bias={}, suffix=None, user="me")
    assert ok["usage"]["prompt_tokens"] == 3
    assert call(port, "POST", "/v1/completions", raw=b"{oops")[0] == 400
    status, _, payload = call(port, "POST", "/v1/completions", raw=b'{"prompt": "' + b"x" * 5000 + b'"}')
    assert status == 413 and json.loads(payload)["error"]["code"] == "body_too_large"
    assert call(port, "GET", "/v1/completions")[0] == 405
    assert call(port, "POST", "/v1/models", {})[0] == 405
    assert call(port, "GET", "/v1/nowhere")[0] == 404
    assert call(port, "GET", "/health")[0] == 200


def test_a_full_queue_answers_503(served, port, monkeypatch):
    srv, model, tok = served

    def full(seqs):
        raise QueueFull("the queue is full")
    monkeypatch.setattr(srv.scheduler, "submit", full)
    status, _, payload = call(port, "POST", "/v1/completions", {"model": MODEL, "prompt": "hi"})
    assert status == 503 and json.loads(payload)["error"]["code"] == "queue_full"
    monkeypatch.undo()
    sched = Scheduler(model, tok, max_batch_size=2, max_queue=2)
    try:
        with sched.cond:  # the scheduler cannot take them off the queue meanwhile
            req = Request()
            sched.submit([Sequence(req, i, [1], Sampling(2), None) for i in range(2)])
            with pytest.raises(QueueFull, match="queue is full"):
                sched.submit([Sequence(req, 2, [1], Sampling(2), None)])
            req.cancelled = True
    finally:
        sched.close()


def test_concurrent_requests_are_batched_and_equal_generate(served, port):
    srv, model, tok = served
    prompts = ["h", "hello", "general", "kenobi. ", "there, ", "gen", "hello there", "o"]
    greedy = {p: generated(model, tok, p, 20) for p in prompts[:4]}
    sampled = {p: complete(port, prompt=p, max_tokens=20, seed=9, temperature=0.8)["choices"][0]["text"]
               for p in prompts[4:]}
    assert sampled["gen"] == generated(model, tok, "gen", 20, seed=9, temperature=0.8)
    srv.scheduler.stats["max_batch"] = 0
    barrier = threading.Barrier(8)

    def one(p):
        barrier.wait()
        if p in greedy:
            return complete(port, prompt=p, max_tokens=20, temperature=0)["choices"][0]["text"]
        return complete(port, prompt=p, max_tokens=20, seed=9, temperature=0.8)["choices"][0]["text"]

    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(prompts, pool.map(one, prompts), strict=True))
    assert got == {**greedy, **sampled}
    assert srv.scheduler.stats["max_batch"] > 1


class Gate(queue.Queue):
    """A request's event queue that holds the scheduler thread at its first event until opened."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.opened = threading.Event(), threading.Event()

    def put(self, item, block=True, timeout=None):
        super().put(item, block, timeout)
        if not self.reached.is_set():
            self.reached.set()
            self.opened.wait(10)


def test_sequences_join_a_running_batch_and_leave_it(served):
    """A long greedy sequence is running when a longer prompt (the batch is padded on the left) and a shorter one
    (padded itself) join it; they leave first (the padding columns are trimmed). Each text is generate's."""
    _, model, tok = served
    sched = Scheduler(model, tok, max_batch_size=4, max_queue=8)
    jobs = [("h", 28), ("general kenobi", 10), ("he", 6)]
    reqs = [Request() for _ in jobs]
    reqs[0].events = gate = Gate()
    try:
        sched.submit([Sequence(reqs[0], 0, tok.encode("h"), Sampling(28, temperature=0), None)])
        assert gate.reached.wait(10)  # the first sequence has its first token; it joins the batch when let go
        sched.submit([Sequence(r, 0, tok.encode(p), Sampling(n, temperature=0), None)
                      for r, (p, n) in zip(reqs[1:], jobs[1:], strict=True)])
        gate.opened.set()
        texts = []
        for req in reqs:
            evs = [req.events.get(timeout=10)]
            while evs[-1].finish is None:
                evs.append(req.events.get(timeout=10))
            texts.append("".join(e.text for e in evs))
        assert texts == [generated(model, tok, p, n) for p, n in jobs]
        assert sched.stats["max_batch"] == 3 and len(sched.batch) == 0
    finally:
        sched.close()


def test_sequences_get_their_own_generators():
    c = Completion(MODEL, [Prompt([1], "a"), Prompt([2], "b")], Sampling(4), n=2, seed=7)
    seqs = sequences(c, Request())
    assert [s.index for s in seqs] == [0, 1, 2, 3]
    assert [s.rng.random() for s in seqs] == [mt.manual_seed(7 + i).random() for i in range(4)]


# ---- the same through the official client ----------------------------------------------------------------------

@pytest.fixture
def client(port):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=30)


def test_openai_client_models_and_completions(served, client):
    _, model, tok = served
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    r = client.completions.create(model=MODEL, prompt="hello", max_tokens=9, temperature=0)
    assert r.choices[0].text == generated(model, tok, "hello", 9) and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 9 and r.usage.prompt_tokens == 5
    two = client.completions.create(model=MODEL, prompt="the", max_tokens=10, n=2, seed=4)
    assert len(two.choices) == 2 and two.choices[0].text != two.choices[1].text
    again = client.completions.create(model=MODEL, prompt="the", max_tokens=10, n=2, seed=4)
    assert [c.text for c in again.choices] == [c.text for c in two.choices]
    full = r.choices[0].text
    cut = client.completions.create(model=MODEL, prompt="hello", max_tokens=9, temperature=0, stop=full[4:6])
    assert cut.choices[0].text == full[:full.index(full[4:6])] and cut.choices[0].finish_reason == "stop"
    lp = client.completions.create(model=MODEL, prompt="hello", max_tokens=4, logprobs=2, seed=1).choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4 and lp.text_offset[0] == 5


def test_openai_client_streaming_and_errors(client):
    openai = pytest.importorskip("openai")
    plain = client.completions.create(model=MODEL, prompt="gen", max_tokens=15, seed=8).choices[0].text
    stream = client.completions.create(model=MODEL, prompt="gen", max_tokens=15, seed=8, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == plain
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model=MODEL, prompt="gen", temperature=5)
    with pytest.raises(openai.BadRequestError, match="frequency_penalty"):
        client.completions.create(model=MODEL, prompt="gen", frequency_penalty=1.0)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="gen")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_serve_command_passes_the_batching_options(monkeypatch, capsys):
    """`minitransformer serve --max-batch-size/--max-queue/--model-name` reach make_server; 0 is refused."""
    import minitransformer.deploy.serve as serve_module
    from minitransformer.__main__ import main

    seen = {}

    class Stop(Exception):
        pass

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(serve_module, "make_server", fake)
    with pytest.raises(Stop):
        main(["serve", "--out", "x", "--max-batch-size", "4", "--max-queue", "9", "--model-name", "tiny",
              "--timeout", "5", "--max-connections", "7"])
    assert seen == {"max_batch_size": 4, "max_queue": 9, "model_name": "tiny", "timeout": 5.0, "max_connections": 7}
    assert main(["serve", "--out", "x", "--max-batch-size", "0"]) == 2
    assert "--max-batch-size" in capsys.readouterr().err
    assert main(["serve", "--out", "x", "--timeout", "nan"]) == 2
    assert "--timeout" in capsys.readouterr().err
