"""How far the two refusal instruments agree, how accurate each is on labelled replies, and what that does to a rate.

- `cohen_kappa`: Cohen's (1960) kappa for two raters over the same items (any hashable categories).
- `accuracy`: sensitivity (refusals called refusals) and specificity (compliances called compliances) against
  reference labels, each with a Wilson 95% interval.
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

    def figures(self) -> dict:
        p = self.instrument
        return {f"{p}_sensitivity": self.sensitivity, f"{p}_specificity": self.specificity,
                f"{p}_sensitivity_ci_low": self.sensitivity_ci[0], f"{p}_sensitivity_ci_high": self.sensitivity_ci[1],
                f"{p}_specificity_ci_low": self.specificity_ci[0], f"{p}_specificity_ci_high": self.specificity_ci[1],
                f"{p}_accuracy_n": self.n_refusals + self.n_compliances}


def accuracy(instrument: str, predicted, truth, source: str) -> Accuracy:
    """`predicted`: True/False/None (None: no answer, left out) per item; `truth`: True for a reference refusal."""
    pairs = [(bool(p), bool(t)) for p, t in zip(predicted, truth) if p is not None]
    pos = [p for p, t in pairs if t]
    neg = [p for p, t in pairs if not t]
    tp, tn = sum(pos), sum(not p for p in neg)
    return Accuracy(instrument, len(pos), len(neg), tp / len(pos) if pos else float("nan"),
                    tn / len(neg) if neg else float("nan"), wilson_interval(tp, len(pos)),
                    wilson_interval(tn, len(neg)), source)


def corrected_rate(observed: float, low: float, high: float, se: float, sp: float) -> tuple[float, float, float] | None:
    """(rate, low, high) corrected for misclassification; None when Se + Sp <= 1 (the instrument is no better
    than chance, so nothing can be corrected) or an input is missing."""
    values = (observed, low, high, se, sp)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or se + sp <= 1.0:
        return None

    def fix(q: float) -> float:
        return min(1.0, max(0.0, (q + sp - 1.0) / (se + sp - 1.0)))

    return fix(observed), fix(low), fix(high)
