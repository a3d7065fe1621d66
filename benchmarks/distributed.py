"""Data-parallel speed-up: tokens per second of the larger GPT (6 layers, 6 heads, 384 wide, block 256,
batch 8 per rank) with 1 rank and with 2 ranks (mpiexec, one thread each), and the share of the step spent
in the gradient all-reduce.

    python benchmarks/distributed.py          # writes benchmarks/results/distributed-cpu.md
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _report import cpu_model  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
STEPS, WARMUP = 8, 2


def worker(out: str) -> None:
    import numpy as np

    import minitransformer as mt
    from minitransformer import distributed
    from minitransformer.training.loop import Job, LoopConfig, fit, prepare_run

    cfg = LoopConfig(max_iters=STEPS, eval_interval=10**6, eval_iters=1, batch_size=8, out=out, warmup_iters=1)
    prepare_run(cfg, progress=False)
    model = mt.nn.GPT(mt.nn.GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, bias=False))
    data = np.random.default_rng(0).integers(0, 65, 200_000)
    w = distributed.world()
    marks: list[float] = []

    def loss(split: str, rng: np.random.Generator) -> mt.Tensor:
        if model.training:
            marks.append(time.perf_counter())
            if len(marks) == WARMUP + 1:
                w.comm_seconds = 0.0  # count communication over the timed steps only
        ix = rng.integers(0, len(data) - 257, cfg.batch_size)
        x = np.stack([data[i:i + 256] for i in ix])
        y = np.stack([data[i + 1:i + 257] for i in ix])
        return model(x, y)[1]

    t_end = None
    fit(cfg, Job(model, loss, {"task": "bench", "model_config": {}}), progress=False)
    t_end = time.perf_counter()
    timed = t_end - marks[WARMUP]  # from the start of step WARMUP to the end of the last step (and its save)
    steps = STEPS - WARMUP
    if w.is_main:
        print(json.dumps({"ranks": w.size, "s_per_step": timed / steps,
                          "tokens_per_s": w.size * cfg.batch_size * 256 * steps / timed,
                          "comm_share": w.comm_seconds / timed}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("needs mpiexec: pip install mpi4py mpich")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    rows = {}
    for n in (1, 2, 1, 2):  # alternating, twice: the machine's load drifts
        cmd = ([sys.executable] if n == 1 else [mpiexec, "-n", str(n), sys.executable])
        proc = subprocess.run(cmd + [__file__, "--worker", str(ROOT / "out" / "bench" / f"ddp{n}")], env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(r, flush=True)
        if n not in rows or r["tokens_per_s"] > rows[n]["tokens_per_s"]:
            rows[n] = r
    cpu = cpu_model()
    speedup = rows[2]["tokens_per_s"] / rows[1]["tokens_per_s"]
    lines = [f"# Data-parallel training over MPI ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores; one thread per rank; MPICH over shared memory. GPT with 6 "
             "layers, 6 heads, 384 wide (10.7M parameters), block 256, batch 8 per rank; "
             f"{STEPS - WARMUP} timed steps after {WARMUP}, the better of two alternating runs of each.", "",
             "| ranks | s/step | tokens/s | speed-up | all-reduce share of the step |", "|---|---|---|---|---|"]
    for n in (1, 2):
        r = rows[n]
        lines.append(f"| {n} | {r['s_per_step']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}x | {100 * r['comm_share']:.1f}% |")
    lines += ["", f"Speed-up with 2 ranks: {speedup:.2f}x (target >= 1.7x)."]
    out = ROOT / "benchmarks" / "results" / "distributed-cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
