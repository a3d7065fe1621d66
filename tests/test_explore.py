"""`minitransformer explore` (minitransformer/explore/): the JSON API on its own, checked against the models' own
forward passes and against attention computed here from the weights with plain NumPy; the HTTP server; the
command line; and the page in a real headless Chromium driven by Playwright (skipped, saying what is missing,
without them), which saves a screenshot of each view.

The models are tiny and trained for two steps (the assertions hold for any weights). To check a real checkpoint
and keep its screenshots, as docs/explore.md's were made:
    MT_EXPLORE_LM=DIR MT_EXPLORE_TRANSLATION=DIR MT_EXPLORE_SCREENSHOTS=docs/images pytest tests/test_explore.py
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import minitransformer as mt
from minitransformer.explore import api, open_checkpoint
from minitransformer.explore.server import make_server
from minitransformer.nn.generation import sample_next
from minitransformer.nn.gpt import GPT, GPTConfig
from minitransformer.tasks import translation
from minitransformer.tasks.common import BOS, EOS
from minitransformer.tasks.language_model import TrainConfig, load_model, train
from minitransformer.text.tokenizers import ByteBPETokenizer

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "    def __init__(self, name):\n        self.name = "   # 50 characters, every one in both models' text
SOURCE = "123 456"
TEXT = "class Point:\n    def __init__(self, name, x):\n        self.name = name\n        self.x = x\n\n" * 60


# ---- the checkpoints ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("MT_EXPLORE_LM"):
        return Path(os.environ["MT_EXPLORE_LM"])
    d = tmp_path_factory.mktemp("explore-lm")
    (d / "text.txt").write_text(TEXT, encoding="utf-8")
    train(TrainConfig(data=str(d / "text.txt"), out=str(d / "out"), n_layer=2, n_head=2, n_embd=16, block_size=64,
                      max_iters=2, eval_interval=2, eval_iters=1, batch_size=4, sample_tokens=0, seed=7),
          progress=False)
    return d / "out"


@pytest.fixture(scope="module")
def tr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("MT_EXPLORE_TRANSLATION"):
        return Path(os.environ["MT_EXPLORE_TRANSLATION"])
    d = tmp_path_factory.mktemp("explore-translate")
    translation.train(translation.TranslateConfig(
        out=str(d / "out"), corpus="numbers-en", n_train=200, n_test=5, d_model=16, nhead=2, num_encoder_layers=1,
        num_decoder_layers=2, dim_feedforward=32, max_iters=2, eval_interval=2, eval_iters=1, batch_size=8, seed=7),
        progress=False)
    return d / "out"


@pytest.fixture(scope="module")
def lm(lm_dir: Path) -> tuple[api.Explorer, Any, Any]:
    """The explorer, and the same checkpoint loaded separately (the test's own copy of the model)."""
    model, tokenizer, _ = load_model(lm_dir)
    return open_checkpoint(lm_dir), model, tokenizer


@pytest.fixture(scope="module")
def tr(tr_dir: Path) -> tuple[api.Explorer, Any, Any, Any]:
    model, src, tgt, _ = translation.load(tr_dir)
    return open_checkpoint(tr_dir), model, src, tgt


def call(explorer: api.Explorer, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    if raw is None and body is None:
        return explorer.handle("GET", path)
    return explorer.handle("POST", path, raw if raw is not None else json.dumps(body).encode())


def ok(explorer: api.Explorer, path: str, body: Any) -> dict[str, Any]:
    status, answer = call(explorer, path, body)
    assert status == 200, answer
    return answer


# ---- references computed here ------------------------------------------------------------------------------
def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def model_logits(model: Any, ids: list[int]) -> np.ndarray:
    """Every position's logits (T, V) through the model's public forward (with targets it returns them all)."""
    with mt.no_grad():
        logits, _ = model(mt.tensor([ids]), mt.tensor([ids]))
    return logits.numpy()[0].astype(np.float64)


def next_logits(model: Any, ids: list[int]) -> np.ndarray:
    """The last position's logits (V,), as generation computes them (the forward without targets)."""
    with mt.no_grad():
        logits, _ = model(mt.tensor([ids]))
    return logits.numpy()[0, -1].astype(np.float64)


def numpy_attention(model: Any, ids: list[int], layer: int) -> np.ndarray:
    """Attention probabilities (nh, T, T) of `layer`, from the weights alone, in float64 NumPy: the residual
    stream x = wte[ids] + wpe[:T] through the blocks before it, then q = ln_1(x) W_q^T, k = ln_1(x) W_k^T."""
    c = model.config
    w = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    T, C, nh = len(ids), c.n_embd, c.n_head
    hs = C // nh

    def ln(x: np.ndarray, name: str) -> np.ndarray:
        y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + c.layer_norm_eps)
        return y * w[name + ".weight"] + w.get(name + ".bias", 0.0)

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[name + ".weight"].T + w.get(name + ".bias", 0.0)

    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:T]           # (T, C)
    for i in range(layer + 1):
        p = f"transformer.h.{i}."
        q, k, v = np.split(linear(ln(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)   # 3 x (T, C)
        q, k, v = (a.reshape(T, nh, hs).transpose(1, 0, 2) for a in (q, k, v))        # (nh, T, hs)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hs)
        scores[:, np.triu(np.ones((T, T), dtype=bool), 1)] = -np.inf
        att = softmax(scores)                                                          # (nh, T, T)
        if i == layer:
            return att
        x = x + linear((att @ v).transpose(1, 0, 2).reshape(T, C), p + "attn.c_proj")
        h = linear(ln(x, p + "ln_2"), p + "mlp.c_fc")
        h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))                   # exact GELU
        x = x + linear(h, p + "mlp.c_proj")
    raise AssertionError("unreachable")


def sampling_reference(logits: np.ndarray, temperature: float, top_k: int | None) -> np.ndarray:
    """What sampling draws from with temperature and top-k (top-p off), written out here."""
    x = logits / temperature
    if top_k is not None:
        x = np.where(x < np.sort(x)[::-1][top_k - 1], -np.inf, x)
    return softmax(x)


# ---- the JSON API of a language model ----------------------------------------------------------------------
def test_info_says_it_is_a_language_model(lm: Any) -> None:
    explorer, model, tokenizer = lm
    info = ok(explorer, "/api/info", None)
    assert info["kind"] == "lm" and info["n_layer"] == model.config.n_layer and info["n_head"] == model.config.n_head
    assert info["block_size"] == model.config.block_size and info["vocab_size"] == tokenizer.vocab_size


def test_tokens_and_distribution_are_the_models_own(lm: Any) -> None:
    explorer, model, tokenizer = lm
    a = ok(explorer, "/api/analyze", {"prompt": PROMPT})
    ids = tokenizer.encode(PROMPT)
    assert [t["id"] for t in a["tokens"]] == ids and "".join(t["text"] for t in a["tokens"]) == PROMPT
    logits = next_logits(model, ids)
    np.testing.assert_array_equal(np.array(a["logits"]), logits)            # the float32 values, exactly
    probs = softmax(logits)
    top = np.argsort(-logits, kind="stable")[:20]
    assert [t["id"] for t in a["top"]] == top.tolist()
    np.testing.assert_allclose([t["prob"] for t in a["top"]], probs[top], rtol=1e-12)
    assert ok(explorer, "/api/analyze", {"ids": ids})["top"] == a["top"]    # ids or text: the same answer


def test_every_attention_row_sums_to_one_and_sees_no_future(lm: Any) -> None:
    explorer, model, _ = lm
    att = np.array(ok(explorer, "/api/analyze", {"prompt": PROMPT})["attention"])   # (L, nh, T, T)
    T = len(PROMPT)
    assert att.shape == (model.config.n_layer, model.config.n_head, T, T)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=T * 5e-7)             # each weight rounded to 6 decimals
    assert (att[..., np.triu(np.ones((T, T), dtype=bool), 1)] == 0).all() and (att >= 0).all()


@pytest.mark.parametrize("layer", [0, 1])
def test_attention_equals_numpy_from_the_weights(lm: Any, layer: int) -> None:
    explorer, model, tokenizer = lm
    att = np.array(ok(explorer, "/api/analyze", {"prompt": PROMPT})["attention"][layer])
    ref = numpy_attention(model, tokenizer.encode(PROMPT), layer)
    np.testing.assert_allclose(att, ref, atol=2e-6)                          # 5e-7 rounding + float32 arithmetic
    assert att[1, 20, 7] == pytest.approx(ref[1, 20, 7], abs=2e-6)           # one cell, as the page shows it


def test_the_last_layers_logit_lens_is_the_models_prediction(lm: Any) -> None:
    explorer, model, tokenizer = lm
    a = ok(explorer, "/api/analyze", {"prompt": PROMPT})
    logits = model_logits(model, tokenizer.encode(PROMPT))                 # (T, V)
    probs = softmax(logits)
    last = a["lens"][-1]
    assert len(a["lens"]) == model.config.n_layer and len(last) == len(PROMPT)
    assert [c["id"] for c in last] == np.argmax(logits, axis=-1).tolist()
    np.testing.assert_allclose([c["prob"] for c in last], probs.max(axis=-1), atol=1e-6)
    assert last[-1]["id"] == a["top"][0]["id"]
    for cell in a["lens"][0]:  # an earlier layer: a distribution of its own, its top 5 in order
        ps = [p for _, _, p in cell["top"]]
        assert cell["top"][0][0] == cell["id"] and ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-5


def test_a_step_appends_the_chosen_or_the_seeded_sample(lm: Any) -> None:
    explorer, model, tokenizer = lm
    ids = tokenizer.encode(PROMPT)
    pick = tokenizer.encode("x")[0]
    r = ok(explorer, "/api/step", {"prompt": PROMPT, "token": pick})
    assert r["ids"] == [*ids, pick] and r["text"] == PROMPT + "x" and r["token"]["text"] == "x"
    assert len(r["analysis"]["tokens"]) == len(ids) + 1
    logits = next_logits(model, ids)
    options = {"temperature": 0.7, "top_k": 5, "seed": 11}
    r = ok(explorer, "/api/step", {"ids": ids, "token": None, **options})
    drawn = int(sample_next(logits[None].astype(np.float32), 0.7, 5, None,
                            rng=np.random.default_rng(11)).numpy()[0, 0])
    assert r["token"]["id"] == drawn and r["ids"] == [*ids, drawn]
    assert r["token"]["sampling_prob"] == pytest.approx(sampling_reference(logits, 0.7, 5)[drawn], rel=1e-9)
    assert ok(explorer, "/api/step", {"ids": ids, **options})["token"] == r["token"]  # the same seed, the same draw


@pytest.mark.parametrize("body,message", [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"prompt": "x", "colour": 1}', "unknown field(s): colour"),
    (b'{"prompt": 5}', "'prompt' has the wrong type"),
    (b'{"prompt": "' + b"x" * 65 + b'"}', "65 characters, too long: the model's context holds 64 tokens"),
    (b'{"ids": [' + b"1," * 70 + b'1]}', "71 tokens, too many"),
    (b'{"prompt": "se\\ue000"}', "is not in this character vocabulary"),
    (b'{"ids": [1, 100000]}', "100000 is not a token id"),
    (b'{"ids": [1, true]}', "True is not a token id"),
    (b'{"prompt": ""}', "the prompt is empty"),
    (b'{}', 'give the prompt as "prompt"'),
    (b'{"prompt": "x", "ids": [1]}', 'give the prompt as "prompt"'),
    (b'{"prompt": "x", "temperature": NaN}', "malformed JSON"),
])
def test_bad_analyze_requests_get_400_and_one_line(lm: Any, body: bytes, message: str) -> None:
    status, answer = call(lm[0], "/api/analyze", raw=body)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"], answer


@pytest.mark.parametrize("fields,message", [
    ({"temperature": 0}, "temperature must be positive"),
    ({"top_k": 0}, "top_k must be at least 1"),
    ({"top_p": 1.5}, "top_p must be in (0, 1]"),
    ({"seed": -1}, "seed must be between"),
    ({"token": 10**6}, "is not a token id"),
    ({"token": "a"}, "'token' has the wrong type"),
])
def test_bad_step_requests_get_400_and_one_line(lm: Any, fields: dict[str, Any], message: str) -> None:
    status, answer = call(lm[0], "/api/step", {"prompt": "self", **fields})
    assert status == 400 and message in answer["error"], answer


def test_a_full_context_has_no_room_for_a_step_and_sizes_are_checked_first(lm: Any) -> None:
    explorer, _, tokenizer = lm
    status, answer = call(explorer, "/api/step", {"ids": tokenizer.encode("x") * 64})
    assert status == 400 and "one kept for the next" in answer["error"]
    status, answer = call(explorer, "/api/analyze", raw=b" " * (api.MAX_BODY + 1))
    assert status == 413 and "over the limit" in answer["error"]
    assert call(explorer, "/api/nothing", {})[0] == 404 and call(explorer, "/api/analyze")[0] == 405


def test_a_bpe_prompt_shows_each_tokens_bytes() -> None:
    tokenizer = ByteBPETokenizer.train(TEXT, 280)
    mt.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=8)).eval()
    explorer = api.LanguageModel("bpe", model, tokenizer, {"step": 0, "model_config": {}})
    a = ok(explorer, "/api/analyze", {"prompt": "self.name = é"})
    # whole characters as text; the two bytes of é, each a token of its own, as \xNN
    assert [t["text"] for t in a["tokens"]] == ["self", ".", "name", " =", " ", "\\xc3", "\\xa9"]
    assert a["text"] == "self.name = é" and len(a["attention"][0][0]) == 7
    status, answer = call(explorer, "/api/analyze", {"prompt": "x" * (16 * api.BPE_CHARS_PER_TOKEN + 1)})
    assert status == 400 and "characters, too long" in answer["error"]      # refused before it is encoded


# ---- the JSON API of a translation model -------------------------------------------------------------------
def test_translation_tokens_distribution_and_attention(tr: Any) -> None:
    explorer, model, src_v, tgt_v = tr
    assert ok(explorer, "/api/info", None)["kind"] == "translate"
    first = ok(explorer, "/api/analyze", {"source": SOURCE})
    target = [first["top"][0]["id"], first["top"][1]["id"]]                  # any target the vocabulary has
    a = ok(explorer, "/api/analyze", {"source": SOURCE, "target_ids": target})
    src = src_v.encode(SOURCE)
    assert [t["id"] for t in a["source_tokens"]] == src and [t["text"] for t in a["source_tokens"]] == list(SOURCE)
    assert [t["id"] for t in a["target_tokens"]] == [BOS, *target] and a["target_tokens"][0]["text"] == "<bos>"
    with mt.no_grad():
        logits = model(mt.tensor([src]), mt.tensor([[BOS, *target]])).numpy()[0, -1].astype(np.float64)
    np.testing.assert_allclose([t["prob"] for t in a["top"]], np.sort(softmax(logits))[::-1][:20], rtol=1e-12)
    S, T, cfg = len(src), len(target) + 1, model.config
    cross, dec, enc = (np.array(a[k]) for k in ("cross_attention", "decoder_attention", "encoder_attention"))
    assert cross.shape == (cfg.num_decoder_layers, cfg.nhead, T, S) and enc.shape == (cfg.num_encoder_layers,
                                                                                       cfg.nhead, S, S)
    for att in (cross, dec, enc):
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=S * 5e-7)
    assert (dec[..., np.triu(np.ones((T, T), dtype=bool), 1)] == 0).all()
    assert len(a["lens"]) == cfg.num_decoder_layers and a["lens"][-1][-1]["id"] == int(np.argmax(logits))


def test_translation_steps_and_refusals(tr: Any) -> None:
    explorer, _, _, tgt_v = tr
    r = ok(explorer, "/api/step", {"source": SOURCE, "token": EOS})
    assert r["target_ids"] == [EOS] and r["done"] and r["token"]["text"] == "<eos>"
    word = tgt_v.itos[5]
    r = ok(explorer, "/api/step", {"source": SOURCE, "target": word, "seed": 1})
    assert r["target_ids"][0] == 5 and len(r["target_ids"]) == 2
    for body, message in [({"source": "1 2x"}, "character 'x' is not in this vocabulary"),
                          ({"source": SOURCE, "target": "zebra"}, "word 'zebra' is not in this vocabulary"),
                          ({"source": ""}, "the source is empty"), ({"target": "one"}, 'give the "source"'),
                          ({"source": "1" * 1000}, "more than the model's")]:
        status, answer = call(explorer, "/api/analyze", body)
        assert status == 400 and message in answer["error"], answer


# ---- the server and the command line -----------------------------------------------------------------------
def _served(out: Any) -> Any:
    """The explorer of checkpoint `out` on a free loopback port: yields its URL, then stops it."""
    server = make_server(out, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def lm_url(lm: Any) -> Any:
    yield from _served(lm[0])


@pytest.fixture(scope="module")
def tr_url(tr: Any) -> Any:
    yield from _served(tr[0])


def fetch(url: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def test_the_server_serves_the_page_and_the_api(lm_url: str) -> None:
    status, headers, page = fetch(lm_url, "GET", "/")
    assert status == 200 and b'<script src="app.js"' in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for path in ("/app.js", "/style.css"):
        status, headers, body = fetch(lm_url, "GET", path)
        assert status == 200 and body and headers["Content-Type"].split(";")[0] in ("text/javascript", "text/css")
    assert b"http://" not in page and b"https://" not in page   # nothing fetched from elsewhere
    status, _, body = fetch(lm_url, "POST", "/api/analyze", json.dumps({"prompt": "self"}).encode())
    assert status == 200 and len(json.loads(body)["tokens"]) == 4
    status, _, body = fetch(lm_url, "POST", "/api/analyze", b"{bad")
    assert status == 400 and body.count(b"\n") == 0 and json.loads(body)["error"].startswith("malformed JSON")
    # sizes before the body: a Content-Length over the limit is refused without reading a byte
    status, _, body = fetch(lm_url, "POST", "/api/analyze", None, {"Content-Length": str(api.MAX_BODY + 1)})
    assert status == 413 and "over the limit" in json.loads(body)["error"]
    assert fetch(lm_url, "GET", "/nothing")[0] == 404 and fetch(lm_url, "PUT", "/")[0] == 405
    with socket.create_connection(("127.0.0.1", int(lm_url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: x\r\n\r\n")   # no Content-Length
        head = sock.recv(4096).split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 411 Length Required"


def test_the_wheel_carries_every_file_of_the_page() -> None:
    """pyproject.toml's package data names each file in static/ (tests/test_wheel.py builds the wheel itself)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "minitransformer.explore.static" in config["packages"]
    patterns = config["package-data"]["minitransformer.explore.static"]
    files = sorted((ROOT / "minitransformer" / "explore" / "static").iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css"}
    assert all(any(f.match(p) for p in patterns) for f in files), (files, patterns)


def test_the_command_names_the_kind_and_refuses_other_directories(lm_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "minitransformer", "explore", "--out", str(lm_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert ": a language model," in line and "open http://127.0.0.1:" in line, line
        url = line.split("open ")[1].split("/ ")[0]
        assert json.loads(fetch(url, "GET", "/api/info")[2])["kind"] == "lm"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "minitransformer", "explore", "--out", str(empty)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no checkpoint in" in r.stderr, r.stderr


# ---- the page in a headless browser ------------------------------------------------------------------------
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright not installed: pip install playwright==1.63.0")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium not found: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("MT_EXPLORE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:")
            else problems.append(f"fetched from elsewhere: {r.url}"))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page, problems


def shown(text: str) -> str:
    return text.replace(" ", "␣").replace("\n", "↵")


@pytest.mark.slow
def test_the_page_shows_a_language_model(browser: Any, lm: Any, lm_url: str, shots: Path) -> None:
    _, model, tokenizer = lm
    page, problems = open_page(browser, lm_url)
    page.fill("#prompt", PROMPT)
    chips = page.locator("#tokens .tok")
    chips.nth(len(PROMPT) - 1).wait_for()
    assert chips.count() == len(PROMPT)
    assert chips.all_inner_texts() == [shown(c) for c in PROMPT]
    ids = tokenizer.encode(PROMPT)

    # the distribution: the model's probabilities as printed, then temperature and top-k applied live
    logits = next_logits(model, ids)
    top = np.argsort(-logits, kind="stable")[:20]
    rows = page.locator("#dist tbody tr")
    assert [int(i) for i in rows.evaluate_all("rs => rs.map(r => r.dataset.id)")] == top.tolist()
    assert page.locator("#dist .p-model").all_inner_texts() == [f"{p:.4f}" for p in softmax(logits)[top]]
    page.fill("#top-k", "3")
    page.locator("#temperature").fill("0.5")
    want = sampling_reference(logits, 0.5, 3)[top]  # the page redraws on each input event, before fill returns
    assert page.locator("#dist .p-sampling").all_inner_texts() == [f"{p:.4f}" for p in want]
    page.screenshot(path=str(shots / "explore-next.png"), full_page=True)

    # attention: the grid, one head enlarged, one cell against NumPy, the hovered query's row
    page.click("#tabs button[data-view=attention]")
    page.click("#attention-grid .thumb[data-layer='1'][data-head='1']")
    assert page.inner_text("#head-title") == "layer 1, head 1"
    ref = numpy_attention(model, ids, 1)[1]
    cell = page.locator("#head-map .cell[data-row='20'][data-col='7']")
    assert float(cell.get_attribute("data-value")) == pytest.approx(ref[20, 7], abs=2e-6)
    assert f"{ref[20, 7]:.4f}" in cell.get_attribute("title")
    page.hover("#query-tokens .tok[data-pos='20']")
    weights = page.locator("#key-tokens .tok").evaluate_all("ts => ts.map(t => t.dataset.weight)")
    np.testing.assert_allclose([float(w) for w in weights], ref[20], atol=2e-6)
    page.screenshot(path=str(shots / "explore-attention.png"), full_page=True)
    page.locator("#head-detail").screenshot(path=str(shots / "explore-head.png"))

    # the logit lens: its last layer is the model's prediction at every position
    page.click("#tabs button[data-view=lens]")
    last = page.locator(f"#lens .lens-cell[data-layer='{model.config.n_layer - 1}']")
    assert [int(i) for i in last.evaluate_all("cs => cs.map(c => c.dataset.id)")] == \
        np.argmax(model_logits(model, ids), axis=-1).tolist()
    page.screenshot(path=str(shots / "explore-lens.png"), full_page=True)

    # generation: a picked candidate, then a seeded sample (temperature 0.5, top-k 3, seed 4)
    page.click("#tabs button[data-view=generate]")
    first = page.locator("#candidates .cand").first
    picked = int(first.get_attribute("data-id"))
    first.click()
    chips.nth(len(PROMPT)).wait_for()
    assert page.input_value("#prompt") == PROMPT + tokenizer.decode([picked])
    page.fill("#seed", "4")
    page.click("#sample")
    chips.nth(len(PROMPT) + 1).wait_for()
    drawn = int(sample_next(next_logits(model, [*ids, picked])[None].astype(np.float32), 0.5, 3, None,
                            rng=np.random.default_rng(4)).numpy()[0, 0])
    assert int(chips.nth(len(PROMPT) + 1).get_attribute("data-id")) == drawn
    assert page.input_value("#seed") == "5" and page.locator("#history li").count() == 2
    page.screenshot(path=str(shots / "explore-generate.png"))
    assert not problems, problems


@pytest.mark.slow
def test_the_page_shows_a_translation_model(browser: Any, tr: Any, tr_url: str, shots: Path) -> None:
    explorer, model, src_v, _ = tr
    page, problems = open_page(browser, tr_url)
    page.fill("#source", SOURCE)
    page.locator("#source-tokens .tok").nth(len(SOURCE) - 1).wait_for()
    assert page.locator("#source-tokens .tok").all_inner_texts() == [shown(c) for c in SOURCE]
    page.click("#tabs button[data-view=generate]")
    for n in range(1, 12):  # greedy decoding by hand: the most likely target token, until <eos>
        best = page.locator("#candidates .cand").first
        done = int(best.get_attribute("data-id")) == EOS
        best.click()
        page.locator("#tokens .tok").nth(n).wait_for()
        if done:
            break
    target = [int(i) for i in page.locator("#tokens .tok").evaluate_all("ts => ts.map(t => t.dataset.id)")]
    assert target[0] == BOS and len(target) == n + 1
    assert page.locator("#candidates .cand:disabled").count() == (page.locator("#candidates .cand").count() if done
                                                                    else 0)
    src = src_v.encode(SOURCE)
    with mt.no_grad():
        logits = model(mt.tensor([src]), mt.tensor([target])).numpy()[0, -1].astype(np.float64)
    assert page.locator("#dist .p-model").first.inner_text() == f"{softmax(logits).max():.4f}"
    page.click("#tabs button[data-view=attention]")
    page.click("#attention-grid .thumb[data-layer='1'][data-head='0']")
    cross = ok(explorer, "/api/analyze", {"source": SOURCE, "target_ids": target[1:]})["cross_attention"][1][0]
    cells = page.locator(f"#head-map .cell[data-row='{n}']").evaluate_all("cs => cs.map(c => +c.dataset.value)")
    assert cells == cross[n] and sum(cells) == pytest.approx(1.0, abs=1e-5)
    page.hover(f"#query-tokens .tok[data-pos='{n}']")
    page.screenshot(path=str(shots / "explore-translation.png"), full_page=True)
    assert not problems, problems
