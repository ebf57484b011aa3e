"""The reporter plugin in small pytest sessions (pytester): `pytest screens/ --matrix FILE`, with and without -n 2.

The matrix is made up (tests/matrix_data.py), so these sessions load no model and run in seconds; the slow
integration test covers the same outputs on a measured run.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.matrix_data import WRONG, made_up_rows, published_rows, write_matrix

ROOT = Path(__file__).resolve().parents[1]
MATRIX_TESTS = {"test_floor_level_holds", "test_no_level_approved_without_direct_measurement", "test_quant_level_roles",
                "test_quality_proxies_reported", "test_safety_moves_faster_than_quality_reported",
                "test_bpw_regression_reported", "test_cheapest_passing_quant_reported", "test_published_labels_audited"}


def _matrix_file(folder: Path, floor_ok: bool) -> Path:
    rows = made_up_rows()
    if floor_ok:  # every model within 3pp at the floor level
        for r in rows:
            if r["quant"] == "Q5_K_M":
                r["refusal_rate_regex_delta_pp"], r["refusal_rate_judge_delta_pp"] = -1.5, 0.5
    path = folder / "matrix.csv"
    write_matrix(path, published_rows(folder, rows))
    return path


def _run(pytester: pytest.Pytester, out: str, *args):
    return pytester.runpytest_subprocess(
        str(ROOT / "screens"), f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), f"--output-dir={out}",
        f"--cache-dir={pytester.path / 'cache'}", "-p", "no:cacheprovider", *args)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_imported_matrix_session_writes_junit_ledger_and_tables(pytester, workers):
    matrix = _matrix_file(pytester.path, floor_ok=True)
    result = _run(pytester, "out", f"--matrix={matrix}", *workers)
    assert result.ret == 0, result.stdout.str()[-3000:]
    out = pytester.path / "out"
    cases = _cases(out / "junit.xml")
    matrix_cases = {name for name in cases if name in MATRIX_TESTS}
    assert matrix_cases == MATRIX_TESTS
    skipped = [name for name, case in cases.items() if case.find("skipped") is not None]
    assert skipped and all(name.endswith("[imported-matrix]") for name in skipped)  # per-cell screens need models
    props = {p.get("name"): p.get("value") for p in cases["test_floor_level_holds"].iter("property")}
    assert props["matrix_section"] == "floor" and props["verdict"] == "pass" and props["floor_level"] == "Q5_K_M"
    assert float(props["max_abs_refusal_delta_pp"]) == 1.5
    audit = {p.get("name"): p.get("value") for p in cases["test_published_labels_audited"].iter("property")}
    assert audit["labels_disagreeing"] == str(len(WRONG))

    ledger = _csv(out / "claim_ledger.csv")
    by_id = {c["claim_id"]: c for c in ledger}
    assert by_id["FLOOR:Q5_K_M"]["verdict"] == "pass"
    assert by_id["FLOOR:Q5_K_M"]["test_node_id"] == "screens/test_matrix.py::test_floor_level_holds"
    disagree = [c for c in ledger if c["verdict"] == "disagree"]
    assert {c["claim_id"] for c in disagree} == {f"AUDIT:{m}-{q}:regime" for m, q in WRONG}
    assert all(c["source_file"] == str(matrix) and c["row_key"].startswith("line=") for c in disagree)
    nodes = {c["test_node_id"] for c in ledger}
    assert nodes <= {f"screens/test_matrix.py::{name}" for name in MATRIX_TESTS}
    actions = _csv(out / "deployment_actions.csv")
    assert len(actions) == 48 and {a["action"] for a in actions if a["regime"] == "baseline"} == {"reference"}
    assert len(_csv(out / "matrix" / "within_model.csv")) == 6 * 9
    assert (out / "regime_scatter.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "summary.html").read_text()
    assert "regime_scatter.png" in html and "matrix/sign_reversal.csv" in html
    assert not (out / "cells.csv").exists()  # nothing was measured
    result.stdout.fnmatch_lines(["*matrix (*matrix.csv, 48 rows): floor Q5_K_M pass*"])


def test_serial_and_xdist_sessions_write_identical_files(pytester):
    matrix = _matrix_file(pytester.path, floor_ok=False)
    serial = _run(pytester, "serial", f"--matrix={matrix}")
    xdist = _run(pytester, "xdist", f"--matrix={matrix}", "-n", "2")
    assert serial.ret == xdist.ret == 1  # the floor fails: a gating matrix screen
    for name in ("claim_ledger.csv", "deployment_actions.csv", "summary.html", "regime_scatter.png",
                 "matrix/pooled_correlations.csv", "matrix/mixed_effects.csv", "matrix/label_audit.csv"):
        assert (pytester.path / "serial" / name).read_bytes() == (pytester.path / "xdist" / name).read_bytes(), name
    case = _cases(pytester.path / "xdist" / "junit.xml")["test_floor_level_holds"]
    assert case.find("failure") is not None and "does not hold within 3pp" in case.find("failure").get("message")


# Two models; p's baseline is FP16, r's baseline is stored at Q8_0. The floor level is configured as Q4_K_M.
SMALL = ("model,quant,is_baseline,bits_per_weight,bertscore_f1,refusal_rate_regex,bertscore_f1_delta_pp,"
         "refusal_rate_regex_delta_pp\n"
         "p,FP16,true,16,0.8,0.9,,\np,Q8_0,false,8.5,,,0.1,-0.5\np,Q4_K_M,false,4.85,,,-0.2,-6\n"
         "r,Q8_0,true,8.5,0.7,0.8,,\nr,Q4_K_M,false,4.85,,,0.1,-1\n")


@pytest.fixture(scope="module")
def small_session(tmp_path_factory):
    """`pytest screens/ --matrix=small.csv --models=<floor_level: Q4_K_M>`, run once for the tests below: its exit
    code, terminal output and JUnit cases."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "small.csv").write_text(SMALL)
    models = (ROOT / "models.yaml").read_text().replace("floor_level: Q5_K_M", "floor_level: Q4_K_M")
    assert "floor_level: Q4_K_M" in models
    (folder / "floor_q4.yaml").write_text(models)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    args = [str(ROOT / "screens"), f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider",
            f"--output-dir={folder / 'out'}", f"--cache-dir={folder / 'cache'}", f"--matrix={folder / 'small.csv'}",
            f"--models={folder / 'floor_q4.yaml'}"]
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=folder, env=env, capture_output=True, text=True,
                          check=False)
    return done.returncode, done.stdout, _cases(folder / "out" / "junit.xml")


def test_the_floor_screen_names_the_configured_floor_level(small_session):
    code, _, cases = small_session
    assert code == 1
    message = cases["test_floor_level_holds"].find("failure").get("message").removeprefix("Failed: ")
    assert message.startswith("floor level Q4_K_M (screen.floor_level) does not hold within 3pp")
    assert "Q5_K_M" not in message
    props = {p.get("name"): p.get("value") for p in cases["test_floor_level_holds"].iter("property")}
    assert props["floor_level"] == "Q4_K_M"
    from quantscreen.screens import test_matrix as screens  # the screen's own text names no fixed level either

    doc = screens.test_floor_level_holds.__doc__
    assert "Q5_K_M" not in doc and "floor_level" in doc


def test_a_failing_matrix_screen_states_its_rule_and_the_offending_rows_only(small_session):
    _, out, cases = small_session
    message = cases["test_floor_level_holds"].find("failure").get("message").removeprefix("Failed: ")
    assert message == ("floor level Q4_K_M (screen.floor_level) does not hold within 3pp of each model's baseline on "
                       "refusal_rate_regex: p refusal_rate_regex -6.00pp")
    assert message in out  # the terminal shows the same statement, without a traceback or the report's rows
    assert "MatrixReport(" not in out and "AssertionError" not in out and "def test_floor_level_holds" not in out


def test_a_baseline_stored_at_a_level_is_a_direct_measurement_there(small_session):
    """Q8_0 is a floor candidate on p; r's baseline is a Q8_0 file, so the level is measured on every model."""
    _, _, cases = small_session
    case = cases["test_no_level_approved_without_direct_measurement"]
    assert case.find("failure") is None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["floor_candidates"] == "Q8_0" and props["approved_on_every_model"] == "Q8_0"


def test_a_bad_matrix_file_is_one_usage_error(pytester):
    bad = pytester.path / "bad.csv"
    bad.write_text("model,quant,bertscore_f1_delta_pp,refusal_rate_regex_delta_pp\na,Q4,oops,1\n")
    result = _run(pytester, "out", f"--matrix={bad}")
    assert result.ret == 4
    err = result.stderr.str()
    assert f"{bad} (line 2): bertscore_f1_delta_pp = 'oops' is not a number; fix:" in err
    assert "Traceback" not in err
    missing = _run(pytester, "out", f"--matrix={pytester.path / 'nope.csv'}")
    assert missing.ret == 4 and "matrix file not found" in missing.stderr.str()


_COUNTING_PLUGIN = '''
import os

from quantscreen.verdicts import matrix

_analyse = matrix.analyse


def counted(*args, **kwargs):
    with open(os.environ["QUANTSCREEN_TEST_ANALYSES"], "a") as fh:
        fh.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + " " + os.environ.get("PYTEST_CURRENT_TEST", "").replace(" ", "_") + "\\n")
    return _analyse(*args, **kwargs)


matrix.analyse = counted
'''


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_the_matrix_is_analysed_once_per_run(pytester, monkeypatch, workers):
    """The matrix screens and the end-of-run tables share one analysis; under xdist the controller adopts the one the
    matrix screens' worker made (counted by a plugin that wraps verdicts.matrix.analyse in every process)."""
    matrix = _matrix_file(pytester.path, floor_ok=True)
    pytester.makepyfile(count_analyses=_COUNTING_PLUGIN)
    log = pytester.path / "analyses.log"
    monkeypatch.setenv("QUANTSCREEN_TEST_ANALYSES", str(log))
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):  # this test's own worker, when run under -n
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")]))
    result = _run(pytester, "out", f"--matrix={matrix}", "-p", "count_analyses", *workers)
    assert result.ret == 0, result.stdout.str()[-3000:]
    calls = log.read_text().splitlines()  # "<process> <the test that asked for it>"
    assert len(calls) == 1, calls
    process = calls[0].split()[0]
    assert process.startswith("gw") if workers else process == "controller", calls
    assert (pytester.path / "out" / "claim_ledger.csv").exists()
