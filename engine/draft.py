"""Drafts for paired verification: what a quantized cell is expected to say next, read from its baseline's reply.

A quantized cell's greedy reply mostly repeats its baseline's: checking the baseline's tokens as a draft costs one
batched forward pass where plain decoding costs one pass per token. `DraftSource` proposes the next tokens: while the
cell's reply still equals the baseline's, the baseline's next tokens; after they part, the continuation of the
cell's last few tokens wherever they last occurred in the baseline's reply or the prompt (prompt-lookup decoding),
so a reply that swaps one word and then rejoins the baseline's text is drafted again. A draft never changes what is
generated, only how many forward passes it takes: every drafted token is kept only where it is the cell's own argmax.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DraftPolicy:
    # At most 4 drafted tokens: with the last reply token a batch of 5, the largest whose logits llama.cpp's
    # batch-invariant CPU kernels compute exactly as one-token decoding does (bench/llamacpp_numerics.py)
    aligned_tokens: int = 4  # baseline tokens drafted at once while the reply still equals the baseline's
    lookup_tokens: int = 4  # tokens drafted from an n-gram match after the replies part
    max_ngram: int = 3
    min_ngram: int = 2  # a one-token match predicts too little to pay for its verification on a CPU
    # A batched position whose top two logits are closer than this is evaluated again alone (engine.llamacpp), for
    # kernels whose batches are not exact: 0 under the batch-invariant kernels the harness verifies with.
    min_margin: float = 0.0

    def key_parts(self) -> dict:
        return {"aligned_tokens": self.aligned_tokens, "lookup_tokens": self.lookup_tokens,
                "max_ngram": self.max_ngram, "min_ngram": self.min_ngram, "min_margin": self.min_margin}


class DraftSource:
    """Drafts for one prompt. `reference`: the baseline's reply tokens (ending with its stop token when it stopped);
    `context`: other tokens worth looking up (the prompt's)."""

    def __init__(self, reference: list[int], context: list[int], policy: DraftPolicy = DraftPolicy()):
        self.reference, self.context, self.policy = list(reference), list(context), policy

    def propose(self, out: list[int], budget: int) -> list[int]:
        """At most `budget` tokens expected to follow `out` (the reply so far, its last token not yet evaluated)."""
        if budget <= 0:
            return []
        n = len(out)
        if self.reference[:n] == out:
            return self.reference[n:n + min(budget, self.policy.aligned_tokens)]
        limit = min(budget, self.policy.lookup_tokens)
        for size in range(self.policy.max_ngram, self.policy.min_ngram - 1, -1):
            if n < size:
                continue
            tail = out[-size:]
            for source in (self.reference, self.context, out[:-1]):
                start = _last_match(source, tail)
                if start is not None and start + size < len(source):
                    return source[start + size:start + size + limit]
        return []


def _last_match(seq: list[int], tail: list[int]) -> int | None:
    """Start of the last occurrence of `tail` in `seq` that is followed by at least one token."""
    size = len(tail)
    for start in range(len(seq) - size - 1, -1, -1):
        if seq[start:start + size] == tail:
            return start
    return None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
