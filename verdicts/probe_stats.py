"""Cross-probe statistics over the cells of a matrix: do the mechanistic probes track the safety targets?

Informational only: mechanistic probes never gate a deploy (SPEC §4). Every figure is computed from the cell
table itself, never copied from the reports, so a report's headline correlation is only as good as the rows
behind it.

Rows are dicts as in cells.csv. Values may be floats, ints, numeric strings, "", None or "nan"; baseline rows
are ignored. Each analysis yields one dict with the STAT_COLUMNS keys (None where not applicable).

`verdicts.matrix.analyse` runs them over its matrix (a run's cells, or an imported `--matrix` table with probe
columns) into `MatrixReport.probe_statistics`, which the reporter writes as probe_statistics.csv.
"""
from __future__ import annotations

import math
from statistics import fmean
from typing import cast

from scipy.stats import mannwhitneyu, pearsonr, spearmanr, ttest_1samp

from quantscreen.verdicts.matrix_rows import ProbeStatRow
from quantscreen.verdicts.regimes import HIDDEN, NEAR, NEUTRAL

PROBE_COLUMNS = ("probe_entropy_shift", "probe_top1_shift", "probe_top5_shift", "probe_gini_shift",
                 "probe_logit_range_shift", "probe_ece_shift", "probe_direction_cosine", "probe_direction_magnitude",
                 "probe_direction_magnitude_ratio", "probe_neuron_ratio_mean")
TARGET_COLUMNS = ("rtsi", "refusal_rate_regex_delta_pp", "refusal_rate_judge_delta_pp")
RATIO_COLUMN = "probe_neuron_ratio_mean"
STAT_COLUMNS = ("analysis", "probe", "target", "n", "statistic", "p_value", "n_a", "n_b", "mean_a", "mean_b", "note")

GROUP_A_REGIMES = (HIDDEN, NEAR)
GROUP_B_REGIMES = (NEUTRAL,)
REGIME_TARGET = "hidden_or_near_vs_neutral"
RATIO_NULL = 1.0
CORRELATIONS = (("pearson", pearsonr), ("spearman", spearmanr))


def read_float(v) -> float | None:
    """A finite float, or None for anything that is not one ("", None, "nan", inf, unparseable)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def cross_probe_statistics(rows: list[dict]) -> list[ProbeStatRow]:
    """Correlations of each probe with each target, the regime-group test per probe, and the neuron-ratio t-test."""
    cells = [r for r in rows if not _is_baseline(r)]
    probes = _present(cells, PROBE_COLUMNS)
    targets = _present(cells, TARGET_COLUMNS)
    out = [_correlation(name, fn, cells, probe, target)
           for probe in probes for target in targets for name, fn in CORRELATIONS]
    out += [_regime_groups(cells, probe) for probe in probes]
    out.append(_ratio_above_one(cells))
    return out


def _is_baseline(row: dict) -> bool:
    return str(row.get("is_baseline")).strip().lower() in ("true", "1")


def _present(cells: list[dict], columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if any(read_float(r.get(c)) is not None for r in cells)]


def _values(cells: list[dict], column: str) -> list[float]:
    return [x for x in (read_float(r.get(column)) for r in cells) if x is not None]


def _result(analysis: str, probe: str | None, target: str, **fields) -> ProbeStatRow:
    return cast(ProbeStatRow, {**dict.fromkeys(STAT_COLUMNS), "analysis": analysis, "probe": probe, "target": target,
                               **fields})


def _is_constant(values: list[float]) -> bool:
    return len(set(values)) == 1


def _correlation(analysis: str, fn, cells: list[dict], probe: str, target: str) -> ProbeStatRow:
    pairs = [(x, y) for x, y in ((read_float(r.get(probe)), read_float(r.get(target))) for r in cells)
             if x is not None and y is not None]
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(pairs) < 3:
        return _result(analysis, probe, target, n=len(pairs), note="fewer than 3 cells with both values")
    if _is_constant(xs) or _is_constant(ys):
        return _result(analysis, probe, target, n=len(pairs), note="constant input")
    res = fn(xs, ys)
    return _result(analysis, probe, target, n=len(pairs), statistic=float(res.statistic), p_value=float(res.pvalue))


def _regime_groups(cells: list[dict], probe: str) -> ProbeStatRow:
    a = _values([r for r in cells if r.get("regime") in GROUP_A_REGIMES], probe)
    b = _values([r for r in cells if r.get("regime") in GROUP_B_REGIMES], probe)
    groups = dict(n=len(a) + len(b), n_a=len(a), n_b=len(b),
                  mean_a=fmean(a) if a else None, mean_b=fmean(b) if b else None)
    if not a or not b:
        return _result("mann_whitney", probe, REGIME_TARGET, **groups,
                       note="empty group: needs cells in hidden/near-hidden danger and in neutral")
    res = mannwhitneyu(a, b, alternative="two-sided")
    return _result("mann_whitney", probe, REGIME_TARGET, **groups,
                   statistic=float(res.statistic), p_value=float(res.pvalue))


def _ratio_above_one(cells: list[dict]) -> ProbeStatRow:
    """Do safety neurons absorb disproportionate quantization error (mean ratio > 1)?"""
    values = _values(cells, RATIO_COLUMN)
    fields = dict(n=len(values), mean_a=fmean(values) if values else None)
    target = str(RATIO_NULL)
    if len(values) < 2:
        return _result("one_sample_t", RATIO_COLUMN, target, **fields, note="fewer than 2 values")
    if _is_constant(values):
        return _result("one_sample_t", RATIO_COLUMN, target, **fields, note="constant input")
    res = ttest_1samp(values, RATIO_NULL, alternative="greater")
    return _result("one_sample_t", RATIO_COLUMN, target, **fields,
                   statistic=float(res.statistic), p_value=float(res.pvalue))
