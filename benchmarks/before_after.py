"""A change's cost, side by side: the baby GPT's training step (benchmarks/train_step.py's step, with Numba and
on the NumPy tier alone) and its
generation speed (greedy, batch 1, with the key/value cache: the time of a 256-token prompt's pass and 64 new
tokens, divided by the 64 tokens), measured in this
tree and in another revision (a git worktree), in separate processes that alternate.

    python benchmarks/before_after.py --base REV            # prints a table; --out FILE also writes it

Each process builds the model, warms up, and reports the median of its repetitions; the table gives the median
over rounds of those, and each round's figure. One thread (OMP/OPENBLAS/NUMBA_NUM_THREADS=1) unless --threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import thread_env, worker_result, write_report  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent


def worker(reps: int) -> dict:
    """In a process whose PYTHONPATH names the tree under test: step and decode medians (ms)."""
    sys.path.insert(0, os.environ["MT_TREE"])
    # An editable install maps minitransformer.kernels to the installed checkout; older trees asked for that
    # name before mounting their own kernels/, so the finder is taken out and each tree runs its own kernels.
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                     and "editable" not in getattr(f, "__name__", "").lower()]
    import numpy as np

    import minitransformer as mt

    for module in (mt, sys.modules["minitransformer.kernels"]):
        if not Path(module.__file__).resolve().is_relative_to(Path(os.environ["MT_TREE"]).resolve()):
            sys.exit(f"imported {module.__file__}, not the tree under test {os.environ['MT_TREE']}")
    from train_step import CONFIGS, make_steps

    made = make_steps(CONFIGS["baby"], ["ours", "numpy"])
    for step in made.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in made}
    for _ in range(reps):
        for name, step in made.items():                      # Numba's step and the NumPy tier's, alternating
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=512, vocab_size=65)).eval()
    context = mt.tensor(np.random.default_rng(0).integers(0, 65, (1, 256)))
    new = 64
    model.generate(context, 8, top_k=1)
    tokens, first = [], []
    for _ in range(max(3, reps // 4)):
        t0 = time.perf_counter()
        model.generate(context, new, top_k=1)
        tokens.append((time.perf_counter() - t0) / new)
        t0 = time.perf_counter()
        model.generate(context, 1, top_k=1)                  # the prompt's pass alone
        first.append(time.perf_counter() - t0)
    token, prompt = statistics.median(tokens), statistics.median(first)
    return {"step_ms": statistics.median(times["ours"]) * 1e3, "numpy_step_ms": statistics.median(times["numpy"]) * 1e3,
            "token_ms": token * 1e3, "decode_ms": (token * new - prompt) / (new - 1) * 1e3}


def spawn(tree: Path, threads: int, reps: int) -> dict:
    env = {**os.environ, **thread_env(threads), "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}",
           "MT_TREE": str(tree)}
    return worker_result(__file__, ["--worker", str(reps)], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="the revision to compare against (a commit, tag or branch)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    if not args.base:
        ap.error("--base REV is required")
    rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for r in range(args.rounds):                       # ABBA: each tree goes first in every other round
                order = (("before", base), ("after", ROOT)) if r % 2 == 0 else (("after", ROOT), ("before", base))
                for name, tree in order:
                    runs[name].append(spawn(tree, args.threads, args.reps))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False,
                           capture_output=True)
    lines = [f"# Before and after: {rev} against this tree ({head}, {time.strftime('%Y-%m-%d')})", "",
             f"`python benchmarks/before_after.py --base {args.base}`: baby GPT (4 layers, 128 wide, block 64, "
             f"batch 12) training step, and greedy generation with the cache: a 256-token prompt and 64 new tokens, "
             f"batch 1, the whole time over the 64 tokens, and the decode step alone ((that time - the prompt's "
             f"pass) / 63); the NumPy tier's step (every kernel from kernels/reference, as without Numba) "
             f"alternates with Numba's in each process; "
             f"{args.threads} thread(s); {args.rounds} rounds of the two processes alternating (each first in "
             f"every other round), each the median of "
             f"its repetitions; the table gives the median over rounds (each round in brackets).", "",
             "| measure | before | after | after / before |", "|---|---:|---:|---:|"]
    for key, label in (("step_ms", "training step, ms"), ("numpy_step_ms", "training step, NumPy tier only, ms"),
                       ("token_ms", "generation, ms per token (prompt included)"),
                       ("decode_ms", "decode step alone, ms per token")):
        b = [r[key] for r in runs["before"]]
        a = [r[key] for r in runs["after"]]
        lines.append(f"| {label} | {statistics.median(b):.3f} ({', '.join(f'{v:.2f}' for v in b)}) | "
                     f"{statistics.median(a):.3f} ({', '.join(f'{v:.2f}' for v in a)}) | "
                     f"{statistics.median(a) / statistics.median(b):.3f}x |")
    if args.out:
        write_report(args.out, lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
