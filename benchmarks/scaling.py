"""How a training step's cost grows: time and memory as the context grows (64 to 2048 tokens) and as the width
grows (128 to 768), minitransformer and PyTorch eager (when installed) side by side, each point in a fresh
process per library, the libraries alternating.

    python benchmarks/scaling.py            # writes benchmarks/results/scaling-cpu.md and scaling-cpu.png

The step is benchmarks/train_step.py's (forward, cross-entropy, backward, clip, AdamW) on a 4-layer GPT. The
context sweep keeps the tokens per step fixed (batch x context = 8192) at width 128, so what grows with the
context is attention's share; the width sweep runs context 256, batch 2, one head per 64 channels. Memory is the
growth of the process's resident set during the steps (peak RSS after the steps minus RSS before the first):
the activations and gradients, not the libraries. With attention that keeps no (T x T) matrix for backward, the
context sweep's memory stays flat as T grows (the tokens per step are fixed); one that keeps the matrix grows
with T. One thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _report import (  # benchmarks/ is the script's folder
    cpu_model,
    median_ms,
    peak_rss_mb,
    rss_mb,
    thread_env,
    worker_result,
    write_report,
)
from train_step import make_steps

ROOT = Path(__file__).resolve().parent.parent
CONTEXTS = [64, 128, 256, 512, 1024, 2048]
WIDTHS = [128, 256, 384, 512, 768]
TOKENS = 8192


def worker(config: dict, which: str, reps: int) -> dict:
    step = make_steps(config, [which])[which]
    before = rss_mb()
    ms = median_ms(step, reps, warmup=2)
    return {"ms": ms, "mem_mb": peak_rss_mb() - before}


def spawn(config: dict, which: str, reps: int) -> dict:
    env = {**os.environ, **thread_env(1), "PYTHONPATH": str(ROOT)}
    if which == "torch":
        env["MT_TORCH_THREADS"] = "1"
    return worker_result(__file__, ["--worker", json.dumps([config, which, reps])], env)


def sweep(points: list[tuple[str, dict]], libs: list[str], reps: int) -> list[dict]:
    rows = []
    for label, config in points:
        row = {"label": label, "config": config}
        for lib in libs:
            row[lib] = spawn(config, lib, reps)
        rows.append(row)
        print(label, {lib: row[lib] for lib in libs}, flush=True)
    return rows


def table(title: str, rows: list[dict], libs: list[str]) -> list[str]:
    head = "| point | " + " | ".join(f"{lib} ms/step | {lib} MB" for lib in libs) + \
        (" | ours / torch (time) |" if len(libs) == 2 else " |")
    lines = [f"### {title}", "", head, "|---" * (1 + 2 * len(libs) + (len(libs) == 2)) + "|"]
    for r in rows:
        cells = [r["label"]] + [f"{r[lib]['ms']:.1f} | {r[lib]['mem_mb']:.0f}" for lib in libs]
        if len(libs) == 2:
            cells.append(f"{r['ours']['ms'] / r['torch']['ms']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def plot(context: list[dict], width: list[dict], libs: list[str], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scaling-cpu.png not drawn: matplotlib is not installed", file=sys.stderr)
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (rows, xs, xlabel) in enumerate(((context, CONTEXTS, "context (tokens; batch x context = 8192)"),
                                              (width, WIDTHS, "width (n_embd; context 256, batch 2)"))):
        for lib in libs:
            axes[0, col].plot(xs, [r[lib]["ms"] for r in rows], "o-", label=lib)
            axes[1, col].plot(xs, [r[lib]["mem_mb"] for r in rows], "o-", label=lib)
        for row, ylabel in ((0, "ms per training step"), (1, "memory growth during the steps (MB)")):
            ax = axes[row, col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.suptitle("4-layer GPT training step, 1 thread: how cost grows", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling-cpu.md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        config, which, reps = json.loads(args.worker)
        if which == "torch":
            import torch

            torch.set_num_threads(int(os.environ.get("MT_TORCH_THREADS", "1")))
        print(json.dumps(worker(config, which, reps)))
        return
    try:
        import torch  # noqa: F401
        libs = ["ours", "torch"]
    except ImportError:
        libs = ["ours"]
    base = dict(n_layer=4, vocab_size=65)
    context = [(f"T={t}, B={TOKENS // t}", {**base, "n_head": 4, "n_embd": 128, "block_size": t,
                                            "batch_size": TOKENS // t}) for t in CONTEXTS]
    width = [(f"C={c}", {**base, "n_head": max(1, c // 64), "n_embd": c, "block_size": 256, "batch_size": 2})
             for c in WIDTHS]
    t0 = time.perf_counter()
    crow = sweep(context, libs, args.reps)
    wrow = sweep(width, libs, args.reps)
    cpu = cpu_model()
    lines = [f"# How a training step's cost grows ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores, 1 thread. `python benchmarks/scaling.py`: a 4-layer GPT's "
             f"training step, each point a fresh process per library (median of {args.reps} steps after 2 "
             "warm-up steps); memory = peak RSS after the steps minus RSS before the first step. "
             f"Whole run {time.perf_counter() - t0:.0f} s.", ""]
    lines += table("Context (width 128, 4 heads, batch x context = 8192 tokens)", crow, libs)
    lines += table("Width (context 256, batch 2, one head per 64 channels)", wrow, libs)
    png = plot(crow, wrow, libs, args.out.with_suffix(".png"))
    if png:
        lines += [f"![scaling]({png.name})", ""]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
