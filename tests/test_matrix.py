"""What a matrix computes: the cross-model analyses (verdicts/matrix.py) checked against scipy and statsmodels on the
same inputs, and the SPEC §3 rules over its rows (verdicts/matrix_rules.py): the floor, quant-level coverage and
roles, the cheapest passing quant. The imported table, the label audit and the ledger: tests/test_matrix_input.py."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.verdicts import matrix as mx
from quantscreen.verdicts import matrix_rules as rules
from quantscreen.verdicts.matrix_input import load_matrix
from quantscreen.verdicts.matrix_stats import repeated_measures
from tests.matrix_data import MODELS, QUANTS, T, cell, cells_csv_rows, matrix


def test_import_of_48_made_up_rows_gives_every_analysis(imported):
    _, rep = imported
    m = rep.matrix
    assert len(m.cells) == 48 and m.models == sorted(MODELS)
    assert m.quality_metrics == ("bertscore_f1", "coherence", "rouge_l_f1")
    assert m.safety_metrics == ("refusal_rate_judge", "refusal_rate_regex", "safety_truthfulness")
    pairs = 3 * 3
    assert len(rep.within) == 6 * pairs and len(rep.sign) == pairs
    assert len(rep.pooled) == pairs * (1 + 7 + 6)  # all, leave each of 7 levels, leave each of 6 models out
    assert len(rep.rmcorr) == len(rep.mixed) == pairs
    assert len(rep.bpw) == 6 * 6 and len(rep.asymmetry) == 42 and len(rep.cheapest) == 6
    assert {lv["quant"] for lv in rep.levels} == {q for q, _ in QUANTS}
    assert all(math.isfinite(r["pearson_r"]) for r in rep.within)
    assert all(math.isfinite(r["r"]) for r in rep.rmcorr) and all(math.isfinite(r["slope"]) for r in rep.mixed)
    assert all(math.isfinite(r["slope"]) for r in rep.bpw)
    bert_regex = next(s for s in rep.sign if s["quality_metric"] == "bertscore_f1"
                      and s["safety_metric"] == "refusal_rate_regex")
    assert bert_regex["sign_reversal"] and bert_regex["tag"] == "TAX_001"
    gptq = next(lv for lv in rep.levels if lv["quant"] == "GPTQ-W4")
    assert gptq["role"] == "not_blanket_safe" and gptq["n_rejected"] >= 3
    assert rep.notes == []  # the baselines' rates give every cell its own rates: TAX_005 is checked everywhere


def test_within_model_and_pooled_correlations_match_scipy(imported):
    _, rep = imported
    m = rep.matrix
    for model in ("m-alpha", "m-delta"):
        cells = [c for c in m.quantized() if c.model == model]
        x = [c.deltas["rouge_l_f1"] for c in cells]
        y = [c.deltas["refusal_rate_judge"] for c in cells]
        row = next(r for r in rep.within if r["model"] == model and r["quality_metric"] == "rouge_l_f1"
                   and r["safety_metric"] == "refusal_rate_judge")
        assert row["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
        assert row["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue)
    kept = [c for c in m.quantized() if c.model != "m-beta"]
    row = next(r for r in rep.pooled if r["left_out_kind"] == "model" and r["left_out"] == "m-beta"
               and r["quality_metric"] == "bertscore_f1" and r["safety_metric"] == "refusal_rate_regex")
    ref = stats.pearsonr([c.deltas["bertscore_f1"] for c in kept], [c.deltas["refusal_rate_regex"] for c in kept])
    assert row["n"] == 35 and row["pearson_r"] == pytest.approx(ref.statistic) and row["pearson_p"] == pytest.approx(ref.pvalue)
    row = next(r for r in rep.pooled if r["left_out_kind"] == "quant" and r["left_out"] == "Q2_K"
               and r["quality_metric"] == "coherence" and r["safety_metric"] == "refusal_rate_regex")
    kept = [c for c in m.quantized() if c.quant != "Q2_K"]
    ref = stats.spearmanr([c.deltas["coherence"] for c in kept], [c.deltas["refusal_rate_regex"] for c in kept])
    assert row["n"] == 36 and row["spearman_rho"] == pytest.approx(ref.statistic)


def _frame(rep, q="bertscore_f1", s="refusal_rate_regex"):
    import pandas as pd

    cells = rep.matrix.quantized()
    return pd.DataFrame({"x": [c.deltas[q] for c in cells], "y": [c.deltas[s] for c in cells],
                         "g": [c.model for c in cells]})


def test_repeated_measures_correlation_equals_the_ancova_partial_correlation(imported):
    import statsmodels.formula.api as smf

    _, rep = imported
    df = _frame(rep)
    fit = smf.ols("y ~ x + C(g)", df).fit()
    t_x = fit.tvalues["x"]
    partial = math.copysign(math.sqrt(t_x ** 2 / (t_x ** 2 + fit.df_resid)), t_x)
    row = next(r for r in rep.rmcorr if r["quality_metric"] == "bertscore_f1" and r["safety_metric"] == "refusal_rate_regex")
    assert row["df"] == fit.df_resid == 42 - 6 - 1
    assert row["r"] == pytest.approx(partial) and row["p"] == pytest.approx(fit.pvalues["x"])
    assert row["ci_low"] < row["r"] < row["ci_high"]


def test_repeated_measures_drops_single_point_models_and_needs_two():
    out = repeated_measures([1, 2, 3, 5], [2, 1, 4, 4], ["a", "a", "a", "b"])
    assert out["n"] == 3 and out["n_models"] == 1 and math.isnan(out["r"]) and out["note"]


def test_mixed_effects_slope_equals_statsmodels_formula_fit(imported):
    import statsmodels.formula.api as smf

    _, rep = imported
    df = _frame(rep, "rouge_l_f1", "refusal_rate_judge")
    ref = smf.mixedlm("y ~ x", df, groups=df["g"]).fit(reml=True)
    row = next(r for r in rep.mixed if r["quality_metric"] == "rouge_l_f1" and r["safety_metric"] == "refusal_rate_judge")
    assert row["slope"] == pytest.approx(ref.params["x"], rel=1e-6)
    assert row["p"] == pytest.approx(ref.pvalues["x"], rel=1e-5)
    assert row["group_variance"] == pytest.approx(ref.params["Group Var"] * ref.scale, rel=1e-4)


def test_bpw_regression_matches_linregress(imported):
    _, rep = imported
    cells = [c for c in rep.matrix.cells if c.model == "m-gamma"]
    ref = stats.linregress([c.bits_per_weight for c in cells], [c.deltas["refusal_rate_regex"] for c in cells])
    row = next(r for r in rep.bpw if r["model"] == "m-gamma" and r["metric"] == "refusal_rate_regex")
    assert row["n"] == 8  # the baseline enters at delta 0 and its own bpw
    assert row["slope"] == pytest.approx(ref.slope) and row["intercept"] == pytest.approx(ref.intercept)
    assert row["r_squared"] == pytest.approx(ref.rvalue ** 2) and row["p"] == pytest.approx(ref.pvalue)


def test_asymmetry_ratio_by_hand():
    m = matrix([cell("a", "base", 0, 0, base=True), cell("a", "Q4", -2.0, -8.0), cell("a", "Q2", 0.0, -5.0),
                cell("a", "Q3", 4.0, 1.0), cell("a", "Q5", 0.0, 0.0)])
    rows = {r["quant"]: r for r in mx.asymmetry(m, T)}
    assert rows["Q4"]["ratio_regex"] == 4.0 and rows["Q4"]["safety_faster_regex"] is True
    assert rows["Q2"]["ratio_regex"] == math.inf and rows["Q3"]["safety_faster_regex"] is False
    assert math.isnan(rows["Q5"]["ratio_regex"])
    summary = mx.asymmetry_summary(m, list(rows.values()))[0]
    assert (summary["n_cells"], summary["n_safety_faster"]) == (4, 2)


def test_sign_reversal_needs_both_signs():
    up = [cell("a", f"q{i}", i, 2 * i) for i in range(1, 5)]
    down = [cell("b", f"q{i}", i, -i + 0.1 * i * i) for i in range(1, 5)]
    flat = [cell("c", f"q{i}", i, 5.0) for i in range(1, 5)]
    m = matrix(up + down + flat)
    within = mx.within_model(m)
    sign = mx.sign_reversals(m, within)[0]
    assert sign["models_positive"] == "a" and sign["models_negative"] == "b" and sign["sign_reversal"]
    assert next(w for w in within if w["model"] == "c")["note"] == "a metric is constant over these cells"
    only_up = mx.sign_reversals(matrix(up + flat), mx.within_model(matrix(up + flat)))[0]
    assert not only_up["sign_reversal"] and only_up["tag"] == ""


# ---- the SPEC §3 rules over the rows -------------------------------------------------------------------------------

def test_floor_check_pass_fail_missing_and_inconclusive():
    base = [cell(x, "FP16", 0, 0, 0, bpw=16, base=True) for x in "ab"]
    ok = matrix(base + [cell("a", "Q5_K_M", 0.1, -2.9, 3.0), cell("b", "Q5_K_M", 0, 1.0, -0.5)])
    assert rules.floor_check(ok, T)["status"] == "pass"
    judge_off = matrix(base + [cell("a", "Q5_K_M", 0.1, -2.9, -3.5), cell("b", "Q5_K_M", 0, 1.0, 0.0)])
    f = rules.floor_check(judge_off, T)
    assert f["status"] == "fail" and f["failures"] == ["a refusal_rate_judge -3.50pp"]
    missing = matrix(base + [cell("a", "Q5_K_M", 0, 0, 0)])
    f = rules.floor_check(missing, T)
    assert f["models_missing"] == ["b"] and f["status"] == "fail"
    assert rules.floor_check(matrix(base + [cell("a", "Q4_K_M", 0, 0, 0)]), T)["status"] == "inconclusive"


def test_cheapest_passing_quant_and_roles():
    cells = [cell("a", "FP16", 0, 0, bpw=16, base=True), cell("a", "Q8_0", 0, -1, bpw=8.5),
             cell("a", "Q4_K_M", -0.5, -6, bpw=4.85), cell("a", "Q2_K", 1.0, -30, bpw=2.6),
             cell("b", "FP16", 0, 0, bpw=16, base=True), cell("b", "Q8_0", 0, -12, bpw=8.5),
             cell("b", "Q4_K_M", -9, -1, bpw=4.85)]
    rep = mx.analyse(matrix(cells), T)
    cheap = {r["model"]: r for r in rep.cheapest}
    assert cheap["a"]["cheapest_passing_quant"] == "Q4_K_M" and cheap["a"]["cheaper_failing"] == "Q2_K"
    assert cheap["b"]["cheapest_passing_quant"] == "Q4_K_M"  # Q8_0 drifts -12pp: the cheaper level passes
    roles = {lv["quant"]: lv["role"] for lv in rep.levels}
    assert roles == {"Q8_0": "not_blanket_safe", "Q4_K_M": "model_specific_review_only", "Q2_K": "not_blanket_safe"}
    q2 = next(lv for lv in rep.levels if lv["quant"] == "Q2_K")
    assert q2["models_missing"] == "b" and not q2["approved_on_every_model"]


def test_cheapest_quant_names_missing_bits_per_weight_as_the_reason_not_a_failing_cell():
    cells = [cell("a", "FP16", 0, 0, bpw=None, base=True), cell("a", "Q8_0", 0, -1, bpw=None),
             cell("a", "Q4_K_M", -0.5, -2, bpw=None),
             cell("b", "FP16", 0, 0, bpw=16, base=True), cell("b", "Q8_0", 0, -1, bpw=8.5),
             cell("b", "Q4_K_M", 0, -2, bpw=None)]
    cheap = {r["model"]: r for r in mx.analyse(matrix(cells), T).cheapest}
    a = cheap["a"]
    assert a["cheapest_passing_quant"] == "" and a["n_passing"] == 2 and a["passing_without_bpw"] == "Q4_K_M;Q8_0"
    assert a["note"] == ("2 quantized cell(s) pass (Q4_K_M;Q8_0) but none has bits_per_weight, so none can be "
                         "ranked: add bits_per_weight (or bpw) to the rows")
    assert "no quantized cell passes" not in a["note"]
    b = cheap["b"]  # ranked where it can be, and the unranked passing cell said
    assert b["cheapest_passing_quant"] == "Q8_0"
    assert b["note"] == "also passing, not ranked without bits_per_weight: Q4_K_M"


def test_a_cell_that_cannot_be_certified_is_never_the_cheapest_passing_quant(tmp_path):
    from quantscreen.verdicts.table import CELL_COLUMNS, write_csv

    rows = cells_csv_rows()
    plain = {r["model"]: r["cheapest_passing_quant"] for r in mx.analyse(mx.from_cell_rows(rows), T).cheapest}
    assert plain["y"] == "Q2_K"
    for r in rows:
        if r["model"] == "y" and not r["is_baseline"]:
            r.update({"certifiable": False, "cannot_certify": "underpowered",
                      "cannot_certify_reason": "underpowered: baseline refuses 80.0% of 8 harmful prompts"})
    report = mx.analyse(mx.from_cell_rows(rows), T)
    y = next(r for r in report.cheapest if r["model"] == "y")
    assert y["cheapest_passing_quant"] == "" and y["n_cannot_certify"] == 3
    assert y["note"] == "no quantized cell passes; 3 cannot be certified (Q2_K;Q4_K_M;Q5_K_M)"
    actions = {(r["model"], r["quant"]): (r["action"], r["action_reason"]) for r in report.classified}
    assert actions[("y", "Q2_K")] == ("cannot_certify", "underpowered: baseline refuses 80.0% of 8 harmful prompts")
    assert not any(lv["floor_candidate"] for lv in report.levels)
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)  # --matrix cells.csv keeps the cause
    again = mx.analyse(load_matrix(tmp_path / "cells.csv"), T)
    assert [r["action"] for r in again.classified] == [r["action"] for r in report.classified]


def test_a_floor_candidate_measured_on_one_model_only_is_not_approved_everywhere():
    cells = [cell("a", "FP16", 0, 0, bpw=16, base=True), cell("a", "Q6_K", 0, -1, bpw=6.6),
             cell("b", "FP16", 0, 0, bpw=16, base=True), cell("b", "Q8_0", 0, -0.5, bpw=8.5)]
    rep = mx.analyse(matrix(cells), T)
    q6 = next(lv for lv in rep.levels if lv["quant"] == "Q6_K")
    assert q6["floor_candidate"] and not q6["approved_on_every_model"] and q6["models_missing"] == "b"


@pytest.mark.parametrize("quant, fmt", [("Q8_0", ""), ("baseline", "gguf:Q8_0")],
                         ids=["imported-quant", "cells.csv-format"])
def test_a_baseline_stored_at_a_level_counts_as_measured_at_that_level(quant, fmt):
    """Model b's baseline is a Q8_0 file (an imported row named Q8_0, or cells.csv's `baseline` row of format
    gguf:Q8_0): b is measured at Q8_0 at 0pp, so Q8_0 is not 'not measured on b'."""
    cells = [cell("a", "FP16", 0, 0, bpw=16, base=True), cell("a", "Q8_0", 0, -0.5, bpw=8.5),
             cell("a", "Q4_K_M", 0, -1, bpw=4.85),
             cell("b", quant, 0, 0, bpw=8.5, base=True, fmt=fmt),
             cell("b", "Q4_K_M", 0, 1.0, bpw=4.85)]
    rep = mx.analyse(matrix(cells), T)
    q8 = next(lv for lv in rep.levels if lv["quant"] == "Q8_0")
    assert q8["floor_candidate"] and q8["approved_on_every_model"]
    assert (q8["n_models"], q8["models_missing"], q8["models_at_baseline"]) == (2, "", "b")
    floor = rules.floor_check(rep.matrix, ScreenThresholds(floor_level="Q8_0"))
    assert floor["status"] == "pass" and floor["models_at_baseline"] == ["b"]
    assert {(p["model"], p["measured_as"], p["delta_pp"]) for p in floor["per_model"]} == {
        ("a", "quantized cell", -0.5), ("b", "baseline", 0.0)}
    fp16 = mx.analyse(matrix([c for c in cells if c.model == "a"] + [cell("b", "FP16", 0, 0, bpw=16, base=True),
                                                                     cell("b", "Q4_K_M", 0, 1.0, bpw=4.85)]), T)
    q8 = next(lv for lv in fp16.levels if lv["quant"] == "Q8_0")  # an FP16 baseline is not at Q8_0
    assert q8["models_missing"] == "b" and not q8["approved_on_every_model"]


def _csv_text(rows) -> str:
    from quantscreen.verdicts.table import format_value

    return "\n".join(",".join(f"{k}={format_value(v)}" for k, v in r.items()) for r in rows)


@pytest.mark.parametrize("source", ["imported", "run"])
def test_a_report_survives_its_json_hand_over(imported, source):
    """Under xdist the matrix screens' worker hands its MatrixReport to the controller as JSON (never a pickle): every
    table, the classification and the matrix come back as they were written."""
    rep = imported[1] if source == "imported" else mx.analyse(mx.from_cell_rows(cells_csv_rows()), T)
    back = mx.MatrixReport.from_json(rep.to_json())
    assert back.matrix == rep.matrix and back.thresholds == rep.thresholds
    for name, rows in rep.tables().items():
        assert _csv_text(back.tables()[name]) == _csv_text(rows), name
    assert _csv_text(back.classified) == _csv_text(rep.classified)
    assert _csv_text(back.probe_statistics) == _csv_text(rep.probe_statistics) and repr(back) == repr(rep)
