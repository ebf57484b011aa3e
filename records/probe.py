"""The record every probe returns: a value with its sample size, interval where one exists, version and input digest."""
from __future__ import annotations

from dataclasses import dataclass

from quantscreen.records.digest import sha256_json


@dataclass(frozen=True)
class ProbeRecord:
    name: str
    value: float
    n: int
    per_item: tuple[float, ...]
    version: str
    inputs_digest: str
    ci_low: float | None = None
    ci_high: float | None = None
    stderr: float | None = None  # where the source reports one (an imported lm-eval score): the delta's interval


def rate_record(name: str, flags, version: str, inputs_digest: str) -> ProbeRecord:
    """A refusal instrument's rate over its per-reply flags (True: refusal), with a Wilson 95% interval."""
    from scipy.stats import binomtest

    labels = tuple(1.0 if f else 0.0 for f in flags)
    n, k = len(labels), int(sum(labels))
    low = high = None
    if n:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = float(ci.low), float(ci.high)
    return ProbeRecord(name=name, value=k / n if n else float("nan"), n=n, per_item=labels, version=version,
                       inputs_digest=inputs_digest, ci_low=low, ci_high=high)


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of k successes in n (statsmodels); (0, 1) when nothing was counted."""
    if n == 0:
        return (0.0, 1.0)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return (max(0.0, float(low)), min(1.0, float(high)))


def digest_inputs(*parts) -> str:
    return sha256_json([list(p) if isinstance(p, tuple) else p for p in parts])[:16]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class FigureRecord:
    """A mechanistic probe's result: named figures over `n` prompts (SPEC §4), with version and input digest."""
    name: str
    figures: dict
    n: int
    version: str
    inputs_digest: str


def digest_arrays(*arrays) -> str:
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
