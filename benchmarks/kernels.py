"""Kernel benchmarks: the composition of primitive ops vs the NumPy reference kernel vs the Numba kernel vs
PyTorch (when installed), forward + backward, at the shapes of a small GPT (B=12, T=64, C=128, nh=4) and a
larger one (B=8, T=256, C=384, nh=6); plus matmul (Numba GEMM vs BLAS) and the attention step's peak
memory at T=1024.

Validate, then time: every implementation's output is checked against the reference first. Timings
alternate between implementations (A/B/C/D, repeated) in one process and report medians; thread counts
are set before NumPy is imported, one subprocess per count.

    python benchmarks/kernels.py                  # 1 and 2 threads, writes benchmarks/results/kernels-cpu.md
    python benchmarks/kernels.py --threads 1 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _report import cpu_model, worker_result  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

SHAPES = {"small": dict(B=12, T=64, C=128, nh=4, V=65), "large": dict(B=8, T=256, C=384, nh=6, V=4096)}


def _median_times(fns: dict, reps: int) -> dict:
    """Run each fn once to warm up, then alternate them `reps` times; median seconds per fn."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    import statistics

    return {k: statistics.median(v) for k, v in times.items()}


def worker(threads: int, quick: bool) -> list[dict]:
    import numpy as np

    import minitransformer as mt
    import minitransformer.nn.functional as F
    from minitransformer.nn.functional import _attention_composed

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    reps = 5 if quick else 15
    rng = np.random.default_rng(0)
    big = rng.standard_normal((1024, 1024)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(3):
        big @ big  # OpenBLAS runs slow until one large GEMM has run in the process
    gemm_peak = 3 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9
    src = np.ones(16 * 2**20, np.float32)
    dst = np.empty_like(src)
    bw = _median_times({"copy": lambda: np.copyto(dst, src)}, 7)["copy"]
    copy_gbs = 2 * src.nbytes / bw / 1e9
    mt.backend.warmup()
    rows: list[dict] = [{"kernel": "peak", "shape": "", "gemm_gflops": gemm_peak, "copy_gbs": copy_gbs}]

    def tensor(shape, scale=1.0, grad=True):
        return mt.tensor((rng.standard_normal(shape) * scale).astype(np.float32), requires_grad=grad)

    def run_fb(fn, inputs, g):
        def f():
            for t in inputs:
                t.grad = None
            out = fn()
            out.backward(g)
            return out
        return f

    def fused(name, fn, inputs, g):
        def f():
            with mt.backend.use(name):
                return run_fb(fn, inputs, g)()
        return f

    def add(kernel, label, impls, nbytes=None, flops=None, check=None):
        if check is not None:
            check()
        t = _median_times(impls, reps)
        row = {"kernel": kernel, "shape": label, **{k: v * 1e3 for k, v in t.items()}}
        if nbytes:
            row["numba_gbs"] = nbytes / t["numba"] / 1e9
        if flops:
            row["numba_gflops"] = flops / t["numba"] / 1e9
        rows.append(row)

    def bench_shape(label: str, s: dict) -> None:
            B, T, C, nh, V = s["B"], s["T"], s["C"], s["nh"], s["V"]
            N = B * T
            # ---- softmax over attention-sized rows (B*nh*T rows of T)
            x = tensor((B * nh * T, T), 3.0)
            g = mt.tensor(rng.standard_normal(x.shape).astype(np.float32))

            def composed_softmax(x=x):
                e = (x - x.amax(dim=-1, keepdim=True).detach()).exp()
                return e / e.sum(dim=-1, keepdim=True)

            impls = {"composed": run_fb(composed_softmax, [x], g)}
            for name in ("numpy", "numba"):
                impls[name] = fused(name, lambda x=x: F.softmax(x, dim=-1), [x], g)
            if torch:
                tx, tg = torch.tensor(x.numpy(), requires_grad=True), torch.tensor(g.numpy())
                impls["torch"] = lambda tx=tx, tg=tg: torch.softmax(tx, -1).backward(tg)
            add("softmax", f"{label} ({B * nh * T}x{T})", impls, nbytes=5 * x.numel() * 4)

            # ---- softmax + cross-entropy over the vocabulary
            logits = tensor((N, V), 2.0)
            tgt = mt.tensor(rng.integers(0, V, N))
            one = mt.tensor(np.float32(1.0))

            def composed_ce(z=logits, t=tgt):
                m = z.amax(dim=-1, keepdim=True).detach()
                lse = (z - m).exp().sum(dim=-1, keepdim=True).log() + m
                return (lse - z.gather(1, t.unsqueeze(1))).mean()

            impls = {"composed": run_fb(composed_ce, [logits], one)}
            for name in ("numpy", "numba"):
                impls[name] = fused(name, lambda z=logits, t=tgt: F.cross_entropy(z, t), [logits], one)
            if torch:
                tz, tt = torch.tensor(logits.numpy(), requires_grad=True), torch.tensor(tgt.numpy())
                impls["torch"] = lambda tz=tz, tt=tt: torch.nn.functional.cross_entropy(tz, tt).backward()
            add("cross_entropy", f"{label} ({N}x{V})", impls, nbytes=3 * logits.numel() * 4)

            # ---- layer norm
            x = tensor((N, C), 2.0)
            w, b = tensor((C,)), tensor((C,))
            g = mt.tensor(rng.standard_normal(x.shape).astype(np.float32))

            def composed_ln(x=x, w=w, b=b):
                mu = x.mean(dim=-1, keepdim=True)
                xc = x - mu
                return xc / ((xc * xc).mean(dim=-1, keepdim=True) + 1e-5).sqrt() * w + b

            impls = {"composed": run_fb(composed_ln, [x, w, b], g)}
            for name in ("numpy", "numba"):
                impls[name] = fused(name, lambda x=x, w=w, b=b: F.layer_norm(x, (C,), w, b), [x, w, b], g)
            if torch:
                tx, tw, tb = (torch.tensor(a.numpy(), requires_grad=True) for a in (x, w, b))
                tg = torch.tensor(g.numpy())
                impls["torch"] = lambda: torch.nn.functional.layer_norm(tx, (C,), tw, tb).backward(tg)
            add("layer_norm", f"{label} ({N}x{C})", impls, nbytes=5 * x.numel() * 4)

            # ---- GELU (exact, as nanoGPT's MLP) on the MLP's hidden activations
            x = tensor((N, 4 * C))
            g = mt.tensor(rng.standard_normal(x.shape).astype(np.float32))

            def composed_gelu_tanh(x=x):  # NumPy has no erf: the composition is the tanh form
                return 0.5 * x * (1 + ((x + 0.044715 * x * x * x) * 0.7978845608).tanh())

            impls = {"composed": run_fb(composed_gelu_tanh, [x], g)}
            for name in ("numpy", "numba"):
                impls[name] = fused(name, lambda x=x: F.gelu(x), [x], g)
            if torch:
                tx, tg = torch.tensor(x.numpy(), requires_grad=True), torch.tensor(g.numpy())
                impls["torch"] = lambda: torch.nn.functional.gelu(tx).backward(tg)
            add("gelu (exact)", f"{label} ({N}x{4 * C})", impls, nbytes=4 * x.numel() * 4)

            # ---- causal attention, (B, nh, T, hs)
            hs = C // nh
            q, k, v = (tensor((B, nh, T, hs)) for _ in range(3))
            g = mt.tensor(rng.standard_normal((B, nh, T, hs)).astype(np.float32))
            future = np.triu(np.ones((T, T), dtype=bool), 1)
            impls = {"composed": run_fb(lambda: _attention_composed(q, k, v, future, None, 1 / np.sqrt(hs), 0.0),
                                        [q, k, v], g)}
            for name in ("numpy", "numba"):
                impls[name] = fused(name, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v], g)
            if torch:
                tq, tk, tv = (torch.tensor(a.numpy(), requires_grad=True) for a in (q, k, v))
                tg = torch.tensor(g.numpy())
                impls["torch"] = lambda: torch.nn.functional.scaled_dot_product_attention(
                    tq, tk, tv, is_causal=True).backward(tg)
            # causal: half of the (T x T) products; forward 2 GEMMs, backward 5
            flops = 7 * B * nh * T * T * hs
            add("attention (causal)", f"{label} ({B}x{nh}x{T}x{hs})", impls, flops=flops)

            # ---- AdamW over a GPT's parameters
            model = mt.nn.GPT(mt.nn.GPTConfig(block_size=T, vocab_size=V if label == "small" else 65,
                                              n_layer=4 if label == "small" else 6, n_head=nh, n_embd=C))
            params = list(model.parameters())
            for p in params:
                p.grad = mt.tensor(rng.standard_normal(p.shape).astype(np.float32))
            opts = {name: mt.optim.AdamW(params, lr=1e-9) for name in ("numpy", "numba")}

            def adam_step(name):
                def f():
                    with mt.backend.use(name):
                        opts[name].step()
                return f

            # the NumPy reference is itself the composition of array ops, so it also serves as `composed`
            impls = {"composed": adam_step("numpy"), "numpy": adam_step("numpy"), "numba": adam_step("numba")}
            n_params = sum(p.numel() for p in params)
            if torch:
                tps = [torch.nn.Parameter(torch.tensor(p.numpy())) for p in params]
                for tp, p in zip(tps, params, strict=True):
                    tp.grad = torch.tensor(p.grad.numpy())
                topt = torch.optim.AdamW(tps, lr=1e-9)
                impls["torch"] = topt.step
            add("adamw", f"{label} ({n_params:,} params)", impls, nbytes=7 * n_params * 4)

    for label, s in SHAPES.items():
        bench_shape(label, s)

    # ---- matmul: the Numba GEMM study against BLAS
    from minitransformer.kernels.cpu import matmul as km

    for n in (128, 512):
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        assert np.allclose(km.matmul_forward(a, b), a @ b, rtol=1e-4, atol=1e-3)
        t = _median_times({"numpy": lambda a=a, b=b: a @ b, "numba": lambda a=a, b=b: km.matmul_forward(a, b)},
                          reps)
        rows.append({"kernel": "matmul (forward)", "shape": f"{n}^3", "numpy": t["numpy"] * 1e3,
                     "numba": t["numba"] * 1e3, "numba_gflops": 2 * n**3 / t["numba"] / 1e9,
                     "numpy_gflops": 2 * n**3 / t["numpy"] / 1e9})

    # ---- peak memory of one attention forward+backward at T=1024
    import tracemalloc

    T, nh, hs = 1024, 6, 64
    q, k, v = (tensor((1, nh, T, hs)) for _ in range(3))
    g = mt.tensor(rng.standard_normal((1, nh, T, hs)).astype(np.float32))
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    mem = {}
    for name, fn in (("composed", lambda: _attention_composed(q, k, v, future, None, 0.125, 0.0)),
                     ("numba", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))):
        with mt.backend.use("numba"):
            fn().backward(g)
            tracemalloc.start()
            fn().backward(g)
            mem[name] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    rows.append({"kernel": "attention peak memory", "shape": f"T={T} (1x{nh}x{T}x{hs})",
                 "composed_mb": mem["composed"], "numba_mb": mem["numba"]})
    return rows


def _fmt(x: float | None) -> str:
    return "" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}")


def table(results: dict[int, list[dict]]) -> str:
    import numba
    import numpy

    try:
        import torch
        torch_v = torch.__version__
    except ImportError:
        torch_v = "not installed"
    cpu = cpu_model()
    flags = Path("/proc/cpuinfo").read_text()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    out = [f"# Kernel benchmarks ({time.strftime('%Y-%m-%d')})", "",
           f"Machine: {cpu}, {os.cpu_count()} cores, {isa}. Python {platform.python_version()}, "
           f"NumPy {numpy.__version__}, Numba {numba.__version__}, PyTorch {torch_v}.",
           "Times are milliseconds for forward + backward (AdamW: one step), medians of alternating runs in one "
           "process. `composed` is the same math built from primitive autograd ops; `numpy` the fused op on "
           "the NumPy reference kernel; `numba` the fused op on the Numba kernel. Speed-ups are against "
           "`composed`.",
           ""]
    for threads, rows in results.items():
        peak = rows[0]
        out += [f"## {threads} thread{'s' if threads > 1 else ''}", "",
                f"Measured peaks: float32 GEMM (BLAS, 1024^3) {peak['gemm_gflops']:.0f} GFLOP/s, "
                f"copy {peak['copy_gbs']:.1f} GB/s (bytes read + written).", "",
                "| kernel | shape | composed | numpy | numba | torch | numba vs composed | target 2x | "
                "numba vs numpy | numba vs torch | numba achieved |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows[1:]:
            if r["kernel"] == "attention peak memory":
                continue
            if r["kernel"].startswith("matmul"):
                share = r["numba_gflops"] / r["numpy_gflops"]
                # the target (half of BLAS at 512^3) is stated for one thread
                met = ("met" if share >= 0.5 else "missed") if "512" in r["shape"] and threads == 1 else ""
                out.append(f"| {r['kernel']} | {r['shape']} | | {_fmt(r['numpy'])} | {_fmt(r['numba'])} | | | "
                           f"{met and f'50% of BLAS: {met}'} | {r['numpy'] / r['numba']:.2f}x | | "
                           f"{r['numba_gflops']:.1f} GFLOP/s ({100 * share:.0f}% of BLAS) |")
                continue
            comp, torch_ms, numba_ms = r.get("composed"), r.get("torch"), r["numba"]
            achieved = (f"{r['numba_gbs']:.1f} GB/s" if "numba_gbs" in r else
                        f"{r['numba_gflops']:.1f} GFLOP/s" if "numba_gflops" in r else "")
            vs_comp = "" if comp is None else f"{comp / numba_ms:.2f}x"
            target = "" if comp is None else ("met" if comp / numba_ms >= 2 else "**missed**")
            vs_torch = "" if torch_ms is None else f"{torch_ms / numba_ms:.2f}x"
            out.append(f"| {r['kernel']} | {r['shape']} | {_fmt(comp)} | {_fmt(r['numpy'])} | {_fmt(numba_ms)} "
                       f"| {_fmt(torch_ms)} | {vs_comp} | {target} | {r['numpy'] / numba_ms:.2f}x | {vs_torch} "
                       f"| {achieved} |")
        mem = next(r for r in rows if r["kernel"] == "attention peak memory")
        out += ["", f"Attention forward + backward at {mem['shape']}: peak traced memory "
                f"{mem['composed_mb']:.0f} MB composed vs {mem['numba_mb']:.1f} MB fused (Numba).", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--out", type=Path, default=RESULTS / "kernels-cpu.md")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick)))
        return
    results = {}
    for n in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n),
               "NUMBA_NUM_THREADS": str(n), "PYTHONPATH": str(ROOT)}
        results[n] = worker_result(__file__, ["--worker", str(n)] + (["--quick"] if args.quick else []), env)
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
