"""An instrument's accuracy on labelled replies: sensitivity, specificity and accuracy with Wilson 95% intervals, the
rows it got wrong, and what it was fitted on (never the rows measured). Measured on held-out labelled sets
(promptsets/labelled.py) by pipeline/instruments.py; verdicts/agreement.py chooses the primary instrument from it."""
from __future__ import annotations

from dataclasses import dataclass

from quantscreen.records.probe import wilson_interval


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
