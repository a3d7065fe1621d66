"""Data-parallel training over MPI (minitransformer/distributed.py, loop.fit): on loopback with 2 ranks,
when mpi4py and an MPI launcher are installed (`pip install mpi4py mpich`; make test installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitransformer import distributed
from minitransformer.io import checkpoint

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).with_name("mpi_job.py")


def mpiexec() -> str:
    pytest.importorskip("mpi4py", reason="needs mpi4py and an MPI library: pip install mpi4py mpich")
    found = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec: pip install mpich")
    return found


def run(cmd: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_single_process_is_its_own_world():
    assert not distributed.launched_by_mpi()
    w = distributed.world()
    assert (w.rank, w.size, w.is_main) == (0, 1, True)


@pytest.mark.parametrize("accum", [1, 2])
def test_two_ranks_equal_one_process_with_both_batches(tmp_path, accum):
    """2 ranks of batch 4 for 6 steps (with gradient accumulation and clipping) give the parameters of one
    process of batch 8 whose micro-batches are the two ranks' micro-batches put together."""
    exe = mpiexec()
    r = run([exe, "-n", "2", sys.executable, str(JOB), str(tmp_path / "ranks"), "ranks", str(accum)])
    assert r.returncode == 0, r.stderr
    batches = [json.loads((tmp_path / "ranks" / f"batches-{k}.json").read_text()) for k in (0, 1)]
    assert len(batches[0]) == 6 * accum and batches[0] != batches[1]  # each rank drew its own batches
    r = run([sys.executable, str(JOB), str(tmp_path / "single"), "single", str(accum), str(tmp_path / "ranks")])
    assert r.returncode == 0, r.stderr
    a, b = np.load(tmp_path / "ranks" / "params.npz"), np.load(tmp_path / "single" / "params.npz")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)  # float32 reduction order


def test_a_failing_rank_stops_the_whole_job(tmp_path):
    exe = mpiexec()
    r = run([exe, "-n", "2", sys.executable, str(JOB), str(tmp_path / "f"), "fail", "1"], timeout=60)
    assert r.returncode != 0
    assert "error on rank 1 of 2: bad data on this rank; stopping all ranks" in r.stderr


def test_resume_under_mpi_continues_exactly(tmp_path):
    exe = mpiexec()
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    base = [sys.executable, "-m", "minitransformer", "train", "--data", str(text), "--n-layer", "1", "--n-embd", "16",
            "--n-head", "2", "--block-size", "16", "--batch-size", "4", "--eval-interval", "3", "--eval-iters", "2",
            "--lr-decay-iters", "6", "--warmup-iters", "2", "--sample-tokens", "0", "--quiet"]
    assert run([exe, "-n", "2", *base, "--max-iters", "6", "--out", str(tmp_path / "a")]).returncode == 0
    assert run([exe, "-n", "2", *base, "--max-iters", "3", "--out", str(tmp_path / "b")]).returncode == 0
    r = run([exe, "-n", "2", *base, "--max-iters", "6", "--out", str(tmp_path / "b"), "--resume"])
    assert r.returncode == 0, r.stderr
    (doc_a, a, _), (doc_b, b, _) = checkpoint.load(tmp_path / "a"), checkpoint.load(tmp_path / "b")
    assert doc_a["step"] == doc_b["step"] == 6 and len(doc_b["rng"]["batches_by_rank"]) == 2
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    r = run([*base, "--max-iters", "9", "--out", str(tmp_path / "b"), "--resume"])  # one process: refused
    assert r.returncode == 2 and "written by 2 rank(s); resume it with as many" in r.stderr
