"""What the benchmark scripts share: writing a results table, and a process's peak memory."""

from __future__ import annotations

import sys
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
