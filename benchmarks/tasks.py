"""The applications' targets: each task trained from scratch with its documented command, then evaluated on
held-out data; accuracy (with macro-F1 for a classifier, chrF for a translator) and the wall-clock time it took on
this machine (all cores).

    python benchmarks/tasks.py                       # every task -> benchmarks/results/tasks-cpu.md
    python benchmarks/tasks.py --only numbers-fr     # one of them (the table keeps the others' rows, with their date)

Each row is also a command a user can run: `minitransformer <args>` with the args shown.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _report import cpu_model, write_report  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "tasks-cpu.md"
# name -> (command-line args, metric printed by the report, target); each task's report also prints the second
# metric SECOND names (chrF for translation, macro-F1 for the classifiers)
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
SECOND = {"exact match": "chrF", "accuracy": "macro-F1"}


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
    second = re.search(rf"{SECOND[metric]} ([0-9.]+)", text)
    return {"name": name, "args": args, "metric": metric, "value": float(m.group(1)), "target": target,
            "second": f"{SECOND[metric]} {second.group(1)}" if second else None,
            "train_s": int(trained.group(1)) if trained else None, "wall_s": wall}


def row(r: dict, date: str) -> str:
    """One task's line of the results table."""
    if "error" in r:
        return f"| {r['name']} | `{r['args']}` | failed: {r['error']} | | | | | {date} |"
    met = "yes" if r["value"] >= r["target"] else "**no**"
    result = f"{r['metric']} {r['value']:.2f}%" + (f", {r['second']}" if r["second"] else "")
    return (f"| {r['name']} | `minitransformer {r['args']}` | {result} | >= {r['target']:.0f}% | {met} | "
            f"{r['train_s']} s | {r['wall_s']:.0f} s | {date} |")


def recorded_rows(path: Path) -> dict[str, str]:
    """The table's lines as the results file has them, by task; a line written before rows carried their date
    gets the date of the file's title."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    title_date = re.search(r"\((\d{4}-\d{2}-\d{2})\)", lines[0]) if lines else None
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in TASKS and len(cells) >= 7:
            if len(cells) == 7:
                cells.append(title_date.group(1) if title_date else "")
            rows[cells[0]] = "| " + " | ".join(cells) + " |"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(TASKS), default=list(TASKS))
    args = ap.parse_args()
    rows = recorded_rows(OUT)  # the tasks not run now keep their recorded line
    for name in args.only:
        rows[name] = row(run(name), time.strftime("%Y-%m-%d"))
        write_report(OUT, table(rows))


def table(rows: dict[str, str]) -> list[str]:
    """The results file: the machine, what was measured, and the tasks' lines in TASKS's order."""
    cpu = cpu_model()
    return ["# The applications: held-out results", "",
            f"Machine: {cpu}, {os.cpu_count()} cores (all used). Each task trained from scratch by "
            "`minitransformer <command>`, then evaluated on data it never saw (split by value: numbers, dates "
            "and bracket strings; a fixed stratified 80/20 split for digits; the official test set for "
            "Fashion-MNIST). Time: the training loop's wall-clock, evaluations included; 'total' adds data "
            "generation, start-up and the final evaluation.", "",
            "| task | command | held-out result | target | met | training time | total | measured |",
            "|---|---|---|---|---|---|---|---|",
            *(rows[name] for name in TASKS if name in rows)]


if __name__ == "__main__":
    main()
