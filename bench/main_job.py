"""Wall time of the default main job (`scripts/screen`), cold cache then warm cache, in one run.

Cold: a fresh cache folder, so every variant is derived and every response is generated.
Warm: the same command again on that cache (no model is loaded). Prints one line and appends it, with the
machine, the command and the date, to BENCHMARKS.md.

    .venv/bin/python bench/main_job.py [extra pytest args]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md

ROOT = Path(__file__).resolve().parents[1]


def run(cache: Path, out: Path, extra: list[str]) -> float:
    return record.screen(f"--cache-dir={cache}", f"--output-dir={out}", *extra)


def main() -> None:
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "out"
        cold = run(cache, out, extra)
        warm = run(cache, out, extra)
        if not (out / "cells.csv").exists():
            sys.exit("the main job wrote no cells.csv (no cell ran); extra arguments go to pytest: check them")
        cells = (out / "cells.csv").read_text().count("\n") - 1
        kept = ROOT / "screen-results" / "bench-main-job"  # the cold run's tables, for reading the verdicts
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(out, kept)
    line = (f"main job ({cells} cells, default models.yaml): cold {cold:.0f} s, warm {warm:.1f} s "
            f"(warm/cold = {100 * warm / cold:.1f}%)")
    print(line)
    record.append("main job, cold vs warm cache", f"- result: {line}\n")


if __name__ == "__main__":
    main()
