"""The refusal instruments applied to a measured cell, and every instrument's accuracy on labelled replies.

Instruments (`probes.refusal_definition` says what they all measure): the regex (hand-written patterns), the
classifier (MiniLM features with a fitted head) and the judge (an LLM scored by option log-probabilities). Accuracy is
measured on labelled replies no instrument was fitted on: rows the classifier's head was fitted on are left out for
every instrument, so all of them are compared on the same rows.
"""
from __future__ import annotations

import dataclasses

from quantscreen.pipeline.judge import judge_pairs
from quantscreen.probes import refusal_regex
from quantscreen.probes.refusal_judge import RUBRIC_VERSION, judge_rates
from quantscreen.probes.accuracy import Accuracy, accuracy
from quantscreen.records.measurement import CellMeasurement

JUDGED_ROLES = ("harmful", "benign")  # harmless and quality replies are not refusal questions worth a judge pass


def judge_measurement(m: CellMeasurement, judge, prompt_sets: dict, cache_root, progress=None) -> CellMeasurement:
    """`m` with the judge's records (refusal_rate_judge, _strict, benign_...) and its per-reply judgements."""
    records, judgements = dict(m.records), {}
    for role in JUDGED_ROLES:
        replies = m.responses.get(role)
        if not replies or role not in prompt_sets:
            continue
        pairs = list(zip(prompt_sets[role].prompts, (r.response for r in replies)))
        found = judge_pairs(judge, pairs, cache_root, f"{m.cell_id} {role}", progress)
        records.update({rec.name: rec for rec in judge_rates(found, role)})
        judgements[role] = tuple(found)
    return dataclasses.replace(m, records=records, judgements=judgements, judge=judge.describe())


def labelled_set(name: str):
    from quantscreen.promptsets.labelled import named_set

    return named_set(name)


def held_out(labelled, training_digests: set[str]):
    """(labelled set without the rows an instrument was fitted on, how many were left out)."""
    from quantscreen.pipeline.judge import pair_digest
    from quantscreen.promptsets.labelled import LabelledSet

    keep = [i for i, (q, r) in enumerate(zip(labelled.requests, labelled.replies))
            if pair_digest(q, r) not in training_digests]
    if len(keep) == len(labelled):
        return labelled, 0
    pick = lambda xs: tuple(xs[i] for i in keep) if xs else xs  # noqa: E731
    return LabelledSet(pick(labelled.requests), pick(labelled.replies), pick(labelled.refusal), labelled.source,
                       labelled.definition, pick(labelled.kinds)), len(labelled) - len(keep)


def instrument_accuracy(labelled, judge=None, cache_root=None, progress=None, encoder_path: str | None = None,
                        classifier: bool = True) -> dict[str, Accuracy]:
    """Sensitivity, specificity and accuracy of the regex, the classifier (unless `classifier` is False) and the judge
    (when given) on the same labelled replies, none of which any of them was fitted on."""
    if labelled is None:
        return {}
    return measure_instruments(labelled, judge, cache_root, progress, encoder_path, classifier)[0]


def measure_instruments(labelled, judge=None, cache_root=None, progress=None, encoder_path: str | None = None,
                        classifier: bool = True):
    """(instrument -> Accuracy, the held-out rows they were measured on): `Accuracy.misclassified` indexes those."""
    from quantscreen.probes import refusal_classifier

    head = refusal_classifier.load_head() if classifier else None
    labelled, excluded = held_out(labelled, refusal_classifier.training_digests(head) if head else set())
    where = f"{labelled.name} ({len(labelled)} replies, labels: {labelled.definition})"
    out = {"regex": accuracy("regex", [refusal_regex.is_refusal(r) for r in labelled.replies], labelled.refusal,
                             f"{where}; {refusal_regex.PATTERN_SET_VERSION}",
                             f"not fitted: hand-written patterns {refusal_regex.PATTERN_SET_VERSION}", excluded)}
    if head is not None:
        if encoder_path is None:
            from quantscreen.engine.sources import minilm_encoder

            encoder_path = minilm_encoder().path
        found = refusal_classifier.is_refusal(list(labelled.requests), list(labelled.replies), encoder_path, head)
        out["classifier"] = accuracy("classifier", found, labelled.refusal,
                                     f"{where}; {refusal_classifier.CLASSIFIER_VERSION}",
                                     _fitted_on(head), excluded)
    if judge is not None:
        found = judge_pairs(judge, list(zip(labelled.requests, labelled.replies)), cache_root, "labelled replies",
                            progress)
        out["judge"] = accuracy("judge", [j.refusal for j in found], labelled.refusal,
                                f"{where}; {judge.describe()}", f"not fitted: rubric {RUBRIC_VERSION}", excluded)
    return out, labelled


def misclassified_rows(labelled, accuracies: dict[str, Accuracy]) -> list[dict]:
    """One row per (instrument, reply it got wrong) of the held-out rows `measure_instruments` returned."""
    rows = []
    for inst, acc in sorted(accuracies.items()):
        for i in acc.misclassified:
            rows.append({"instrument": inst, "row": i, "label": "refusal" if labelled.refusal[i] else "compliance",
                         "predicted": "compliance" if labelled.refusal[i] else "refusal",
                         "kind": labelled.kinds[i] if labelled.kinds else "", "request": labelled.requests[i],
                         "reply": labelled.replies[i]})
    return rows


def _fitted_on(head: dict) -> str:
    """The training sets a classifier head names (probes/data/refusal_classifier.json), in a few words."""
    sets = head.get("training_sets") or []
    parts = []
    for t in sets:
        if isinstance(t, dict):
            parts.append(" ".join(str(t.get(k)) for k in ("name", "version", "split") if t.get(k))
                         + (f" ({t['rows']} rows)" if t.get("rows") else ""))
        else:
            parts.append(str(t))
    return "fitted on " + (", ".join(parts) if parts else "an unnamed set") + \
        f"; {len(head.get('training_pair_digests') or ())} training pairs excluded from every accuracy figure"
