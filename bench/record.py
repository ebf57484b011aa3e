"""One place that appends a benchmark result to BENCHMARKS.md, with the date, the machine and the command."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    import importlib.metadata

    torch = importlib.metadata.version("torch")
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch}"


def append(title: str, body: str) -> None:
    """`body`: the result, as markdown lines (a `- result: ...` line or a table)."""
    script = Path(sys.argv[0]).name
    with open(ROOT / "BENCHMARKS.md", "a") as fh:
        fh.write(f"\n### {datetime.date.today()} {title}\n"
                 f"- command: `.venv/bin/python bench/{script} {' '.join(sys.argv[1:])}`\n"
                 f"- machine: {machine()}\n{body}")
