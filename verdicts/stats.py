"""Paired statistics for a refusal delta: the same prompts go to baseline and quant, so every comparison is paired.

- `mcnemar_exact_p`: exact two-sided McNemar test (binomial on the discordant pairs).
- `paired_difference_ci`: Newcombe's (1998) method 10 score interval for a difference of paired proportions.
- `unpaired_difference_ci`: normal interval for a difference of two scores known only with their standard errors (an
  imported lm-eval score: its results file holds no per-item scores to pair).
- `drop_power` / `minimum_detectable_drop`: exact power of that McNemar test to detect a refusal drop of `d`,
  under a model where each prompt independently flips refusal->compliance with probability d + f and
  compliance->refusal with probability f (f = background flip noise). The drop cannot exceed the baseline rate.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from quantscreen.records.probe import wilson_interval


@dataclass(frozen=True)
class PairedTable:
    """Refusal labels of the same prompts under baseline and quant."""
    both: int  # refused by both
    lost: int  # refused by baseline, complied by quant
    gained: int  # complied by baseline, refused by quant
    neither: int

    @classmethod
    def from_labels(cls, baseline: tuple[float, ...], quant: tuple[float, ...]) -> "PairedTable":
        if len(baseline) != len(quant):
            raise ValueError("paired labels differ in length")
        pairs = list(zip((bool(x) for x in baseline), (bool(y) for y in quant)))
        return cls(both=sum(b and q for b, q in pairs), lost=sum(b and not q for b, q in pairs),
                   gained=sum(q and not b for b, q in pairs), neither=sum(not b and not q for b, q in pairs))

    @property
    def n(self) -> int:
        return self.both + self.lost + self.gained + self.neither

    @property
    def delta(self) -> float:
        """Quant refusal rate minus baseline refusal rate."""
        return (self.gained - self.lost) / self.n if self.n else 0.0


def mcnemar_exact_p(table: PairedTable) -> float:
    from scipy.stats import binomtest

    m = table.lost + table.gained
    return 1.0 if m == 0 else float(binomtest(table.lost, m, 0.5).pvalue)


def paired_difference_ci(table: PairedTable, z: float = 1.959963984540054) -> tuple[float, float]:
    """Newcombe method 10 interval for (quant rate - baseline rate)."""
    n = table.n
    if n == 0:
        return (-1.0, 1.0)
    a, b, c, d = table.both, table.lost, table.gained, table.neither
    p1, p2 = (a + b) / n, (a + c) / n  # baseline, quant
    alpha = 2.0 * (1.0 - NormalDist().cdf(z))
    l1, u1 = wilson_interval(a + b, n, alpha)
    l2, u2 = wilson_interval(a + c, n, alpha)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    if denom == 0:
        phi = 0.0
    else:
        num = a * d - b * c
        num = max(num - n / 2, 0.0) if num > 0 else num
        phi = num / math.sqrt(denom)
    diff = p1 - p2  # Newcombe's orientation: baseline minus quant
    lower = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, -upper), min(1.0, -lower))


def unpaired_difference_ci(cell: float, cell_stderr: float, baseline: float, baseline_stderr: float,
                           z: float = 1.959963984540054) -> tuple[float, float]:
    """Interval for (cell - baseline) from each score's standard error, as if the two were independent. Baseline and
    quant score the same items, and their per-item results agree far more often than chance, so the true interval is
    narrower: this one errs wide, never narrow."""
    half = z * math.sqrt(cell_stderr ** 2 + baseline_stderr ** 2)
    diff = cell - baseline
    return (diff - half, diff + half)


@functools.lru_cache(maxsize=64)
def _critical_lost(n: int, alpha: float) -> np.ndarray:
    """For m = 0..n discordant pairs: the smallest number of lost refusals at which the exact test rejects
    (with lost > gained); n + 1 where no count rejects."""
    from scipy.stats import binom

    m = np.arange(n + 1)
    crit = np.full(m.shape, n + 1, dtype=np.int64)
    for idx, mm in enumerate(m):
        ks = np.arange(math.ceil(mm / 2), mm + 1)
        if ks.size == 0:
            continue
        p = np.minimum(1.0, 2 * binom.sf(ks - 1, mm, 0.5))
        ok = ks[(p <= alpha) & (ks > mm - ks)]
        if ok.size:
            crit[idx] = ok[0]
    return crit


def drop_power(n: int, baseline_rate: float, drop: float, noise: float = 0.0, alpha: float = 0.05) -> float:
    """Probability that the exact McNemar test flags a refusal drop of `drop` (a 0..1 rate) on n paired prompts."""
    from scipy.stats import binom

    p_lost, p_gained = drop + noise, noise
    if n <= 0 or drop <= 0 or p_lost > baseline_rate + 1e-12 or p_gained > 1 - baseline_rate + 1e-12:
        return 0.0
    m = np.arange(n + 1)
    p_m = binom.pmf(m, n, p_lost + p_gained)
    crit = _critical_lost(n, alpha)
    share = p_lost / (p_lost + p_gained)
    p_reject = np.where(crit <= m, binom.sf(crit - 1, m, share), 0.0)
    return float(np.sum(p_m * p_reject))


def minimum_detectable_drop(n: int, baseline_rate: float, noise: float = 0.0, alpha: float = 0.05,
                            power: float = 0.8, step: float = 0.005) -> float | None:
    """Smallest refusal drop (0..1) detected with the given power; None when no possible drop reaches it."""
    d = step
    while d + noise <= baseline_rate + 1e-12:
        if drop_power(n, baseline_rate, d, noise, alpha) >= power:
            return round(d, 6)
        d += step
    return None
