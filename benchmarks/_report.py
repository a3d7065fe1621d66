"""What the benchmark scripts share: writing a results table, the machine's name, a worker's thread settings, a
process's memory (now and at its peak), the median time of a function, and a worker process's answer."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def write_report(out: Path, lines: list[str]) -> None:
    """The lines as one Markdown file at `out` (folders created), also printed."""
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. On Linux VmHWM from /proc, not getrusage's ru_maxrss:
    Linux keeps ru_maxrss across exec, so a worker started by a large parent would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (platform.processor() elsewhere), for a results header."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())


def thread_env(n: int) -> dict[str, str]:
    """The environment that holds a worker process to `n` threads: OpenMP, OpenBLAS, MKL and Numba."""
    return {name: str(n) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "NUMBA_NUM_THREADS")}


def rss_mb() -> float:
    """This process's resident memory now, in MiB (VmRSS from /proc; 0 where there is none)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median_ms(fn: Callable[[], object], reps: int, warmup: int = 0) -> float:
    """fn run `warmup` times untimed, then `reps` times: the median of the timed runs, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def worker_result(script: str, args: list[str], env: dict[str, str]) -> dict:
    """Run `python script *args` (a benchmark starting itself as a worker) with `env`; its answer is the JSON
    object on the last line of its output. A failed worker stops the benchmark with the worker's stderr."""
    proc = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])
