"""The applications' targets: each task trained from scratch with its documented command, then evaluated on
held-out data; accuracy and the wall-clock time it took on this machine (all cores).

    python benchmarks/tasks.py                       # every task -> benchmarks/results/tasks-cpu.md
    python benchmarks/tasks.py --only numbers-fr     # one of them (the table keeps the others' last rows)

Each row is also a command a user can run: `minitransformer <args>` with the args shown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _report import cpu_model  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "tasks-cpu.md"
# name -> (command-line args, metric printed by the report, target)
TASKS = {
    "numbers-en": ("translate train --corpus numbers-en --out out/bench/numbers-en", "exact match", 99.0),
    "numbers-fr": ("translate train --corpus numbers-fr --max-iters 4000 --out out/bench/numbers-fr",
                   "exact match", 97.0),
    "dates": ("translate train --corpus dates --out out/bench/dates", "exact match", 99.0),
    "langid": ("classify train --task langid --out out/bench/langid", "accuracy", 99.0),
    "brackets": ("classify train --task brackets --n-train 50000 --causal --pooling last --max-iters 6000 "
                 "--d-model 128 --dim-feedforward 512 --num-layers 4 --out out/bench/brackets", "accuracy", 99.0),
    "digits": ("vit train --dataset digits --plot-attention --out out/bench/digits", "accuracy", 97.0),
    "fashion-mnist": ("vit train --dataset fashion-mnist --max-iters 4000 --batch-size 128 --eval-interval 1000 "
                      "--plot-attention --out out/bench/fashion", "accuracy", 85.0),
}


def run(name: str) -> dict:
    args, metric, target = TASKS[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "minitransformer", *shlex.split(args), "--quiet"], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    print(text[-3000:], flush=True)
    m = re.search(rf"{metric} ([0-9.]+)%", text)
    if proc.returncode or m is None:
        return {"name": name, "args": args, "error": text.strip().splitlines()[-1] if text.strip() else "failed"}
    trained = re.search(r"trained in (\d+) s", text)
    return {"name": name, "args": args, "metric": metric, "value": float(m.group(1)), "target": target,
            "train_s": int(trained.group(1)) if trained else None, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(TASKS), default=list(TASKS))
    args = ap.parse_args()
    state_file = ROOT / "out" / "bench" / "tasks.json"  # rows of earlier runs (not committed)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(state_file.read_text()) if state_file.exists() else {}
    for name in args.only:
        rows[name] = run(name)
        state_file.write_text(json.dumps(rows, indent=1))
    cpu = cpu_model()
    lines = [f"# The applications: held-out results ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores (all used). Each task trained from scratch by "
             "`minitransformer <command>`, then evaluated on data it never saw (split by value: numbers, dates "
             "and bracket strings; a fixed stratified 80/20 split for digits; the official test set for "
             "Fashion-MNIST). Time: the training loop's wall-clock, evaluations included; 'total' adds data "
             "generation, start-up and the final evaluation.", "",
             "| task | command | held-out result | target | met | training time | total |",
             "|---|---|---|---|---|---|---|"]
    for name in TASKS:
        r = rows.get(name)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {name} | `{r['args']}` | failed: {r['error']} | | | | |")
            continue
        met = "yes" if r["value"] >= r["target"] else "**no**"
        lines.append(f"| {name} | `minitransformer {r['args']}` | {r['metric']} {r['value']:.2f}% | "
                     f">= {r['target']:.0f}% | {met} | {r['train_s']} s | {r['wall_s']:.0f} s |")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
