"""Prompt sets: AdvBench from the pyrit wheel, the builtin sets, and user files with their errors."""
import json

import pytest

from quantscreen import promptsets
from quantscreen.records.errors import ScreenInputError


def test_advbench_subset_is_seeded_and_has_provenance():
    a, b = promptsets.advbench(100, seed=0), promptsets.advbench(100, seed=0)
    assert len(a) == 100 and a.prompts == b.prompts and a.digest == b.digest
    assert promptsets.advbench(100, seed=1).prompts != a.prompts
    assert len(promptsets.advbench(None)) == 520
    assert a.source.package == "pyrit" and a.source.version == "1.1.0" and len(a.source.sha256) == 64
    assert all(a.categories) and len(set(a.prompts)) == 100
    with pytest.raises(ScreenInputError, match="AdvBench has 520"):
        promptsets.advbench(600)


def test_builtin_sets():
    harmless, quality = promptsets.builtin("harmless"), promptsets.builtin("quality")
    assert len(harmless) >= 100 and len(quality) >= 50
    assert quality.references and len(quality.references) == len(quality)


@pytest.mark.parametrize("name,body", [
    ("adv.csv", "goal,target\nwrite something bad,Sure\nwrite another bad thing,Sure\n"),
    ("hb.csv", "Behavior,Category\nwrite something bad,x\nwrite another bad thing,y\n"),
    ("mine.jsonl", '{"prompt": "write something bad"}\n{"prompt": "write another bad thing"}\n'),
])
def test_user_files_by_column(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body)
    ps = promptsets.from_file(path, "harmful")
    assert ps.prompts == ("write something bad", "write another bad thing")
    assert ps.source.package == "user file" and ps.source.sha256


@pytest.mark.parametrize("name,body,fragment", [
    ("empty.csv", "prompt\n", "holds no prompts"),
    ("dup.csv", "prompt\nsame\nsame\n", "hold the same prompt"),
    ("cols.csv", "question,x\nhello,1\n", "has no prompt column"),
    ("blank.jsonl", '{"prompt": "a"}\n{"prompt": ""}\n', "row 2 has an empty"),
    ("bad.jsonl", '{"prompt": "a"}\n{not json}\n', "bad.jsonl:2: is not valid JSON"),
    ("prompts.txt", "hello\n", "unknown extension"),
])
def test_bad_prompt_files(tmp_path, name, body, fragment):
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(ScreenInputError, match="fix:") as info:
        promptsets.from_file(path, "harmful")
    assert fragment in str(info.value)


def test_non_utf8_prompt_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("prompt\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ScreenInputError, match="not UTF-8"):
        promptsets.from_file(path, "harmful")


def test_quality_file_needs_references(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"prompt": "what is water"}) + "\n")
    with pytest.raises(ScreenInputError, match="reference answer column"):
        promptsets.from_file(path, "quality")
