"""Compression on the Tiny Shakespeare model (nanoGPT's CPU recipe, 2,000 steps): float32 against int8,
4-bit and pruned versions: weights file size, validation loss over the whole validation split, generation
speed (batch 1, greedy, KV cache, ms per token), the weights' bytes in memory and the peak RSS of a process
that loads the checkpoint and generates. PyTorch eager (the same float32 weights, a KV-cache decoder written
the plain way, benchmarks/generate.py) is timed alongside for reference.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/compress.py --data ../shared/data/tinyshakespeare.txt

The float checkpoint is trained once into out/bench/compress/float (reused afterwards). Speeds are measured
in one process, the variants alternating round by round, medians of the rounds; peak RSS in a fresh process
per variant. Results: benchmarks/results/compress-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import cpu_model, write_report  # benchmarks/ is the script's folder
from shakespeare import RECIPE

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench" / "compress"
NEW_TOKENS = 63          # from a one-token prompt: 64 positions, all inside block_size, all from the cache

# VmHWM, not getrusage: Linux keeps ru_maxrss across exec, so a child would report its parent's peak
PEAK_RSS = f"""
import sys, numpy as np
import minitransformer as mt
from minitransformer.tasks.language_model import load_model
mt.backend.warmup()
if sys.argv[1] != "-":
    model, _, _ = load_model(sys.argv[1])
    model.generate(np.zeros((1, 1), np.int64), {NEW_TOKENS}, top_k=1)
print(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
"""


def train_float(data: str) -> Path:
    out = OUT / "float"
    if (out / "checkpoint.json").is_file():
        return out
    args = [sys.executable, "-m", "minitransformer", "train", "--data", str(Path(data).resolve()), "--out", str(out),
            "--quiet", "--sample-tokens", "0"]
    for k, v in RECIPE.items():
        flag = f"--{k.replace('_', '-')}"
        args += ([flag] if v else []) if isinstance(v, bool) else [flag, str(v)]
    subprocess.run(args, check=True, cwd=ROOT)
    return out


def variants(src: Path) -> list[tuple[str, Path]]:
    """(label, checkpoint) for every compressed version, made once."""
    from minitransformer.deploy import compress

    made = [("float32", src)]
    plan = [("int8", "q8", lambda d: compress.quantize_checkpoint(src, d, 8)),
            ("int8 + embedding", "q8e", lambda d: compress.quantize_checkpoint(src, d, 8, embedding=True)),
            ("4-bit, group 32", "q4g32", lambda d: compress.quantize_checkpoint(src, d, 4, 32)),
            ("4-bit, group 64", "q4g64", lambda d: compress.quantize_checkpoint(src, d, 4, 64)),
            ("4-bit g32 + embedding", "q4g32e", lambda d: compress.quantize_checkpoint(src, d, 4, 32, True)),
            ("float32 + 200 steps (control)", "ft",
             lambda d: compress.prune_checkpoint(src, d, finetune_iters=200, progress=False)),
            ("pruned 30%", "p30", lambda d: compress.prune_checkpoint(src, d, 0.3)),
            ("pruned 50%", "p50", lambda d: compress.prune_checkpoint(src, d, 0.5)),
            ("pruned 50% + 200 steps", "p50ft",
             lambda d: compress.prune_checkpoint(src, d, 0.5, finetune_iters=200, progress=False)),
            ("4 of 16 heads pruned", "h4", lambda d: compress.prune_checkpoint(src, d, heads=4)),
            ("4 heads pruned + 200 steps", "h4ft",
             lambda d: compress.prune_checkpoint(src, d, heads=4, finetune_iters=200, progress=False))]
    for label, name, make in plan:
        d = OUT / name
        if not (d / "checkpoint.json").is_file():
            make(d)
        made.append((label, d))
    return made


def peak_rss_mb(ckpt: Path | str) -> float:
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, str(ckpt)], capture_output=True, text=True, check=True,
                       cwd=ROOT)
    return int(r.stdout.split()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="tinyshakespeare.txt")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    import numpy as np

    import minitransformer as mt
    from minitransformer.deploy import compress
    from minitransformer.nn.quantized import weight_bytes
    from minitransformer.tasks.language_model import load_model

    mt.backend.warmup()
    src = train_float(args.data)
    rows = []
    models = {}
    for label, d in variants(src):
        r = compress.evaluate(d)
        models[label] = load_model(d)[0]
        rows.append({"label": label, "dir": d.name, "file": r["file_bytes"], "val": r["val_loss"],
                     "mem": weight_bytes(models[label]),
                     "zeros": (r["pruning"] or {}).get("achieved_sparsity", 0.0)})
        print(rows[-1], flush=True)
    prompt = mt.tensor(np.zeros((1, 1), np.int64))
    for m in models.values():
        m.generate(prompt, 8, top_k=1)
    torch_gen = None
    try:
        import torch
        from generate import torch_generator

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        torch_gen = torch_generator(models["float32"])
        ours = models["float32"].generate(prompt, NEW_TOKENS, top_k=1).numpy()[0, 1:].tolist()
        assert torch_gen(prompt.numpy(), NEW_TOKENS) == ours, "PyTorch and minitransformer disagree"
    except ImportError:
        pass
    times: dict[str, list[float]] = {label: [] for label in models}
    torch_times: list[float] = []
    for _ in range(args.rounds):  # alternate: every variant once per round
        for label, m in models.items():
            t0 = time.perf_counter()
            m.generate(prompt, NEW_TOKENS, top_k=1)
            times[label].append((time.perf_counter() - t0) / NEW_TOKENS * 1e3)
        if torch_gen is not None:
            t0 = time.perf_counter()
            torch_gen(prompt.numpy(), NEW_TOKENS)
            torch_times.append((time.perf_counter() - t0) / NEW_TOKENS * 1e3)
    base_rss = peak_rss_mb("-")
    f32 = rows[0]
    table = []
    for row in rows:
        ms = statistics.median(times[row["label"]])
        rss = peak_rss_mb(OUT / row["dir"] if row["dir"] != "float" else src)
        table.append(f"| {row['label']} | {row['file'] / 1e6:.2f} MB | {row['file'] / f32['file']:.2f} | "
                     f"{row['zeros']:.0%} | {row['val']:.4f} | {100 * (row['val'] / f32['val'] - 1):+.2f}% | "
                     f"{ms:.3f} | {row['mem'] / 1e6:.2f} MB | {rss:.0f} MB |")
        print(table[-1], flush=True)
    cpu = cpu_model()
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    torch_line = (f"PyTorch eager, the float32 weights, KV cache (the same greedy tokens, checked): "
                  f"{statistics.median(torch_times):.3f} ms/token in the same rounds." if torch_times else
                  "PyTorch is not installed: no reference timing.")
    write_report(ROOT / "benchmarks" / "results" / "compress-cpu.md", [
        f"# Compressed Tiny Shakespeare models ({time.strftime('%Y-%m-%d')})", "",
        f"Model: nanoGPT's CPU recipe (4 layers, 4 heads, 128 channels, block 64, character vocabulary, 2,000 "
        f"steps), trained by `minitransformer train` on tinyshakespeare.txt. Machine: {cpu}, {os.cpu_count()} "
        f"cores, {threads} thread(s) (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / NUMBA_NUM_THREADS). "
        "Command: `python benchmarks/compress.py --data tinyshakespeare.txt`.", "",
        "- val loss: mean cross-entropy over every token of the validation split (the last 10%), in consecutive "
        "windows of 64 (`minitransformer eval`); deterministic, so the differences are the compression's.",
        f"- ms/token: batch 1, greedy, {NEW_TOKENS} tokens from a one-token prompt with the KV cache, medians "
        f"of {args.rounds} rounds with all variants alternating in one process.",
        "- weights in memory: the bytes of every parameter and buffer (shared arrays once); peak RSS: a fresh "
        f"process that imports the library, compiles the kernels, loads the checkpoint and generates "
        f"(the same process without a model: {base_rss:.0f} MB).", "",
        "| model | weights file | vs float32 | zero weights | val loss | vs float32 | ms/token | "
        "weights in memory | peak RSS |", "|---|---|---|---|---|---|---|---|---|", *table, "", torch_line, "",
        "Pruned checkpoints store their zeros as float32 (the same file size); their gain is in what they "
        "allow (a sparse format, fewer heads), not in this file. A fine-tune also continues training (the "
        "recipe's 2,000 steps leave the model short of convergence): the control row is the unpruned model "
        "given the same 200 steps at the same learning rate, the figure a fine-tuned pruned model compares with.",
        "", "Raw: " + json.dumps({r["label"]: round(statistics.median(times[r["label"]]), 4) for r in rows})])


if __name__ == "__main__":
    main()
