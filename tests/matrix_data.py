"""The matrices the matrix tests share (tests/test_matrix.py, tests/test_matrix_input.py, tests/test_reporter.py):
a made-up 48-row table written as an imported CSV, rows shaped like a run's cells.csv, and small hand-built matrices.
"""
from __future__ import annotations

import csv
import random

from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.verdicts import matrix as mx
from quantscreen.verdicts.matrix_input import load_matrix
from quantscreen.verdicts.matrix_rules import Matrix, MatrixCell

T = ScreenThresholds()
QUANTS = (("Q8_0", 8.5), ("Q6_K", 6.56), ("Q5_K_M", 5.69), ("Q4_K_M", 4.85), ("Q3_K_S", 3.44), ("Q2_K", 2.63),
          ("GPTQ-W4", 4.25))
MODELS = ("m-alpha", "m-beta", "m-gamma", "m-delta", "m-eps", "m-zeta")
WRONG = {("m-beta", "Q2_K"), ("m-gamma", "GPTQ-W4"), ("m-eps", "Q8_0")}  # published regimes we corrupt on purpose


def made_up_rows(seed: int = 11) -> list[dict]:
    """6 models x (baseline + 7 quants) = 48 rows of invented deltas: quality falls with bits on some models and rises
    on others (so signs reverse), refusal falls with bits, GPTQ collapses refusal while quality holds."""
    rng = random.Random(seed)
    rows = []
    for i, model in enumerate(MODELS):
        rows.append({"model": model, "quant": "FP16", "is_baseline": "yes", "bits_per_weight": 16,
                     "bertscore_f1": 0.81, "rouge_l_f1": 0.42, "coherence": 0.7, "refusal_rate_regex": 0.9,
                     "refusal_rate_judge": 0.93, "safety_truthfulness": 0.6, "published_regime": "baseline"})
        sign = 1 if i % 2 else -1
        for quant, bpw in QUANTS:
            harm = (8.5 - bpw) * (1.5 + i / 2)
            q = sign * 0.4 * harm + rng.gauss(0, 0.6)
            s = -harm + rng.gauss(0, 1.5) - (35 if quant.startswith("GPTQ") and i < 3 else 0)
            if quant.startswith("GPTQ"):
                q = abs(q) * 0.1
            row = {"model": model, "quant": quant, "is_baseline": "no", "bits_per_weight": bpw,
                   "bertscore_f1_delta_pp": round(q, 4), "rouge_l_f1_delta_pp": round(0.7 * q + rng.gauss(0, 1), 4),
                   "coherence_delta_pp": round(rng.gauss(0, 2), 4), "refusal_rate_regex_delta_pp": round(s, 4),
                   "refusal_rate_judge_delta_pp": round(0.8 * s, 4),
                   "safety_truthfulness": round(0.6 + rng.gauss(0, 0.03), 4)}
            rows.append(row)
    return rows


def write_matrix(path, rows) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, columns)
        w.writeheader()
        w.writerows(rows)


def written(path, rows):
    write_matrix(path, rows)
    return path


def published_rows(folder, rows=None) -> list[dict]:
    """The made-up matrix with published regimes: the rule's own label, except on WRONG rows."""
    rows = made_up_rows() if rows is None else rows
    first = mx.analyse(load_matrix(written(folder / "plain.csv", rows)), T)
    truth = {(r["model"], r["quant"]): r["regime"] for r in first.classified}
    for r in rows:
        if r["is_baseline"] == "no":
            right = truth[(r["model"], r["quant"])]
            r["published_regime"] = ("hidden_danger" if right != "hidden_danger" else "neutral") \
                if (r["model"], r["quant"]) in WRONG else right
    return rows


def cells_csv_rows() -> list[dict]:
    """Rows shaped like cells.csv (what a run's reporter gathers), for two models."""
    rows = []
    for model, drop in (("x", -12.0), ("y", 2.0)):
        rows.append({"model": model, "quant": "baseline", "cell_id": f"{model}-baseline", "is_baseline": True,
                     "bits_per_weight": 16.0, "bertscore_f1": 0.8, "rouge_l_f1": 0.4, "coherence": 0.6,
                     "refusal_rate_regex": 0.8, "refusal_rate_judge": 0.7, "regime": "baseline"})
        for k, (quant, bpw) in enumerate((("Q5_K_M", 5.7), ("Q4_K_M", 4.9), ("Q2_K", 2.6))):
            d = drop * k / 2
            rows.append({"model": model, "quant": quant, "cell_id": f"{model}-{quant}", "is_baseline": False,
                         "bits_per_weight": bpw, "bertscore_f1": 0.8 - 0.001 * k, "rouge_l_f1": 0.4,
                         "coherence": 0.6 - 0.01 * k, "refusal_rate_regex": 0.8 + d / 100,
                         "refusal_rate_judge": 0.7 + d / 200, "bertscore_f1_delta_pp": -0.1 * k,
                         "rouge_l_f1_delta_pp": 0.0, "coherence_delta_pp": -1.0 * k,
                         "refusal_rate_regex_delta_pp": d, "refusal_rate_judge_delta_pp": d / 2,
                         "screen_hidden_danger": "fail" if d < -10 else "pass", "screen_powered": "pass",
                         "mde_pp": 8.0, "quality_delta_pp": -0.1 * k, "regime": "hidden_danger" if d < -10 else "neutral"})
    return rows


def cell(model, quant, q, r, j=None, bpw=4.0, base=False, fmt="") -> MatrixCell:
    """A hand-built row: bertscore and regex deltas, and the judge's when given."""
    deltas = {"bertscore_f1": q, "refusal_rate_regex": r}
    if j is not None:
        deltas["refusal_rate_judge"] = j
    return MatrixCell(model=model, quant=quant, is_baseline=base, deltas=deltas, bits_per_weight=bpw, format=fmt)


def matrix(cells) -> Matrix:
    safety = ("refusal_rate_judge", "refusal_rate_regex") if any("refusal_rate_judge" in c.deltas for c in cells) \
        else ("refusal_rate_regex",)
    return Matrix(cells=cells, quality_metrics=("bertscore_f1",), safety_metrics=safety, source_file="t.csv")
