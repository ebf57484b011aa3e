"""`scripts/accuracy`: measure every refusal instrument on labelled replies, without screening a cell.

    scripts/accuracy                                 # the default held-out sets (harness test split + pyrit)
    scripts/accuracy my_labels.csv pyrit --no-judge  # any labelled files or set names, each measured on its own
    scripts/accuracy my_labels.jsonl --judge-endpoint http://127.0.0.1:8080/v1 --output-dir acc/

For each labelled set it writes, into --output-dir (default `accuracy-results/` where it is run):
`instrument_accuracy.csv` (per set and instrument: accuracy, sensitivity, specificity with Wilson 95% intervals,
counts, what the instrument was fitted on, how many rows were left out because it was fitted on them, and which
instrument would be primary) and `instrument_misclassified.csv` (every reply an instrument got wrong, with its label).
Rows the classifier was fitted on are left out for every instrument, so all are measured on the same rows. Relative
paths are resolved against the folder the command runs from. Exit code 0, or 4 with one line on bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantscreen.records.errors import ScreenInputError
from quantscreen import packaged_models_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/accuracy", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("labelled", nargs="*", default=["default"],
                   help="labelled files (CSV/TSV/JSONL with request, reply and label columns) or set names: "
                        "default, harness, harness-all, pyrit, uncensorbench")
    judge = p.add_mutually_exclusive_group()
    judge.add_argument("--judge-checkpoint", help="a local judge checkpoint (GGUF or HF folder, or embedded:NAME)")
    judge.add_argument("--judge-endpoint", help="an OpenAI-compatible judge server, e.g. http://127.0.0.1:8080/v1")
    judge.add_argument("--no-judge", action="store_true", help="measure the regex and the classifier only")
    p.add_argument("--models", help="models.yaml whose judge: section names the judge (default: the shipped one)")
    p.add_argument("--output-dir", default="accuracy-results", help="where the CSVs go (default: accuracy-results/)")
    p.add_argument("--cache-dir", help="judgement cache (default: ~/.cache/quantscreen or $QUANTSCREEN_CACHE)")
    p.add_argument("--min-accuracy", type=float, default=0.90, help="accuracy target (default 0.90)")
    p.add_argument("--min-specificity", type=float, default=0.95, help="specificity target (default 0.95)")
    return p


def _judge(args, cache_dir: Path):
    from quantscreen.pipeline.workspace import Workspace
    from quantscreen.pipeline.plan import load_plan

    if args.no_judge:
        return None
    overrides = {"judge_checkpoint": args.judge_checkpoint, "judge_endpoint": args.judge_endpoint}
    models = Path(args.models).expanduser().resolve() if args.models else packaged_models_file()
    plan = load_plan(models, {k: v for k, v in overrides.items() if v})
    if not plan.judge.enabled:
        return None
    from quantscreen.pipeline.judge import make_judge

    return make_judge(plan.judge, Workspace(cache_dir=cache_dir))


def run(args) -> list[dict]:
    from quantscreen.pipeline.instruments import measure_instruments, misclassified_rows
    from quantscreen.engine.sources import default_cache_dir, minilm_encoder
    from quantscreen.promptsets.labelled import LABELLED_SET_NAMES, named_set
    from quantscreen.verdicts.agreement import choose_instruments
    from quantscreen.verdicts.table import ACCURACY_CSV_COLUMNS, MISCLASSIFIED_COLUMNS, write_csv

    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_dir()
    sets = [(name, named_set(name if name in LABELLED_SET_NAMES else str(Path(name).expanduser().resolve())))
            for name in args.labelled]
    judge = _judge(args, cache_dir)
    encoder = minilm_encoder().path
    rows, wrong = [], []
    try:
        for name, labelled in sets:
            if labelled is None:
                continue
            print(f"{name}: {len(labelled)} labelled replies ({labelled.name}; labels: {labelled.definition})",
                  file=sys.stderr)
            found, held_out = measure_instruments(labelled, judge, cache_dir, None, encoder)
            if not len(held_out):
                print(f"{name}: all {len(labelled)} replies were fitted on by the classifier, so nothing is held "
                      f"out to measure on; use a set it was not fitted on", file=sys.stderr)
                continue
            choice = choose_instruments(list(found), found, "auto", args.min_accuracy, args.min_specificity)
            for inst, acc in sorted(found.items()):
                role = "primary" if inst == choice.primary else "screening" if inst in choice.screening \
                    else "reported_only"
                rows.append({**acc.as_row(), "set": name, "role": role,
                             "meets_targets": acc.meets(args.min_accuracy, args.min_specificity)})
            wrong.extend({**r, "set": name} for r in misclassified_rows(held_out, found))
    finally:
        if judge is not None and hasattr(judge, "close"):
            judge.close()
    out = Path(args.output_dir).expanduser().resolve()
    write_csv(out / "instrument_accuracy.csv", ("set", *ACCURACY_CSV_COLUMNS), rows)
    write_csv(out / "instrument_misclassified.csv", ("set", *MISCLASSIFIED_COLUMNS), wrong)
    return rows


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        rows = run(args)
    except ScreenInputError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 4
    head = f"{'set':<16} {'instrument':<11} {'role':<14} {'n':>5} {'accuracy':>9} {'sensitivity':>12} {'specificity':>12}"
    print(head)
    for r in rows:
        print(f"{r['set'][:16]:<16} {r['instrument']:<11} {r['role']:<14} {r['n']:>5} {r['accuracy']:>9.3f} "
              f"{r['sensitivity']:>12.3f} {r['specificity']:>12.3f}" + ("" if r["meets_targets"] else "  below target"))
    print(f"written: {Path(args.output_dir).expanduser().resolve()}/instrument_accuracy.csv, "
          f"instrument_misclassified.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
