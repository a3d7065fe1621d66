"""Every CUDA source in kernels/cuda compiles with nvcc for sm_80 (A100) and sm_90 (H100/H200), with every
warning an error. Needs nvcc (on PATH on these machines), not a GPU; skipped, saying so, where nvcc is absent.
benchmarks/cuda_ptxas.py turns the same compilation's resource report into a table."""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from cuda_ptxas import ARCHS, compile_cu, resources  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")


@pytest.fixture(scope="module")
def compiled():
    jobs = [(path, arch) for path in SOURCES for arch in ARCHS]
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(jobs, pool.map(lambda job: compile_cu(*job), jobs), strict=True))


def test_there_are_sources():
    names = {p.stem for p in SOURCES}
    assert {"sgemm", "softmax", "layernorm", "crossentropy", "attention", "gelu", "adamw"} <= names


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_compiles_without_warnings(compiled, path, arch):
    rc, out = compiled[(path, arch)]
    assert rc == 0, out
    assert "warning" not in out.lower(), out
    kernels = resources(out)
    assert kernels, f"ptxas reported no kernels for {path.name}:\n{out}"
    assert all(regs <= 255 for _, regs, _, _ in kernels)
