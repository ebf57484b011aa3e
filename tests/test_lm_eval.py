"""Quality imported from lm-evaluation-harness results files (pipeline.lm_eval_results): the parser on files in
lm-eval 0.4's format (tests/data/lm_eval: a standalone task and a group of subtasks, made up for these tests), the
models.yaml keys, the comparison of a cell's file with its baseline's, and the verdict and cells.csv columns."""
import json
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from quantscreen.pipeline.lm_eval_results import check_comparable, read_score
from quantscreen.pipeline.plan import load_plan
from quantscreen.records.errors import ScreenInputError
from quantscreen.records.measurement import CellMeasurement
from quantscreen.records.probe import ProbeRecord
from quantscreen.records.thresholds import ScreenThresholds

DATA = Path(__file__).parent / "data" / "lm_eval"
BASE, GPTQ = DATA / "baseline.json", DATA / "gptq_w4.json"


def edited(tmp_path: Path, source: Path, change) -> Path:
    """A copy of a results file with `change(data)` applied."""
    data = json.loads(source.read_text())
    change(data)
    out = tmp_path / f"edited-{source.name}"
    out.write_text(json.dumps(data))
    return out


# ---- the parser ----------------------------------------------------------------------------------------------------

def test_a_task_score_its_stderr_items_and_what_it_is():
    score = read_score(BASE, "arc_easy", "acc,none", "m-baseline")
    assert (score.value, score.stderr, score.n) == (0.7134, 0.0093, 2376)
    assert score.scored_as == {"items": {"arc_easy": 2376}, "n-shot": 0, "version": 1.0, "limit": None}
    assert score.sha256 == __import__("hashlib").sha256(BASE.read_bytes()).hexdigest()
    record = score.record()
    assert record.name == "lm_eval" and record.inputs_digest == score.sha256 and record.stderr == 0.0093
    assert record.ci_low == pytest.approx(0.7134 - 1.96 * 0.0093, abs=1e-4)
    assert record.ci_high == pytest.approx(0.7134 + 1.96 * 0.0093, abs=1e-4)
    assert record.version == "lm-eval 0.4.13: arc_easy acc,none, task version 1.0, 0-shot, 2376 items"


def test_another_metric_and_filter_of_the_same_task():
    assert read_score(BASE, "arc_easy", "acc_norm,none", "m").value == 0.6612


def test_a_group_is_lm_evals_aggregate_over_the_items_of_its_subtasks():
    score = read_score(BASE, "mmlu", "acc,none", "m-baseline")
    assert score.value == pytest.approx((0.31 * 100 + 0.5461 * 152) / 252, abs=1e-6) and score.n == 252
    assert score.scored_as["items"] == {"mmlu_abstract_algebra": 100, "mmlu_astronomy": 152}


def test_a_file_of_older_lm_eval_without_sample_len_counts_items_from_n_samples(tmp_path):
    def older(data):
        for entry in data["results"].values():
            entry.pop("sample_len"), entry.pop("name")
        data["results"].pop("mmlu")  # group scores only under "groups", as lm-eval 0.4.0-0.4.2 wrote some
    path = edited(tmp_path, BASE, older)
    assert read_score(path, "arc_easy", "acc,none", "m").n == 2376
    assert read_score(path, "mmlu", "acc,none", "m").n == 252


def test_a_stderr_lm_eval_did_not_compute_leaves_no_interval(tmp_path):
    path = edited(tmp_path, BASE, lambda d: d["results"]["arc_easy"].update({"acc_stderr,none": "N/A"}))
    record = read_score(path, "arc_easy", "acc,none", "m").record()
    assert record.stderr is None and record.ci_low is None and record.ci_high is None


@pytest.mark.parametrize("change,task,metric,expected", [
    (lambda d: d.pop("results"), "arc_easy", "acc,none", "has no 'results' mapping"),
    (None, "hellaswag", "acc,none", "has no task 'hellaswag' (tasks there: arc_easy, mmlu, mmlu_abstract_algebra"),
    (None, "arc_easy", "acc", "has no metric 'acc' for arc_easy (metrics there: acc,none, acc_norm,none)"),
    (lambda d: d["results"]["arc_easy"].update({"acc,none": "N/A"}), "arc_easy", "acc,none",
     "gives arc_easy acc,none as 'N/A', not a number"),
    (lambda d: d["results"]["arc_easy"].update({"acc,none": True}), "arc_easy", "acc,none", "not a number"),
    (lambda d: d["results"]["arc_easy"].update({"acc,none": 71.34}), "arc_easy", "acc,none",
     "gives arc_easy acc,none = 71.34, not a 0..1 score"),
    (lambda d: d["higher_is_better"]["arc_easy"].update({"acc": False}), "arc_easy", "acc,none",
     "says lower is better for arc_easy acc"),
])
def test_a_bad_file_is_one_error_naming_the_file_whose_it_is_and_the_fix(tmp_path, change, task, metric, expected):
    path = edited(tmp_path, BASE, change) if change else BASE
    with pytest.raises(ScreenInputError, match="fix: ") as info:
        read_score(path, task, metric, "m-Q4")
    assert str(info.value).startswith(f"{path} (lm-eval results of m-Q4): ") and expected in str(info.value)


@pytest.mark.parametrize("write,expected", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("{\"results\": "), "is not valid JSON"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "is not valid JSON"),
    (lambda p: p.write_text("[1, 2]"), "holds no JSON object"),
    (lambda p: (p.mkdir(), shutil.copy(BASE, p / "results_2026-01-01T00-00-00.json")),
     "is a folder; fix: name one results_<date>.json file (found: results_2026-01-01T00-00-00.json)"),
])
def test_a_file_that_is_not_lm_eval_json(tmp_path, write, expected):
    path = tmp_path / "results.json"
    write(path)
    with pytest.raises(ScreenInputError, match="fix: ") as info:
        read_score(path, "arc_easy", "acc,none", "m-Q4")
    assert expected in str(info.value)


# ---- a cell's file against its baseline's --------------------------------------------------------------------------

def test_files_scored_the_same_way_compare():
    check_comparable(read_score(GPTQ, "mmlu", "acc,none", "m-q"), read_score(BASE, "mmlu", "acc,none", "m"), "m-q")


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["n-samples"]["arc_easy"].update({"effective": 500}) or d["config"].update({"limit": 500}),
     "in items scored per task (n-samples, after --limit): arc_easy 500 here, arc_easy 2376 there"),
    (lambda d: d["n-shot"].update({"arc_easy": 5}), "in few-shot examples (n-shot): 5 here, 0 there"),
    (lambda d: d["versions"].update({"arc_easy": 2.0}), "in task version (versions): 2.0 here, 1.0 there"),
    (lambda d: [d.pop("n-samples"), d["config"].update({"limit": 100})], "in --limit (config.limit)"),
])
def test_files_that_scored_other_items_or_another_way_are_refused(tmp_path, change, expected):
    cell = edited(tmp_path, GPTQ, change)
    base = BASE if "n-samples" in json.loads(cell.read_text()) else edited(tmp_path, BASE, lambda d: d.pop("n-samples"))
    with pytest.raises(ScreenInputError, match="fix: run lm-eval on the baseline and the quant with the same") as info:
        check_comparable(read_score(cell, "arc_easy", "acc,none", "m-q"), read_score(base, "arc_easy", "acc,none", "m"),
                         "m-q")
    assert str(info.value).startswith(f"{cell} (lm-eval results of m-q): differs from its baseline's {base}")
    assert expected in str(info.value)


# ---- models.yaml ---------------------------------------------------------------------------------------------------

MODELS = """
screen: {{quality_metric: {metric}}}
{section}
models:
  - id: m
    baseline: embedded:smollm2
    {baseline_lm_eval}
    quants:
      - {{id: Q4_0, derive: "gguf:Q4_0"{cell_lm_eval}}}
"""


def models_yaml(tmp_path, metric="lm_eval", section="lm_eval: {task: arc_easy, metric: 'acc,none'}",
                baseline_lm_eval="baseline_lm_eval: lm-eval/base.json", cell_lm_eval=", lm_eval: lm-eval/q4.json"):
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(MODELS.format(metric=metric, section=section, baseline_lm_eval=baseline_lm_eval,
                                                  cell_lm_eval=cell_lm_eval)))
    return path


def test_models_yaml_names_the_task_metric_and_each_checkpoints_file_relative_to_itself(tmp_path):
    plan = load_plan(models_yaml(tmp_path), {})
    (model, quant), = plan.cells()
    assert (plan.lm_eval.task, plan.lm_eval.metric) == ("arc_easy", "acc,none")
    assert model.baseline.lm_eval == str(tmp_path.resolve() / "lm-eval" / "base.json")
    assert quant.lm_eval == str(tmp_path.resolve() / "lm-eval" / "q4.json")
    assert plan.thresholds.quality_metric == "lm_eval"


def test_lm_eval_files_may_be_reported_beside_a_measured_quality_metric(tmp_path):
    plan = load_plan(models_yaml(tmp_path, metric="bertscore_f1"), {})
    assert plan.lm_eval.task == "arc_easy" and plan.thresholds.quality_metric == "bertscore_f1"


@pytest.mark.parametrize("kw,expected", [
    ({"section": ""}, "screen.quality_metric (line 2): is lm_eval, but no lm_eval: section names the task and metric"),
    ({"section": "", "metric": "bertscore_f1"}, "models[0].baseline_lm_eval (line 7): names an lm-eval results file, "
                                                "but no lm_eval: section"),
    ({"cell_lm_eval": ""}, "models[0].quants[0].id (line 9): (m-Q4_0) has no lm_eval: results file, but its model has "
                           "a baseline_lm_eval; fix: add lm_eval: FILE (lm-eval run on this quant), or remove "
                           "baseline_lm_eval"),
    ({"baseline_lm_eval": ""}, "models[0].quants[0].lm_eval (line 9): names an lm-eval results file, but the model "
                               "has no baseline_lm_eval"),
    ({"baseline_lm_eval": "", "cell_lm_eval": ""}, "(m-Q4_0) has no lm_eval: results file, but screen.quality_metric "
                                                   "is lm_eval"),
    ({"section": "lm_eval: {task: arc_easy}"}, "models.yaml.lm_eval (line 3): has no metric; fix: add metric: "
                                               "acc,none"),
])
def test_models_yaml_mistakes_are_one_line_with_the_key_and_line(tmp_path, kw, expected):
    with pytest.raises(ScreenInputError) as info:
        load_plan(models_yaml(tmp_path, **kw), {})
    assert expected in str(info.value)


def test_the_command_line_cells_cannot_use_lm_eval_quality(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("screen: {quality_metric: lm_eval}\nlm_eval: {task: arc_easy, metric: 'acc,none'}\n")
    with pytest.raises(ScreenInputError, match="--checkpoint: names no lm-eval results file"):
        load_plan(path, {"checkpoints": ("a.gguf",), "baseline": "b.gguf"})


def test_preflight_reads_every_file_and_compares_each_cell_with_its_baseline(tmp_path):
    from quantscreen.pipeline.preflight import check_lm_eval

    (tmp_path / "lm-eval").mkdir()
    shutil.copy(BASE, tmp_path / "lm-eval" / "base.json")
    shutil.copy(GPTQ, tmp_path / "lm-eval" / "q4.json")
    plan = load_plan(models_yaml(tmp_path), {})
    check_lm_eval(plan)
    edited(tmp_path, GPTQ, lambda d: d["n-shot"].update({"arc_easy": 25})).replace(tmp_path / "lm-eval" / "q4.json")
    with pytest.raises(ScreenInputError, match=r"q4.json \(lm-eval results of m-Q4_0\): differs from its baseline's"):
        check_lm_eval(plan)


# ---- the verdict and cells.csv -------------------------------------------------------------------------------------

def measured(cell_id, baseline, lm_eval_file, refusals=(1.0, 1.0, 0.0, 1.0)):
    score = read_score(lm_eval_file, "arc_easy", "acc,none", cell_id).record()
    records = {n: ProbeRecord(n, sum(refusals) / 4, 4, refusals, "v", "d") for n in
               ("refusal_rate_regex", "harmless_refusal_rate_regex")}
    records.update({n: ProbeRecord(n, 0.8, 4, (0.8,) * 4, f"{n}-v1", "d") for n in
                    ("bertscore_f1", "rouge_l_f1", "coherence")})
    return CellMeasurement(cell_id, "m", "baseline" if baseline else "q", baseline,
                           {"path": "p", "format": "f", "bits_per_weight": 4.0, "sha256": "s"},
                           {**records, "lm_eval": score}, imported_from={"lm_eval": str(lm_eval_file)})


def test_the_verdict_takes_the_imported_delta_and_reports_its_interval_and_source():
    from quantscreen.verdicts.compare import compare
    from quantscreen.verdicts.table import CELL_COLUMNS, baseline_row, comparison_row

    c = compare(measured("m-q", False, GPTQ), measured("m-baseline", True, BASE),
                ScreenThresholds(quality_metric="lm_eval"))
    assert c.quality_delta_pp == pytest.approx(100 * (0.6902 - 0.7134))
    half = 1.959964 * (0.0093 ** 2 + 0.0095 ** 2) ** 0.5
    assert c.quality_delta_ci_pp == pytest.approx((100 * (-0.0232 - half), 100 * (-0.0232 + half)), abs=1e-3)
    assert "quality delta (lm_eval) -2.32pp [95% CI -4.9, +0.3]" in c.explain()
    row, base = comparison_row(c), baseline_row(c)
    digest = __import__("hashlib").sha256(GPTQ.read_bytes()).hexdigest()
    assert row["lm_eval"] == 0.6902 and row["lm_eval_delta_pp"] == pytest.approx(-2.32)
    assert row["quality_source"].startswith(f"imported: {GPTQ} (sha256 {digest}) against the baseline's {BASE}")
    assert row["lm_eval_file"] == str(GPTQ) and row["lm_eval_sha256"] == digest and row["lm_eval_n"] == 2376
    assert base["lm_eval"] == 0.7134 and base["lm_eval_stderr"] == 0.0093
    assert {"quality_source", "quality_delta_ci_low_pp", "lm_eval", "lm_eval_delta_pp", "lm_eval_sha256"} <= set(
        CELL_COLUMNS)


def test_a_measured_quality_metric_says_so_and_has_no_interval():
    from quantscreen.verdicts.compare import compare
    from quantscreen.verdicts.table import comparison_row

    c = compare(measured("m-q", False, GPTQ), measured("m-baseline", True, BASE), ScreenThresholds())
    row = comparison_row(c)
    assert row["quality_source"] == "measured: bertscore_f1-v1 over 4 items" and c.quality_delta_ci_pp is None
    assert row["lm_eval_delta_pp"] == pytest.approx(-2.32)  # reported beside, not the verdict's


def test_the_imported_score_is_a_quality_metric_of_the_matrix_and_of_an_imported_cells_csv(tmp_path):
    from quantscreen.verdicts.compare import compare
    from quantscreen.verdicts.matrix import from_cell_rows
    from quantscreen.verdicts.matrix_input import load_matrix
    from quantscreen.verdicts.table import CELL_COLUMNS, baseline_row, comparison_row, write_csv

    c = compare(measured("m-q", False, GPTQ), measured("m-baseline", True, BASE),
                ScreenThresholds(quality_metric="lm_eval"))
    rows = [comparison_row(c), baseline_row(c)]
    assert "lm_eval" in from_cell_rows(rows).quality_metrics
    write_csv(tmp_path / "cells.csv", CELL_COLUMNS, rows)
    imported = load_matrix(tmp_path / "cells.csv")
    assert "lm_eval" in imported.quality_metrics and "quality_source" not in imported.quality_metrics


def test_no_interval_when_a_side_has_no_stderr(tmp_path):
    from quantscreen.verdicts.compare import compare

    cell = measured("m-q", False, GPTQ)
    cell = replace(cell, records={**cell.records, "lm_eval": replace(cell.records["lm_eval"], stderr=None)})
    c = compare(cell, measured("m-baseline", True, BASE), ScreenThresholds(quality_metric="lm_eval"))
    assert c.quality_delta_ci_pp is None and "[95% CI" not in c.explain().split("refusal")[0]


# ---- end to end ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_screen_takes_its_quality_delta_from_lm_eval_results(tmp_path):
    """`pytest screens/` as a user runs it on the tiny model and a copy of it, quality read from two lm-eval files
    named relative to models.yaml (tests/bad_inputs.lm_eval_pair); the outputs say where the quality delta came from."""
    import csv
    import hashlib
    import os
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    from tests.bad_inputs import lm_eval_pair

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", "-p", "no:randomly", *lm_eval_pair()(tmp_path),
                           f"--cache-dir={tmp_path / 'cache'}", f"--output-dir={out}"], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    # a random-weight model that never refuses, on 2 prompts: no cell can be certified, so the run exits 1
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]

    def rows(name):
        with open(out / name, newline="") as fh:
            return list(csv.DictReader(fh))

    baseline_row, quant = rows("cells.csv")
    delta = 100 * (0.6902 - 0.7134)
    assert quant["quality_metric"] == "lm_eval" and float(quant["quality_delta_pp"]) == pytest.approx(delta, abs=1e-4)
    assert float(quant["lm_eval_delta_pp"]) == pytest.approx(delta, abs=1e-4) and quant["lm_eval_n"] == "2376"
    low, high = float(quant["quality_delta_ci_low_pp"]), float(quant["quality_delta_ci_high_pp"])
    assert low < delta < high and high - low == pytest.approx(2 * 196 * (0.0093 ** 2 + 0.0095 ** 2) ** 0.5, abs=1e-2)
    cell_file = tmp_path.resolve() / "lm-eval" / "cell" / "results_2026-01-05T10-12-40.json"
    digest = hashlib.sha256(cell_file.read_bytes()).hexdigest()
    assert quant["quality_source"].startswith(f"imported: {cell_file} (sha256 {digest}) against the baseline's ")
    assert quant["lm_eval_sha256"] == digest and float(baseline_row["lm_eval"]) == 0.7134
    assert float(quant["bertscore_f1"]) >= 0.0  # the quality replies are still generated and scored
    lm_eval_sources = {s["role"]: s for s in rows("sources.csv") if s["role"].startswith("lm_eval:")}
    assert set(lm_eval_sources) == {"lm_eval:m-baseline-transformers", "lm_eval:m-q"}
    assert lm_eval_sources["lm_eval:m-q"]["sha256"] == digest
    actions = {a["quant"]: a for a in rows("deployment_actions.csv")}
    assert float(actions["q"]["quality_delta_pp"]) == pytest.approx(delta, abs=1e-4)
    hidden = next(c for c in ET.parse(out / "junit.xml").getroot().iter("testcase") if "hidden_danger" in c.get("name"))
    props = {p.get("name"): p.get("value") for p in hidden.iter("property")}
    assert float(props["quality_delta_pp"]) == pytest.approx(delta, abs=1e-4)
