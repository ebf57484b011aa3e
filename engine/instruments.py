"""The second refusal instrument applied to a measured cell, and both instruments' accuracy on labelled replies."""
from __future__ import annotations

import dataclasses

from engine.judge import judge_pairs
from probes import refusal_regex
from probes.refusal_judge import judge_rates
from verdicts.agreement import Accuracy, accuracy
from verdicts.cell import CellMeasurement

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
    import promptsets

    if name == "none":
        return None
    return promptsets.uncensorbench_labelled() if name == "uncensorbench" else promptsets.labelled_file(name)


def instrument_accuracy(labelled, judge=None, cache_root=None, progress=None) -> dict[str, Accuracy]:
    """Sensitivity and specificity of the regex (always) and the judge (when given) on reference-labelled replies."""
    if labelled is None:
        return {}
    src = labelled.source
    where = f"{src.package} {src.version} {src.path_inside}".strip()
    out = {"regex": accuracy("regex", [refusal_regex.is_refusal(r) for r in labelled.replies], labelled.refusal,
                             f"{where}; {refusal_regex.PATTERN_SET_VERSION}")}
    if judge is not None:
        found = judge_pairs(judge, list(zip(labelled.requests, labelled.replies)), cache_root, "labelled replies",
                            progress)
        out["judge"] = accuracy("judge", [j.refusal for j in found], labelled.refusal,
                                f"{where}; {judge.describe()}")
    return out
