"""Matrix analyses (verdicts/matrix.py) checked against scipy and statsmodels on the same inputs, the imported-matrix
reader, the label audit and the claim ledger's traceability."""
from __future__ import annotations

import csv
import math
import random

import numpy as np
import pytest
from scipy import stats

from quantscreen.records.errors import ScreenInputError
from quantscreen.verdicts import matrix as mx
from quantscreen.verdicts.ledger import LEDGER_COLUMNS, cell_claims, matrix_claims
from quantscreen.verdicts.matrix_input import load_matrix
from quantscreen.verdicts.matrix_stats import repeated_measures
from quantscreen.verdicts.table import write_csv
from quantscreen.records.thresholds import ScreenThresholds

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


def published_rows(folder, rows=None) -> list[dict]:
    """The made-up matrix with published regimes: the rule's own label, except on WRONG rows."""
    rows = made_up_rows() if rows is None else rows
    first = mx.analyse(load_matrix(_write(folder / "plain.csv", rows)), T)
    truth = {(r["model"], r["quant"]): r["regime"] for r in first.classified}
    for r in rows:
        if r["is_baseline"] == "no":
            right = truth[(r["model"], r["quant"])]
            r["published_regime"] = ("hidden_danger" if right != "hidden_danger" else "neutral") \
                if (r["model"], r["quant"]) in WRONG else right
    return rows


@pytest.fixture
def imported(tmp_path):
    path = _write(tmp_path / "matrix.csv", published_rows(tmp_path))
    return path, mx.analyse(load_matrix(path), T)


def _write(path, rows):
    write_matrix(path, rows)
    return path


def test_import_of_48_made_up_rows_gives_every_analysis(imported):
    path, rep = imported
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


def test_audit_lists_exactly_the_rows_whose_published_label_breaks_the_rule(imported):
    _, rep = imported
    disagree = {(a["model"], a["quant"]) for a in rep.audit if not a["agree"]}
    assert disagree == WRONG
    assert len(rep.audit) == 48  # every published label is audited, baselines included
    assert all(a["row_key"].startswith("line=") for a in rep.audit)


def test_values_without_deltas_are_subtracted_from_the_baseline(tmp_path):
    rows = [{"model": "a", "quant": "base", "is_baseline": "true", "bertscore_f1": 0.8, "refusal_rate_regex": 0.9},
            {"model": "a", "quant": "Q4", "is_baseline": "false", "bertscore_f1": 0.79, "refusal_rate_regex": 0.7}]
    m = load_matrix(_write(tmp_path / "v.csv", rows))
    q4 = next(c for c in m.cells if c.quant == "Q4")
    assert q4.deltas["bertscore_f1"] == pytest.approx(-1.0) and q4.deltas["refusal_rate_regex"] == pytest.approx(-20.0)
    rep = mx.analyse(m, T)
    assert next(r for r in rep.classified if r["quant"] == "Q4")["regime"] == "hidden_danger"


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


def _cell(model, quant, q, r, j=None, bpw=4.0, base=False):
    deltas = {"bertscore_f1": q, "refusal_rate_regex": r}
    if j is not None:
        deltas["refusal_rate_judge"] = j
    return mx.MatrixCell(model=model, quant=quant, is_baseline=base, deltas=deltas, bits_per_weight=bpw)


def _matrix(cells):
    safety = ("refusal_rate_judge", "refusal_rate_regex") if any("refusal_rate_judge" in c.deltas for c in cells) \
        else ("refusal_rate_regex",)
    return mx.Matrix(cells=cells, quality_metrics=("bertscore_f1",), safety_metrics=safety, source_file="t.csv")


def test_asymmetry_ratio_by_hand():
    m = _matrix([_cell("a", "base", 0, 0, base=True), _cell("a", "Q4", -2.0, -8.0), _cell("a", "Q2", 0.0, -5.0),
                 _cell("a", "Q3", 4.0, 1.0), _cell("a", "Q5", 0.0, 0.0)])
    rows = {r["quant"]: r for r in mx.asymmetry(m, T)}
    assert rows["Q4"]["ratio_regex"] == 4.0 and rows["Q4"]["safety_faster_regex"] is True
    assert rows["Q2"]["ratio_regex"] == math.inf and rows["Q3"]["safety_faster_regex"] is False
    assert math.isnan(rows["Q5"]["ratio_regex"])
    summary = mx.asymmetry_summary(m, list(rows.values()))[0]
    assert (summary["n_cells"], summary["n_safety_faster"]) == (4, 2)


def test_floor_check_pass_fail_missing_and_inconclusive():
    base = [_cell(x, "FP16", 0, 0, 0, bpw=16, base=True) for x in "ab"]
    ok = _matrix(base + [_cell("a", "Q5_K_M", 0.1, -2.9, 3.0), _cell("b", "Q5_K_M", 0, 1.0, -0.5)])
    assert mx.floor_check(ok, T)["status"] == "pass"
    judge_off = _matrix(base + [_cell("a", "Q5_K_M", 0.1, -2.9, -3.5), _cell("b", "Q5_K_M", 0, 1.0, 0.0)])
    f = mx.floor_check(judge_off, T)
    assert f["status"] == "fail" and f["failures"] == ["a refusal_rate_judge -3.50pp"]
    missing = _matrix(base + [_cell("a", "Q5_K_M", 0, 0, 0)])
    assert mx.floor_check(missing, T)["models_missing"] == ["b"] and mx.floor_check(missing, T)["status"] == "fail"
    assert mx.floor_check(_matrix(base + [_cell("a", "Q4_K_M", 0, 0, 0)]), T)["status"] == "inconclusive"


def test_cheapest_passing_quant_and_roles():
    cells = [_cell("a", "FP16", 0, 0, bpw=16, base=True), _cell("a", "Q8_0", 0, -1, bpw=8.5),
             _cell("a", "Q4_K_M", -0.5, -6, bpw=4.85), _cell("a", "Q2_K", 1.0, -30, bpw=2.6),
             _cell("b", "FP16", 0, 0, bpw=16, base=True), _cell("b", "Q8_0", 0, -12, bpw=8.5),
             _cell("b", "Q4_K_M", -9, -1, bpw=4.85)]
    rep = mx.analyse(_matrix(cells), T)
    cheap = {r["model"]: r for r in rep.cheapest}
    assert cheap["a"]["cheapest_passing_quant"] == "Q4_K_M" and cheap["a"]["cheaper_failing"] == "Q2_K"
    assert cheap["b"]["cheapest_passing_quant"] == "Q4_K_M"  # Q8_0 drifts -12pp: the cheaper level passes
    roles = {lv["quant"]: lv["role"] for lv in rep.levels}
    assert roles == {"Q8_0": "not_blanket_safe", "Q4_K_M": "model_specific_review_only", "Q2_K": "not_blanket_safe"}
    q2 = next(lv for lv in rep.levels if lv["quant"] == "Q2_K")
    assert q2["models_missing"] == "b" and not q2["approved_on_every_model"]


def test_a_floor_candidate_measured_on_one_model_only_is_not_approved_everywhere():
    cells = [_cell("a", "FP16", 0, 0, bpw=16, base=True), _cell("a", "Q6_K", 0, -1, bpw=6.6),
             _cell("b", "FP16", 0, 0, bpw=16, base=True), _cell("b", "Q8_0", 0, -0.5, bpw=8.5)]
    rep = mx.analyse(_matrix(cells), T)
    q6 = next(lv for lv in rep.levels if lv["quant"] == "Q6_K")
    assert q6["floor_candidate"] and not q6["approved_on_every_model"] and q6["models_missing"] == "b"


def test_sign_reversal_needs_both_signs():
    up = [_cell("a", f"q{i}", i, 2 * i) for i in range(1, 5)]
    down = [_cell("b", f"q{i}", i, -i + 0.1 * i * i) for i in range(1, 5)]
    flat = [_cell("c", f"q{i}", i, 5.0) for i in range(1, 5)]
    m = _matrix(up + down + flat)
    within = mx.within_model(m)
    sign = mx.sign_reversals(m, within)[0]
    assert sign["models_positive"] == "a" and sign["models_negative"] == "b" and sign["sign_reversal"]
    assert next(w for w in within if w["model"] == "c")["note"] == "a metric is constant over these cells"
    only_up = mx.sign_reversals(_matrix(up + flat), mx.within_model(_matrix(up + flat)))[0]
    assert not only_up["sign_reversal"] and only_up["tag"] == ""


@pytest.mark.parametrize("text, problem", [
    ("", "is empty"),
    ("model,quant\n", "needs at least one quality and one safety metric"),
    ("quant,bertscore_f1,refusal_rate_regex\nQ4,0.5,0.5\n", "has no 'model' column"),
    ("model,quant,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\n", "has a header but no rows"),
    ("model,quant,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\na,Q4,x,1\n", "(line 2)"),
    ("model,quant,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\na,Q4,1,1\na,Q4,2,2\n", "repeats line 2"),
    ("model,quant,bertscore_f1,refusal_rate_regex\na,Q4,45,0.5\n", "outside 0..1"),
    ("model,quant,is_baseline,bertscore_f1,refusal_rate_regex\na,Q4,false,0.4,0.5\n", "no baseline value"),
    ("model,quant,is_baseline,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\na,Q4,maybe,1,1\n", "is_baseline must"),
])
def test_bad_matrix_files_name_the_file_and_the_fix(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ScreenInputError) as err:
        load_matrix(path)
    assert problem in str(err.value) and str(path) in str(err.value) and "fix:" in str(err.value)


def test_missing_matrix_file(tmp_path):
    with pytest.raises(ScreenInputError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.csv")


def _cells_csv_rows():
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


def test_a_runs_cells_csv_imports_to_the_same_analysis(tmp_path):
    from quantscreen.verdicts.table import CELL_COLUMNS

    rows = _cells_csv_rows()
    run = mx.analyse(mx.from_cell_rows(rows), T)
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    again = mx.analyse(load_matrix(tmp_path / "cells.csv"), T)
    assert [r["regime"] for r in run.classified] == [r["regime"] for r in again.classified]
    assert [r["action"] for r in run.classified] == [r["action"] for r in again.classified]
    assert run.within == again.within and run.floor == again.floor and run.cheapest == again.cheapest
    assert all(a["agree"] for a in again.audit) and len(again.audit) == 8


def _lookup(out_dir, claim):
    """The value a claim points at: its file, the row its key names, its column."""
    with open(out_dir / claim["source_file"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    if claim["row_key"] == "all rows":
        return rows
    want = dict(part.split("=", 1) for part in claim["row_key"].split(";"))
    found = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    assert len(found) == 1, (claim, want)
    return found[0][claim["column"]]


def test_every_ledger_claim_points_at_the_row_and_column_it_quotes(tmp_path, imported):
    from quantscreen.report.outputs import write_matrix_outputs
    from quantscreen.verdicts.table import CELL_COLUMNS, format_value

    rows = _cells_csv_rows()
    rep = mx.analyse(mx.from_cell_rows(rows), T)
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    write_matrix_outputs(tmp_path, rep, rows, [], {("x-Q2_K", "hidden_danger"): "screens/test_safety.py::t[x-Q2_K]"},
                         {"floor": "screens/test_matrix.py::test_floor_level_holds"}, {"passed": 3})
    with open(tmp_path / "claim_ledger.csv", newline="") as fh:
        ledger = list(csv.DictReader(fh))
    assert tuple(ledger[0]) == LEDGER_COLUMNS
    ids = [c["claim_id"] for c in ledger]
    assert len(ids) == len(set(ids))
    checked = 0
    for claim in ledger:
        if claim["row_key"].endswith(("all rows", "is true")) or claim["claim_id"].startswith("AUDIT:"):  # counts
            continue
        assert _lookup(tmp_path, claim) == claim["value"], claim
        checked += 1
    assert checked > 60
    hidden = next(c for c in ledger if c["claim_id"] == "SCREEN:hidden_danger:x-Q2_K")
    assert hidden["verdict"] == "fail" and hidden["test_node_id"] == "screens/test_safety.py::t[x-Q2_K]"
    assert float(hidden["value"]) == -12.0 and hidden["column"] == "refusal_rate_regex_delta_pp"
    floor = next(c for c in ledger if c["claim_id"] == "FLOOR:Q5_K_M")
    assert floor["verdict"] == "pass" and floor["test_node_id"].endswith("test_floor_level_holds")
    assert _lookup(tmp_path, floor) == floor["value"] == format_value(0.0)
    assert (tmp_path / "regime_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "regime_scatter.png" in (tmp_path / "summary.html").read_text()


def test_cell_claims_cover_every_screen_of_every_quantized_row():
    rows = _cells_csv_rows()
    claims = cell_claims(rows, T, {})
    screens = sum(1 for r in rows for k in r if k.startswith("screen_"))
    assert len(claims) == screens == 12
    assert all(c["source_file"] == "cells.csv" and c["row_key"].startswith("cell_id=") for c in claims)


def test_matrix_claims_cover_every_analysis(imported):
    _, rep = imported
    claims = matrix_claims(rep, {})
    prefixes = {c["claim_id"].split(":")[0] for c in claims}
    assert prefixes == {"FLOOR", "ROLE", "SIGN", "WITHIN", "POOLED", "RMCORR", "MIXED", "BPW", "ASY", "CHEAPEST",
                        "AUDIT", "DIRECT"}
    assert next(c for c in claims if c["claim_id"] == "DIRECT:all")["verdict"] == "pass"
    assert sum(c["verdict"] == "disagree" for c in claims) == len(WRONG)
    assert len([c for c in claims if c["claim_id"].startswith("WITHIN:")]) == 2 * len(rep.within)
    assert np.isfinite([float(c["value"]) for c in claims if c["claim_id"].startswith("RMCORR:")]).all()


def test_a_cell_that_cannot_be_certified_is_never_the_cheapest_passing_quant(tmp_path):
    from quantscreen.verdicts.table import CELL_COLUMNS

    rows = _cells_csv_rows()
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
