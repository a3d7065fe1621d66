"""What this machine allows a training step and a decode step, measured on the spot: the ceilings under the
speed and memory targets of benchmarks/train_step.py and benchmarks/generate.py, each beside what we take now.

1. The GEMMs alone. Every Linear layer's three products of the step (forward x W^T, backward dY W and dY^T x),
   at the step's shapes and operand layouts (those of minitransformer/ops/linalg.py's Linear), replayed with
   NumPy in the step's order (forward, then backward in reverse), one array per operand as in the model, and
   nothing else. The floor is the step's FLOPs (mt.profiler's count) at the SGEMM rate of a 1024^3 product
   measured in the same process. GEMMs alone / floor is how far below its 1024^3 rate OpenBLAS runs at the
   step's shapes; floor / GEMMs alone is the highest "% of floor" a step can reach even if everything else
   (attention, GELU, layer norm, the optimizer, Python) took no time at all; and "left for the rest" is the
   time a target fraction of the floor leaves for everything that is not a Linear GEMM, beside what that part
   takes in today's step (the step minus its Linear and LinearBackward nodes' time, from a profile). Part of
   that rest has its own ceiling: the attention's products (seven per layer, batched over batch x heads,
   64 x 32 x 64 each at the baby's shapes), replayed alone the same way.
2. The memory a process holds before it builds a model: the resident set after importing NumPy and
   minitransformer, after importing Numba, and after loading the compiled kernels (mt.backend.warmup(), as the
   trainer does), then the peak over training steps; the same for the NumPy tier alone (Numba never imported)
   and for PyTorch eager. One thread; each in its own process.
3. Decode, batch 1: one token's products with the weights of the 6 x 384 GPT (every weight read once, from
   memory: the weights do not stay in cache between tokens) beside the whole decode step, ours and PyTorch's.

    python benchmarks/limits.py                 # writes benchmarks/results/limits-cpu.md
    python benchmarks/limits.py --large         # also the 6-layer, 384-wide GPT of train_step.py --large
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {("baby", 1): 0.85, ("baby", 2): 0.75, ("large", 1): 0.92, ("large", 2): 0.92}  # train_step.py's


def linear_shapes(model, rows: int) -> list[tuple[int, int, int]]:  # noqa: ANN001
    """(rows, in, out) of every Linear layer the GPT's forward runs, in order (lm_head last)."""
    import minitransformer as mt

    return [(rows, m.in_features, m.out_features) for m in model.modules() if isinstance(m, mt.nn.Linear)]


def gemms_alone_ms(shapes: list[tuple[int, int, int]], reps: int) -> float:
    """Median time of the step's Linear GEMMs alone: forward x2 @ W.T for each layer in order, then for each
    layer in reverse dX = dY @ W and dW = dY.T @ x2, on float32 arrays of one layer each."""
    import numpy as np

    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32),
               rng.standard_normal((m, n), dtype=np.float32)) for m, k, n in shapes]

    def step() -> None:
        for x, w, _ in layers:
            x @ w.T
        for x, w, g in reversed(layers):
            g @ w
            g.T @ x

    return median_ms(step, reps, warmup=3)


def attention_products_alone_ms(c: dict, reps: int) -> float:
    """Median time of the attention's products alone, as BLAS runs them in the step (the kernels' v2 at one
    tile per head: kernels/cpu/attention.py): per layer, forward S = Q K^T and O = P V, backward S again,
    dP = dO V^T, dV = P^T dO, dQ = dS K and dK = dS^T Q, each a batched product over (batch x heads), on
    contiguous arrays (the step reads strided views of the packed qkv, which is no faster)."""
    import numpy as np

    rng = np.random.default_rng(0)
    bh, T, hs = c["batch_size"] * c["n_head"], c["block_size"], c["n_embd"] // c["n_head"]
    layers = [[rng.standard_normal(shape, dtype=np.float32) for shape in ((bh, T, hs),) * 4 + ((bh, T, T),)]
              for _ in range(c["n_layer"])]

    def step() -> None:
        for q, k, v, _, _ in layers:
            s = q @ k.transpose(0, 2, 1)
            s @ v
        for q, k, v, do, p in reversed(layers):
            q @ k.transpose(0, 2, 1)
            dp = do @ v.transpose(0, 2, 1)
            p.transpose(0, 2, 1) @ do
            dp @ k
            dp.transpose(0, 2, 1) @ q

    return median_ms(step, reps, warmup=3)


def speed_worker(config: str, reps: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import train_step

    import minitransformer as mt

    c = train_step.CONFIGS[config]
    step = train_step.make_steps(c, ["ours"])["ours"]
    step_ms = median_ms(step, reps, warmup=3)
    linear = []
    for _ in range(3):                                      # the Linear nodes' share of a step, from profiles
        with mt.profiler.profile() as prof:
            step()
        linear.append(sum(e.self_cpu_time_total for e in prof.events if e.name in ("Linear", "LinearBackward")))
    flops = sum(e.flops for e in prof.events)
    model = mt.nn.GPT(mt.nn.GPTConfig(**{k: c[k] for k in ("n_layer", "n_head", "n_embd", "block_size",
                                                            "vocab_size")}, bias=False))
    shapes = linear_shapes(model, c["batch_size"] * c["block_size"])
    gemms = statistics.median(gemms_alone_ms(shapes, reps) for _ in range(3))
    attention = statistics.median(attention_products_alone_ms(c, reps) for _ in range(3))
    peak = mt.profiler.machine_peak()["gflops"]
    return {"step": step_ms, "linear_in_step": statistics.median(linear) / 1e3,
            "gemms_alone": gemms, "attention_alone": attention, "flops": flops, "sgemm": peak,
            "n_linear": len(shapes)}


def decode_worker(reps: int) -> dict:
    """The 6 x 384 GPT of benchmarks/generate.py decoding after a 256-token prompt, batch 1: our decode step and
    PyTorch's ((time of 65 tokens - time of 1) / 64, alternating, as generate.py), and one token's products
    with the weights alone (x W^T + b for every Linear layer in order, lm_head last), which read every weight
    once: the part of a decode step that is the machine's memory bandwidth."""
    sys.path.insert(0, str(Path(__file__).parent))
    import generate
    import numpy as np

    import minitransformer as mt

    mt.backend.warmup()
    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(block_size=512, vocab_size=65, n_layer=6, n_head=6, n_embd=384)).eval()
    context = mt.tensor(np.random.default_rng(0).integers(0, 65, (1, 256)))
    vs = generate.versus_torch(model, context, 64, reps) or {}
    layers = [(m.weight.data, None if m.bias is None else m.bias.data) for m in model.modules()
              if isinstance(m, mt.nn.Linear)]
    xs = {w.shape[1]: np.ones((1, w.shape[1]), np.float32) for w, _ in layers}

    def token() -> None:
        for w, b in layers:
            y = xs[w.shape[1]] @ w.T
            if b is not None:
                y += b

    products_ms = median_ms(token, 10 * reps, warmup=1)
    weights_mb = sum(w.nbytes for w, _ in layers) / 2**20
    return {"products": products_ms, "weights_mb": weights_mb,
            "gbps": mt.profiler.machine_peak()["gbps"], **vs}


def memory_worker(which: str, steps: int) -> dict:
    """Resident memory (MiB) of this process at each stage: imports, the compiled kernels loaded, the peak over
    `steps` training steps of the baby GPT."""
    sys.path.insert(0, str(Path(__file__).parent))
    out = {}
    import numpy  # noqa: F401

    if which == "torch":
        import torch  # noqa: F401

        out["imports"] = rss_mb()
    else:
        import minitransformer as mt

        out["imports"] = rss_mb()
        if which == "ours":
            import numba  # noqa: F401

            out["numba_import"] = rss_mb()
            mt.backend.warmup()
            out["kernels_loaded"] = rss_mb()
    import train_step

    step = train_step.make_steps(train_step.CONFIGS["baby"], [which])[which]   # "numpy": the NumPy tier's step
    for _ in range(steps):
        step()
    out["peak"] = peak_rss_mb()
    return out


def run(kind: str, arg: str, threads: int, reps: int) -> dict:
    env = {**os.environ, **thread_env(threads), "PYTHONPATH": str(ROOT)}
    env.pop("MINITRANSFORMER_BACKEND", None)
    if arg == "numpy":
        env["MINITRANSFORMER_BACKEND"] = "numpy"                                 # Numba is never imported
    return worker_result(__file__, ["--worker", json.dumps([kind, arg, reps])], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "limits-cpu.md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, arg, reps = json.loads(args.worker)
        work = {"speed": lambda: speed_worker(arg, reps), "memory": lambda: memory_worker(arg, reps),
                "decode": lambda: decode_worker(reps)}[kind]
        print(json.dumps(work()))
        return
    lines = [f"# What the machine allows a training step and a decode step ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores. `python benchmarks/limits.py"
             f"{' --large' if args.large else ''}`; what each figure is: the script's docstring. Times are "
             "medians; the GEMMs alone and the step run in the same process, one after the other.", "",
             "## The step's GEMMs alone, against the floor", "",
             "| config | threads | Linear layers | GFLOP/step | SGEMM GFLOP/s | floor ms | GEMMs alone ms | "
             "GEMMs alone / floor | best reachable: % of floor | step now ms | step now: % of floor | "
             "Linear nodes in the step ms | the rest now ms | target: % of floor | the target leaves for the rest ms | "
             "attention products alone ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for config in ["baby"] + (["large"] if args.large else []):
        reps = args.reps if config == "baby" else max(3, args.reps // 5)
        for t in args.threads:
            r = run("speed", config, t, reps)
            floor = r["flops"] / (r["sgemm"] * 1e9) * 1e3
            target = TARGETS[config, t]
            rest_now = r["step"] - r["linear_in_step"]
            lines.append(f"| {config} | {t} | {r['n_linear']} | {r['flops'] / 1e9:.2f} | {r['sgemm']:.1f} | "
                         f"{floor:.1f} | {r['gemms_alone']:.1f} | {r['gemms_alone'] / floor:.2f}x | "
                         f"{100 * floor / r['gemms_alone']:.0f}% | {r['step']:.1f} | {100 * floor / r['step']:.0f}% | "
                         f"{r['linear_in_step']:.1f} | {rest_now:.1f} | {100 * target:.0f}% | "
                         f"{floor / target - r['gemms_alone']:.1f} | {r['attention_alone']:.1f} |")
            print(lines[-1], flush=True)
    mem = {w: run("memory", w, 1, 10) for w in ("ours", "numpy", "torch")}
    budget = 0.55 * mem["torch"]["peak"]
    ours = mem["ours"]
    lines += ["", "## Memory before and during training (baby GPT, one thread, 10 steps)", "",
              "| process | after imports MB | after importing Numba MB | after loading the kernels MB | "
              "peak over the steps MB |", "|---|---|---|---|---|",
              f"| minitransformer with Numba | {ours['imports']:.0f} | {ours['numba_import']:.0f} | "
              f"{ours['kernels_loaded']:.0f} | {ours['peak']:.0f} |",
              f"| minitransformer, NumPy tier alone | {mem['numpy']['imports']:.0f} | | | {mem['numpy']['peak']:.0f} |",
              f"| PyTorch eager | {mem['torch']['imports']:.0f} | | | {mem['torch']['peak']:.0f} |", "",
              f"0.55x PyTorch's peak is {budget:.0f} MB. Importing Numba and loading the compiled kernels "
              f"take {ours['kernels_loaded'] - ours['imports']:.0f} MB before any model exists; the training "
              f"itself (the NumPy-tier process's peak minus its imports) takes "
              f"{mem['numpy']['peak'] - mem['numpy']['imports']:.0f} MB; together with the imports that is "
              f"{ours['kernels_loaded'] + mem['numpy']['peak'] - mem['numpy']['imports']:.0f} MB."]
    d = run("decode", "6x384", 1, 5)
    if "ours_decode" in d:
        allowed = 0.70 * d["torch_decode"]
        lines += ["", "## Decode, batch 1, one thread: the 6 x 384 GPT after a 256-token prompt", "",
                  "| Linear weights MB | memory GB/s | products with the weights alone, one token ms | "
                  "decode ms/token: ours | decode ms/token: PyTorch | ours / PyTorch | ours minus the products ms | "
                  "0.70x PyTorch leaves beside the products ms |", "|---|---|---|---|---|---|---|---|",
                  f"| {d['weights_mb']:.1f} | {d['gbps']:.1f} | {d['products']:.2f} | {d['ours_decode']:.2f} | "
                  f"{d['torch_decode']:.2f} | {d['ours_decode'] / d['torch_decode']:.2f} | "
                  f"{d['ours_decode'] - d['products']:.2f} | {allowed - d['products']:.2f} |"]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
