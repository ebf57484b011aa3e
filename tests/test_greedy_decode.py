"""The harness's decode loop (`engine.generate.greedy_decode`) against transformers' own `generate`, on tiny
random-weight models: the same greedy tokens for every left-padded row, rows that stop leave the batch without
changing the others, and architectures the loop does not know fall back to `generate`."""
import pytest

from quantscreen.engine.generate import greedy_decode, plan_batches, supports_greedy_decode


def tiny(kind: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
                  bos_token_id=None)
    if kind == "mistral-sliding":  # a sliding window shorter than prompt + reply: the cache keeps only the window
        model = MistralForCausalLM(MistralConfig(sliding_window=6, **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    return model.eval()


def batch(lengths, seed=1):
    """Left-padded random prompts of the given lengths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, width - n:] = torch.randint(2, 97, (n,), generator=g)
        mask[r, width - n:] = 1
    return ids, mask


def hf_greedy(model, ids, mask, max_new, stops):
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                             num_beams=1, eos_token_id=stops or None, pad_token_id=0)
    return [cut(row, stops) for row in out[:, ids.shape[1]:].tolist()]


def cut(row, stops):
    """Tokens up to and including the first stop token."""
    k = next((i for i, t in enumerate(row) if t in stops), None)
    return row if k is None else row[:k + 1]


def decode(model, ids, mask, max_new, stops):
    import torch

    with torch.inference_mode():
        return [cut(r, stops) for r in greedy_decode(model, ids, mask, max_new, stops)]


@pytest.mark.parametrize("kind", ["llama", "mistral-sliding"])
def test_same_tokens_as_transformers_generate(kind):
    model = tiny(kind)
    assert supports_greedy_decode(model)
    ids, mask = batch([5, 9, 3, 9, 7])
    assert decode(model, ids, mask, 12, []) == hf_greedy(model, ids, mask, 12, [])


def test_rows_that_stop_leave_the_batch_without_changing_the_others():
    model = tiny("llama")
    ids, mask = batch([6, 8, 4, 8, 5, 7])
    free = decode(model, ids, mask, 12, [])
    # a stop token that ends some rows early and leaves others running to the limit
    counts = {}
    for row in free:
        for t in set(row[1:6]):
            counts[t] = counts.get(t, 0) + 1
    stop = max(counts, key=lambda t: (0 < counts[t] < len(free), counts[t]))
    stopped = decode(model, ids, mask, 12, [stop])
    assert stopped == [cut(row, [stop]) for row in free]
    assert any(len(row) < 12 for row in stopped) and any(len(row) == 12 for row in stopped)
    assert stopped == hf_greedy(model, ids, mask, 12, [stop])


def test_every_row_stopping_ends_the_batch():
    model = tiny("llama")
    ids, mask = batch([4, 4])
    first = [row[0] for row in decode(model, ids, mask, 1, [])]
    assert decode(model, ids, mask, 10, first) == [[t] for t in first]


def test_models_without_a_plain_kv_cache_use_generate():
    model = tiny("llama")

    class NoCacheArgument(type(model)):
        def forward(self, input_ids=None, attention_mask=None):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask)

    model.__class__ = NoCacheArgument
    assert not supports_greedy_decode(model)


def test_batches_are_balanced():
    sizes = [len(b) for b in plan_batches(list(range(100)), 64)]
    assert sizes == [50, 50]
    assert [len(b) for b in plan_batches(list(range(130)), 64)] == [44, 43, 43]
    assert plan_batches([], 8) == []
    flat = sorted(i for b in plan_batches([5, 1, 4, 1, 3], 2) for i in b)
    assert flat == [0, 1, 2, 3, 4]
