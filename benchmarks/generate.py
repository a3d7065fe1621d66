"""Generation speed with and without the key/value cache: ms per new token, batch 1, for a GPT with a
context of 256 tokens already present (so each uncached step reprocesses 256+ positions); and, when PyTorch
is installed, the same model (the same weights) in PyTorch eager with a key/value cache, written the plain
way (nanoGPT's blocks, keys and values concatenated per layer), the two alternating.

    python benchmarks/generate.py     # writes benchmarks/results/generate-cpu.md (--out FILE: elsewhere)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _report import cpu_model  # benchmarks/ is the script's folder

import minitransformer as mt

ROOT = Path(__file__).resolve().parent.parent


def ms_per_token(model: mt.nn.GPT, context: mt.Tensor, new: int, use_cache: bool, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        mt.manual_seed(0)
        t0 = time.perf_counter()
        model.generate(context, new, top_k=1, use_cache=use_cache)
        times.append((time.perf_counter() - t0) / new * 1e3)
    return statistics.median(times)


def torch_generator(model: mt.nn.GPT):  # noqa: ANN201
    """A PyTorch eager copy of `model` (same weights) with a KV cache: context (1, T) -> greedy tokens."""
    import torch
    import torch.nn.functional as F

    sd = {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}
    c = model.config
    nh, C = c.n_head, c.n_embd

    def ln(x, name):  # noqa: ANN001, ANN202
        return F.layer_norm(x, (C,), sd[name + ".weight"], sd.get(name + ".bias"), 1e-5)

    def lin(x, name):  # noqa: ANN001, ANN202
        return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))

    @torch.no_grad()
    def forward(idx, start, cache):  # noqa: ANN001, ANN202
        B, T = idx.shape
        x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][start:start + T]
        for i in range(c.n_layer):
            p = f"transformer.h.{i}"
            q, k, v = lin(ln(x, p + ".ln_1"), p + ".attn.c_attn").split(C, dim=2)
            q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))
            if i in cache:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
            x = x + lin(y.transpose(1, 2).reshape(B, T, C), p + ".attn.c_proj")
            x = x + lin(F.gelu(lin(ln(x, p + ".ln_2"), p + ".mlp.c_fc")), p + ".mlp.c_proj")
        return F.linear(ln(x[:, -1:], "transformer.ln_f"), sd["lm_head.weight"])

    def generate(context: np.ndarray, new: int) -> list[int]:
        cache: dict = {}
        idx = torch.from_numpy(context)
        logits = forward(idx, 0, cache)
        out, pos = [], context.shape[1]
        for _ in range(new):
            tok = logits[:, -1].argmax(-1, keepdim=True)                      # (B, 1)
            out.append(tok)
            logits = forward(tok, pos, cache)
            pos += 1
        rows = torch.cat(out, dim=1).tolist()
        return rows[0] if len(rows) == 1 else rows

    return generate


def versus_torch(model: mt.nn.GPT, context: mt.Tensor, new: int, reps: int = 5) -> dict[str, float] | None:
    """Ours and PyTorch's prompt pass (ms) and decode (ms per token after it), alternating, medians, after
    checking that both produce the same greedy tokens. A run of n tokens is the prompt pass plus n - 1 decode
    steps, so decode = (time(1 + new) - time(1)) / new: the prompt pass cancels out."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    gen = torch_generator(model)
    ctx = context.numpy()
    ours_tokens = model.generate(context, 16, top_k=1).numpy()[0, ctx.shape[1]:].tolist()
    assert gen(ctx, 16) == ours_tokens, "PyTorch and minitransformer disagree on greedy tokens"
    runners = {"ours": lambda n: model.generate(context, n, top_k=1), "torch": lambda n: gen(ctx, n)}
    runs: dict[tuple[str, int], list[float]] = {(who, n): [] for n in (1, 1 + new) for who in runners}
    for _ in range(reps):
        for (who, n), times in runs.items():                # ours and PyTorch's alternate at each length
            t0 = time.perf_counter()
            runners[who](n)
            times.append(time.perf_counter() - t0)
    med = {key: statistics.median(times) * 1e3 for key, times in runs.items()}
    out = {}
    for who in runners:
        out[f"{who}_prompt"] = med[who, 1]
        out[f"{who}_decode"] = (med[who, 1 + new] - med[who, 1]) / new
    return out


def batched(model: mt.nn.GPT, B: int, new: int = 64, reps: int = 5) -> tuple[float, float | None]:
    """Tokens per second generating for B prompts of 256 tokens at once (ours: generate_batch; PyTorch: the
    same KV-cache decoder on a (B, 256) batch), alternating, medians; the same greedy tokens checked."""
    ctx = np.random.default_rng(1).integers(0, model.config.vocab_size, (B, 256))
    prompts = ctx.tolist()
    gen = None
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        gen = torch_generator(model)
        want = gen(ctx, 8)
        assert (want if B > 1 else [want]) == model.generate_batch(prompts, 8, top_k=1)
    except ImportError:
        pass
    ours, theirs = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.generate_batch(prompts, new, top_k=1)
        ours.append(B * new / (time.perf_counter() - t0))
        if gen is not None:
            t0 = time.perf_counter()
            gen(ctx, new)
            theirs.append(B * new / (time.perf_counter() - t0))
    return statistics.median(ours), (statistics.median(theirs) if theirs else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generate-cpu.md")
    args = ap.parse_args()
    mt.backend.warmup()
    rows = []
    for name, cfg in (("baby (4x128)", dict(n_layer=4, n_head=4, n_embd=128)),
                      ("6x384", dict(n_layer=6, n_head=6, n_embd=384))):
        mt.manual_seed(0)
        model = mt.nn.GPT(mt.nn.GPTConfig(block_size=512, vocab_size=65, **cfg)).eval()
        context = mt.tensor(np.random.default_rng(0).integers(0, 65, (1, 256)))
        a = model.generate(context, 32, top_k=1, use_cache=True).tolist()
        assert a == model.generate(context, 32, top_k=1, use_cache=False).tolist()  # same tokens
        cached = ms_per_token(model, context, 64, True)
        uncached = ms_per_token(model, context, 64, False)
        vs = versus_torch(model, context, 64)
        torch_cols = " | | | | |"
        if vs:
            torch_cols = (f" {vs['ours_prompt']:.1f} | {vs['torch_prompt']:.1f} | {vs['ours_decode']:.2f} | "
                          f"{vs['torch_decode']:.2f} | {vs['ours_decode'] / vs['torch_decode']:.2f} |")
        rows.append(f"| {name} | 256 | {cached:.2f} | {uncached:.2f} | {uncached / cached:.1f}x |" + torch_cols)
        print(rows[-1], flush=True)
    batch_rows = []
    mt.manual_seed(0)
    baby = mt.nn.GPT(mt.nn.GPTConfig(block_size=512, vocab_size=65, n_layer=4, n_head=4, n_embd=128)).eval()
    for B in (1, 4, 16):
        ours, theirs = batched(baby, B)
        batch_rows.append(f"| {B} | {ours:,.0f} | " + (f"{theirs:,.0f} | {ours / theirs:.2f} |" if theirs else "| |"))
        print(batch_rows[-1], flush=True)
    cpu = cpu_model()
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    text = "\n".join([f"# Generation with and without the KV cache ({time.strftime('%Y-%m-%d')})", "",
                      f"Machine: {cpu}, {os.cpu_count()} cores, {threads} thread(s) (OMP_NUM_THREADS; run as "
                      "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1). Batch 1, "
                      "greedy (top_k=1), 64 new tokens after a 256-token context; the two paths give the same "
                      "tokens (checked before timing); these columns count the prompt pass in (total time / new "
                      "tokens). Last five columns: minitransformer and PyTorch eager, both with a KV cache and the "
                      "same weights (the same greedy tokens, checked), alternating, medians of 5 runs: the prompt "
                      "pass (time to the first new token) and the decode step alone, (time for 65 tokens - time "
                      "for 1) / 64.", "",
                      "| model | context | ms/token with cache | ms/token without | speed-up | "
                      "prompt ms: ours | prompt ms: PyTorch | decode ms/token: ours | decode ms/token: PyTorch | "
                      "decode ratio (ours / torch) |",
                      "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
                      "## Batched generation", "",
                      "The baby GPT continuing B prompts of 256 tokens at once, 64 new tokens each (the "
                      "prompt pass included), greedy: tokens per second over the whole batch (ours: "
                      "`GPT.generate_batch`; PyTorch: the KV-cache decoder above on a (B, 256) batch; the "
                      "same tokens, checked), alternating, medians of 5 runs.", "",
                      "| batch | ours tokens/s | PyTorch tokens/s | ratio (ours / torch) |", "|---|---|---|---|",
                      *batch_rows, ""])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
