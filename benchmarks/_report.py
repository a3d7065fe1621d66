"""What the benchmark scripts share: writing a results table."""

from __future__ import annotations

from pathlib import Path


def write_report(out: Path, lines: list[str]) -> None:
    """The lines as one Markdown file at `out` (folders created), also printed."""
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
