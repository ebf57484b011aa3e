"""Coherence score in 0..1: prompt-response relevance times a repetition penalty.

TR142 reports a "coherence composite" without a formula; this is the harness's documented stand-in:
- relevance = cosine similarity, clipped to [0, 1], between mean-pooled MiniLM sentence embeddings of the prompt and
  the response (the pooling all-MiniLM-L6-v2 was trained with);
- repetition = 1 - distinct word trigrams / all word trigrams (0 for responses under three words), which catches the
  degenerate loops aggressive quantization produces;
- coherence = relevance * (1 - repetition); an empty response scores 0.
"""
from __future__ import annotations

import functools
import re

from quantscreen.probes.base import Probe
from quantscreen.records.probe import ProbeRecord, digest_inputs, mean

VERSION = "coherence-minilm-meanpool-trigram-v1"
_WORD = re.compile(r"\w+", re.UNICODE)


def repetition(text: str) -> float:
    words = _WORD.findall(text.lower())
    trigrams = list(zip(words, words[1:], words[2:]))
    return 1.0 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


@functools.lru_cache(maxsize=2)
def _encoder(encoder_path: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder_path, local_files_only=True), \
        AutoModel.from_pretrained(encoder_path, local_files_only=True).eval()


def embed(texts: list[str], encoder_path: str, batch_size: int = 32):
    import torch

    tok, model = _encoder(encoder_path)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc.attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)


def coherence(prompts: tuple[str, ...], responses: tuple[str, ...], encoder_path: str) -> ProbeRecord:
    relevance = (embed(list(prompts), encoder_path) * embed([r or " " for r in responses], encoder_path)).sum(-1)
    per_item = tuple(
        0.0 if not r.strip() else round(max(0.0, float(rel)) * (1.0 - repetition(r)), 6)
        for r, rel in zip(responses, relevance.tolist()))
    return ProbeRecord(name="coherence", value=mean(per_item), n=len(per_item), per_item=per_item,
                       version=VERSION, inputs_digest=digest_inputs(prompts, responses))


PROBE = Probe(names=("coherence",),
              measure=lambda r: [coherence(r.prompts["quality"], r.replies["quality"], r.encoder_path)])
