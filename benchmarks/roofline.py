"""Where a training step's time goes on this machine, and how close each op comes to the machine's limit.

For each thread count: measures the machine's ceilings (mt.profiler.machine_peak: SGEMM GFLOP/s of a 1024^3
float32 product, and the memory bandwidth of a 64 MiB copy or sum, the best of 9 runs each), profiles training
steps (forward + loss + backward + clip + AdamW, the step of
benchmarks/train_step.py) of the baby GPT and the 6-layer 384-wide GPT with mt.profiler, and writes
  - benchmarks/results/roofline-cpu.md: per op and per step, calls, self time, share of the step, GFLOP/s,
    GB/s, FLOPs per byte, and the fraction of the roofline reached at that intensity;
  - benchmarks/results/roofline-cpu.png: every op that does arithmetic as a point on the roofline of each
    thread count (matplotlib; ops that only move memory have no place on the FLOP axis and are in the table).

    python benchmarks/roofline.py                      # 1 and 2 threads, baby and large
    python benchmarks/roofline.py --overhead           # also: the profiler's cost, off and on (ms/step)

--overhead runs the baby step in three kinds of process, alternating: this tree with no profile open, the tree
before the profiler existed (a git worktree of the parent of the commit that added minitransformer/profiler.py,
so its Function.apply has no hook at all), and this tree inside a profile block.
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

from _report import cpu_model, thread_env, worker_result, write_report  # benchmarks/ is the script's folder
from train_step import CONFIGS, make_steps

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def profile_worker(config: str, steps: int) -> dict:
    """In a process with its thread count set: the machine's peak and the per-op averages of `steps` steps."""
    import minitransformer as mt

    peak = mt.profiler.machine_peak()
    step = make_steps(CONFIGS[config], ["ours"])["ours"]
    for _ in range(3):
        step()
    with mt.profiler.profile(record_shapes=False) as prof:
        for _ in range(steps):
            step()
            prof.step()
    rows = [{"key": e.key, "count": e.count / steps, "self_ms": e.self_cpu_time_total / 1e3 / steps,
             "flops": e.flops / steps, "bytes": e.bytes / steps, "tiers": sorted(e.tiers), "kind": e.kind}
            for e in prof.key_averages()]
    return {"peak": peak, "step_ms": prof.key_averages().wall_us / 1e3 / steps, "rows": rows}


def timing_worker(config: str, reps: int, profiled: bool) -> dict:
    """Median ms of `reps` steps, with or without a profile block open around them."""
    sys.path.insert(0, os.environ["MT_TREE"])
    import minitransformer as mt

    if not Path(mt.__file__).resolve().is_relative_to(Path(os.environ["MT_TREE"]).resolve()):
        sys.exit(f"imported {mt.__file__}, not the tree under test {os.environ['MT_TREE']}")
    step = make_steps(CONFIGS[config], ["ours"])["ours"]
    for _ in range(3):
        step()
    times = []
    ctx = mt.profiler.profile() if profiled else None
    if ctx is not None:
        ctx.__enter__()
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if ctx is not None:
        ctx.__exit__(None, None, None)
    return {"ms": statistics.median(times) * 1e3}


def spawn(threads: int, args: list[str], tree: Path = ROOT) -> dict:
    env = {**os.environ, **thread_env(threads), "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}",
           "MT_TREE": str(tree)}
    return worker_result(__file__, args, env)


def roof(peak: dict, intensity: float) -> float:
    return min(peak["gflops"], intensity * peak["gbps"])


def table(config: str, threads: int, res: dict) -> list[str]:
    peak = res["peak"]
    step = res["step_ms"]
    c = CONFIGS[config]
    lines = [f"### {config} ({c['n_layer']} layers, {c['n_head']} heads, {c['n_embd']} wide, block {c['block_size']}, "
             f"batch {c['batch_size']}), {threads} thread(s)", "",
             f"Step {step:.1f} ms. Machine: {peak['gflops']:.1f} GFLOP/s SGEMM (1024^3 float32), {peak['gbps']:.1f} "
             f"GB/s memory; ridge point {peak['gflops'] / peak['gbps']:.1f} FLOP/byte.", "",
             "| op | calls/step | self ms/step | % of step | GFLOP/s | GB/s | FLOP/byte | % of roofline | tier |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = sorted(res["rows"], key=lambda r: -r["self_ms"])
    flops = sum(r["flops"] for r in rows)
    for r in rows:
        s = r["self_ms"] / 1e3
        gf = r["flops"] / s / 1e9 if r["flops"] and s > 0 else None
        gb = r["bytes"] / s / 1e9 if r["bytes"] and s > 0 else None
        ai = r["flops"] / r["bytes"] if r["flops"] and r["bytes"] else None
        frac = (gf / roof(peak, ai) if gf and ai else gb / peak["gbps"] if gb else None)
        name = r["key"] + (" (region: Python between its ops)" if r["kind"] == "region" else "")
        lines.append(f"| {name} | {r['count']:g} | {r['self_ms']:.2f} | {100 * r['self_ms'] / step:.1f}% | "
                     f"{'--' if gf is None else f'{gf:.1f}'} | {'--' if gb is None else f'{gb:.1f}'} | "
                     f"{'--' if ai is None else f'{ai:.1f}'} | {'--' if frac is None else f'{100 * frac:.0f}%'} | "
                     f"{', '.join(r['tiers']) or '--'} |")
    floor = flops / (peak["gflops"] * 1e9) * 1e3
    lines += ["", f"Counted FLOPs per step: {flops / 1e9:.2f} G; at the SGEMM peak that is {floor:.1f} ms: the step "
                  f"runs at {100 * floor / step:.0f}% of that floor.", ""]
    return lines


def plot(results: dict, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("roofline.png not drawn: matplotlib is not installed", file=sys.stderr)
        return None
    import numpy as np

    configs = sorted({c for c, _ in results})
    fig, axes = plt.subplots(1, len(configs), figsize=(7 * len(configs), 5.5), squeeze=False)
    for ax, config in zip(axes[0], configs, strict=True):
        for (c, threads), res in sorted(results.items()):
            if c != config:
                continue
            peak = res["peak"]
            x = np.logspace(-2, 3, 200)
            ax.plot(x, np.minimum(peak["gflops"], x * peak["gbps"]), label=f"roof, {threads} thread(s)",
                    lw=1.5, ls="-" if threads == 1 else "--")
            for r in res["rows"]:
                if not (r["flops"] and r["bytes"] and r["self_ms"] > 0):
                    continue
                ai, gf = r["flops"] / r["bytes"], r["flops"] / (r["self_ms"] / 1e3) / 1e9
                size = 20 + 400 * r["self_ms"] / res["step_ms"]        # the area shows the share of the step
                ax.scatter([ai], [gf], s=size, alpha=0.6, marker="o" if threads == 1 else "^")
                if threads == min(t for c2, t in results if c2 == config) and r["self_ms"] / res["step_ms"] > 0.02:
                    ax.annotate(r["key"], (ai, gf), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
        ax.set_ylabel("achieved GFLOP/s")
        ax.set_title(f"{config} GPT training step: ops on this machine's roofline (area = share of step)",
                     fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def overhead(rounds: int, reps: int, threads: int) -> list[str]:
    """The baby step with no profile open (this tree), in the tree before the profiler, and profiled."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "minitransformer/profiler.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), f"{added}^"], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            runs: dict[str, list[float]] = {"off": [], "before": [], "on": []}
            for _ in range(rounds):
                runs["off"].append(spawn(threads, ["--timing", json.dumps(["baby", reps, False])])["ms"])
                runs["before"].append(spawn(threads, ["--timing", json.dumps(["baby", reps, False])], base)["ms"])
                runs["on"].append(spawn(threads, ["--timing", json.dumps(["baby", reps, True])])["ms"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False,
                           capture_output=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    lines = ["## The profiler's own cost", "",
             f"Baby GPT training step, {threads} thread(s); {rounds} rounds of three processes alternating, each the "
             f"median of {reps} steps; the table gives the median over rounds (and every round's figure). \"before\" "
             f"is the tree at {added[:7]}^, whose Function.apply has no profiler hook.", "",
             "| process | ms/step (median) | ratio to before | rounds |", "|---|---:|---:|---|"]
    for k, label in (("before", "before the profiler existed"), ("off", "profiler off (this tree)"),
                     ("on", "inside mt.profiler.profile()")):
        lines.append(f"| {label} | {med[k]:.2f} | {med[k] / med['before']:.3f}x | "
                     f"{', '.join(f'{v:.2f}' for v in runs[k])} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--configs", nargs="+", default=["baby", "large"], choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=10, help="profiled steps per configuration")
    ap.add_argument("--overhead", action="store_true", help="also measure the profiler's cost")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS / "roofline-cpu.md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--timing", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(profile_worker(*json.loads(args.worker))))
        return
    if args.timing:
        print(json.dumps(timing_worker(*json.loads(args.timing))))
        return
    cpu = cpu_model()
    results = {(c, t): spawn(t, ["--worker", json.dumps([c, args.steps])]) for t in args.threads for c in args.configs}
    lines = [f"# Roofline of a training step ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores. `python benchmarks/roofline.py"
             f"{' --overhead' if args.overhead else ''}`: mt.profiler over {args.steps} steps after 3 warm-up steps, "
             "figures per step. FLOPs and bytes are counted from the shapes (minitransformer/profiler.py, `op_cost`): "
             "2MNK for products, a per-element count for the rest; bytes = each input read and each output written "
             "once, a lower bound on the traffic. \"% of roofline\" = achieved GFLOP/s over min(SGEMM peak, "
             "intensity x bandwidth) (for an op without FLOPs: GB/s over the bandwidth). The ceilings are the best "
             "of 9 runs (a ceiling is what the machine can do); an op's time is its total over the profiled steps "
             "divided by their number. Regions (forward, backward, ...) are not marked here: the step is the "
             "benchmarks' plain step.", ""]
    for c in args.configs:
        for t in args.threads:
            lines += table(c, t, results[(c, t)])
    png = plot(results, args.out.with_suffix(".png"))
    if png:
        lines += [f"![roofline]({png.name})", ""]
    if args.overhead:
        lines += overhead(args.rounds, args.reps, 1)
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
