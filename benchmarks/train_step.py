"""One training step (forward + loss + backward + clip + AdamW) of the nanoGPT "baby" GPT (4 layers, 4 heads,
128 wide, block 64, batch 12, char vocabulary 65), minitransformer against PyTorch eager (when installed),
steps alternating in one process, medians, with 1 and 2 threads; then peak RSS of each alone. Beside each time:
the floor (the step's FLOPs, counted by mt.profiler, at the SGEMM rate measured on the spot) and the fraction of
it each library reaches; and the same step with every kernel from the NumPy tier (no Numba), alternating with them.

    python benchmarks/train_step.py            # writes benchmarks/results/train-step-cpu.md
    python benchmarks/train_step.py --large    # also 6 layers, 6 heads, 384 wide, block 256, batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _report import (  # benchmarks/ is the script's folder
    cpu_model,
    peak_rss_mb,
    thread_env,
    worker_result,
    write_report,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, vocab_size=65),
           "large": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8, vocab_size=65)}


def torch_gpt(c):  # noqa: ANN001, ANN201
    """nanoGPT's model in PyTorch (bias=False, exact GELU), the reference we race against."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = c["n_embd"]
            self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, c["n_head"], -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
            self.wpe = nn.Embedding(c["block_size"], c["n_embd"])
            self.h = nn.ModuleList([Block() for _ in range(c["n_layer"])])
            self.ln_f = nn.LayerNorm(c["n_embd"], bias=False)
            self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            for b in self.h:
                x = b(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT()


def our_step(mt, c, x, y, backend):  # noqa: ANN001, ANN201
    """One minitransformer training step under kernel backend `backend` ("auto": Numba when installed;
    "numpy": the NumPy tier alone, what `pip install minitransformer` without extras runs)."""
    model = mt.nn.GPT(mt.nn.GPTConfig(**{k: c[k] for k in ("n_layer", "n_head", "n_embd", "block_size",
                                                             "vocab_size")}, bias=False))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))

    def step():
        with mt.backend.use(backend):
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            mt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return step


def make_steps(c, which):  # noqa: ANN001, ANN201
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, c["vocab_size"], (c["batch_size"], c["block_size"]))
    y = rng.integers(0, c["vocab_size"], (c["batch_size"], c["block_size"]))
    steps = {}
    for name in ("ours", "numpy"):
        if name not in which:
            continue
        import minitransformer as mt

        if name == "ours":
            mt.backend.warmup()                              # the NumPy tier alone never loads Numba
        steps[name] = our_step(mt, c, x, y, "auto" if name == "ours" else "numpy")
    if "torch" in which:
        import torch

        tm = torch_gpt(c)
        decay = [p for p in tm.parameters() if p.dim() >= 2]
        rest = [p for p in tm.parameters() if p.dim() < 2]
        topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                 lr=1e-3, betas=(0.9, 0.99))
        tx, ty = torch.tensor(x), torch.tensor(y)

        def theirs():
            loss = tm(tx, ty)
            topt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
            topt.step()
        steps["torch"] = theirs
    return steps


def worker(threads: int, config: str, which: list[str], reps: int) -> dict:
    import statistics

    if "torch" in which:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            which = [w for w in which if w != "torch"]
    steps = make_steps(CONFIGS[config], which)
    for f in steps.values():
        for _ in range(3):
            f()
    times = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) * 1e3 for k, v in times.items()} | {"rss_mb": peak_rss_mb()}
    if "ours" in steps:
        # the floor: the step's FLOPs (mt.profiler's count from the shapes) at the SGEMM rate measured here, now
        import minitransformer as mt

        with mt.profiler.profile() as prof:
            steps["ours"]()
        out["flops"] = sum(e.flops for e in prof.events)
        out["sgemm_gflops"] = mt.profiler.machine_peak()["gflops"]
    return out


def run_worker(threads: int, config: str, which: list[str], reps: int) -> dict:
    env = {**os.environ, **thread_env(threads), "PYTHONPATH": str(ROOT)}
    env.pop("MINITRANSFORMER_BACKEND", None)                    # each worker runs the backend it names
    if which == ["numpy"]:
        env["MINITRANSFORMER_BACKEND"] = "numpy"                 # as without Numba: it is never imported
    if "ours" in which:
        # Passive OpenMP waiting keeps the thread pools in one process (OpenBLAS, Numba's OpenMP, and
        # PyTorch's when both run) from spinning against each other; minitransformer sets it on import.
        # PyTorch alone keeps its own default (active waiting), which is faster for it.
        env.update({"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"})
    return worker_result(__file__, ["--worker", json.dumps([threads, config, which, reps])], env)


def alone(threads: int, config: str, reps: int, rounds: int, with_torch: bool) -> tuple[dict, dict, dict]:
    """Each library alone in its own process (and our NumPy tier alone, Numba never imported), the processes
    alternating `rounds` times (the machine's load drifts between processes); the median over rounds of each
    process's median, and the peak RSS."""
    import statistics

    runs: dict[str, list[dict]] = {"ours": [], "torch": [], "numpy": []}
    for _ in range(rounds):
        runs["ours"].append(run_worker(threads, config, ["ours"], reps))
        if with_torch:
            runs["torch"].append(run_worker(threads, config, ["torch"], reps))
        runs["numpy"].append(run_worker(threads, config, ["numpy"], reps))
    out = []
    for name, rs in runs.items():
        if not rs:
            out.append({})
            continue
        out.append({name: statistics.median(r[name] for r in rs), "rss_mb": max(r["rss_mb"] for r in rs)})
    return out[0], out[1], out[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the each-alone processes")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train-step-cpu.md")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        threads, config, which, reps = json.loads(args.worker)
        print(json.dumps(worker(threads, config, which, reps)))
        return
    try:
        import torch
        torch_v = torch.__version__
    except ImportError:
        torch_v = None
    import numpy

    cpu = cpu_model()
    lines = [f"# Training step: minitransformer vs PyTorch eager ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores. Python {platform.python_version()}, NumPy {numpy.__version__}, "
             f"PyTorch {torch_v or 'not installed'}. Step = forward + cross-entropy + backward + clip_grad_norm_ + "
             "AdamW; medians of alternating steps in one process (columns 3-5 and 15-16; passive OpenMP waiting, "
             "which minitransformer sets and without which the pools of the two libraries fight), and of each "
             "library alone in its own process with its own defaults, the three processes (ours, PyTorch's, ours "
             f"on the NumPy tier) alternating {args.rounds} times, median of the process medians (columns 6-7 and "
             "17, with the peak RSS in columns 8-9 and 18). Thread count as in column 2 "
             "(OMP/OPENBLAS/NUMBA_NUM_THREADS and torch.set_num_threads).", "",
             "The floor is the step's FLOPs (mt.profiler's count from the shapes: 2MNK for products, per-element "
             "counts for the rest) at the SGEMM rate measured in the same process (a 1024^3 float32 product, the "
             "best of 9), and \"% of floor\" is floor / time for the steps of columns 3 and 4. \"NumPy only\": the "
             "same step with every kernel from the NumPy tier (mt.backend.use(\"numpy\")), the path of an install "
             "without Numba, alternating with the other two; and alone in its own process with "
             "MINITRANSFORMER_BACKEND=numpy (Numba never imported), alternating with the other two processes.", "",
             "| config | threads | minitransformer ms/step | PyTorch ms/step | ratio (ours / torch) | "
             "each alone: ours ms/step | each alone: torch ms/step | peak RSS ours | peak RSS torch | GFLOP/step | "
             "SGEMM GFLOP/s | "
             "floor ms | ours: % of floor | torch: % of floor | NumPy only ms/step | NumPy only / ours | "
             "NumPy only alone ms/step | peak RSS NumPy only |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for config in ["baby"] + (["large"] if args.large else []):
        reps = args.reps if config == "baby" else max(3, args.reps // 5)
        for t in args.threads:
            both = run_worker(t, config, ["ours", "numpy", "torch"], reps)
            alone_ours, alone_torch, alone_numpy = alone(t, config, reps, args.rounds, "torch" in both)
            ratio = f"{both['ours'] / both['torch']:.2f}" if "torch" in both else ""
            torch_alone = f"{alone_torch['torch']:.1f}" if alone_torch else ""
            torch_rss = f"{alone_torch['rss_mb']:.0f} MB" if alone_torch else ""
            floor = both["flops"] / (both["sgemm_gflops"] * 1e9) * 1e3                  # ms
            torch_floor = f"{100 * floor / both['torch']:.0f}%" if "torch" in both else ""
            lines.append(f"| {config} | {t} | {both['ours']:.1f} | {both.get('torch', float('nan')):.1f} | {ratio} | "
                         f"{alone_ours['ours']:.1f} | {torch_alone} | {alone_ours['rss_mb']:.0f} MB | {torch_rss} | "
                         f"{both['flops'] / 1e9:.2f} | {both['sgemm_gflops']:.1f} | {floor:.1f} | "
                         f"{100 * floor / both['ours']:.0f}% | {torch_floor} | {both['numpy']:.1f} | "
                         f"{both['numpy'] / both['ours']:.2f}x | {alone_numpy['numpy']:.1f} | "
                         f"{alone_numpy['rss_mb']:.0f} MB |")
            print(lines[-1], flush=True)
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
