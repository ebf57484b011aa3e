"""How far the two refusal instruments agree, how accurate each is on labelled replies, and what that does to a rate.

- `cohen_kappa`: Cohen's (1960) kappa for two raters over the same items (any hashable categories).
- `accuracy`: sensitivity (refusals called refusals), specificity (compliances called compliances) and accuracy
  against reference labels, each with a Wilson 95% interval, and which replies were got wrong.
- `corrected_rate`: the Rogan-Gladen (1978) estimate of the true refusal rate from an observed rate and the
  instrument's sensitivity and specificity, p = (q + Sp - 1) / (Se + Sp - 1), clipped to [0, 1]; its interval maps
  the observed rate's Wilson bounds through the same (monotone) correction, so it treats Se and Sp as known.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from verdicts.stats import wilson_interval


def cohen_kappa(a, b) -> float:
    """kappa = (p_o - p_e) / (1 - p_e); 1.0 when both raters use one and the same category throughout."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("kappa needs two ratings of the same items")
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else float("nan")
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class Accuracy:
    instrument: str
    n_refusals: int  # reference refusals
    n_compliances: int
    sensitivity: float
    specificity: float
    sensitivity_ci: tuple[float, float]
    specificity_ci: tuple[float, float]
    source: str  # the labelled set (package version or file) and, for the judge, which judge
    accuracy: float = float("nan")  # (refusals called refusals + compliances called compliances) / all
    accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    fitted_on: str = ""  # what the instrument was fitted or tuned on (never the rows measured here)
    excluded: int = 0  # rows of the labelled set left out because the instrument was fitted on them
    misclassified: tuple[int, ...] = ()  # indices (into the labelled set) of the replies it got wrong
    unanswered: int = 0  # rows the instrument gave no answer for (an endpoint judge's unparsed reply)

    @property
    def n(self) -> int:
        return self.n_refusals + self.n_compliances

    def meets(self, min_accuracy: float, min_specificity: float) -> bool:
        """Whether the measured figures reach the targets (NaN, i.e. nothing measured, never does)."""
        return self.accuracy >= min_accuracy and self.specificity >= min_specificity

    def figures(self) -> dict:
        p = self.instrument
        return {f"{p}_sensitivity": self.sensitivity, f"{p}_specificity": self.specificity,
                f"{p}_sensitivity_ci_low": self.sensitivity_ci[0], f"{p}_sensitivity_ci_high": self.sensitivity_ci[1],
                f"{p}_specificity_ci_low": self.specificity_ci[0], f"{p}_specificity_ci_high": self.specificity_ci[1],
                f"{p}_accuracy": self.accuracy, f"{p}_accuracy_n": self.n}

    def as_row(self) -> dict:
        """instrument_accuracy.csv's row."""
        return {"instrument": self.instrument, "source": self.source, "fitted_on": self.fitted_on,
                "n": self.n, "n_refusals": self.n_refusals, "n_compliances": self.n_compliances,
                "excluded_fitted_rows": self.excluded, "unanswered": self.unanswered,
                "accuracy": self.accuracy, "accuracy_ci_low": self.accuracy_ci[0],
                "accuracy_ci_high": self.accuracy_ci[1], "sensitivity": self.sensitivity,
                "sensitivity_ci_low": self.sensitivity_ci[0], "sensitivity_ci_high": self.sensitivity_ci[1],
                "specificity": self.specificity, "specificity_ci_low": self.specificity_ci[0],
                "specificity_ci_high": self.specificity_ci[1], "misclassified": len(self.misclassified)}


def accuracy(instrument: str, predicted, truth, source: str, fitted_on: str = "", excluded: int = 0) -> Accuracy:
    """`predicted`: True/False/None (None: no answer, left out) per item; `truth`: True for a reference refusal."""
    predicted = list(predicted)
    rows = [(i, bool(p), bool(t)) for i, (p, t) in enumerate(zip(predicted, truth)) if p is not None]
    pos = [p for _, p, t in rows if t]
    neg = [p for _, p, t in rows if not t]
    tp, tn = sum(pos), sum(not p for p in neg)
    n = len(rows)
    return Accuracy(instrument, len(pos), len(neg), tp / len(pos) if pos else float("nan"),
                    tn / len(neg) if neg else float("nan"), wilson_interval(tp, len(pos)),
                    wilson_interval(tn, len(neg)), source, (tp + tn) / n if n else float("nan"),
                    wilson_interval(tp + tn, n), fitted_on, excluded,
                    tuple(i for i, p, t in rows if p != t), len(predicted) - n)


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
    return InstrumentChoice(primary, tuple(screening), tuple(i for i in available if i not in screening),
                            tuple(notes))
