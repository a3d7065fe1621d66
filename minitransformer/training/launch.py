"""`minitransformer run -n N script.py`: torchrun's job done with MPI's mpiexec.

The script runs as N ranks of one MPI job on this machine, each started with torchrun's variables (RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) already in its environment, so a script
that reads them at import time (nanoGPT's train.py) sees them; its collectives are `minitransformer.distributed`'s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..distributed import INSTALL


def find_mpiexec() -> str | None:
    """mpiexec next to this Python (the mpich wheel installs it there), else on PATH."""
    return shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def launch_command(mpiexec: str, nproc: int, argv: Sequence[str]) -> list[str]:
    """mpiexec's command line for `argv` in `nproc` ranks: one MPMD section per rank, started through `env`
    with its RANK and LOCAL_RANK, so they are in the environment before the program's first line runs."""
    env = shutil.which("env") or "/usr/bin/env"
    cmd = [mpiexec]
    for r in range(nproc):
        cmd += ([":"] if r else []) + ["-n", "1", env, f"RANK={r}", f"LOCAL_RANK={r}", *argv]
    return cmd


def launch(nproc: int, argv: Sequence[str], master_addr: str = "127.0.0.1", master_port: int = 29500,
           mpiexec: str | None = None) -> int:
    """Run `argv` (python script.py args) as `nproc` ranks of one MPI job on this machine with torchrun's
    variables set (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and
    OMP_NUM_THREADS=1 unless set); returns the job's exit status: non-zero when a rank failed. Ctrl-C stops
    every rank."""
    if nproc < 1:
        raise ValueError(f"-n must be at least 1, got {nproc}")
    exe = mpiexec or find_mpiexec()
    if exe is None:
        raise RuntimeError(f"minitransformer run needs MPI's mpiexec, found neither next to {sys.executable} nor on "
                           f"PATH: {INSTALL}")
    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": master_addr,
           "MASTER_PORT": str(master_port)}
    if nproc > 1 and "OMP_NUM_THREADS" not in env:  # torchrun's default: N ranks of all-core pools thrash
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen(launch_command(exe, nproc, argv), env=env)
    forward = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        return 130
    finally:
        signal.signal(signal.SIGTERM, forward)
    return code if code >= 0 else 128 - code


def _stop(proc: subprocess.Popen) -> None:
    """After Ctrl-C: mpiexec passes SIGINT to the ranks; one stuck inside an MPI call cannot see it, so
    SIGTERM (mpiexec kills every rank) follows, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 3), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # Ctrl-C again: on to the next signal
            continue
