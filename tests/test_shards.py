"""`--shard K/N` and `--merge DIR ...`: the assignment rule, the records a merge refuses, and three shards of a
four-cell plan merged into the very bytes one whole run writes on the same cache."""
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from quantscreen.fixtures.shards import RECORD, parse_shard, read_records, shard_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_each_cell_goes_to_one_shard_round_robin_in_plan_order(n):
    cells = range(11)
    shares = {k: [i for i in cells if shard_of(i, n) == k] for k in range(1, n + 1)}
    assert sorted(i for share in shares.values() for i in share) == list(cells)
    assert all(share == list(range(k - 1, 11, n)) for k, share in shares.items())
    assert max(map(len, shares.values())) - min(map(len, shares.values())) <= 1


@pytest.mark.parametrize("raw, expected", [("2/3", (2, 3)), (" 1 / 1 ", (1, 1)), ("3/3", (3, 3))])
def test_a_shard_is_k_of_n(raw, expected):
    assert parse_shard(raw) == expected


@pytest.mark.parametrize("raw, why", [("0/3", "1 <= K <= N"), ("4/3", "1 <= K <= N"), ("a/b", "is not K/N"),
                                      ("3", "is not K/N"), ("1/0", "N >= 1"), ("-1/3", "is not K/N"),
                                      ("", "is not K/N")])
def test_a_bad_shard_is_one_line_with_the_fix(raw, why):
    with pytest.raises(pytest.UsageError) as exc:
        parse_shard(raw)
    message = str(exc.value)
    assert message.startswith(f"--shard {raw}: ") and why in message and "fix: " in message and "\n" not in message


def _record(folder: Path, k: int, n: int, plan: dict) -> Path:
    folder.mkdir(parents=True)
    record = {"quantscreen_shard_record": 1, "shard": k, "of": n, "plan_cells": 3, "plan": plan, "warnings": [],
              "rows": [], "flips": [], "accuracy": [], "misclassified": [], "sources": [], "outcomes": {},
              "cell_nodes": []}
    (folder / RECORD).write_text(json.dumps(record))
    return folder


PLAN = {"max_new_tokens": 4, "thresholds": {"floor_level": "Q5_K_M"}}


def test_records_come_back_in_shard_order_from_a_folder_of_artifacts(tmp_path):
    """CI download steps put each artifact in a subfolder: one --merge of their parent finds them all."""
    for k in (3, 1, 2):
        _record(tmp_path / "artifacts" / f"shard-{k}", k, 3, PLAN)
    assert [r["shard"] for r in read_records([tmp_path / "artifacts"], PLAN)] == [1, 2, 3]


@pytest.mark.parametrize("shards, plan, fragment", [
    ([(1, 3), (2, 3)], PLAN, "shard 3/3 missing from --merge"),
    ([(1, 2), (2, 2), (2, 2)], PLAN, "shard 2/2 is given twice"),
    ([(1, 2), (2, 3)], PLAN, "merge the shards of one split"),
    ([(1, 1)], {**PLAN, "thresholds": {"floor_level": "Q4_K_M"}},
     'another plan (thresholds.floor_level: "Q5_K_M" there, "Q4_K_M" here)'),
])
def test_a_merge_refuses_an_incomplete_or_mixed_set_of_shards(tmp_path, shards, plan, fragment):
    folders = [_record(tmp_path / f"s{i}", k, n, PLAN) for i, (k, n) in enumerate(shards)]
    with pytest.raises(pytest.UsageError) as exc:
        read_records(folders, plan)
    assert fragment in str(exc.value) and "fix: " in str(exc.value) and "\n" not in str(exc.value)


def test_a_folder_without_a_record_is_refused(tmp_path):
    with pytest.raises(pytest.UsageError, match=f"--merge {tmp_path}: holds no {RECORD}.*fix: "):
        read_records([tmp_path], PLAN)


# --------------------------------------------------------------------------------- end to end, on tiny models
MODELS = """
screen: {{floor_level: int4}}
judge: {{enabled: false, accuracy: {labels}}}
probes: {{enabled: false}}
kld: {{enabled: false}}
decoding: {{max_new_tokens: 4, batch_size: 4, canary_prompts: 2}}
prompts:
  harmful: {{file: {harmful}}}
  harmless: {{n: 2}}
  quality: {{n: 2}}
  benign: {{n: 2}}
models:
  - id: a
    baseline: {tmp}/a
    quants:
      - {{id: int4, path: {tmp}/a-int4}}
      - {{id: int2, path: {tmp}/a-int2}}
  - id: b
    baseline: {tmp}/b
    quants:
      - {{id: int4, path: {tmp}/b-int4}}
      - {{id: int2, path: {tmp}/b-int2}}
"""


def rounded_copy(source: Path, folder: Path, bits: int) -> None:
    """The model with every matrix rounded to a symmetric `bits`-bit grid (one scale per tensor), stored dequantized:
    a quantized checkpoint whose replies (and refusal labels) move away from its baseline's."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    weights = load_file(source / "model.safetensors")
    levels = 2 ** (bits - 1) - 1
    for name, w in weights.items():
        if w.dim() == 2:
            scale = w.abs().max() / levels
            weights[name] = (w / scale).round().clamp(-levels, levels) * scale
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three shards, then one whole run and the merge, all on one cache (each shard measures its cells and their
    baselines; the whole run reads them back)."""
    from tests.conftest import SMOL_LABELS, WORDS, build_tiny_llama

    tmp = tmp_path_factory.mktemp("shards")
    for model, seed in (("a", 0), ("b", 1)):
        build_tiny_llama(tmp / model, seed=seed)
        for bits in (4, 2):
            rounded_copy(tmp / model, tmp / f"{model}-int{bits}", bits)
    harmful = tmp / "harmful.jsonl"
    harmful.write_text("".join(json.dumps({"prompt": " ".join(WORDS[i:i + 6])}) + "\n" for i in range(0, 32, 4)))
    models = tmp / "models.yaml"
    labels = tmp / "labels.csv"  # the regex's and the classifier's accuracy, measured in every shard with a cell
    labels.write_text(SMOL_LABELS)
    models.write_text(textwrap.dedent(MODELS.format(tmp=tmp, harmful=harmful, labels=labels)))

    def screen(out: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "screens/", "-p", "no:randomly", f"--models={models}",
                               f"--cache-dir={tmp / 'cache'}", f"--output-dir={tmp / out}", *args], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    procs = {f"shard-{k}": screen(f"shards/shard-{k}", f"--shard={k}/3") for k in (1, 2, 3)}
    procs["whole"] = screen("whole")
    procs["merged"] = screen("merged", f"--merge={tmp / 'shards'}")
    procs["empty"] = screen("empty", "--shard=5/5")
    return tmp, procs


def _log(proc) -> str:
    return proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_merged_shards_write_the_bytes_of_one_whole_run(runs):
    tmp, procs = runs
    assert procs["whole"].returncode in (0, 1), _log(procs["whole"])
    assert procs["merged"].returncode == procs["whole"].returncode, _log(procs["merged"])
    whole, merged = tmp / "whole", tmp / "merged"
    names = sorted(str(p.relative_to(whole)) for p in whole.rglob("*") if p.is_file())
    for name in ("cells.csv", "deployment_actions.csv", "claim_ledger.csv", "refusal_flips.csv", "summary.html",
                 "regime_scatter.png", "matrix/floor_check.csv", "junit.xml"):
        assert name in names, names
    for name in ("cells.csv", "refusal_flips.csv", "instrument_accuracy.csv", "claim_ledger.csv"):  # rows, not headers
        assert len((whole / name).read_text().splitlines()) > 2, f"{name} holds no rows to compare"
    # junit.xml differs by design: timings, and the per-cell cases are in the shards' files, the matrix ones here
    assert sorted(str(p.relative_to(merged)) for p in merged.rglob("*") if p.is_file()) == names
    differ = [name for name in names
              if name != "junit.xml" and (whole / name).read_bytes() != (merged / name).read_bytes()]
    assert not differ, differ
    # the JUnit cases are split, none lost: the shards' per-cell cases and the merge's matrix cases are the whole run's
    shards = [c for k in (1, 2, 3) for c in _cases(tmp / "shards" / f"shard-{k}" / "junit.xml")
              if "test_matrix" not in c[0]]
    assert sorted(shards + _cases(merged / "junit.xml")) == sorted(_cases(whole / "junit.xml"))


def _cases(junit: Path) -> list[tuple[str, str, str]]:
    """(class, name, outcome) of every JUnit case."""
    return [(c.get("classname"), c.get("name"), next((x.tag for x in c if x.tag in ("failure", "skipped", "error")),
                                                     "passed")) for c in ET.parse(junit).getroot().iter("testcase")]


@pytest.mark.slow
def test_a_shard_measures_its_own_cells_and_leaves_the_matrix_to_the_merge(runs):
    tmp, procs = runs
    for k, cells in ((1, ["a-int4", "b-int2"]), (2, ["a-int2"]), (3, ["b-int4"])):
        proc, out = procs[f"shard-{k}"], tmp / "shards" / f"shard-{k}"
        assert proc.returncode in (0, 1), _log(proc)
        record = json.loads((out / RECORD).read_text())
        measured = sorted(r["cell_id"] for r in record["rows"] if not r["is_baseline"])
        assert (record["shard"], record["of"], measured) == (k, 3, sorted(cells))
        assert {r["model"] for r in record["rows"] if r["is_baseline"]} == {c.split("-")[0] for c in cells}
        assert (out / "cells.csv").is_file() and not (out / "deployment_actions.csv").exists()
        assert not (out / "claim_ledger.csv").exists() and not (out / "matrix").exists()
        assert "read every cell: run the same command with --merge SHARD_DIR ..." in proc.stdout, _log(proc)
        skipped = [c.find("skipped").get("message") for c in ET.parse(out / "junit.xml").getroot().iter("testcase")
                   if c.get("classname", "").endswith("test_matrix")]
        assert skipped and all("run them once over all shards, with --merge" in m for m in skipped), skipped
        assert f"quantscreen shard {k}/3: {len(cells)} of 4 cells" in proc.stdout, _log(proc)


@pytest.mark.slow
def test_a_shard_without_cells_says_so_and_leaves_an_empty_record(runs):
    tmp, procs = runs
    proc = procs["empty"]
    assert proc.returncode == 0, _log(proc)
    assert "quantscreen shard 5/5 has no cells: the plan has 4" in proc.stdout, _log(proc)
    record = json.loads((tmp / "empty" / RECORD).read_text())
    assert (record["shard"], record["of"], record["rows"], record["plan_cells"]) == (5, 5, [], 4)
