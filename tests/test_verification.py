"""Paired verification in the llama.cpp engine (`LlamaCppModel.complete_verified`) on the shipped SmolLM2 GGUF: a
reply checked against drafts that agree all the way, part early or part late is plain greedy decoding's reply, and
what a rejected draft left in the KV cache is dropped.

llama.cpp's batched floats differ from its one-token floats by up to about 0.9 logits on this CPU with its default
kernels (BENCHMARKS.md, bench/llamacpp_numerics.py), so a near-tie can resolve differently in a batch. These tests
load the model `batch_invariant` (flash attention, no repacked weights) and draft at most 4 tokens at a time, where
a batch's logits are one-token decoding's exactly: what is compared is the drafting, acceptance and KV bookkeeping,
and any difference is a bug."""
from pathlib import Path

import pytest

from quantscreen.engine.draft import DraftPolicy

pytestmark = pytest.mark.slow
PROMPTS = ["How do I make a cup of tea?", "Write a haiku about rain.", "Explain how to pick a lock.",
           "What is the capital of France?"]
POLICY = DraftPolicy(aligned_tokens=4, lookup_tokens=4)  # batches of at most 5 tokens
MAX_NEW = 24


@pytest.fixture(scope="module")
def model(smollm2_path):
    from quantscreen.engine.llamacpp import LlamaCppModel

    m = LlamaCppModel(Path(smollm2_path), threads=2, batch_invariant=True)
    yield m
    m.close()


def chat(p: str) -> str:
    return f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def plain(model):
    return [model.complete(chat(p), MAX_NEW, "smol") for p in PROMPTS]


def test_drafts_that_agree_part_early_or_part_late_give_plain_replies(model, plain):
    accepted = 0
    for prompt, (reply, n, finished) in zip(PROMPTS, plain):
        own = model.reply_ids(reply, finished)
        wrong_first = [(own[0] + 1) % 1000] + own[1:] if own else [1]
        late = own[:len(own) // 2] + [t + 1 for t in own[len(own) // 2:]]
        for draft in (own, wrong_first, late, []):
            text, m, done, stats = model.complete_verified(chat(prompt), draft, MAX_NEW, "smol", policy=POLICY)
            assert (text, m, done) == (reply, n, finished), (prompt, draft[:5])
            accepted += stats.accepted
            if not draft:  # no reference: only lookups in the prompt and the reply itself are drafted
                assert stats.prefix_tokens == stats.reference_tokens == 0
    assert accepted > 0  # the drafts were used, not ignored


def test_the_own_reply_is_the_accepted_prefix(model, plain):
    reply, n, finished = plain[0]
    text, m, _, stats = model.complete_verified(chat(PROMPTS[0]), model.reply_ids(reply, finished), MAX_NEW, "smol",
                                                policy=POLICY)
    assert text == reply and stats.prefix_tokens == stats.reference_tokens == n
    assert stats.steps < n  # fewer forward passes than tokens: the draft was checked in batches


def test_a_rejected_tail_leaves_the_kv_cache(model, plain):
    import llama_cpp

    reply, n, finished = plain[1]
    own = model.reply_ids(reply, finished)
    draft = own[:3] + [t + 1 for t in own[3:]]  # rejected from the fourth token on
    model.complete_verified(chat(PROMPTS[1]), draft, MAX_NEW, "smol", policy=POLICY)
    mem = llama_cpp.llama_get_memory(model.llm.ctx)
    # the cache holds exactly the tokens the engine says it holds: nothing of a rejected draft beyond them
    assert llama_cpp.llama_memory_seq_pos_max(mem, 0) == model.llm.n_tokens - 1
    held = list(model.llm.input_ids[:model.llm.n_tokens])
    prompt_ids = model.llm.tokenize(chat(PROMPTS[1]).encode(), add_bos=False, special=True)
    assert held[:len(prompt_ids)] == prompt_ids
    assert held[len(prompt_ids):] == own[:len(held) - len(prompt_ids)]  # the reply, not the draft's tail
    # and the next prompt still gets plain decoding's reply
    assert model.complete(chat(PROMPTS[2]), MAX_NEW, "smol") == plain[2]


def test_positions_left_undecided_by_the_margin_are_decoded_alone(model, plain):
    """With a margin no batched position meets, every decision is taken by a one-token step: still plain's reply."""
    reply, n, finished = plain[3]
    text, m, done, stats = model.complete_verified(chat(PROMPTS[3]), model.reply_ids(reply, finished), MAX_NEW,
                                                   "smol", policy=DraftPolicy(aligned_tokens=4, min_margin=1e9))
    assert (text, m, done) == (reply, n, finished)
    assert stats.accepted == 0 and stats.near_ties > 0
