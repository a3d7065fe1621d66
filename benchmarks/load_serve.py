"""A bounded load run against `minitransformer serve`: many clients at once for a fixed time, counting what was
answered, what failed and how (a status other than 200, a reset, a timeout), with latency percentiles.

The model is tiny (2 layers, 2 heads, 32 wide, context 32, a character vocabulary) and trained for one step, so
its weights are as good as random: the run measures the server, not the model. The server runs in a process of
its own on 127.0.0.1 (so the clients do not share its interpreter lock). Each client is a thread with one
keep-alive http.client connection (a new one after an error or a server close), sending requests one after the
other until the time is up: every fourth a completion (a short prompt, 8 new tokens, sampled), the others
GET /health. With --idle N, N more sockets connect and send nothing for the whole run (each reconnects when
the server drops it at its timeout): they must not slow the others down.

    python benchmarks/load_serve.py                       # 32 clients for 15 s -> benchmarks/results/load-serve-cpu.md
    python benchmarks/load_serve.py --idle 0 200 300      # three runs, one row each: 0, 200 and 300 idle sockets
    python benchmarks/load_serve.py --clients 64 --seconds 10 --idle 100 --out out/load.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _report import cpu_model, write_report  # benchmarks/ is the script's folder

from minitransformer.tasks.language_model import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
MODEL = "load-model"
SERVER = ("import sys\nfrom minitransformer.deploy.serve import make_server\n"
          "s = make_server(sys.argv[1], '127.0.0.1', 0, max_queue=256, timeout=float(sys.argv[2]), "
          "max_connections=int(sys.argv[3]))\nprint(s.server_address[1], flush=True)\ns.serve_forever()\n")


def start_server(out: Path, timeout: float, max_connections: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(out), str(timeout), str(max_connections)],
                            stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    return proc, int(proc.stdout.readline())


def client(port: int, k: int, until: float, latencies: dict[str, list[float]], errors: Counter) -> None:
    conn, i = None, 0
    while time.monotonic() < until:
        kind = "completion" if i % 4 == k % 4 else "health"
        i += 1
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if kind == "health":
                conn.request("GET", "/health")
            else:
                body = {"model": MODEL, "prompt": "hello"[: 1 + i % 5], "max_tokens": 8, "seed": i}
                conn.request("POST", "/v1/completions", body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors[f"HTTP {resp.status}"] += 1
            else:
                latencies[kind].append(time.monotonic() - t0)
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            errors[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def idler(port: int, until: float, stop: threading.Event, drops: Counter) -> None:
    """A connection that sends nothing, reopened whenever the server closes it."""
    while time.monotonic() < until and not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=max(0.1, until - time.monotonic())) as s:
                while s.recv(4096):
                    pass
                drops["closed by the server (its timeout, or 503 when full)"] += 1
        except TimeoutError:
            return
        except OSError as e:
            drops[type(e).__name__] += 1
            time.sleep(0.05)


def load_run(model: Path, args: argparse.Namespace, idle: int) -> str:
    """One run against a fresh server: `args.clients` clients and `idle` silent sockets for `args.seconds`
    -> its table row."""
    proc, port = start_server(model, args.timeout, args.max_connections)
    try:
        latencies: dict[str, list[float]] = {"health": [], "completion": []}
        errors, drops, stop = Counter(), Counter(), threading.Event()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=idler, args=(port, until, stop, drops)) for _ in range(idle)]
        threads += [threading.Thread(target=client, args=(port, k, until, latencies, errors))
                    for k in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 60)
        wall = time.monotonic() - t0
        stop.set()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    if idle:
        print(f"{idle} idle sockets: {dict(drops)}")
    ok = {k: np.array(v) * 1e3 for k, v in latencies.items()}
    answered = sum(len(v) for v in ok.values())
    total = answered + sum(errors.values())
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"
    p = {q: " / ".join(f"{np.percentile(ok[k], q):.1f}" if len(ok[k]) else "-" for k in ("health", "completion"))
         for q in (50, 99)}
    return (f"| {args.clients} | {idle} | {wall:.1f} | {total} | {answered} | {errs} | {total / wall:.0f} | "
            f"{p[50]} | {p[99]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--idle", type=int, nargs="+", default=[0],
                    help="sockets that connect and send nothing; several values: one run each, one row each")
    ap.add_argument("--timeout", type=float, default=5.0, help="the server's socket timeout")
    ap.add_argument("--max-connections", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load-serve-cpu.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "text.txt").write_text("hello there, general kenobi. " * 300, encoding="utf-8")
        train(TrainConfig(data=str(d / "text.txt"), out=str(d / MODEL), n_layer=2, n_head=2, n_embd=32,
                          block_size=32, max_iters=1, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)
        rows = [load_run(d / MODEL, args, idle) for idle in args.idle]

    idle = " ".join(map(str, args.idle))
    write_report(args.out, [
        f"# A load run against `minitransformer serve` ({time.strftime('%Y-%m-%d')})", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, CPU only; server "
        f"timeout {args.timeout:g} s, max_connections {args.max_connections}; a fresh server for each row.", "",
        f"Command: `python benchmarks/load_serve.py --clients {args.clients} --seconds {args.seconds:g} "
        f"--idle {idle}`", "",
        "| clients | idle sockets | seconds | requests | answered 200 | errors | requests/s | "
        "p50 ms (health / completion) | p99 ms (health / completion) |",
        "|---:|---:|---:|---:|---:|---|---:|---|---|",
        *rows])


if __name__ == "__main__":
    main()
