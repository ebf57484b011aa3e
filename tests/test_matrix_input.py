"""A matrix from outside the run (`--matrix FILE`, verdicts/matrix_input.py): the reader and its one-line errors, the
published labels it audits (short action names included), what a delta-only table cannot check and how the report
says so, a run's own cells.csv read back, and the claim ledger's traceability. The analyses: tests/test_matrix.py."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from quantscreen.records.errors import ScreenInputError
from quantscreen.verdicts import matrix as mx
from quantscreen.verdicts.ledger import LEDGER_COLUMNS, cell_claims, matrix_claims
from quantscreen.verdicts.matrix_input import load_matrix
from quantscreen.verdicts.table import write_csv
from tests.matrix_data import WRONG, T, cells_csv_rows, made_up_rows, written


def test_audit_lists_exactly_the_rows_whose_published_label_breaks_the_rule(imported):
    _, rep = imported
    disagree = {(a["model"], a["quant"]) for a in rep.audit if not a["agree"]}
    assert disagree == WRONG
    assert len(rep.audit) == 48  # every published label is audited, baselines included
    assert all(a["row_key"].startswith("line=") for a in rep.audit)


SHORT = {"reject_hidden_danger": "reject", "manual_review_measurement_risk": "manual_review",
         "direct_safety_eval_required": "direct_safety_eval", "reject_severe_safety_drift": "reject_severe_drift"}


def _with_divergent_cell(rows: list[dict]) -> list[dict]:
    """m-alpha Q6_K: quality -6pp, regex -2pp, judge -30pp: no danger zone, but the instruments' rates part by 25pp
    (TAX_005), so the recomputed action is manual_review_measurement_risk."""
    for r in rows:
        if (r["model"], r["quant"]) == ("m-alpha", "Q6_K"):
            r.update({"bertscore_f1_delta_pp": -6.0, "refusal_rate_regex_delta_pp": -2.0,
                      "refusal_rate_judge_delta_pp": -30.0})
    return rows


def test_published_short_action_names_are_audited_as_the_actions_they_stand_for(tmp_path):
    rows = _with_divergent_cell(made_up_rows())
    truth = mx.analyse(load_matrix(written(tmp_path / "plain.csv", rows)), T)
    recomputed = {(r["model"], r["quant"]): r["action"] for r in truth.classified}
    assert set(SHORT) <= set(recomputed.values())  # every short name is exercised
    for r in rows:
        action = recomputed[(r["model"], r["quant"])]
        r["published_action"] = SHORT.get(action, action)
    rep = mx.analyse(load_matrix(written(tmp_path / "short.csv", rows)), T)
    actions = [a for a in rep.audit if a["column"] == "action"]
    assert len(actions) == 48 and all(a["agree"] for a in actions)
    q6 = next(a for a in actions if (a["model"], a["quant"]) == ("m-alpha", "Q6_K"))
    assert (q6["published"], q6["published_as"], q6["recomputed"]) == (
        "manual_review", "manual_review_measurement_risk", "manual_review_measurement_risk")


def test_an_unknown_published_action_is_one_line_naming_the_file_the_value_and_the_names(tmp_path):
    rows = made_up_rows()
    rows[3]["action"] = "block"
    path = written(tmp_path / "m.csv", rows)
    with pytest.raises(ScreenInputError) as err:
        load_matrix(path)
    text = str(err.value)
    assert text.startswith(f"{path} (line 5): published action 'block' is not an action name; fix: write one of ")
    assert "reject_hidden_danger" in text and "reject (reject_hidden_danger)" in text and "\n" not in text


DELTA_ONLY = ("model,quant,is_baseline,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp,refusal_rate_judge_delta_pp\n"
              "a,base,true,0,0,0\na,Q4,false,-0.5,-2,25\na,Q2,false,-1,-3,-4\n")
WITH_RATES = ("model,quant,is_baseline,bertscore_f1_delta_pp,refusal_rate_regex,refusal_rate_judge\n"
              "a,base,true,0,0.6,0.6\na,Q4,false,-0.5,0.58,0.85\na,Q2,false,-1,0.57,0.56\n")


def test_a_delta_only_import_says_its_divergence_check_is_off(tmp_path):
    (tmp_path / "rates.csv").write_text(WITH_RATES)
    rates = mx.analyse(load_matrix(tmp_path / "rates.csv"), T)
    assert {r["quant"]: r["action"] for r in rates.classified}["Q4"] == "manual_review_measurement_risk"
    assert rates.notes == []
    (tmp_path / "deltas.csv").write_text(DELTA_ONLY)  # the same cells as deltas: the 27pp gap cannot be seen
    rep = mx.analyse(load_matrix(tmp_path / "deltas.csv"), T)
    assert {r["quant"]: r["divergence_checked"] for r in rep.classified} == {"base": None, "Q4": False, "Q2": False}
    [note] = rep.notes
    assert (note["check"], note["status"], note["cells_unchecked"]) == ("divergence", "off", 2)
    assert note["cells"] == "a-Q2;a-Q4"
    assert "manual_review_measurement_risk" in note["note"] and "refusal_rate_judge, refusal_rate_regex" in note["note"]


def test_the_divergence_note_reaches_the_matrix_tables_the_ledger_and_the_headline(tmp_path):
    from quantscreen.report.outputs import headline, imported_action_rows, write_matrix_outputs

    (tmp_path / "deltas.csv").write_text(DELTA_ONLY)
    rep = mx.analyse(load_matrix(tmp_path / "deltas.csv"), T)
    write_matrix_outputs(tmp_path / "out", rep, [], imported_action_rows(rep), {}, {}, {"passed": 8})
    [row] = _csv(tmp_path / "out" / "matrix" / "notes.csv")
    assert (row["check"], row["status"], row["cells_unchecked"]) == ("divergence", "off", "2")
    claim = next(c for c in _csv(tmp_path / "out" / "claim_ledger.csv") if c["claim_id"] == "NOTE:divergence")
    assert claim["verdict"] == "not_checked" and _lookup(tmp_path / "out", claim) == claim["value"] == "2"
    line = f"WARNING: matrix: {rep.notes[0]['note']}"
    assert headline([], [], [], rep.notes) == [line]
    assert "divergence check (TAX_005) off" in (tmp_path / "out" / "summary.html").read_text()


def test_values_without_deltas_are_subtracted_from_the_baseline(tmp_path):
    rows = [{"model": "a", "quant": "base", "is_baseline": "true", "bertscore_f1": 0.8, "refusal_rate_regex": 0.9},
            {"model": "a", "quant": "Q4", "is_baseline": "false", "bertscore_f1": 0.79, "refusal_rate_regex": 0.7}]
    m = load_matrix(written(tmp_path / "v.csv", rows))
    q4 = next(c for c in m.cells if c.quant == "Q4")
    assert q4.deltas["bertscore_f1"] == pytest.approx(-1.0) and q4.deltas["refusal_rate_regex"] == pytest.approx(-20.0)
    rep = mx.analyse(m, T)
    assert next(r for r in rep.classified if r["quant"] == "Q4")["regime"] == "hidden_danger"


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
    ("model,quant,action,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\na,Q4,approve,1,1\n", "'approve' is not"),
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


def test_a_runs_cells_csv_imports_to_the_same_analysis(tmp_path):
    from quantscreen.verdicts.table import CELL_COLUMNS

    rows = cells_csv_rows()
    run = mx.analyse(mx.from_cell_rows(rows), T)
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    again = mx.analyse(load_matrix(tmp_path / "cells.csv"), T)
    assert [r["regime"] for r in run.classified] == [r["regime"] for r in again.classified]
    assert [r["action"] for r in run.classified] == [r["action"] for r in again.classified]
    assert run.within == again.within and run.floor == again.floor and run.cheapest == again.cheapest
    assert all(a["agree"] for a in again.audit) and len(again.audit) == 8


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _lookup(out_dir, claim):
    """The value a claim points at: its file, the row its key names, its column."""
    rows = _csv(out_dir / claim["source_file"])
    if claim["row_key"] == "all rows":
        return rows
    want = dict(part.split("=", 1) for part in claim["row_key"].split(";"))
    found = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    assert len(found) == 1, (claim, want)
    return found[0][claim["column"]]


def test_every_ledger_claim_points_at_the_row_and_column_it_quotes(tmp_path):
    from quantscreen.report.outputs import write_matrix_outputs
    from quantscreen.verdicts.table import CELL_COLUMNS, format_value

    rows = cells_csv_rows()
    rep = mx.analyse(mx.from_cell_rows(rows), T)
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    write_matrix_outputs(tmp_path, rep, rows, [], {("x-Q2_K", "hidden_danger"): "screens/test_safety.py::t[x-Q2_K]"},
                         {"floor": "screens/test_matrix.py::test_floor_level_holds"}, {"passed": 3})
    ledger = _csv(tmp_path / "claim_ledger.csv")
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
    rows = cells_csv_rows()
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
