"""Time to produce every derived variant of a models file (default: matrix.yaml) into a fresh cache, in one run.

Each variant is derived the way a screen derives it (`engine.derive.derive`), in the order the file lists it, so a
variant's time excludes the intermediates made before it (the fp16 reference folder for GPTQ/AWQ, the F16 GGUF for
the llama.cpp ladder), which are timed on their own first. Prints a table and appends it to BENCHMARKS.md.

    .venv/bin/python bench/derive_variants.py [models.yaml] [--only SUBSTRING] [--cache-dir EMPTY_DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="?", default=str(ROOT / "matrix.yaml"))
    ap.add_argument("--only", default="", help="derive only recipes containing this text (e.g. gptq)")
    ap.add_argument("--cache-dir", default=None, help="an empty cache folder to derive into and keep (for a later "
                                                         "screen of the same matrix); default: a temporary one")
    args = ap.parse_args()
    from quantscreen.engine.quantize import gptqmodel_env

    gptqmodel_env()
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.derive import derive
    from quantscreen.pipeline.workspace import Workspace, resolve_checkpoint
    from quantscreen.pipeline.plan import load_plan

    rows = []
    with tempfile.TemporaryDirectory(prefix="qs-derive-") as tmp:
        tmp = args.cache_dir or tmp
        if any((Path(tmp) / "derived").glob("*")):
            sys.exit(f"{tmp}/derived is not empty: cached variants would be timed as instant")
        ws = Workspace(cache_dir=Path(tmp))
        plan = load_plan(Path(args.models), {"cache_dir": Path(tmp)})
        for model in plan.models:
            base = resolve_checkpoint(model, model.baseline, ws)
            digest = ws.checkpoint_digest(base)
            recipes = [q.derive for q in model.quants if q.derive and args.only in q.derive]
            intermediates = (["reference"] if any(r.startswith(("gptq", "awq")) for r in recipes) else []) + \
                            (["gguf:F16"] if any(r.startswith("llamacpp") for r in recipes) else [])
            for recipe in intermediates + recipes:
                start = time.perf_counter()
                out = derive(base.path, digest, recipe, ws.cache_dir)
                seconds = time.perf_counter() - start
                info = inspect_checkpoint(out)
                rows.append((model.model_id, recipe, seconds, info.format, info.bits_per_weight, info.made_by))
                print(f"{model.model_id:22s} {recipe:18s} {seconds:7.1f} s  {info.format:14s} "
                      f"{info.bits_per_weight:7.4f} bpw  {info.made_by}", flush=True)
    table = "".join(f"| {m} | `{r}` | {s:.1f} | {f} | {b:.4f} | {t} |\n" for m, r, s, f, b, t in rows)
    record.append("time to produce each derived variant", "\n| model | recipe | seconds | format | bits/weight | "
                  f"made by |\n|---|---|---|---|---|---|\n{table}")


if __name__ == "__main__":
    main()
