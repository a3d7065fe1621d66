"""Generation speed with and without the key/value cache: ms per new token, batch 1, for a GPT with a
context of 256 tokens already present (so each uncached step reprocesses 256+ positions).

    python benchmarks/generate.py     # writes benchmarks/results/generate-cpu.md
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import minitransformer as mt

ROOT = Path(__file__).resolve().parent.parent


def ms_per_token(model: mt.nn.GPT, context: mt.Tensor, new: int, use_cache: bool, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        mt.manual_seed(0)
        t0 = time.perf_counter()
        model.generate(context, new, top_k=1, use_cache=use_cache)
        times.append((time.perf_counter() - t0) / new * 1e3)
    return statistics.median(times)


def main() -> None:
    mt.backend.warmup()
    rows = []
    for name, cfg in (("baby (4x128)", dict(n_layer=4, n_head=4, n_embd=128)),
                      ("6x384", dict(n_layer=6, n_head=6, n_embd=384))):
        mt.manual_seed(0)
        model = mt.nn.GPT(mt.nn.GPTConfig(block_size=512, vocab_size=65, **cfg)).eval()
        context = mt.tensor(np.random.default_rng(0).integers(0, 65, (1, 256)))
        a = model.generate(context, 32, top_k=1, use_cache=True).tolist()
        assert a == model.generate(context, 32, top_k=1, use_cache=False).tolist()  # same tokens
        cached = ms_per_token(model, context, 64, True)
        uncached = ms_per_token(model, context, 64, False)
        rows.append(f"| {name} | 256 | {cached:.2f} | {uncached:.2f} | {uncached / cached:.1f}x |")
        print(rows[-1], flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    text = "\n".join([f"# Generation with and without the KV cache ({time.strftime('%Y-%m-%d')})", "",
                      f"Machine: {cpu}, {os.cpu_count()} cores, threads as the environment sets them. Batch 1, "
                      "greedy (top_k=1), 64 new tokens after a 256-token context; the two paths give the same "
                      "tokens (checked before timing).", "",
                      "| model | context | ms/token with cache | ms/token without | speed-up |",
                      "|---|---|---|---|---|", *rows, ""])
    out = ROOT / "benchmarks" / "results" / "generate-cpu.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
