"""First-token probes (TR146 phases 1 and 3; SPEC §4): how sure the model is of the token that starts its answer.

Computed on the logits at the last prompt token (the first generated position), in float64: Shannon entropy in nats,
top-1 and top-5 probability, Gini impurity 1 - sum p^2, logit range max - min, and a proxy expected calibration error
(10 equal-width confidence bins; each prompt's "accuracy" is stood in for by 1 - H / ln V, as TR146 did). Non-finite
logits (NaN or +inf; -inf only masks a token) give non-finite figures, which the probe screen reports.
"""
from __future__ import annotations

import numpy as np

from quantscreen.records.probe import FigureRecord, digest_arrays

VERSION = "first-token-v1"
ECE_BINS = 10
STATS = ("entropy", "top1", "top5", "gini", "logit_range")


def logit_stats(logits) -> dict[str, np.ndarray]:
    """Per row of `logits` (n x V): entropy (nats), top-1 and top-5 probability, Gini impurity and logit range."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 5:
        raise ValueError(f"logits must be n x V with V >= 5, got shape {x.shape}")
    broken = (np.isnan(x) | (x == np.inf)).any(axis=1) | ~np.isfinite(x).any(axis=1)  # -inf masks a token
    x = np.where(broken[:, None], np.nan, x)
    z = x - x.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        plogp = np.where(p > 0, p * np.where(p > 0, logp, 0.0), np.where(np.isnan(p), np.nan, 0.0))
    finite = np.where(np.isfinite(x), x, np.nan)
    finite[broken] = 0.0  # their range is set to NaN below; this only keeps nanmax quiet
    return {"entropy": -plogp.sum(axis=1),
            "top1": p.max(axis=1),
            "top5": np.partition(p, p.shape[1] - 5, axis=1)[:, -5:].sum(axis=1),
            "gini": 1.0 - (p * p).sum(axis=1),
            "logit_range": np.where(broken, np.nan, np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1))}


def ece_proxy(confidence, entropy, vocab_size: int, bins: int = ECE_BINS) -> float:
    """sum over confidence bins of (share of prompts) x |mean accuracy proxy - mean confidence|."""
    conf = np.asarray(confidence, dtype=np.float64)
    acc = 1.0 - np.asarray(entropy, dtype=np.float64) / np.log(vocab_size)
    if not (np.isfinite(conf).all() and np.isfinite(acc).all()):
        return float("nan")
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(acc[sel].mean() - conf[sel].mean())
    return float(total)


def first_token(stats: dict[str, np.ndarray], vocab_size: int) -> FigureRecord:
    """Mean of each statistic over prompts, plus the ECE proxy."""
    n = len(stats["entropy"])
    figures = {name: float(np.mean(stats[name])) for name in STATS}
    figures["ece"] = ece_proxy(stats["top1"], stats["entropy"], vocab_size)
    return FigureRecord("first_token", figures, n, VERSION,
                        digest_arrays(*(np.asarray(stats[s]) for s in STATS)))
