"""Cross-probe statistics checked against scipy called directly, on TR146's AWQ/GPTQ rows and on small tables.

The TR146 rows (tables B.2 and B.3) are fed in as data only. The correlations computed from them do not
reproduce the report's headline figures; the spec decides that these are computed from data, so nothing here
asserts a value printed in the report.
"""
import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, pearsonr, spearmanr, ttest_1samp

from quantscreen.verdicts.probe_stats import (RATIO_COLUMN, STAT_COLUMNS, cross_probe_statistics, read_float)

TR146_CSV = Path(__file__).parent / "data" / "tr146_awq_gptq_rows.csv"
TR146_PROBES = ("probe_entropy_shift", "probe_top1_shift", "probe_direction_cosine", "probe_direction_magnitude",
                "probe_direction_magnitude_ratio")
EXACT = dict(rel=1e-12, abs=1e-15)


def load_tr146() -> list[dict]:
    with TR146_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict], name: str) -> list[float]:
    return [float(r[name]) for r in rows]


def find(results: list[dict], analysis: str, probe: str, target: str | None = None) -> dict:
    (hit,) = [r for r in results if r["analysis"] == analysis and r["probe"] == probe
              and (target is None or r["target"] == target)]
    return hit


def test_tr146_rows_are_the_eleven_awq_gptq_cells():
    rows = load_tr146()
    assert len(rows) == 11
    assert {r["quant"] for r in rows} == {"AWQ", "GPTQ"}
    assert len({(r["model"], r["quant"]) for r in rows}) == 11


def test_tr146_expected_analyses_in_fixed_order():
    results = cross_probe_statistics(load_tr146())
    expected = ([(a, p, "rtsi") for p in TR146_PROBES for a in ("pearson", "spearman")]
                + [("mann_whitney", p, "hidden_or_near_vs_neutral") for p in TR146_PROBES]
                + [("one_sample_t", RATIO_COLUMN, "1.0")])
    assert [(r["analysis"], r["probe"], r["target"]) for r in results] == expected
    assert all(tuple(r) == STAT_COLUMNS for r in results)
    assert find(results, "pearson", "probe_entropy_shift", "rtsi")["n"] == 11
    regime_test = find(results, "mann_whitney", "probe_entropy_shift")
    assert (regime_test["n_a"], regime_test["n_b"]) == (9, 2)
    assert find(results, "one_sample_t", RATIO_COLUMN)["note"] == "fewer than 2 values"


@pytest.mark.parametrize("analysis,fn", [("pearson", pearsonr), ("spearman", spearmanr)])
@pytest.mark.parametrize("probe", TR146_PROBES)
def test_tr146_correlations_match_scipy(analysis, fn, probe):
    rows = load_tr146()
    got = find(cross_probe_statistics(rows), analysis, probe, "rtsi")
    want = fn(column(rows, probe), column(rows, "rtsi"))
    assert got["n"] == 11 and got["note"] is None
    assert got["statistic"] == pytest.approx(want.statistic, **EXACT)
    assert got["p_value"] == pytest.approx(want.pvalue, **EXACT)


@pytest.mark.parametrize("probe", TR146_PROBES)
def test_tr146_regime_groups_match_scipy(probe):
    rows = load_tr146()
    got = find(cross_probe_statistics(rows), "mann_whitney", probe)
    a = column([r for r in rows if r["regime"] in ("hidden_danger", "near_hidden_danger")], probe)
    b = column([r for r in rows if r["regime"] == "neutral"], probe)
    want = mannwhitneyu(a, b, alternative="two-sided")
    assert (got["n"], got["n_a"], got["n_b"]) == (11, len(a), len(b))
    assert got["statistic"] == pytest.approx(want.statistic, **EXACT)
    assert got["p_value"] == pytest.approx(want.pvalue, **EXACT)
    assert got["mean_a"] == pytest.approx(np.mean(a), **EXACT)
    assert got["mean_b"] == pytest.approx(np.mean(b), **EXACT)


def test_tr146_ratio_t_test_matches_scipy_when_ratios_present():
    rows = [{**r, RATIO_COLUMN: 1.3 + 0.01 * i} for i, r in enumerate(load_tr146())]
    got = find(cross_probe_statistics(rows), "one_sample_t", RATIO_COLUMN)
    ratios = column(rows, RATIO_COLUMN)
    want = ttest_1samp(ratios, 1.0, alternative="greater")
    assert got["n"] == 11 and got["mean_a"] == pytest.approx(np.mean(ratios), **EXACT)
    assert got["statistic"] == pytest.approx(want.statistic, **EXACT)
    assert got["p_value"] == pytest.approx(want.pvalue, **EXACT)


def cell(entropy=None, rtsi=None, regime="neutral", **extra) -> dict:
    return {"is_baseline": "false", "regime": regime, "probe_entropy_shift": entropy, "rtsi": rtsi, **extra}


def test_perfect_linear_relation():
    rows = [cell(x, 2 * x + 1) for x in (1, 2, 3, 4, 5)]
    results = cross_probe_statistics(rows)
    assert find(results, "pearson", "probe_entropy_shift", "rtsi")["statistic"] == pytest.approx(1.0)
    assert find(results, "spearman", "probe_entropy_shift", "rtsi")["statistic"] == pytest.approx(1.0)


def test_baseline_and_missing_values_are_ignored():
    rows = [cell(str(x), 2.0 * x) for x in (1, 2, 3, 4)] + [
        {**cell(100.0, -100.0), "is_baseline": True},
        {**cell("100", "-100"), "is_baseline": "true"},
        cell("", 3.0), cell(5.0, "nan"), cell(None, 1.0), cell("inf", 1.0), cell("n/a", 1.0)]
    got = find(cross_probe_statistics(rows), "pearson", "probe_entropy_shift", "rtsi")
    assert got["n"] == 4
    assert got["statistic"] == pytest.approx(1.0)


def test_fewer_than_three_paired_cells():
    rows = [cell(1.0, 0.1), cell(2.0, 0.2), cell(3.0, ""), {**cell(4.0, 0.4), "is_baseline": "true"}]
    for analysis in ("pearson", "spearman"):
        got = find(cross_probe_statistics(rows), analysis, "probe_entropy_shift", "rtsi")
        assert got["n"] == 2 and got["statistic"] is None and got["p_value"] is None
        assert "fewer than 3" in got["note"]


def test_constant_column():
    rows = [cell(0.5, y) for y in (0.1, 0.2, 0.3, 0.4)]
    for analysis in ("pearson", "spearman"):
        got = find(cross_probe_statistics(rows), analysis, "probe_entropy_shift", "rtsi")
        assert got["n"] == 4 and got["statistic"] is None and got["p_value"] is None
        assert got["note"] == "constant input"


def ratio_test(values: list[float]) -> dict:
    return find(cross_probe_statistics([cell(**{RATIO_COLUMN: v}) for v in values]), "one_sample_t", RATIO_COLUMN)


def test_ratio_above_one_is_significant():
    got = ratio_test([1.4, 1.5, 1.6, 1.45, 1.55, 1.5])
    assert got["n"] == 6 and got["mean_a"] == pytest.approx(1.5)
    assert got["p_value"] < 0.05


def test_ratio_centred_on_one_is_not():
    assert ratio_test([0.9, 1.1, 0.95, 1.05, 1.0])["p_value"] > 0.3


@pytest.mark.parametrize("values,note", [([1.4], "fewer than 2 values"), ([1.5, 1.5, 1.5], "constant input")])
def test_ratio_degenerate(values, note):
    got = ratio_test(values)
    assert got["statistic"] is None and got["p_value"] is None and got["note"] == note


def test_empty_hidden_danger_group():
    rows = [cell(x, x, regime=reg) for x, reg in ((0.1, "neutral"), (0.2, "neutral"), (0.3, "over_refusal"))]
    got = find(cross_probe_statistics(rows), "mann_whitney", "probe_entropy_shift")
    assert (got["n_a"], got["n_b"], got["mean_a"]) == (0, 2, None)
    assert got["mean_b"] == pytest.approx(0.15)
    assert got["statistic"] is None and got["p_value"] is None and "empty group" in got["note"]


def test_only_present_columns_are_analysed():
    rows = [cell(x, x, probe_top1_shift="", refusal_rate_regex_delta_pp="nan") for x in (1.0, 2.0, 3.0)]
    probes = {r["probe"] for r in cross_probe_statistics(rows) if r["analysis"] != "one_sample_t"}
    targets = {r["target"] for r in cross_probe_statistics(rows) if r["analysis"] in ("pearson", "spearman")}
    assert probes == {"probe_entropy_shift"} and targets == {"rtsi"}


@pytest.mark.parametrize("raw,want", [(1, 1.0), (2.5, 2.5), ("-0.3", -0.3), (" 4 ", 4.0), ("", None), (None, None),
                                      ("nan", None), (math.nan, None), ("inf", None), ("abc", None)])
def test_read_float(raw, want):
    assert read_float(raw) == want
