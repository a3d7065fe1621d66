"""Serving throughput and latency: `minitransformer serve`'s OpenAI completions endpoint with continuous batching
(max_batch_size 16) against the same server decoding one sequence at a time (max_batch_size 1), for 1, 4 and 16
concurrent clients.

The model has the README demo's size (4 layers, 4 heads, 128 wide, context 64, a 65-character vocabulary),
trained for one step (its speed does not depend on its weights). Each server runs in a process of its own, so
the client threads do not share its interpreter lock; each client is a thread with one keep-alive http.client
connection, sending its requests one after the other. A request: a prompt of 8 to 24 characters (they differ),
32 new tokens, greedy. Before timing, every prompt's answer from the batched server under 16 concurrent
clients must equal the one-at-a-time server's, and GPT.generate's for the first prompt (validate, then time).

    python benchmarks/serve.py     # writes benchmarks/results/serve-cpu.md
"""

from __future__ import annotations

import http.client
import json
import os
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import minitransformer as mt
from minitransformer.tasks.language_model import TrainConfig, load_model, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import cpu_model, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NEW_TOKENS = 32
CLIENTS = (1, 4, 16)
SERVER = ("import sys\nfrom minitransformer.deploy.serve import make_server\n"
          "s = make_server(sys.argv[1], '127.0.0.1', 0, max_batch_size=int(sys.argv[2]), max_queue=256)\n"
          "print(s.server_address[1], flush=True)\ns.serve_forever()\n")
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def start_server(out: Path, max_batch_size: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, **THREAD_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(out), str(max_batch_size)], stdout=subprocess.PIPE,
                            env=env, cwd=ROOT, text=True)
    return proc, int(proc.stdout.readline())


def post(conn: http.client.HTTPConnection, body: dict) -> dict:
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {payload[:200]!r}")
    return json.loads(payload)


def load(port: int, model: str, prompts: list[str], clients: int, requests: int) -> dict:
    """`clients` threads share `requests` requests -> tokens/s, latencies (s), answers by prompt."""
    latencies, answers, tokens, errors = [], {}, [0], []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start.wait()
        try:
            for i in range(k, requests, clients):
                p = prompts[i % len(prompts)]
                t0 = time.perf_counter()
                r = post(conn, {"model": model, "prompt": p, "max_tokens": NEW_TOKENS, "temperature": 0})
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    answers[p] = r["choices"][0]["text"]
                    tokens[0] += r["usage"]["completion_tokens"]
        except Exception as e:  # reported by the main thread
            errors.append(e)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, the first with {errors[0]!r}")
    return {"tokens_per_s": tokens[0] / wall, "latencies": latencies, "answers": answers}


def batching(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/v1/model")
    stats = json.loads(conn.getresponse().read())["batching"]
    conn.close()
    return stats


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def main() -> None:
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    chars = string.ascii_letters + string.digits + " .,"                       # 65 characters
    text = "".join(rng.choice(list(chars), 20000))
    prompts = [text[40 * i: 40 * i + 8 + i % 17] for i in range(32)]           # 8..24 characters
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "text.txt").write_text(text)
        out = Path(tmp) / "baby"
        train(TrainConfig(data=str(Path(tmp) / "text.txt"), out=str(out), max_iters=1, eval_interval=1,
                          eval_iters=1, sample_tokens=0), progress=False)
        servers = {bs: start_server(out, bs) for bs in (1, 16)}
        try:
            for bs, (_, port) in servers.items():  # warm-up (Numba compiles in the server) and the check
                servers[bs] = servers[bs] + (load(port, "baby", prompts, 16, 32)["answers"],)
            assert servers[1][2] == servers[16][2], "batched answers differ from one-at-a-time answers"
            model, tok, _ = load_model(out)
            ids = tok.encode(prompts[0])
            alone = tok.decode(model.generate(mt.tensor([ids]), NEW_TOKENS, top_k=1).numpy()[0, len(ids):].tolist())
            assert servers[16][2][prompts[0]] == alone, "the server's greedy text is not GPT.generate's"
            rows = []
            for c in CLIENTS:
                requests = max(32, 8 * c)
                res, stats = {}, {}
                for bs in (1, 16):
                    before = batching(servers[bs][1])
                    res[bs] = load(servers[bs][1], "baby", prompts, c, requests)
                    after = batching(servers[bs][1])
                    stats[bs] = (after["rows"] - before["rows"]) / max(1, after["steps"] - before["steps"])
                one, many = res[1], res[16]
                rows.append(f"| {c} | {requests} | {one['tokens_per_s']:,.0f} | {many['tokens_per_s']:,.0f} | "
                            f"{many['tokens_per_s'] / one['tokens_per_s']:.2f}x | "
                            f"{pct(one['latencies'], 50):.0f} / {pct(one['latencies'], 99):.0f} | "
                            f"{pct(many['latencies'], 50):.0f} / {pct(many['latencies'], 99):.0f} | {stats[16]:.1f} |")
                print(rows[-1], flush=True)
        finally:
            for proc, *_ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    cpu = cpu_model()
    lines = [f"# Serving: continuous batching against one sequence at a time ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores, load average {load_before:.1f} before the run and "
             f"{os.getloadavg()[0]:.1f} after (1-minute averages; 0 is an idle machine). "
             "Each server in its own process with one BLAS/Numba thread "
             f"({', '.join(f'{k}=1' for k in THREAD_ENV)}), one scheduler thread and one handler thread per "
             "connection; the clients are threads of the benchmark process (1, 4 or 16), each with one keep-alive "
             "connection sending its requests one after the other.", "",
             f"Model: 4 layers, 4 heads, 128 wide, context 64, 65-character vocabulary (the README demo's size). "
             f"Request: POST /v1/completions, a prompt of 8-24 characters, {NEW_TOKENS} new tokens, temperature 0. "
             "Both servers gave the same text for every prompt, and the batched one GPT.generate's, checked before "
             "timing (after a warm-up round of 16 concurrent clients). tokens/s: completion tokens over wall time "
             "of the whole run; latency: one request, sent to answer read, in ms; mean batch: rows per decode step.",
             "", "| clients | requests | one-at-a-time tokens/s | batched tokens/s | speed-up | "
             "one-at-a-time p50 / p99 ms | batched p50 / p99 ms | batched mean batch |",
             "|---|---|---|---|---|---|---|---|", *rows]
    write_report(ROOT / "benchmarks" / "results" / "serve-cpu.md", lines)


if __name__ == "__main__":
    main()
