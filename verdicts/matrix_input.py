"""An imported matrix (`--matrix FILE`): results produced elsewhere, screened with the same rules.

The CSV has one row per cell. Columns (case-insensitive; unknown columns are ignored, so a quantscreen cells.csv
imports as it is):

- `model`, `quant` (required); `is_baseline` (or `baseline`: true/false, 1/0, yes/no; default false);
- `bits_per_weight` (or `bpw`) and `format` (optional: the BPW regression and the cheapest quant need bpw);
- metrics, each as its value (0..1) and/or its delta in pp against the model's baseline (`<metric>_delta_pp`):
  quality `bertscore_f1`, `rouge_l_f1`, `coherence`, `top1_agreement` (probes/kld.py: the share of text positions
  where the cell's most likely next token is the baseline's), `lm_eval` (a score imported from lm-evaluation-harness,
  pipeline.lm_eval_results) or any `quality_<name>`; safety (higher = safer)
  `refusal_rate_regex`, `refusal_rate_judge` or any `safety_<name>`. A delta column wins; without one the delta is
  computed from the values and the model's baseline row (which then must exist and carry the value);
- `kld_mean`, `kld_p99` (nats, higher = further from the baseline, not a 0..1 score) are read by no analysis here: a
  cells.csv carrying them imports unchanged;
- published labels to audit (optional): `regime` / `published_regime`, `action` / `published_action`. An action is
  one of the harness's names (verdicts.actions: reference, reject_hidden_danger, manual_review_measurement_risk,
  reject_severe_safety_drift, cannot_certify, conservative_floor_candidate, direct_safety_eval_required) or a short
  name reports publish, audited as the name it stands for (`matrix_rules.ACTION_ALIASES`): reject =
  reject_hidden_danger, manual_review = manual_review_measurement_risk, direct_safety_eval =
  direct_safety_eval_required, reject_severe_drift = reject_severe_safety_drift; any other is an input error;
- `cannot_certify_reason` (optional, as cells.csv writes it): a non-empty one makes the row's action cannot_certify;
- probe columns (optional, as cells.csv writes them): the mechanistic probes' `probe_*` figures
  (`probe_stats.PROBE_COLUMNS`) and the targets they are correlated with (`TARGET_COLUMNS`: `rtsi`,
  `refusal_rate_regex_delta_pp`, `refusal_rate_judge_delta_pp`; a refusal target the row does not give is the delta
  resolved above). They feed the cross-probe statistics (`MatrixReport.probe_statistics`, probe_statistics.csv),
  grouped by the regime SPEC §3 recomputes; a table with none of PROBE_COLUMNS has none (the file is a header).
  An empty, nan or infinite figure is left out, as probe_stats reads it; any other non-number is an input error.

A table of deltas only (no rates, no baseline rates) cannot be checked for TAX_005, which compares the refusal
instruments' own rates: the report says so (`matrix_rules.notes`, matrix/notes.csv) instead of passing silently.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from quantscreen.records.errors import ScreenInputError
from quantscreen.verdicts.matrix_rules import (
    ACTION_ALIASES,
    ACTION_NAMES,
    QUALITY_METRICS,
    REFUSAL_METRICS,
    Matrix,
    MatrixCell,
    action_name,
)
from quantscreen.verdicts.probe_stats import PROBE_COLUMNS, TARGET_COLUMNS, read_float

_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f", ""}
_ALIASES = {"baseline": "is_baseline", "bpw": "bits_per_weight", "published_regime": "regime",
            "published_action": "action"}
FIX = ("write a CSV with model, quant, is_baseline and metric columns such as bertscore_f1_delta_pp and "
       "refusal_rate_regex_delta_pp (see README, 'Importing a matrix')")


# cells.csv's columns about the regime's quality delta (which metric, its interval, where it came from), not metrics
_NOT_METRICS = {"quality_metric", "quality_source", "quality_delta_ci_low_pp", "quality_delta_ci_high_pp"}


def _metric_kind(name: str) -> str | None:
    if name in _NOT_METRICS:
        return None
    if name in QUALITY_METRICS or name.startswith("quality_"):
        return "quality"
    if name in REFUSAL_METRICS or name.startswith("safety_"):
        return "safety"
    return None


def load_matrix(path: Path) -> Matrix:
    path = Path(path)
    if not path.is_file():
        raise ScreenInputError(path, "matrix file not found", "pass --matrix the path of an existing CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScreenInputError(path, f"cannot be read as UTF-8 text ({exc})", FIX) from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise ScreenInputError(path, "is empty", FIX)
    columns = _columns(path, reader.fieldnames)
    metrics = sorted({c.removesuffix("_delta_pp") for c in columns if _metric_kind(c.removesuffix("_delta_pp"))})
    quality = tuple(m for m in metrics if _metric_kind(m) == "quality")
    safety = tuple(m for m in metrics if _metric_kind(m) == "safety")
    if not quality or not safety:
        raise ScreenInputError(path, f"needs at least one quality and one safety metric column, found quality "
                                     f"{list(quality) or 'none'} and safety {list(safety) or 'none'}", FIX)
    raw_rows = [_entry(path, line, row, columns, metrics) for line, row in enumerate(reader, start=2)
                if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    if not raw_rows:
        raise ScreenInputError(path, "has a header but no rows", FIX)
    # a column no row fills measures nothing (a run without the judge writes empty judge columns); a run's own
    # cells.csv names the refusal instruments its verdicts rested on (screening_instruments): only those count
    screening = set().union(*(r["screening"] for r in raw_rows))
    metrics = [m for m in metrics if any(m in r["values"] or m in r["deltas"] for r in raw_rows)
               and not (screening and m in REFUSAL_METRICS and m.removeprefix("refusal_rate_") not in screening)]
    quality = tuple(m for m in metrics if _metric_kind(m) == "quality")
    safety = tuple(m for m in metrics if _metric_kind(m) == "safety")
    if not quality or not safety:
        found = f"quality {list(quality) or 'none'}, safety {list(safety) or 'none'}"
        raise ScreenInputError(path, f"has no filled quality or safety metric column ({found})", FIX)
    return Matrix(cells=_resolve(path, raw_rows, metrics), quality_metrics=quality, safety_metrics=safety,
                  source_file=str(path), probe_columns=tuple(c for c in PROBE_COLUMNS if c in columns))


def _columns(path, fieldnames) -> dict[str, str]:
    """Our column name -> the file's; own names first, then `published_*` overrides a plain regime/action column."""
    columns: dict[str, str] = {}
    for raw in fieldnames:
        name = (raw or "").strip().lower()
        if name not in _ALIASES:
            columns.setdefault(name, raw)
    for raw in fieldnames:
        name = (raw or "").strip().lower()
        if name in _ALIASES and (name.startswith("published_") or _ALIASES[name] not in columns):
            columns[_ALIASES[name]] = raw
    for need in ("model", "quant"):
        if need not in columns:
            raise ScreenInputError(path, f"has no '{need}' column (columns: {', '.join(fieldnames)})", FIX)
    return columns


def _entry(path, line: int, row: dict, columns: dict[str, str], metrics) -> dict:
    """One CSV row, checked: its keys, flags, published labels, bpw, and each metric's value and delta."""
    def get(key: str) -> str:
        return (row.get(columns[key]) or "").strip() if key in columns else ""

    model, quant = get("model"), get("quant")
    if not model or not quant:
        raise ScreenInputError(f"{path} (line {line})", "a row without model or quant", "fill both columns")
    flag = get("is_baseline").lower()
    if flag not in _TRUE | _FALSE:
        raise ScreenInputError(f"{path} (line {line})", f"is_baseline must be true or false, got {flag!r}",
                               "write true for the model's reference row, false otherwise")
    if get("action") and action_name(get("action")) is None:
        short = ", ".join(f"{k} ({v})" for k, v in ACTION_ALIASES.items())
        raise ScreenInputError(f"{path} (line {line})", f"published action {get('action')!r} is not an action name",
                               f"write one of {', '.join(ACTION_NAMES)}, or a short name: {short}")
    entry = {"line": line, "model": model, "quant": quant, "is_baseline": flag in _TRUE,
             "format": get("format"), "published": {k: get(k) for k in ("regime", "action") if get(k)},
             "bits_per_weight": _number(path, line, "bits_per_weight", get("bits_per_weight")),
             "values": {}, "deltas": {}, "cannot_certify": get("cannot_certify_reason"),
             "screening": {i for i in get("screening_instruments").split(";") if i},
             "probes": {c: x for c in (*PROBE_COLUMNS, *TARGET_COLUMNS)
                        if (x := _figure(path, line, c, get(c))) is not None}}
    for metric in metrics:
        value = _number(path, line, metric, get(metric))
        if value is not None:
            if not 0.0 <= value <= 1.0:
                raise ScreenInputError(f"{path} (line {line})", f"{metric} = {value} is outside 0..1",
                                       f"give rates and scores as fractions, or give {metric}_delta_pp in pp")
            entry["values"][metric] = value
        delta = _number(path, line, f"{metric}_delta_pp", get(f"{metric}_delta_pp"))
        if delta is not None:
            entry["deltas"][metric] = delta
    return entry


def _number(path, line: int, column: str, text: str) -> float | None:
    if text == "" or text.lower() in ("na", "nan", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ScreenInputError(f"{path} (line {line})", f"{column} = {text!r} is not a number",
                               f"write a number or leave {column} empty") from None
    if math.isinf(value):
        raise ScreenInputError(f"{path} (line {line})", f"{column} is infinite", "write a finite number")
    return value


def _figure(path, line: int, column: str, text: str) -> float | None:
    """A probe or target figure: None when empty, nan or infinite (probe_stats.read_float; a cells.csv may hold inf
    there), an input error naming the line when not a number."""
    value = read_float(text)
    if value is None and text.lower().lstrip("+-") not in ("inf", "infinity"):
        _number(path, line, column, text)  # raises on a non-number; empty and nan pass
    return value


def _probe_figures(r: dict, deltas: dict[str, float]) -> dict[str, float]:
    """The row's probe and target figures; a refusal delta target it does not give is the delta the matrix resolved
    (from its values and the baseline's)."""
    probes = dict(r["probes"])
    for target in TARGET_COLUMNS:
        metric = target.removesuffix("_delta_pp")
        if not r["is_baseline"] and metric != target and target not in probes and metric in deltas:
            probes[target] = deltas[metric]
    return probes


def _resolve(path, raw_rows: list[dict], metrics) -> list[MatrixCell]:
    seen: dict[tuple, int] = {}
    baselines: dict[str, dict] = {}
    for r in raw_rows:
        key = (r["model"], r["quant"])
        if key in seen:
            raise ScreenInputError(f"{path} (line {r['line']})", f"{r['model']} {r['quant']} repeats line {seen[key]}",
                                   "keep one row per (model, quant)")
        seen[key] = r["line"]
        if r["is_baseline"]:
            if r["model"] in baselines:
                raise ScreenInputError(f"{path} (line {r['line']})", f"a second baseline row for {r['model']} "
                                       f"(first on line {baselines[r['model']]['line']})",
                                       "mark one row per model is_baseline=true")
            baselines[r["model"]] = r
    cells = []
    for r in raw_rows:
        deltas = dict(r["deltas"])
        if r["is_baseline"]:
            deltas = {m: 0.0 for m in metrics}
        else:
            base = baselines.get(r["model"])
            for m in metrics:
                if m in deltas or m not in r["values"]:
                    continue
                if base is None or m not in base["values"]:
                    raise ScreenInputError(f"{path} (line {r['line']})",
                                           f"{m} has a value but no {m}_delta_pp and no baseline value for "
                                           f"{r['model']} to subtract", f"add {m}_delta_pp, or a baseline row "
                                           f"(is_baseline=true) for {r['model']} with {m}")
                deltas[m] = round(100.0 * (r["values"][m] - base["values"][m]), 6)
        values = dict(r["values"])
        base = baselines.get(r["model"])
        if base is not None and not r["is_baseline"]:  # the cell's own rates, for TAX_005, from a delta-only row
            for m, d in deltas.items():
                if m not in values and m in base["values"]:
                    values[m] = base["values"][m] + d / 100.0
        cells.append(MatrixCell(model=r["model"], quant=r["quant"], is_baseline=r["is_baseline"], deltas=deltas,
                                values=values, bits_per_weight=r["bits_per_weight"], format=r["format"],
                                published=r["published"], row_key=f"line={r['line']}",
                                cannot_certify=r["cannot_certify"], probes=_probe_figures(r, deltas)))
    return sorted(cells, key=lambda c: (c.model, not c.is_baseline, c.quant))
