"""The explorer's response time: `POST /api/analyze` for the 64-character prompt of docs/explore.md, 20 requests
one after another over HTTP, against the language model that page shows (`minitransformer train`'s defaults:
4 layers, 4 heads, n_embd 128, block size 64, characters of the Python standard library's sources), with the
size of one answer.

What a request costs is set by the model's shape and vocabulary, not by its weights: the model here is trained
for one step (the page's for 700), so the run takes seconds, not minutes. The explorer runs in a process of its
own, as `minitransformer explore` would, and answers one request at a time.

    python benchmarks/explore.py          # -> benchmarks/results/explore-cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _report import cpu_model, write_report  # benchmarks/ is the script's folder

from minitransformer.tasks.language_model import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "    def __init__(self, name):\n        self.name = name\n        s"  # the page's, 64 characters
SERVER = ("import sys\nfrom minitransformer.explore.server import make_server\n"
          "s = make_server(sys.argv[1], '127.0.0.1', 0)\nprint(s.server_address[1], flush=True)\ns.serve_forever()\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "explore-cpu.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lm"
        result = train(TrainConfig(out=str(out), max_iters=1, eval_interval=1, eval_iters=1, sample_tokens=0),
                       progress=False)
        n_params = sum(p.numel() for p in result["model"].parameters())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(out)], stdout=subprocess.PIPE, env=env,
                                cwd=ROOT, text=True)
        try:
            url = f"http://127.0.0.1:{int(proc.stdout.readline())}/api/analyze"
            body = json.dumps({"prompt": PROMPT}).encode()
            times, sizes = [], []
            for _ in range(args.requests):
                t = time.perf_counter()
                answer = urllib.request.urlopen(url, body).read()
                times.append(time.perf_counter() - t)
                sizes.append(len(answer))
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    ms = [1000 * t for t in times]
    write_report(args.out, [
        f"# The explorer's response time ({time.strftime('%Y-%m-%d')})", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, CPU only. "
        f"`POST /api/analyze` for the 64-character prompt of docs/explore.md, {args.requests} requests one after "
        f"another, against `minitransformer train`'s default model ({n_params / 1e6:.2f}M parameters) trained "
        "for one step.", "",
        "Command: `python benchmarks/explore.py`", "",
        "| requests | median ms | first request ms | the others, lowest ms | the others, highest ms | answer MB |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {args.requests} | {statistics.median(ms):.1f} | {ms[0]:.0f} | {min(ms[1:]):.0f} | {max(ms[1:]):.0f} | "
        f"{max(sizes) / 1e6:.2f} |"])


if __name__ == "__main__":
    main()
