"""Registers, spills and shared memory of every CUDA kernel, as ptxas reports them (`nvcc -Xptxas -v`),
for sm_80 and sm_90: the resource notes that go with the GPU benchmarks. Needs nvcc, not a GPU.

    python benchmarks/cuda_ptxas.py          # writes benchmarks/results/cuda-ptxas.md
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _report import write_report  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
CUDA = ROOT / "kernels" / "cuda"
ARCHS = ("sm_80", "sm_90")


def compile_cu(path: Path, arch: str) -> tuple[int, str]:
    """(nvcc's exit status, its combined output) compiling `path` to a cubin for `arch` with warnings as
    errors and ptxas's resource report."""
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["nvcc", f"-arch={arch}", "-cubin", "-o", str(Path(tmp) / "k.cubin"), str(path),
                            "-Werror", "all-warnings", "-Xptxas", "-v", f"-I{CUDA}"],
                           capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def resources(report: str) -> list[tuple[str, int, int, int]]:
    """(kernel, registers, spill stores + loads in bytes, shared memory bytes) from ptxas's report."""
    rows, name, spill = [], None, 0
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            name = m.group(1)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spill = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and name:
            smem = re.search(r"(\d+) bytes smem", line)
            rows.append((name, int(m.group(1)), spill, int(smem.group(1)) if smem else 0))
            name, spill = None, 0
    return rows


def main() -> None:
    if shutil.which("nvcc") is None:
        raise SystemExit("nvcc is not on PATH")
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    lines = [f"# CUDA kernels: registers, spills, shared memory ({time.strftime('%Y-%m-%d')})", "",
             f"`python benchmarks/cuda_ptxas.py`: nvcc ({version}) with `-Werror all-warnings -Xptxas -v`, per "
             "architecture. A spill is a register that did not fit, kept in local memory (cached, but slower).", ""]
    for arch in ARCHS:
        lines += [f"## {arch}", "", "| file | kernel | registers | spill bytes (stores + loads) | shared memory |",
                  "|---|---|---|---|---|"]
        for path in sorted(CUDA.glob("*.cu")):
            rc, out = compile_cu(path, arch)
            if rc:
                lines.append(f"| {path.name} | compile FAILED | | | |")
                continue
            for name, regs, spill, smem in sorted(resources(out)):
                lines.append(f"| {path.name} | {name} | {regs} | {spill} | {smem:,} |")
        lines.append("")
    write_report(ROOT / "benchmarks" / "results" / "cuda-ptxas.md", lines)


if __name__ == "__main__":
    main()
