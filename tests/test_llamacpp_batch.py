"""llama.cpp's batched greedy decode (`LlamaCppModel.complete_batch`) on the shipped SmolLM2 GGUF: one sequence
decodes as `complete` does, a batch is deterministic, sequences stop on their own, and a batch larger than llama.cpp
takes in one context is split by the caller."""
import pytest

pytest.importorskip("llama_cpp")

from engine.cache import ResponseStore  # noqa: E402
from engine.checkpoint import inspect_checkpoint  # noqa: E402
from engine.generate import DecodingSettings, generate, render  # noqa: E402
from engine.llamacpp import LlamaCppModel  # noqa: E402
from engine.loader import load_tokenizer  # noqa: E402

PROMPTS = ["Say hello.", "What is 2+2? Answer with a number only.", "Write a long poem about the sea.",
           "Name a colour.", "Explain how a bicycle works in detail."]


@pytest.fixture(scope="module")
def smol(smollm2_path):
    info = inspect_checkpoint(smollm2_path)
    tok = load_tokenizer(info, None)
    model = LlamaCppModel(info.path, threads=2)
    yield model, tok, [render(tok, p, None) for p in PROMPTS]
    model.close()


def test_one_sequence_decodes_as_complete_does(smol):
    model, _, texts = smol
    for text in texts[:2]:
        assert model.complete_batch([text], 24, "smol") == [model.complete(text, 24, "smol")]


def test_a_batch_is_deterministic_and_each_sequence_stops_on_its_own(smol):
    model, _, texts = smol
    first = model.complete_batch(texts, 40, "smol", check_logits=True)
    assert model.complete_batch(texts, 40, "smol") == first
    assert all((n < 40) if finished else (n == 40) for _, n, finished in first)
    assert any(finished for *_, finished in first) and not all(finished for *_, finished in first)
    assert all(reply.strip() for reply, *_ in first)


def test_a_batch_larger_than_one_context_is_split(smol, tmp_path, monkeypatch):
    model, tok, _ = smol
    settings = DecodingSettings(max_new_tokens=8, batch_size=5, engine="llamacpp")
    monkeypatch.setattr(model, "max_sequences", 2)
    split = generate(lambda: model, PROMPTS, settings, ResponseStore(tmp_path / "a", {"k": 1}), "smol", tok)
    assert len(split) == len(PROMPTS) and all(r.n_tokens <= 8 for r in split)
    with pytest.raises(ValueError, match="at most 2 sequences"):
        model.complete_batch([render(tok, p, None) for p in PROMPTS[:3]], 8, "smol")
