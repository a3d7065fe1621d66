"""The allocator setting made on import (docs/kernels.md, "Memory allocation"): with it, a freed
set of activation arrays is reused without page faults; with MINITRANSFORMER_MALLOC=default, glibc's own
behaviour (fresh pages each time) is kept. Each case runs in a fresh interpreter, since the setting is
made once, on import; page faults are counted by the kernel (getrusage's ru_minflt)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = r"""
import resource
import numpy as np
import minitransformer  # noqa: F401

def faults_of_one_step():
    # a training step's pattern: many live arrays of a few sizes, all freed, then the same again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    live = [np.ones(n, np.float32) for n in [393_216, 98_304, 294_912, 786_432] * 8]
    del live
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_one_step()
print(min(faults_of_one_step() for _ in range(5)))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="the allocator setting is made on Linux with glibc only")


def page_faults_per_step(env_value: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MINITRANSFORMER_MALLOC"}
    if env_value is not None:
        env["MINITRANSFORMER_MALLOC"] = env_value
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_a_step_reuses_freed_blocks_without_page_faults():
    assert page_faults_per_step(None) < 100


def _huge_pages_always() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[always]" in path.read_text()


@pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages hide the page faults of fresh mappings")
def test_opt_out_keeps_glibc_defaults():
    # glibc maps the large blocks afresh and unmaps them on free: every 4 KiB page faults again
    # (thousands of faults for the 25 MB of this step), unless the kernel backs them with huge pages
    assert page_faults_per_step("default") > 1000
