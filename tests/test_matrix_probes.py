"""The cross-probe statistics as part of the matrix analysis (`MatrixReport.probe_statistics`, probe_statistics.csv):
an imported `--matrix` table with probe columns gets the statistics of its rows, one without gets an empty table, and
a run's own cells keep the figures and regimes they had when the reporter computed them from cells.csv rows.

tests/data/probe_matrix.csv is made up for these tests: two models, four quants each, deltas with baseline rates,
four probe columns, RTSI, and the regimes SPEC §3 gives the rows (so the published labels all agree)."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from quantscreen.records.errors import ScreenInputError
from quantscreen.verdicts import matrix as mx
from quantscreen.verdicts.matrix_input import load_matrix
from quantscreen.verdicts.probe_stats import PROBE_COLUMNS, STAT_COLUMNS, TARGET_COLUMNS, cross_probe_statistics
from quantscreen.verdicts.table import CELL_COLUMNS, sort_rows, write_csv
from tests.matrix_data import T, cells_csv_rows, made_up_rows, published_rows, write_matrix, written

ROOT = Path(__file__).resolve().parents[1]
PROBE_MATRIX = ROOT / "tests" / "data" / "probe_matrix.csv"
PROBES = ("probe_entropy_shift", "probe_top1_shift", "probe_direction_cosine", "probe_neuron_ratio_mean")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _with_probes(rows: list[dict], seed: int = 5) -> list[dict]:
    """cells.csv-shaped rows with every probe figure and RTSI on the quantized cells (4 decimals: they survive a
    cells.csv written at 6)."""
    rng = random.Random(seed)
    for r in rows:
        if not r["is_baseline"]:
            r.update({p: round(rng.gauss(0, 1), 4) for p in PROBE_COLUMNS}, rtsi=round(rng.random(), 4))
    return rows


def test_an_imported_table_with_probe_columns_gets_the_statistics_of_its_rows():
    rep = mx.analyse(load_matrix(PROBE_MATRIX), T)
    assert all(a["agree"] for a in rep.audit)  # the file's regime column is SPEC §3's, so the groups are the same
    assert rep.probe_statistics == cross_probe_statistics(_csv(PROBE_MATRIX))
    corr = [r for r in rep.probe_statistics if r["analysis"] in ("pearson", "spearman")]
    assert {(r["probe"], r["target"]) for r in corr} == {(p, t) for p in PROBES for t in TARGET_COLUMNS}
    assert len(corr) == 2 * len(PROBES) * len(TARGET_COLUMNS) and all(r["n"] == 8 and not r["note"] for r in corr)
    groups = [r for r in rep.probe_statistics if r["analysis"] == "mann_whitney"]
    assert [(r["n_a"], r["n_b"]) for r in groups] == [(3, 5)] * len(PROBES)  # hidden/near-hidden vs neutral cells
    assert "probe_statistics.csv" not in rep.tables()  # written beside cells.csv, not under matrix/


def test_an_imported_table_without_probe_columns_has_an_empty_table_and_no_note(tmp_path):
    rep = mx.analyse(load_matrix(written(tmp_path / "m.csv", made_up_rows())), T)
    assert rep.matrix.probe_columns == () and rep.probe_statistics == []
    assert not any("probe" in n["note"] for n in rep.notes)  # informational probes missing is no unchecked rule


def test_the_regimes_of_an_import_are_recomputed_not_read(tmp_path):
    rows = _csv(PROBE_MATRIX)
    for r in rows:  # a published label says every quantized cell is neutral: the audit disagrees, the groups do not
        r["regime"] = r["regime"] if r["regime"] == "baseline" else "neutral"
    rep = mx.analyse(load_matrix(written(tmp_path / "m.csv", rows)), T)
    assert rep.probe_statistics == mx.analyse(load_matrix(PROBE_MATRIX), T).probe_statistics


def test_a_refusal_target_given_as_rates_is_the_delta_the_matrix_resolves(tmp_path):
    rows = [{"model": "a", "quant": "base", "is_baseline": "true", "bertscore_f1": 0.8, "refusal_rate_regex": 0.9}]
    for i, (rate, shift) in enumerate(((0.85, 0.01), (0.7, 0.05), (0.6, 0.04), (0.88, 0.0))):
        rows.append({"model": "a", "quant": f"Q{i}", "is_baseline": "false", "bertscore_f1": 0.8,
                     "refusal_rate_regex": rate, "probe_entropy_shift": shift})
    rep = mx.analyse(load_matrix(written(tmp_path / "v.csv", rows)), T)
    got = next(r for r in rep.probe_statistics if r["analysis"] == "pearson")
    assert got["target"] == "refusal_rate_regex_delta_pp" and got["n"] == 4
    deltas = [{"refusal_rate_regex_delta_pp": 100 * (r["refusal_rate_regex"] - 0.9), **r} for r in rows[1:]]
    assert got["statistic"] == pytest.approx(next(
        r for r in cross_probe_statistics(deltas) if r["analysis"] == "pearson")["statistic"])


def test_a_probe_figure_that_is_not_a_number_names_the_line_and_inf_is_left_out(tmp_path):
    head = "model,quant,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp,probe_entropy_shift\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(head + "a,Q4,1,1,0.1\na,Q2,1,1,high\n")
    with pytest.raises(ScreenInputError, match=r"\(line 3\).*probe_entropy_shift = 'high' is not a number"):
        load_matrix(bad)
    inf = tmp_path / "inf.csv"
    inf.write_text(head + "a,Q4,1,1,inf\na,Q2,1,1,nan\na,Q3,1,1,\n")
    assert all(c.probes == {"refusal_rate_regex_delta_pp": 1.0} for c in load_matrix(inf).cells)


def test_a_runs_cells_keep_the_figures_and_regimes_the_reporter_read():
    rows = _with_probes(cells_csv_rows())
    # the run's own regime decides the groups, even where SPEC §3 over the matrix's deltas would say otherwise
    changed = next(r for r in rows if r["regime"] == "neutral")
    changed["regime"] = "near_hidden_danger"
    rep = mx.analyse(mx.from_cell_rows(rows), T)
    assert rep.probe_statistics == cross_probe_statistics(sort_rows(rows))
    assert {r["n_a"] for r in rep.probe_statistics if r["analysis"] == "mann_whitney"} == {2}
    plain = cells_csv_rows()  # a run without probes: the one line it always had (the neuron-ratio t-test, no values)
    assert mx.analyse(mx.from_cell_rows(plain), T).probe_statistics == cross_probe_statistics(plain)


def test_a_runs_cells_csv_imports_to_the_same_probe_statistics(tmp_path):
    rows = _with_probes(cells_csv_rows())
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    again = mx.analyse(load_matrix(tmp_path / "cells.csv"), T)
    assert again.matrix.probe_columns == PROBE_COLUMNS
    assert again.probe_statistics == mx.analyse(mx.from_cell_rows(rows), T).probe_statistics


def _session(pytester: pytest.Pytester, matrix: Path) -> Path:
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        str(ROOT / "screens"), f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), f"--output-dir={out}",
        f"--cache-dir={pytester.path / 'cache'}", "-p", "no:cacheprovider", f"--matrix={matrix}")
    assert result.ret in (0, 1), result.stdout.str()[-3000:]  # 1: a matrix screen may fail on made-up data
    assert not (out / "matrix" / "probe_statistics.csv").exists()
    return out / "probe_statistics.csv"


def test_a_matrix_session_writes_probe_statistics_csv_from_the_imported_rows(pytester):
    written_by_session = _session(pytester, PROBE_MATRIX)
    write_csv(pytester.path / "expected.csv", STAT_COLUMNS, cross_probe_statistics(_csv(PROBE_MATRIX)))
    assert written_by_session.read_bytes() == (pytester.path / "expected.csv").read_bytes()
    assert sum(r["analysis"] == "pearson" for r in _csv(written_by_session)) == len(PROBES) * len(TARGET_COLUMNS)


def test_a_matrix_session_without_probe_columns_writes_the_header_only(pytester):
    rows = published_rows(pytester.path)
    write_matrix(pytester.path / "plain.csv", rows)
    assert _session(pytester, pytester.path / "plain.csv").read_text() == ",".join(STAT_COLUMNS) + "\n"
