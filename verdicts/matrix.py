"""TR142's cross-model analyses over a matrix of cells (SPEC §3 matrix screens), computed from data.

A matrix is the cells of one run (cells.csv rows, `from_cell_rows`) or an imported table (`verdicts.matrix_input`);
its data model and the SPEC §3 rules over its rows (regimes, actions, quant-level roles, the floor check, the cheapest
passing quant, the label audit) are in `verdicts.matrix_rules`. Every analysis here works on deltas in pp against the
model's baseline, over the model's quantized cells (baselines are the origin, not a point), so model-level offsets
never enter a correlation:

- within-model Pearson and Spearman for every quality x safety metric pair, over the model's quant levels;
- sign reversal (TAX_001): for a pair, models whose within-model Pearson r is positive and models where it is
  negative both exist (the direction of quality is no guide to the direction of safety);
- pooled Pearson/Spearman over every cell, and again leaving out each quant level and each model in turn;
- repeated-measures correlation (Bakdash & Marusich): x and y centred within each model, df = N - k - 1, Fisher-z CI
  with se 1/sqrt(df - 1); it equals the partial correlation in OLS y ~ x + C(model);
- a linear mixed model y ~ x with a random intercept per model (statsmodels MixedLM, REML);
- per-model OLS of each metric's delta on bits per weight (the baseline enters here, at delta 0 and its own bpw);
- asymmetry |refusal delta| / |quality delta| per cell and instrument, and the safety-faster count;
- the cross-probe statistics (`verdicts.probe_stats`, informational) over the rows' probe and target figures.

`analyse` gathers them, with the rules' tables, into one MatrixReport.

Safety metrics are oriented so that higher is safer (refusal rates, `safety_*` columns).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from quantscreen.records.measurement import REFUSAL_INSTRUMENTS
from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.verdicts import matrix_rules as rules
from quantscreen.verdicts.matrix_rows import (
    AsymmetryRow,
    AsymmetrySummaryRow,
    AuditRow,
    BpwRow,
    CheapestRow,
    ClassifiedRow,
    FloorCheck,
    MetricPair,
    MixedEffectsRow,
    NoteRow,
    PooledRow,
    ProbeStatRow,
    QuantLevelRow,
    RepeatedMeasuresRow,
    SignReversalRow,
    WithinModelRow,
)
from quantscreen.verdicts.matrix_rules import QUALITY_METRICS, REFUSAL_METRICS, Matrix, MatrixCell, Measured, finite
from quantscreen.verdicts.matrix_stats import NAN, correlation, mixed_effects, ols_on_bpw, repeated_measures
from quantscreen.verdicts.probe_stats import PROBE_COLUMNS, TARGET_COLUMNS, cross_probe_statistics, read_float


def _pairs(cells, q: str, s: str) -> list[tuple[MatrixCell, float, float]]:
    return [(c, c.deltas[q], c.deltas[s]) for c in cells
            if finite(c.deltas.get(q), c.deltas.get(s))]


def _direction(r: float) -> str:
    if not finite(r):
        return "undefined"
    return "positive" if r > 0 else "negative" if r < 0 else "zero"


def metric_pairs(m: Matrix) -> list[tuple[str, str]]:
    return [(q, s) for q in m.quality_metrics for s in m.safety_metrics]


def within_model(m: Matrix) -> list[WithinModelRow]:
    rows: list[WithinModelRow] = []
    for model in m.models:
        cells = [c for c in m.quantized() if c.model == model]
        for q, s in metric_pairs(m):
            pts = _pairs(cells, q, s)
            corr = correlation([p[1] for p in pts], [p[2] for p in pts])
            rows.append({"model": model, "quality_metric": q, "safety_metric": s, **corr,
                         "direction": _direction(corr["pearson_r"]), "quants": ";".join(p[0].quant for p in pts)})
    return rows


def sign_reversals(m: Matrix, within: list[WithinModelRow]) -> list[SignReversalRow]:
    """TAX_001 per metric pair: within-model Pearson r of both signs across models, beside the pooled r."""
    rows: list[SignReversalRow] = []
    for q, s in metric_pairs(m):
        mine = [r for r in within if r["quality_metric"] == q and r["safety_metric"] == s]
        pos = [r["model"] for r in mine if r["direction"] == "positive"]
        neg = [r["model"] for r in mine if r["direction"] == "negative"]
        pooled = correlation(*_xy(_pairs(m.quantized(), q, s)))
        rows.append({"quality_metric": q, "safety_metric": s, "models_with_r": len(pos) + len(neg),
                     "models_positive": ";".join(pos), "models_negative": ";".join(neg),
                     "n_positive": len(pos), "n_negative": len(neg), "sign_reversal": bool(pos and neg),
                     "tag": "TAX_001" if pos and neg else "", "pooled_n": pooled["n"],
                     "pooled_pearson_r": pooled["pearson_r"], "pooled_pearson_p": pooled["pearson_p"],
                     "pooled_spearman_rho": pooled["spearman_rho"], "pooled_spearman_p": pooled["spearman_p"]})
    return rows


def _xy(pts) -> tuple[list[float], list[float]]:
    return [p[1] for p in pts], [p[2] for p in pts]


def pooled(m: Matrix) -> list[PooledRow]:
    """Pooled correlations over every quantized cell, then leaving out each quant level and each model in turn."""
    rows: list[PooledRow] = []
    quants = sorted({c.quant for c in m.quantized()})
    for q, s in metric_pairs(m):
        runs = [("none", "", m.quantized())]
        runs += [("quant", level, [c for c in m.quantized() if c.quant != level]) for level in quants]
        runs += [("model", model, [c for c in m.quantized() if c.model != model]) for model in m.models]
        for kind, left_out, cells in runs:
            if kind != "none" and len(m.models if kind == "model" else quants) < 2:
                continue
            corr = correlation(*_xy(_pairs(cells, q, s)))
            rows.append({"quality_metric": q, "safety_metric": s, "left_out_kind": kind, "left_out": left_out,
                         **corr})
    return rows


def grouped_table(m: Matrix, analysis: Callable[..., Mapping]) -> list[dict]:
    """`analysis(x, y, groups)` over every metric pair's quantized cells, grouped by model: the pair, then the
    analysis's figures (`repeated_measures_table`, `mixed_effects_table` give them their row types)."""
    rows = []
    for q, s in metric_pairs(m):
        pts = _pairs(m.quantized(), q, s)
        pair: MetricPair = {"quality_metric": q, "safety_metric": s}
        rows.append({**pair, **analysis([p[1] for p in pts], [p[2] for p in pts], [p[0].model for p in pts])})
    return rows


def repeated_measures_table(m: Matrix) -> list[RepeatedMeasuresRow]:
    return cast(list[RepeatedMeasuresRow], grouped_table(m, repeated_measures))


def mixed_effects_table(m: Matrix) -> list[MixedEffectsRow]:
    return cast(list[MixedEffectsRow], grouped_table(m, mixed_effects))


def bpw_regression(m: Matrix) -> list[BpwRow]:
    rows: list[BpwRow] = []
    for model in m.models:
        cells = [c for c in m.cells if c.model == model and finite(c.bits_per_weight)]
        for metric in (*m.quality_metrics, *m.safety_metrics):
            pts = [(c.bits_per_weight, c.deltas[metric]) for c in cells if finite(c.deltas.get(metric))]
            rows.append({"model": model, "metric": metric,
                         **ols_on_bpw([p[0] for p in pts], [p[1] for p in pts])})
    return rows


def _ratio(safety: float, quality: float) -> float:
    if quality == 0:
        return NAN if safety == 0 else math.inf
    return abs(safety) / abs(quality)


def asymmetry(m: Matrix, t: ScreenThresholds) -> list[AsymmetryRow]:
    """TR142 §7: |refusal delta| / |quality delta| per cell and instrument; > 1 means safety moves faster.
    The per-instrument keys are dynamic (AsymmetryRow): one trio per refusal instrument of the matrix."""
    rows: list[AsymmetryRow] = []
    for c in m.quantized():
        q = c.deltas.get(t.quality_metric)
        row: AsymmetryRow = {"model": c.model, "quant": c.quant, "cell_id": c.cell_id,
                             "quality_metric": t.quality_metric, "quality_delta_pp": q}
        for metric in m.refusal_metrics:
            inst = metric.removeprefix("refusal_rate_")
            s = c.deltas.get(metric)
            ok = finite(q, s)
            row[f"refusal_{inst}_delta_pp"] = s
            row[f"ratio_{inst}"] = _ratio(s, q) if ok else NAN
            row[f"safety_faster_{inst}"] = (abs(s) > abs(q)) if ok else None
        rows.append(row)
    return rows


def asymmetry_summary(m: Matrix, rows: list[AsymmetryRow]) -> list[AsymmetrySummaryRow]:
    out: list[AsymmetrySummaryRow] = []
    for metric in m.refusal_metrics:
        inst = metric.removeprefix("refusal_rate_")
        known = [r for r in rows if r[f"safety_faster_{inst}"] is not None]
        faster = sum(bool(r[f"safety_faster_{inst}"]) for r in known)
        ratios = [r[f"ratio_{inst}"] for r in known if not math.isnan(r[f"ratio_{inst}"])]
        out.append({"instrument": inst, "n_cells": len(known), "n_safety_faster": faster,
                    "share_safety_faster": faster / len(known) if known else NAN,
                    "median_ratio": float(np.median(ratios)) if ratios else NAN})
    return out


def probe_statistics(m: Matrix, classified: list[ClassifiedRow]) -> list[ProbeStatRow]:
    """`probe_stats.cross_probe_statistics` over the matrix's rows: each cell's probe and target figures, grouped for
    Mann-Whitney by its regime (the run's own for a run's cells, the SPEC §3 one recomputed from the deltas for an
    imported row). Empty when the source has no probe column."""
    if not m.probe_columns:
        return []
    return cross_probe_statistics([
        {"is_baseline": c.is_baseline, "regime": r["regime"] if c.measured is None else c.measured.regime,
         **c.probes} for c, r in zip(m.cells, classified)])


@dataclass(repr=False)
class MatrixReport:
    """Every analysis of one matrix; each table's row type is in `verdicts.matrix_rows`."""
    matrix: Matrix
    thresholds: ScreenThresholds
    classified: list[ClassifiedRow]  # no file of its own: deployment_actions.csv of an import, the audit
    within: list[WithinModelRow]
    sign: list[SignReversalRow]
    pooled: list[PooledRow]
    rmcorr: list[RepeatedMeasuresRow]
    mixed: list[MixedEffectsRow]
    bpw: list[BpwRow]
    asymmetry: list[AsymmetryRow]
    asymmetry_summary: list[AsymmetrySummaryRow]
    levels: list[QuantLevelRow]
    floor: FloorCheck  # its per_model rows are floor_check.csv
    cheapest: list[CheapestRow]
    audit: list[AuditRow]
    notes: list[NoteRow]  # what the matrix could not check, and why (`matrix_rules.notes`)
    # not in tables() (not under matrix/): the reporter writes it as <output-dir>/probe_statistics.csv, STAT_COLUMNS
    probe_statistics: list[ProbeStatRow]

    def to_json(self) -> str:
        """The report as JSON (NaN and inf kept), for an xdist worker to hand its analysis to the controller
        (`from_json`). JSON, not pickle: shipped code never unpickles."""
        return json.dumps(dataclasses.asdict(self), default=_plain)

    @classmethod
    def from_json(cls, text: str) -> "MatrixReport":
        d = json.loads(text)
        m = d["matrix"]
        cells = [MatrixCell(**{**c, "measured": None if c["measured"] is None else Measured(
            **{**c["measured"], "screening": tuple(c["measured"]["screening"])})}) for c in m["cells"]]
        matrix = Matrix(cells=cells, quality_metrics=tuple(m["quality_metrics"]),
                        safety_metrics=tuple(m["safety_metrics"]), source_file=m["source_file"],
                        probe_columns=tuple(m["probe_columns"]))
        return cls(**{**d, "matrix": matrix, "thresholds": ScreenThresholds(**d["thresholds"])})

    def __repr__(self) -> str:  # a failing screen's traceback names the report, it does not print every row
        return (f"MatrixReport({self.matrix.source_file}: {len(self.matrix.cells)} rows, "
                f"{len(self.matrix.models)} model(s), floor {self.floor['level']} {self.floor['status']})")

    def tables(self) -> dict[str, Sequence[Mapping[str, object]]]:
        """File name (under matrix/) -> rows, in the order the HTML shows them (probe_statistics is not one of them:
        the reporter writes it beside cells.csv)."""
        return {"notes.csv": self.notes, "quant_levels.csv": self.levels, "cheapest_quant.csv": self.cheapest,
                "floor_check.csv": self.floor["per_model"], "sign_reversal.csv": self.sign,
                "within_model.csv": self.within, "asymmetry.csv": self.asymmetry,
                "asymmetry_summary.csv": self.asymmetry_summary, "pooled_correlations.csv": self.pooled,
                "repeated_measures.csv": self.rmcorr, "mixed_effects.csv": self.mixed,
                "bpw_regression.csv": self.bpw, "label_audit.csv": self.audit}


def analyse(m: Matrix, t: ScreenThresholds) -> MatrixReport:
    classified = rules.classify_cells(m, t)
    within = within_model(m)
    asym = asymmetry(m, t)
    return MatrixReport(matrix=m, thresholds=t, classified=classified, within=within, sign=sign_reversals(m, within),
                        pooled=pooled(m), rmcorr=repeated_measures_table(m), mixed=mixed_effects_table(m),
                        bpw=bpw_regression(m), asymmetry=asym, asymmetry_summary=asymmetry_summary(m, asym),
                        levels=rules.quant_levels(m, classified, t), floor=rules.floor_check(m, t),
                        cheapest=rules.cheapest_passing(m, classified, t), audit=rules.audit(m, classified),
                        notes=rules.notes(m, classified), probe_statistics=probe_statistics(m, classified))


# ---- a run's own cells --------------------------------------------------------------------------------------------

def from_cell_rows(rows: list[dict], source_file: str = "cells.csv") -> Matrix:
    """The matrix of one run: cells.csv rows (baselines carry values and no deltas; their deltas are 0), with each
    row's probe and target figures and its regime for the cross-probe statistics."""
    def present(name: str) -> bool:
        return any(finite(r.get(name)) for r in rows)

    quality = tuple(sorted(q for q in QUALITY_METRICS if present(q)))  # sorted, as an imported table's are
    # the refusal instruments that drove the run's verdicts (cells.csv screening_instruments); all when not said
    screening = {i for r in rows if not r["is_baseline"] for i in str(r.get("screening_instruments") or "").split(";")
                 if i}
    safety = tuple(sorted(s for s in REFUSAL_METRICS if present(s)
                          and (not screening or s.removeprefix("refusal_rate_") in screening)))
    cells = []
    for r in rows:
        values = {k: float(r[k]) for k in (*quality, *safety) if finite(r.get(k))}
        if r["is_baseline"]:
            deltas = {k: 0.0 for k in values}
        else:
            deltas = {k: float(r[f"{k}_delta_pp"]) for k in (*quality, *safety) if finite(r.get(f"{k}_delta_pp"))}
        bpw = r.get("bits_per_weight")
        cells.append(MatrixCell(model=r["model"], quant=r["quant"], is_baseline=bool(r["is_baseline"]), deltas=deltas,
                                values=values, bits_per_weight=float(bpw) if finite(bpw) else None,
                                format=r.get("format") or "", row_key=f"cell_id={r['cell_id']}",
                                cannot_certify=r.get("cannot_certify_reason") or "",
                                probes={k: x for k in (*PROBE_COLUMNS, *TARGET_COLUMNS)
                                        if (x := read_float(r.get(k))) is not None},
                                measured=_measured(r)))
    return Matrix(cells=sorted(cells, key=lambda c: (c.model, not c.is_baseline, c.quant)), quality_metrics=quality,
                  safety_metrics=safety, source_file=source_file, probe_columns=PROBE_COLUMNS)


def _measured(r: dict) -> Measured:
    """What the run decided on a cells.csv row (verdicts.compare): tags, per-instrument regimes, and the screening
    instruments (all three where the row does not say)."""
    screening = tuple(i for i in str(r.get("screening_instruments") or "").split(";") if i)
    return Measured(regime=r.get("regime") or "", tags=r.get("taxonomy_tags") or "", screening=screening or REFUSAL_INSTRUMENTS,
                    by_instrument={i: r[f"regime_{i}"] for i in REFUSAL_INSTRUMENTS if r.get(f"regime_{i}")})


def _plain(o):
    """A numpy scalar as the Python value it holds (JSON knows no numpy types)."""
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
