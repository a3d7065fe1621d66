"""The GPU benchmarks of `make gpu-check` (after the GPU tests): every CUDA kernel version against the best
library on the card, and a GPT training step against PyTorch eager. Installs nothing; needs CuPy and a
GPU (PyTorch for its columns). Prints the table and writes benchmarks/results/gpu-<card>.md.

    PYTHONPATH=. python3 benchmarks/gpu.py            # about two minutes on an H200

- SGEMM, 4096^3 float32: every version of sgemm.cu and cuBLAS (cupy.matmul) in GFLOP/s (TF32 for the
  tensor-core version: a different precision, marked).
- Softmax (every version) and layer norm at 4096 x 32768: GB/s of the minimal traffic (read x once, write y
  once) as a fraction of the card's measured copy bandwidth (a device-to-device copy of 1 GiB).
- Attention forward + backward, batch 4 x 16 heads x head size 64, causal, T = 1024 and 4096: the fused
  kernels against the unfused CuPy composition (cuBLAS matmuls + the softmax kernel, the (T, T) scores
  stored) and PyTorch's scaled_dot_product_attention.
- GPT training step (forward, loss, backward, clip, AdamW), n_layer 6, n_head 6, n_embd 384, block 256,
  batch 64: minitransformer on `cuda` against nanoGPT's model in PyTorch eager on the same card.
Times are medians of several runs after warm-up, the device synchronised around each.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import write_report  # noqa: E402


def timed(fn, reps: int = 5, warmup: int = 2) -> float:  # noqa: ANN001
    import cupy as cp

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        fn()
        cp.cuda.Device().synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sgemm_rows() -> list[str]:
    import cupy as cp
    from minitransformer.kernels.cuda import matmul as K

    n = 4096
    rng = cp.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=cp.float32), rng.standard_normal((n, n), dtype=cp.float32)
    flops = 2 * n**3
    base = flops / timed(lambda: a @ b) / 1e9
    rows = [f"| SGEMM 4096^3 | cuBLAS (cupy.matmul) | {base:,.0f} GFLOP/s | 100% |"]
    for version in K.VERSIONS:
        reps = 2 if version == "sgemm_v1" else 5
        g = flops / timed(lambda v=version: K.matmul(a, b, v), reps=reps, warmup=1) / 1e9
        note = " (TF32 inputs)" if version == "sgemm_tf32" else ""
        rows.append(f"| SGEMM 4096^3 | {version}{note} | {g:,.0f} GFLOP/s | {g / base:.0%} |")
    return rows


def bandwidth_rows() -> list[str]:
    import cupy as cp
    from minitransformer.kernels.cuda import layernorm as LN
    from minitransformer.kernels.cuda import softmax as SM

    src = cp.empty(1 << 28, cp.float32)  # 1 GiB
    dst = cp.empty_like(src)
    copy_bw = 2 * src.nbytes / timed(lambda: cp.copyto(dst, src)) / 1e9
    rows = [f"| copy 1 GiB | device to device | {copy_bw:,.0f} GB/s | 100% |"]
    x = cp.random.default_rng(0).standard_normal((4096, 32768), dtype=cp.float32)
    nbytes = 2 * x.nbytes
    for version in SM.VERSIONS:
        bw = nbytes / timed(lambda v=version: SM.softmax_version(x, v)) / 1e9
        rows.append(f"| softmax 4096 x 32768 | {version} | {bw:,.0f} GB/s | {bw / copy_bw:.0%} |")
    w, b = cp.ones(32768, cp.float32), cp.zeros(32768, cp.float32)
    bw = nbytes / timed(lambda: LN.layernorm_forward(x, w, b, 1e-5)) / 1e9
    rows.append(f"| layer norm 4096 x 32768 | layernorm_forward | {bw:,.0f} GB/s | {bw / copy_bw:.0%} |")
    return rows


def attention_at(T: int) -> str:
    """One row: fused, unfused and PyTorch SDPA forward + backward at sequence length T."""
    import cupy as cp
    from minitransformer.kernels.cuda import attention as A
    from minitransformer.kernels.cuda import softmax as SM

    rng = cp.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((64, T, 64), dtype=cp.float32) for _ in range(4))  # 4 x 16 heads
    scale = 1 / math.sqrt(64)
    blocked = cp.triu(cp.ones((T, T), bool), 1)

    def fused() -> None:
        out, lse = A.attention_forward(q, k, v, None, scale, True)
        A.attention_backward(dout, q, k, v, out, lse, None, scale, True)

    def unfused() -> None:
        s = cp.where(blocked, -cp.inf, (q @ k.transpose(0, 2, 1)) * scale)
        p = SM.softmax_forward(s)
        _ = p @ v
        ds = SM.softmax_backward(dout @ v.transpose(0, 2, 1), p) * scale
        _ = (ds @ k, ds.transpose(0, 2, 1) @ q, p.transpose(0, 2, 1) @ dout)

    t_fused, t_unfused = timed(fused, reps=3), timed(unfused, reps=3)
    torch_cols = "| "
    try:
        import torch
        import torch.nn.functional as F

        tq, tk, tv = (torch.as_tensor(a.reshape(4, 16, T, 64), device="cuda").requires_grad_() for a in (q, k, v))
        td = torch.as_tensor(dout.reshape(4, 16, T, 64), device="cuda")

        def sdpa() -> None:
            F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(td)

        t_torch = timed(sdpa, reps=3)
        torch_cols = f"{t_torch * 1e3:.2f} ms | {t_fused / t_torch:.2f}"
    except ImportError:
        pass
    return (f"| attention fwd+bwd T={T} | fused {t_fused * 1e3:.2f} ms | unfused {t_unfused * 1e3:.2f} ms "
            f"({t_unfused / t_fused:.2f}x) | PyTorch SDPA {torch_cols} |")


def attention_rows() -> list[str]:
    return [attention_at(T) for T in (1024, 4096)]


def gpt_rows() -> list[str]:
    import minitransformer as mt

    c = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65)
    B = 64
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 65, (B, 256)), rng.integers(0, 65, (B, 256))
    mt.manual_seed(0)
    model = mt.nn.GPT(mt.nn.GPTConfig(**c, bias=False)).to("cuda")
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    mx, my = mt.tensor(x, device="cuda"), mt.tensor(y, device="cuda")

    def ours() -> None:
        _, loss = model(mx, my)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t_ours = timed(ours, reps=5, warmup=2)
    line = f"| GPT step 6x384, T 256, batch 64 | minitransformer {t_ours * 1e3:.1f} ms |"
    try:
        import torch
        from train_step import torch_gpt

        tm = torch_gpt({**c, "batch_size": B}).cuda()
        topt = torch.optim.AdamW(tm.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
        tx, ty = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")

        def theirs() -> None:
            loss = tm(tx, ty)
            topt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
            topt.step()

        t_torch = timed(theirs, reps=5, warmup=2)
        line += f" PyTorch eager {t_torch * 1e3:.1f} ms | ours / PyTorch {t_ours / t_torch:.2f} |"
    except ImportError:
        line += " | |"
    return [line]


def main() -> None:
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    card = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sections = []
    for title, fn in (("SGEMM", sgemm_rows), ("bandwidth", bandwidth_rows), ("attention", attention_rows),
                      ("GPT step", gpt_rows)):
        t0 = time.perf_counter()
        try:
            rows = fn()
        except Exception as e:  # one failing section must not hide the others' figures
            rows = [f"| {title} | FAILED: {type(e).__name__}: {str(e)[:200]} | | |"]
        for r in rows:
            print(r, flush=True)
        sections += rows
        print(f"({title}: {time.perf_counter() - t0:.0f} s)", flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-")
    write_report(ROOT / "benchmarks" / "results" / f"gpu-{slug}.md", [
        f"# GPU benchmarks on {card} ({time.strftime('%Y-%m-%d')})", "",
        "`make gpu-check` (benchmarks/gpu.py; the method is in its docstring).", "",
        "| what | version | measured | vs the library |", "|---|---|---|---|", *sections])


if __name__ == "__main__":
    main()
