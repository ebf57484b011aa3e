"""ROUGE-L F1 of responses against reference answers (Lin 2004), via Google's `rouge-score` with Porter stemming."""
from __future__ import annotations

from quantscreen.probes.base import Probe
from quantscreen.records.probe import ProbeRecord, digest_inputs, mean

VERSION = "rouge-score-0.1.2-rougeL-stem-v1"


def rouge_l_f1(candidates: tuple[str, ...], references: tuple[str, ...]) -> ProbeRecord:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    per_item = tuple(round(scorer.score(ref, cand)["rougeL"].fmeasure, 6) for cand, ref in zip(candidates, references))
    return ProbeRecord(name="rouge_l_f1", value=mean(per_item), n=len(per_item), per_item=per_item,
                       version=VERSION, inputs_digest=digest_inputs(candidates, references))


PROBE = Probe(names=("rouge_l_f1",), measure=lambda r: [rouge_l_f1(r.replies["quality"], r.references)])
