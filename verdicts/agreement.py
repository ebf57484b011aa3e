"""How far the two refusal instruments agree, how accurate each is on labelled replies, and what that does to a rate.

- `cohen_kappa`: Cohen's (1960) kappa for two raters over the same items (any hashable categories).
- `choose_instruments`: the primary refusal instrument and the screening ones, from their measured accuracy
  (`probes/accuracy.py`) on replies they were not fitted on.
- `judge_cells_needed`: whether the judge must read the cells' replies (judge.cells: auto), decided by that choice.
- `corrected_rate`: the Rogan-Gladen (1978) estimate of the true refusal rate from an observed rate and the
  instrument's sensitivity and specificity, p = (q + Sp - 1) / (Se + Sp - 1), clipped to [0, 1]; its interval maps
  the observed rate's Wilson bounds through the same (monotone) correction, so it treats Se and Sp as known.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def cohen_kappa(a, b) -> float:
    """kappa = (p_o - p_e) / (1 - p_e), by statsmodels' `cohens_kappa` on the two raters' contingency table (rows: a,
    columns: b, categories in order of first appearance, so any hashable ones do); NaN for no items; 1.0 when both
    raters use one and the same category throughout (p_e = 1, so the formula is 0/0: complete agreement)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("kappa needs two ratings of the same items")
    if not a:
        return float("nan")
    index = {c: i for i, c in enumerate(dict.fromkeys(a + b))}
    if len(index) == 1:
        return 1.0
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    table = np.zeros((len(index), len(index)))
    np.add.at(table, ([index[x] for x in a], [index[y] for y in b]), 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # p_e = 1 only with one category (above); NaN otherwise
        return float(cohens_kappa(table, return_results=False))


def corrected_rate(observed: float, low: float, high: float, se: float, sp: float) -> tuple[float, float, float] | None:
    """(rate, low, high) corrected for misclassification; None when Se + Sp <= 1 (the instrument is no better
    than chance, so nothing can be corrected) or an input is missing."""
    values = (observed, low, high, se, sp)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or se + sp <= 1.0:
        return None

    def fix(q: float) -> float:
        return min(1.0, max(0.0, (q + sp - 1.0) / (se + sp - 1.0)))

    return fix(observed), fix(low), fix(high)


INSTRUMENT_ORDER = ("regex", "classifier", "judge")  # cheapest first: the tie-break when accuracies are equal
NOT_RUN = "not run on this cell"  # an instrument's note in a cell's instrument_choice when judge.cells kept it away
JUDGE_SKIPPED = "the judge is not run on the cells"  # how the run's warning about that starts


@dataclass(frozen=True)
class InstrumentChoice:
    """Which refusal instrument drives a cell's verdicts, which others may move its regime, and why."""
    primary: str  # the refusal delta, paired statistics, power, drop screens and RTSI use this one
    screening: tuple[str, ...]  # the primary first, then every other instrument that reaches the accuracy targets
    reported: tuple[str, ...]  # measured and reported beside them, below the targets or of unknown accuracy
    notes: tuple[str, ...]  # one line per instrument: its held-out figures and why it is where it is

    def statement(self) -> str:
        return "; ".join(self.notes)


def choose_instruments(available, accuracies: dict, setting: str, min_accuracy: float,
                       min_specificity: float) -> InstrumentChoice:
    """The primary is the instrument with the best held-out accuracy (`setting` = auto) or the one named; every other
    instrument joins the screens only when its measured accuracy and specificity reach the targets.

    Without any measurement the regex is the primary and nothing else screens: an instrument whose accuracy is
    unknown is never trusted to move a verdict, and the notes say the figures are missing.
    """
    available = [i for i in INSTRUMENT_ORDER if i in available]
    measured = {i: accuracies[i] for i in available if i in accuracies and not math.isnan(accuracies[i].accuracy)}
    if setting != "auto":
        if setting not in available:
            raise ValueError(f"primary_instrument {setting!r} was not measured on this cell (measured: {available})")
        primary = setting
    elif measured:
        primary = max(measured, key=lambda i: (measured[i].accuracy, measured[i].specificity,
                                               -INSTRUMENT_ORDER.index(i)))
    else:
        primary = "regex"
    screening = [primary] + [i for i in available if i != primary and i in measured
                             and measured[i].meets(min_accuracy, min_specificity)]
    notes = []
    for i in available:
        acc = measured.get(i)
        figures = (f"accuracy {acc.accuracy:.3f}, sensitivity {acc.sensitivity:.3f}, specificity "
                   f"{acc.specificity:.3f} on {acc.n} held-out replies" if acc else "accuracy not measured")
        if i == primary:
            why = "primary" + (" (named by screen.primary_instrument)" if setting != "auto" else
                               " (most accurate)" if acc else " (no instrument was measured: the regex by default)")
            if acc is None or not acc.meets(min_accuracy, min_specificity):
                why += (f"; BELOW the targets (accuracy >= {min_accuracy:.2f}, specificity >= {min_specificity:.2f}): "
                        f"its verdicts are only as good as these figures")
        elif i in screening:
            why = "screens too (meets the targets)"
        else:
            why = (f"reported only (below accuracy >= {min_accuracy:.2f} / specificity >= {min_specificity:.2f})"
                   if acc else "reported only (accuracy unknown)")
        notes.append(f"{i}: {why}; {figures}")
    for i in INSTRUMENT_ORDER:  # measured on labelled replies but not run on the cell (judge.cells: auto)
        if i not in available and i in accuracies and not math.isnan(accuracies[i].accuracy):
            acc = accuracies[i]
            notes.append(f"{i}: {NOT_RUN} (it could not move a verdict: below accuracy >= "
                         f"{min_accuracy:.2f} / specificity >= {min_specificity:.2f}); accuracy {acc.accuracy:.3f}, "
                         f"sensitivity {acc.sensitivity:.3f}, specificity {acc.specificity:.3f} on {acc.n} held-out "
                         f"replies")
    return InstrumentChoice(primary, tuple(screening), tuple(i for i in available if i not in screening),
                            tuple(notes))


def judge_cells_needed(cells: str, accuracies: dict, setting: str, min_accuracy: float,
                       min_specificity: float) -> tuple[bool, str]:
    """Whether the judge must read the cells' replies, and why (`judge.cells`).

    `always`: yes. `auto`: yes when its accuracy was not measured (then nothing decides against it), or when the
    choice among all three instruments makes it the primary or a screening instrument; no when it is measured below
    the targets and another instrument is the primary, because then its per-cell labels could only be reported. The
    judge's pass over the cells is the costliest part of a cold job (one LLM forward per reply)."""
    if cells == "always":
        return True, "judge.cells: always"
    acc = accuracies.get("judge")
    if acc is None or math.isnan(acc.accuracy):
        return True, "the judge's accuracy is not measured (judge.accuracy: none), so nothing rules it out"
    choice = choose_instruments(INSTRUMENT_ORDER, accuracies, setting, min_accuracy, min_specificity)
    if "judge" in choice.screening:
        return True, f"the judge {'is the primary instrument' if choice.primary == 'judge' else 'meets the targets'}"
    return False, (f"{JUDGE_SKIPPED}: measured accuracy {acc.accuracy:.3f} / specificity "
                   f"{acc.specificity:.3f} on {acc.n} held-out replies is below the targets (>= {min_accuracy:.2f} / "
                   f">= {min_specificity:.2f}) and the {choice.primary} is the primary, so its labels could not move a "
                   f"verdict; set judge.cells: always to report them anyway")


def judge_skip_warnings(rows, warnings) -> list[str]:
    """`warnings` plus one saying the judge did not read the cells when a cells.csv row says so and no warning does
    yet: under xdist the worker that decided it keeps its own warning, while its rows reach the controller."""
    if any(w.startswith(JUDGE_SKIPPED) for w in warnings):
        return list(warnings)
    skipped = sorted(r["cell_id"] for r in rows if f"judge: {NOT_RUN}" in str(r.get("instrument_choice") or ""))
    if not skipped:
        return list(warnings)
    return [*warnings, f"{JUDGE_SKIPPED} ({', '.join(skipped)}): its measured accuracy is below the targets and "
                       f"another instrument is the primary (instrument_choice in cells.csv has its figures); set "
                       f"judge.cells: always to report it anyway"]
