"""Cache integrity: an entry is used only when its checksum, its store key and its prompt all verify, and anything
that changes a response (checkpoint, prompt set, decoding, chat template, harness or engine version) changes the key."""
import json
import shutil

import pytest

from quantscreen.engine import cache
from quantscreen.pipeline.activations import ActivationStore
from quantscreen.engine.cache import CachedResponse, JsonlStore, ResponseStore
from quantscreen.engine.generate import DecodingSettings, prompt_digests
from quantscreen.pipeline.judge import JudgementStore
from quantscreen.pipeline.measure import response_key

PROMPTS = ["one", "two", "three"]
DIGESTS = prompt_digests(PROMPTS)


def filled(root, key=None) -> ResponseStore:
    store = ResponseStore(root, key or {"k": 1})
    store.append([CachedResponse(i, DIGESTS[i], f"reply {i}", 2, True) for i in range(3)])
    return store


def test_every_line_carries_its_key_and_the_key_parts_are_logged(tmp_path):
    store = filled(tmp_path)
    lines = [json.loads(x) for x in store.path.read_text().splitlines()]
    assert {rec["key"] for rec in lines} == {store.key}
    logged = json.loads(store.path.with_suffix(".key.json").read_text())
    assert logged == {"k": 1, "cache_version": cache.HARNESS_CACHE_VERSION}
    assert len(ResponseStore(tmp_path, {"k": 1}).load(DIGESTS)) == 3


def test_a_file_copied_under_another_key_is_not_used(tmp_path, capfd):
    first = filled(tmp_path)
    other = ResponseStore(tmp_path, {"k": 2})
    other.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(first.path, other.path)  # checksums intact, key wrong
    assert other.load(DIGESTS) == {} and other.corrupt_lines == 3
    assert "ignored 3 damaged cache line(s)" in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "wrong prompt", "not json", "missing checksum"])
def test_a_damaged_line_is_reported_and_left_out(tmp_path, damage):
    store = filled(tmp_path)
    lines = store.path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[1])
    if damage == "flip a byte":
        lines[1] = lines[1].replace("reply 1", "reply X")
    elif damage == "truncate":
        lines[1] = lines[1][:40] + "\n"
    elif damage == "wrong prompt":  # a consistent line (checksum recomputed) that names another prompt's digest
        rec.pop("sha256")
        rec["prompt_sha256"] = DIGESTS[0]
        lines[1] = json.dumps({**rec, "sha256": cache.sha256_json(rec)}) + "\n"
    elif damage == "not json":
        lines[1] = "\x00\x00garbage\n"
    else:
        rec.pop("sha256")
        lines[1] = json.dumps(rec) + "\n"
    store.path.write_text("".join(lines))
    reread = ResponseStore(tmp_path, {"k": 1})
    found = reread.load(DIGESTS)
    assert sorted(found) == [0, 2] and reread.corrupt_lines == 1


def test_a_torn_tail_is_isolated_before_the_next_batch(tmp_path):
    store = filled(tmp_path)
    with open(store.path, "a") as fh:
        fh.write('{"i": 0, "prompt_sha256": "ab')  # a run killed mid-write
    store.append([CachedResponse(0, DIGESTS[0], "again", 1, True)])
    reread = ResponseStore(tmp_path, {"k": 1})
    found = reread.load(DIGESTS)
    assert reread.corrupt_lines == 1 and found[0].response == "again" and len(found) == 3


@pytest.mark.parametrize("store_cls", [ResponseStore, ActivationStore, JudgementStore])
def test_every_cache_kind_verifies_the_same_way(tmp_path, store_cls):
    assert issubclass(store_cls, JsonlStore)
    store = store_cls(tmp_path, {"k": 1})
    store.append_records([{"i": 0, "prompt_sha256": DIGESTS[0], "digest": "d", "x": 1}])
    store.path.write_text(store.path.read_text().replace('"x": 1', '"x": 2'))
    reread = store_cls(tmp_path, {"k": 1})
    assert list(reread._verified()) == [] and reread.corrupt_lines == 1


BASE = dict(checkpoint_sha256="a" * 64, prompt_set_sha256="b" * 64, settings=DecodingSettings(), chat_template=None)


@pytest.mark.parametrize("change", [
    {"checkpoint_sha256": "c" * 64},
    {"prompt_set_sha256": "d" * 64},
    {"settings": DecodingSettings(max_new_tokens=64)},
    {"settings": DecodingSettings(batch_size=8)},
    {"settings": DecodingSettings(dtype="bfloat16")},
    {"settings": DecodingSettings(device="cuda:0")},
    {"settings": DecodingSettings(system_prompt="be brief")},
    {"settings": DecodingSettings(engine="llamacpp")},
    {"chat_template": "{{ messages }}"},
])
def test_anything_that_changes_a_response_changes_the_cache_file(tmp_path, change):
    before = ResponseStore(tmp_path, response_key(**BASE))
    after = ResponseStore(tmp_path, response_key(**{**BASE, **change}))
    assert after.path != before.path


def test_a_new_harness_version_starts_a_new_cache_file(tmp_path, monkeypatch):
    from quantscreen.pipeline import measure as engine_measure

    before = ResponseStore(tmp_path, response_key(**BASE)).path
    monkeypatch.setattr(engine_measure, "__version__", "999.0")
    assert ResponseStore(tmp_path, response_key(**BASE)).path != before
    plain = ResponseStore(tmp_path, {"k": 1}).path
    monkeypatch.setattr(cache, "HARNESS_CACHE_VERSION", "999")
    assert ResponseStore(tmp_path, {"k": 1}).path != plain
