"""Loading and greedy generation on a tiny random-weight Llama; the response cache resumes, verifies and never
serves a stale or damaged entry."""
import json

import pytest

from quantscreen.engine.cache import ResponseStore
from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.records.errors import ScreenInputError
from quantscreen.engine.generate import DecodingSettings, generate, plan_batches
from quantscreen.engine.loader import load_model_and_tokenizer, load_tokenizer, resolve_device
from tests.conftest import TEMPLATE, build_tiny_llama

PROMPTS = ["how do i make bread", "write a story about a cat", "the dog sat on the mat",
           "please help with fire", "what is water", "sure here is step one two three", "a"]
SETTINGS = DecodingSettings(max_new_tokens=6, batch_size=3)


def run(folder, store, load_guard=None):
    info = inspect_checkpoint(folder)
    tok = load_tokenizer(info, None)
    calls = []

    def load():
        calls.append(1)
        if load_guard:
            raise AssertionError(load_guard)
        return load_model_and_tokenizer(info, None)[0]

    return generate(load, PROMPTS, SETTINGS, store, "tiny", tok), calls


def texts(responses):
    return [r.response for r in responses]


def test_generation_is_cached_and_deterministic(tiny_llama, tmp_path):
    store = ResponseStore(tmp_path / "cache", {"k": 1})
    first, calls = run(tiny_llama, store)
    assert len(first) == len(PROMPTS) and calls == [1]
    assert all(0 <= r.n_tokens <= SETTINGS.max_new_tokens for r in first)
    again, calls = run(tiny_llama, ResponseStore(tmp_path / "cache", {"k": 1}), load_guard="warm cache must not load")
    assert texts(again) == texts(first) and calls == []
    fresh, _ = run(tiny_llama, ResponseStore(tmp_path / "other", {"k": 1}))
    assert texts(fresh) == texts(first)  # greedy and batch composition fixed: same text from scratch


def test_corrupt_and_torn_lines_are_regenerated(tiny_llama, tmp_path):
    store = ResponseStore(tmp_path / "cache", {"k": 1})
    first, _ = run(tiny_llama, store)
    lines = store.path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[0])
    rec["response"] = "tampered"  # checksum no longer matches
    lines[0] = json.dumps(rec) + "\n"
    store.path.write_text("".join(lines) + '{"i": 3, "prompt_sha')  # and a torn final line
    reread = ResponseStore(tmp_path / "cache", {"k": 1})
    again, calls = run(tiny_llama, reread)
    assert reread.corrupt_lines == 2 and calls == [1]
    assert texts(again) == texts(first)


def test_a_different_key_never_reuses_entries(tiny_llama, tmp_path):
    run(tiny_llama, ResponseStore(tmp_path / "cache", {"k": 1}))
    other = ResponseStore(tmp_path / "cache", {"k": 2})
    assert other.path != ResponseStore(tmp_path / "cache", {"k": 1}).path
    _, calls = run(tiny_llama, other)
    assert calls == [1]


def test_batches_are_a_fixed_partition_sorted_by_length():
    assert plan_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]


def test_missing_chat_template_is_a_clear_error(tmp_path):
    folder = build_tiny_llama(tmp_path / "nochat", chat_template=None)
    info = inspect_checkpoint(folder)
    assert not info.has_chat_template
    with pytest.raises(ScreenInputError, match="has no chat template.*--chat-template"):
        load_tokenizer(info, None)
    assert load_tokenizer(info, TEMPLATE).chat_template == TEMPLATE


def test_nan_logits_are_reported(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(tiny_llama / "model.safetensors")
    weights["model.norm.weight"] = torch.full_like(weights["model.norm.weight"], float("nan"))
    save_file(weights, tiny_llama / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ScreenInputError, match="NaN or inf logits"):
        run(tiny_llama, ResponseStore(tmp_path / "cache", {"k": 1}))


def test_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ScreenInputError, match="no CUDA device"):
        resolve_device("cuda")


def test_generate_fallback_gives_the_same_replies(tiny_llama, tmp_path, monkeypatch):
    """Architectures greedy_decode does not handle go through transformers' generate: same greedy replies."""
    from quantscreen.engine import generate as engine_generate

    fast, _ = run(tiny_llama, ResponseStore(tmp_path / "fast", {"k": 1}))
    monkeypatch.setattr(engine_generate, "supports_greedy_decode", lambda model: False)
    slow, _ = run(tiny_llama, ResponseStore(tmp_path / "slow", {"k": 1}))
    assert texts(slow) == texts(fast) and [r.n_tokens for r in slow] == [r.n_tokens for r in fast]
