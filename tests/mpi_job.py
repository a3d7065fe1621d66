"""A tiny data-parallel run for tests/test_distributed.py (run by mpiexec, or alone to replay).

    mpiexec -n 2 python tests/mpi_job.py OUT ranks ACCUM      each rank: batch 4, records its batches
    python tests/mpi_job.py OUT2 single ACCUM OUT              one process: batch 8 = both ranks' batches
    mpiexec -n 2 python tests/mpi_job.py OUT fail 1            rank 1 raises at its third batch
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import minitransformer as mt
from minitransformer import distributed
from minitransformer.__main__ import _stop_other_ranks
from minitransformer.training.loop import Job, LoopConfig, fit, prepare_run

out, mode, accum = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
B = 4 if mode != "single" else 8
cfg = LoopConfig(max_iters=6, eval_interval=100, eval_iters=2, batch_size=B, warmup_iters=2, lr=3e-3,
                 grad_accum=accum, out=str(out), seed=5, grad_clip=0.5)
prepare_run(cfg, progress=False)
model = mt.nn.GPT(mt.nn.GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, bias=False))
data = np.random.default_rng(0).integers(0, 11, 3000)
rank = distributed.world().rank
recorded: list[list[int]] = []
replay: list[list[int]] = []
if mode == "single":
    src = Path(sys.argv[4])
    per_rank = [json.loads((src / f"batches-{r}.json").read_text()) for r in (0, 1)]
    replay = [a + b for a, b in zip(*per_rank, strict=True)]  # micro-batch k of rank 0, then of rank 1


def loss(split: str, rng: np.random.Generator) -> mt.Tensor:
    if model.training and split == "train":
        if mode == "single":
            ix = np.array(replay.pop(0))
        else:
            ix = rng.integers(0, len(data) - 9, B)
            recorded.append(ix.tolist())
            if mode == "fail" and rank == 1 and len(recorded) == 3:
                raise ValueError("bad data on this rank")
    else:
        ix = rng.integers(0, len(data) - 9, B)
    x = np.stack([data[i:i + 8] for i in ix])
    y = np.stack([data[i + 1:i + 9] for i in ix])
    return model(x, y)[1]


try:
    fit(cfg, Job(model, loss, {"task": "test", "model_config": {}}), progress=False)
except Exception as e:  # what the command line does: take every rank down, with the reason
    _stop_other_ranks(str(e))
    raise
out.mkdir(parents=True, exist_ok=True)
(out / f"batches-{rank}.json").write_text(json.dumps(recorded))
if rank == 0:
    np.savez(out / "params.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
