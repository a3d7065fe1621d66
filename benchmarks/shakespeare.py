"""Quality on Tiny Shakespeare (character level) with nanoGPT's CPU recipe: minitransformer against the
same recipe written in PyTorch (nanoGPT's model, initialisation and loop), over several seeds.

nanoGPT publishes one figure for this recipe (val loss 1.88 at step 2,000). A single run's final val loss
moves by a few hundredths with the seed (the initial weights, the batches and the 20 evaluation batches),
so this script measures the distribution for both implementations instead of one number each, and first
checks that the two implementations compute the same thing: from the same initial weights on the same
batches, their losses must agree step by step (to float32 rounding, which grows slowly with training).

    python benchmarks/shakespeare.py --data ../shared/data/tinyshakespeare.txt              # 5 seeds each
    python benchmarks/shakespeare.py --data ... --seeds 1 2 --impl ours                     # a subset

Each run uses one thread; two runs go at a time (one per core). Results: benchmarks/results/shakespeare-char.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _report import peak_rss_mb, write_report  # benchmarks/ is the script's folder

from minitransformer.optim.lr_scheduler import warmup_cosine

ROOT = Path(__file__).resolve().parent.parent
RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=False,
              max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000, weight_decay=0.1,
              beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=20)
TARGET = 1.88


def char_data(path: str):  # noqa: ANN201
    """nanoGPT's shakespeare_char preparation: vocabulary = sorted characters, first 90% train."""
    import numpy as np

    text = Path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(len(ids) * 0.9)
    return ids[:n], ids[n:], len(chars)


def lr_at(it: int) -> float:
    """nanoGPT's get_lr for the recipe (the library's one copy of it, used for both libraries' loops)."""
    r = RECIPE
    return warmup_cosine(it, r["lr"], r["min_lr"], r["warmup_iters"], r["lr_decay_iters"])


def torch_model(vocab: int):  # noqa: ANN201
    """nanoGPT's GPT in PyTorch with its initialisation (normal 0.02, residual projections 0.02/sqrt(2L))."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import torch_gpt

    r = RECIPE
    model = torch_gpt(dict(n_layer=r["n_layer"], n_head=r["n_head"], n_embd=r["n_embd"],
                           block_size=r["block_size"], vocab_size=vocab))
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * r["n_layer"]) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
            torch.nn.init.normal_(p, 0.0, std)
    return model


def run_torch(path: str, seed: int) -> list[dict]:
    """The recipe in PyTorch, nanoGPT's loop: eval every 250 steps over 20 batches per split."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    train_ids, val_ids, vocab = char_data(path)
    r = RECIPE
    model = torch_model(vocab)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=r["lr"], betas=(r["beta1"], r["beta2"]))
    rng = np.random.default_rng(seed)

    def batch(ids):  # noqa: ANN001, ANN202
        ix = rng.integers(0, len(ids) - r["block_size"], r["batch_size"])
        x = np.stack([ids[i:i + r["block_size"]] for i in ix])
        y = np.stack([ids[i + 1:i + 1 + r["block_size"]] for i in ix])
        return torch.from_numpy(x), torch.from_numpy(y)

    history = []
    for it in range(r["max_iters"] + 1):
        if it % r["eval_interval"] == 0 or it == r["max_iters"]:
            model.eval()
            with torch.no_grad():
                row = {"step": it}
                for split, ids in (("train", train_ids), ("val", val_ids)):
                    row[split] = float(np.mean([model(*batch(ids)).item() for _ in range(r["eval_iters"])]))
            history.append(row)
            model.train()
        if it == r["max_iters"]:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        loss = model(*batch(train_ids))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
    return history


def run_ours(path: str, seed: int) -> list[dict]:
    """The recipe through minitransformer's own trainer (the `minitransformer train` code path)."""
    from minitransformer.tasks.language_model import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=path, tokenizer="char", seed=seed, out=out, sample_tokens=0, **RECIPE)
        train(cfg, progress=False)
        return cfg.history


def ours_name(torch_name: str) -> str:
    """The benchmark's PyTorch parameter names -> minitransformer's (nanoGPT's) state_dict keys."""
    if torch_name.startswith("h."):
        _, i, rest = torch_name.split(".", 2)
        rest = {"ln_1.weight": "ln_1.weight", "ln_2.weight": "ln_2.weight", "c_attn.weight": "attn.c_attn.weight",
                "c_proj.weight": "attn.c_proj.weight", "c_fc.weight": "mlp.c_fc.weight",
                "mlp_proj.weight": "mlp.c_proj.weight"}[rest]
        return f"transformer.h.{i}.{rest}"
    return torch_name if torch_name.startswith("lm_head") else "transformer." + torch_name


def equivalence(path: str, steps: int) -> tuple[list[tuple[int, float, float]], tuple[float, float]]:
    """Same initial weights (ours copied into PyTorch's model), same batches, same schedule: the training
    losses of both, step by step, and the val loss of both at the end on the same batches."""
    import numpy as np
    import torch

    import minitransformer as mt

    torch.set_num_threads(1)
    mt.manual_seed(0)
    train_ids, _, vocab = char_data(path)
    r = RECIPE
    ours = mt.nn.GPT(mt.nn.GPTConfig(n_layer=r["n_layer"], n_head=r["n_head"], n_embd=r["n_embd"],
                                     block_size=r["block_size"], vocab_size=vocab, bias=False))
    theirs = torch_model(vocab)
    state = ours.state_dict()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.from_numpy(np.array(state[ours_name(name)].numpy())))
    opt_o = ours.configure_optimizers(r["weight_decay"], r["lr"], (r["beta1"], r["beta2"]))
    decay = [p for p in theirs.parameters() if p.dim() >= 2]
    rest = [p for p in theirs.parameters() if p.dim() < 2]
    opt_t = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                               {"params": rest, "weight_decay": 0.0}], lr=r["lr"], betas=(r["beta1"], r["beta2"]))
    rng = np.random.default_rng(0)
    rows = []
    for it in range(steps):
        ix = rng.integers(0, len(train_ids) - r["block_size"], r["batch_size"])
        x = np.stack([train_ids[i:i + r["block_size"]] for i in ix])
        y = np.stack([train_ids[i + 1:i + 1 + r["block_size"]] for i in ix])
        for g in opt_o.param_groups + opt_t.param_groups:
            g["lr"] = lr_at(it)
        _, loss_o = ours(x, y)
        opt_o.zero_grad(set_to_none=True)
        loss_o.backward()
        mt.nn.utils.clip_grad_norm_(ours.parameters(), r["grad_clip"])
        opt_o.step()
        loss_t = theirs(torch.from_numpy(x), torch.from_numpy(y))
        opt_t.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), r["grad_clip"])
        opt_t.step()
        rows.append((it, loss_o.item(), loss_t.item()))
    return rows, same_batches_val(ours, theirs, path)


def same_batches_val(ours, theirs, path: str) -> tuple[float, float]:  # noqa: ANN001
    """Val loss of both models on the same 20 validation batches (nanoGPT's estimate, one fixed draw)."""
    import numpy as np
    import torch

    import minitransformer as mt

    _, val_ids, _ = char_data(path)
    r = RECIPE
    rng = np.random.default_rng(12345)
    lo, lt = [], []
    ours.eval()
    with mt.no_grad(), torch.no_grad():
        for _ in range(r["eval_iters"]):
            ix = rng.integers(0, len(val_ids) - r["block_size"], r["batch_size"])
            x = np.stack([val_ids[i:i + r["block_size"]] for i in ix])
            y = np.stack([val_ids[i + 1:i + 1 + r["block_size"]] for i in ix])
            lo.append(ours(x, y)[1].item())
            lt.append(theirs(torch.from_numpy(x), torch.from_numpy(y)).item())
    ours.train()
    return float(np.mean(lo)), float(np.mean(lt))


def worker(impl: str, path: str, seed: int) -> None:
    history = run_ours(path, seed) if impl == "ours" else run_torch(path, seed)
    print(json.dumps({"history": history, "rss_mb": peak_rss_mb()}))


def launch(impl: str, path: str, seed: int) -> tuple[str, int, list[dict], float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", impl, str(seed), "--data", path], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{impl} seed {seed} failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.splitlines()[-1])
    print(f"{impl} seed {seed}: val {out['history'][-1]['val']:.4f}, peak RSS {out['rss_mb']:.0f} MB", flush=True)
    return impl, seed, out["history"], time.perf_counter() - t0, out["rss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="tinyshakespeare.txt")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--impl", nargs="+", default=["ours", "torch"], choices=["ours", "torch"])
    ap.add_argument("--equivalence-steps", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shakespeare-char.md")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.data, int(args.worker[1]))
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        args.impl = [i for i in args.impl if i != "torch"]
        args.equivalence_steps = 0
    lines = [f"# Tiny Shakespeare, character level, nanoGPT's CPU recipe ({time.strftime('%Y-%m-%d')})", "",
             "`python benchmarks/shakespeare.py --data ../shared/data/tinyshakespeare.txt`: 4 layers, 4 heads, 128 "
             "wide, block 64, batch 12, dropout 0, no biases, 2,000 iterations, lr 1e-3 to 1e-4 (warmup 100, cosine "
             "to 2,000), AdamW weight decay 0.1, beta2 0.99, gradient clipping 1.0, evaluation every 250 steps over 20 "
             "batches per split. minitransformer runs through its own trainer (`minitransformer train`'s code); "
             "PyTorch runs nanoGPT's model, initialisation and loop. One thread per run, two runs at a time on "
             f"the {os.cpu_count()}-core machine.", ""]
    if args.equivalence_steps:
        env_threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        os.environ.update(env_threads)
        rows, (val_o, val_t) = equivalence(args.data, args.equivalence_steps)
        diffs = [abs(a - b) for _, a, b in rows]
        lines += ["## Same weights, same batches", "",
                  f"Both models start from the same weights and see the same {len(rows)} batches with the same "
                  "schedule. Training loss of each, and the largest difference so far:", "",
                  "| step | minitransformer | PyTorch | max abs difference up to here |", "|---|---|---|---|"]
        for it, a, b in rows:
            if it in (0, 1, 10, 50, 100, 150, 200, 500, 1000, 1500) or it == len(rows) - 1:
                lines.append(f"| {it} | {a:.6f} | {b:.6f} | {max(diffs[:it + 1]):.2e} |")
        tail = rows[-200:]
        mean_o, mean_t = (sum(r[k] for r in tail) / len(tail) for k in (1, 2))
        lines += ["", f"Mean training loss over the last {len(tail)} steps: minitransformer "
                  f"{mean_o:.4f}, PyTorch {mean_t:.4f}. "
                  f"Val loss after step {len(rows)} on the same 20 validation batches: minitransformer {val_o:.4f}, "
                  f"PyTorch {val_t:.4f}.", ""]
        print("\n".join(lines[-10:]), flush=True)
    jobs = [(impl, seed) for seed in args.seeds for impl in args.impl]
    with ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda j: launch(j[0], args.data, j[1]), jobs))
    finals = {impl: [h[-1]["val"] for i, _, h, _, _ in results if i == impl] for impl in args.impl}
    lines += ["## Final val loss over seeds", "",
              "| implementation | seeds | final val loss per seed | mean | std | standard error of the mean | best | "
              "runs at or below 1.88 | wall-clock per run | peak RSS (largest over seeds) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for impl in args.impl:
        vals = finals[impl]
        walls = [w for i, _, _, w, _ in results if i == impl]
        rss = max(m for i, _, _, _, m in results if i == impl)
        name = "minitransformer" if impl == "ours" else "PyTorch (nanoGPT)"
        std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        lines.append(f"| {name} | {' '.join(map(str, args.seeds))} | {', '.join(f'{v:.4f}' for v in vals)} | "
                     f"{statistics.mean(vals):.4f} | {std:.4f} | {std / math.sqrt(len(vals)):.4f} | {min(vals):.4f} | "
                     f"{sum(v <= TARGET for v in vals)} of {len(vals)} | {statistics.median(walls):.0f} s | "
                     f"{rss:.0f} MB |")
    lines += ["", "## Mean curve (val loss, mean over seeds)", "",
              "| step | " + " | ".join("minitransformer" if i == "ours" else "PyTorch" for i in args.impl) + " |",
              "|---|" + "---|" * len(args.impl)]
    steps = [row["step"] for row in results[0][2]]
    for k, st in enumerate(steps):
        cells = [statistics.mean(h[k]["val"] for i, _, h, _, _ in results if i == impl) for impl in args.impl]
        lines.append(f"| {st} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
