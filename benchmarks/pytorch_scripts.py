"""Public PyTorch training scripts run unchanged but for their imports, on PyTorch and on minitransformer.

nanoGPT (its README's CPU Shakespeare recipe: `train.py config/train_shakespeare_char.py --device=cpu
--compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`), then `--init_from=resume` on the
checkpoint it saved and `sample.py` on it; and minGPT's `projects/chargpt`. The scripts are not part of this
project: point the script at your own checkouts.

    python benchmarks/pytorch_scripts.py --nanogpt ~/src/nanoGPT --mingpt ~/src/minGPT \\
        --data ../shared/data/tinyshakespeare.txt --threads 1

Each library runs in its own copy of the checkout; for minitransformer the copy's import lines are rewritten
by `minitransformer.porting.rewrite_imports` and nothing else changes. The data is prepared as nanoGPT's
`prepare.py` does (sorted characters, 90/10 split, uint16 files, meta.pkl), by this script. The two libraries
run in alternating rounds with the same thread count; the per-iteration times are the scripts' own printed
"time" (nanoGPT) and "iter_dt" (minGPT), medians after the first 10 iterations. Writes
benchmarks/results/pytorch-scripts.md and, with matplotlib, pytorch-scripts-loss.png.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _report import write_report  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from minitransformer.porting import rewrite_imports  # noqa: E402

RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
          "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
          "--lr_decay_iters=2000", "--dropout=0.0"]
ITER = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
MINGPT_ITER = re.compile(r"^iter_dt ([\d.]+)ms; iter (\d+): train loss ([\d.]+)")


def prepare_shakespeare(text: str, folder: Path) -> None:
    """nanoGPT's character-level preparation: vocabulary of the sorted characters, first 90% train."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(len(text) * 0.9)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    (folder / "input.txt").write_text(text)


def copy_checkout(src: Path, dst: Path, lib: str) -> None:
    """A copy of the checkout's Python files; for minitransformer with the imports rewritten."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "out*", "*.bin", "*.pt", "assets", "*.ipynb"))
    if lib == "mt":
        for py in dst.rglob("*.py"):
            py.write_text(rewrite_imports(py.read_text()))


def run(cmd: list[str], cwd: Path, threads: int, log: Path, extra_env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT),
           **(extra_env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} ({time.perf_counter() - t0:.0f} s); see {log}:\n"
                         + (proc.stdout + proc.stderr)[-3000:])
    return proc.stdout


def parse_nanogpt(out: str) -> dict:
    iters, evals = [], []
    for line in out.splitlines():
        if m := ITER.match(line):
            iters.append((int(m[1]), float(m[2]), float(m[3])))
        elif m := EVAL.match(line):
            evals.append((int(m[1]), float(m[2]), float(m[3])))
    return {"iters": iters, "evals": evals}


def median_ms(times: list[float]) -> float:
    return statistics.median(times[10:] if len(times) > 20 else times)


def eval_every(args: argparse.Namespace) -> list[str]:
    """The recipe's own eval_interval (250, from its config file) unless a shorter run asks for another."""
    return [] if args.eval_interval is None else [f"--eval_interval={args.eval_interval}"]


def nanogpt(args: argparse.Namespace, work: Path, text: str) -> tuple[list[str], dict]:
    results: dict[str, list[dict]] = {"torch": [], "mt": []}
    for lib in ("torch", "mt"):
        copy_checkout(args.nanogpt, work / f"nanogpt-{lib}", lib)
        prepare_shakespeare(text, work / f"nanogpt-{lib}" / "data" / "shakespeare_char")
    py = sys.executable
    for r in range(args.rounds):
        for lib in ("torch", "mt") if r % 2 == 0 else ("mt", "torch"):
            d = work / f"nanogpt-{lib}"
            out = run([py, "train.py", *RECIPE, f"--max_iters={args.max_iters}", *eval_every(args)], d, args.threads,
                      work / f"nanogpt-{lib}-train-{r}.log")
            results[lib].append(parse_nanogpt(out))
            print(f"nanoGPT round {r} {lib}: {median_ms([t for _, _, t in results[lib][-1]['iters']]):.2f} ms/iter, "
                  f"final val {results[lib][-1]['evals'][-1][2]:.4f}", flush=True)
    lines = []
    # resume what was saved, exactly as the README says, and sample from it
    resumed = {}
    for lib in ("torch", "mt"):
        d = work / f"nanogpt-{lib}"
        out = run([py, "train.py", *RECIPE, "--init_from=resume", f"--max_iters={args.max_iters + 50}",
                   "--eval_interval=50"], d, args.threads, work / f"nanogpt-{lib}-resume.log")
        resumed[lib] = parse_nanogpt(out)
    samples = {}
    for lib in ("torch", "mt"):
        d = work / f"nanogpt-{lib}"
        out = run([py, "sample.py", "--out_dir=out-shakespeare-char", "--device=cpu", "--num_samples=1",
                   "--max_new_tokens=300"], d, args.threads, work / f"nanogpt-{lib}-sample.log")
        samples[lib] = out.split("---------------")[0].strip().splitlines()[-8:]
    # PyTorch's own checkpoint file, sampled by minitransformer
    cross = work / "nanogpt-mt-cross"
    shutil.rmtree(cross, ignore_errors=True)
    shutil.copytree(work / "nanogpt-mt", cross, ignore=shutil.ignore_patterns("out*"))
    (cross / "out-shakespeare-char").mkdir()
    shutil.copy(work / "nanogpt-torch" / "out-shakespeare-char" / "ckpt.pt", cross / "out-shakespeare-char")
    out = run([py, "sample.py", "--out_dir=out-shakespeare-char", "--device=cpu", "--num_samples=1",
               "--max_new_tokens=300"], cross, args.threads, work / "nanogpt-cross-sample.log")
    samples["torch file, mt"] = out.split("---------------")[0].strip().splitlines()[-8:]

    lines += ["## nanoGPT: train.py, the README's CPU Shakespeare recipe", "",
              f"`python train.py {' '.join(RECIPE)} --max_iters={args.max_iters}`, {args.threads} thread(s), "
              f"{args.rounds} round(s) per library, alternating.", "",
              "| library | round | ms/iter (median) | final train loss | final val loss | best val loss |",
              "|---|---|---|---|---|---|"]
    for lib in ("torch", "mt"):
        for r, res in enumerate(results[lib]):
            ms = median_ms([t for _, _, t in res["iters"]])
            last = res["evals"][-1]
            best = min(v for _, _, v in res["evals"])
            lines.append(f"| {'PyTorch ' + torch_version() if lib == 'torch' else 'minitransformer'} | {r} | "
                         f"{ms:.2f} | {last[1]:.4f} | {last[2]:.4f} | {best:.4f} |")
    mt_ms = statistics.median([median_ms([t for _, _, t in r["iters"]]) for r in results["mt"]])
    pt_ms = statistics.median([median_ms([t for _, _, t in r["iters"]]) for r in results["torch"]])
    lines += ["", f"Ratio minitransformer / PyTorch, ms per iteration: **{mt_ms / pt_ms:.2f}** "
              f"({mt_ms:.2f} vs {pt_ms:.2f} ms).", "",
              "Resumed with `--init_from=resume --eval_interval=50` (50 more iterations from the saved "
              "checkpoint): the first logged iteration and loss, and the first evaluation after it:", ""]
    for lib in ("torch", "mt"):
        it = resumed[lib]["iters"][0] if resumed[lib]["iters"] else None
        ev = resumed[lib]["evals"][0] if resumed[lib]["evals"] else None
        lines.append(f"- {lib}: first iteration {it[0] if it else '-'} (loss {it[1] if it else '-'}); "
                     f"step {ev[0] if ev else '-'}: val loss {ev[2] if ev else '-'}")
    lines += ["", "`sample.py --num_samples=1 --max_new_tokens=300`, the last lines of each sample:", ""]
    for lib, s in samples.items():
        lines += [f"{lib}:", "", "```text", *s, "```", ""]
    return lines, results


def mingpt(args: argparse.Namespace, work: Path, text: str) -> list[str]:
    rows = []
    for lib in ("torch", "mt"):
        d = work / f"mingpt-{lib}"
        copy_checkout(args.mingpt, d, lib)
        proj = d / "projects" / "chargpt"
        (proj / "input.txt").write_text(text)
    py = sys.executable
    for r in range(args.rounds):
        for lib in ("torch", "mt") if r % 2 == 0 else ("mt", "torch"):
            d = work / f"mingpt-{lib}"
            out = run([py, "chargpt.py", f"--trainer.max_iters={args.mingpt_iters}",
                       f"--trainer.num_workers={args.num_workers}", "--trainer.batch_size=16",
                       "--data.block_size=64", "--model.model_type=gpt-micro"],
                      d / "projects" / "chargpt", args.threads, work / f"mingpt-{lib}-{r}.log",
                      {"PYTHONPATH": f"{d}:{ROOT}"})
            its = [(int(m[2]), float(m[3]), float(m[1])) for line in out.splitlines()
                   if (m := MINGPT_ITER.match(line))]
            rows.append((lib, r, statistics.median([t for _, _, t in its[2:]] or [t for _, _, t in its]),
                         its[-1][1]))
            ckpt = d / "projects" / "chargpt" / "out" / "chargpt" / "model.pt"
            print(f"minGPT round {r} {lib}: {rows[-1][2]:.2f} ms per 10th iteration, loss {rows[-1][3]:.4f}, "
                  f"checkpoint {'written' if ckpt.is_file() else 'missing'}", flush=True)
    lines = ["## minGPT: projects/chargpt", "",
             f"`python chargpt.py --trainer.max_iters={args.mingpt_iters} --trainer.num_workers={args.num_workers} "
             "--trainer.batch_size=16 --data.block_size=64 --model.model_type=gpt-micro` (its DataLoader with a "
             "RandomSampler(replacement=True, num_samples=1e10) and worker processes), "
             f"{args.threads} thread(s).", "",
             "| library | round | iter_dt (median, ms) | last printed train loss |", "|---|---|---|---|"]
    for lib, r, ms, loss in rows:
        lines.append(f"| {'PyTorch' if lib == 'torch' else 'minitransformer'} | {r} | {ms:.2f} | {loss:.4f} |")
    return lines + [""]


def sgemm_gflops(threads: int) -> float:
    """This machine's float32 GEMM rate at the baby GPT's shape (768x128 @ 128x384), NumPy's BLAS, measured
    now with the same thread count: the ceiling the step times are read against."""
    code = ("import numpy as np, time, statistics\n"
            "a = np.random.rand(768, 128).astype(np.float32); w = np.random.rand(384, 128).astype(np.float32)\n"
            "for _ in range(20): a @ w.T\n"
            "ts = []\n"
            "for _ in range(200):\n"
            "    t = time.perf_counter(); a @ w.T; ts.append(time.perf_counter() - t)\n"
            "print(2 * 768 * 128 * 384 / statistics.median(ts) / 1e9)\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout)


def torch_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip()


def plot(results: dict, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(matplotlib is not installed: no loss plot)"
    fig, ax = plt.subplots(figsize=(7, 4))
    for lib, label in (("torch", "PyTorch"), ("mt", "minitransformer")):
        res = results[lib][0]
        it = np.array([(i, loss) for i, loss, _ in res["iters"]])
        w = 25  # a moving average over 25 iterations, only where the window is full (no edge artefacts)
        ax.plot(it[w // 2:len(it) - w // 2, 0], np.convolve(it[:, 1], np.ones(w) / w, mode="valid"),
                label=f"{label} train (mean of {w})")
        ev = np.array([(i, v) for i, _, v in res["evals"]])
        ax.plot(ev[:, 0], ev[:, 1], "o-", label=f"{label} val")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_ylim(1.3, 4.5)
    ax.legend()
    ax.set_title("nanoGPT train.py, CPU Shakespeare recipe")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"![loss curves]({path.name})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nanogpt", type=Path, help="a checkout of nanoGPT")
    ap.add_argument("--mingpt", type=Path, help="a checkout of minGPT")
    ap.add_argument("--data", type=Path, required=True, help="tinyshakespeare.txt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="runs per library, alternating")
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--eval-interval", type=int, default=None, help="(default: the recipe's, 250)")
    ap.add_argument("--mingpt-iters", type=int, default=300)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/pytorch-scripts"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pytorch-scripts.md")
    args = ap.parse_args()
    text = args.data.read_text()
    args.work.mkdir(parents=True, exist_ok=True)
    lines = ["# PyTorch scripts on minitransformer, imports changed only", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {args.threads} thread(s) (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS). "
             f"`python benchmarks/pytorch_scripts.py` ({time.strftime('%Y-%m-%d')}). This machine's SGEMM "
             f"at the baby GPT's shape, measured before the runs: {sgemm_gflops(args.threads):.0f} GFLOP/s.", ""]
    if args.nanogpt:
        more, results = nanogpt(args, args.work, text)
        lines += more + [plot(results, args.out.with_name(args.out.stem + "-loss.png")), ""]
    if args.mingpt:
        lines += mingpt(args, args.work, text)
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
