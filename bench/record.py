"""One place that appends a benchmark result to BENCHMARKS.md, with the date, the machine and the command, and the
helpers the bench scripts share (a timed `scripts/screen` run, a silent progress bar)."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
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


def screen(*args: str) -> float:
    """Seconds for `scripts/screen ARGS -q`; exits with its output unless it ends 0 (all pass) or 1 (a screen failed)."""
    start = time.perf_counter()
    proc = subprocess.run([str(ROOT / "scripts" / "screen"), *args, "-q"], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"screen failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def rotations(contenders: list, rounds: int):
    """(round number from 1, contender) for every round, each round starting one contender later than the last,
    so no contender always runs first (or right after the same neighbour) on a noisy machine."""
    for r in range(rounds):
        k = r % len(contenders)
        for contender in contenders[k:] + contenders[:k]:
            yield r + 1, contender


class Quiet:
    """A progress bar that shows nothing (the benchmarks print their own round lines)."""

    def __init__(self, *_):
        pass

    def update(self, _n):
        pass

    def tick(self, _detail):
        pass

    def close(self):
        pass
