"""KL divergence and top-1 agreement of a cell's next-token distributions against its baseline's, over a fixed text.

The standard measure of quantization quality (llama.cpp `perplexity --kl-divergence`): at every token position t of
the text, P = the baseline's next-token distribution and Q = the cell's, and

    KLD_t = sum_v P(v) (log P(v) - log Q(v))        (nats; 0 when the cell predicts exactly as the baseline)
    top1_t = 1 if argmax P == argmax Q else 0

`kld_mean` is the mean of KLD_t over all positions, `kld_p99` its 99th percentile (linear interpolation), and
`top1_agreement` the share of positions where both argmax tokens agree.

Approximation. Storing P over a 151,936-token vocabulary at every position is too big, so the baseline keeps, per
position, its top-k token ids with their log-probabilities, the log of the remaining mass r = 1 - sum_topk P, and its
argmax id. KLD_t is then computed over k + 1 outcomes: those k tokens, and one "rest" bucket holding P's mass r and
the cell's mass on every other token (1 - the cell's probability on those k ids):

    KLD_t(k) = sum_{v in topk} P(v) (log P(v) - log Q(v)) + r (log r - log Q(rest))

This is the KL divergence of the two distributions coarse-grained onto the same k + 1 outcomes, so by the log-sum
inequality it is a lower bound of the exact KLD_t, equal to it when r = 0 (k covers the vocabulary) or when the cell
spreads its rest mass over those tokens in the baseline's proportions. `kld_rest_mass` keeps the baseline's mean rest
mass so a reader can judge how close the bound is; `kld: {top_k: K}` in models.yaml sets k. Top-1 agreement is exact
(both argmaxes are over the full vocabulary). Positions are not independent, so no confidence interval is claimed.
On Qwen2.5-Coder-0.5B (Q4_K_M baseline, llama.cpp Q2_K cell, this text set, 1577 positions) the mean KLD at k = 32,
128 and 512 was 79%, 89% and 95% of the exact full-vocabulary figure (baseline rest mass 0.127, 0.064, 0.030), so
k = 512 is the default: about 10 MB of cache per baseline.

The baseline's own row is the baseline against its stored distributions: KLD 0 and top-1 agreement 1, so
`top1_agreement` is a 0..1, higher-is-better score whose delta against the baseline, in pp, is 100 (top1 - 1); it can
serve as `screen.quality_metric`. The KLD figures are in nats, higher = further from the baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantscreen.records.probe import ProbeRecord

VERSION = "kld-v1"
RECORDS = ("kld_mean", "kld_p99", "top1_agreement", "kld_rest_mass")


@dataclass(frozen=True)
class KldSettings:
    """The `kld:` section of models.yaml."""
    enabled: bool = True
    n_texts: int | None = None  # the first N texts of promptsets/data/kld_text.txt (None: all of them)
    top_k: int = 512            # baseline log-probs kept per position; the rest is one bucket (see above)
    max_tokens: int = 512       # each text is cut to this many tokens

    def capture_key(self) -> dict:
        return {"n_texts": self.n_texts, "top_k": self.top_k, "max_tokens": self.max_tokens, "version": VERSION}


@dataclass(frozen=True)
class TopK:
    """The baseline's next-token distribution at n positions, reduced to its top k tokens and one rest bucket."""
    ids: np.ndarray        # n x k token ids, most probable first
    logp: np.ndarray       # n x k log-probabilities of those ids (float64)
    rest_logp: np.ndarray  # n: log of the mass outside them (-inf when there is none)
    argmax: np.ndarray     # n: the most probable token over the whole vocabulary


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[:, None]).sum(axis=-1))


def _split(logp: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities at `ids` and the log of the mass on every other token, row by row."""
    at = np.take_along_axis(logp, ids, axis=1)
    others = logp.copy()
    np.put_along_axis(others, ids, -np.inf, axis=1)
    return at, _logsumexp(others)


def top_k_distribution(logits: np.ndarray, k: int) -> TopK:
    """The stored form of the baseline's distributions (`logits`: positions x vocabulary). The plain definition;
    pipeline.kld_capture computes the same in torch, which is several times faster on a 151k vocabulary."""
    logp = log_softmax(logits)
    k = min(k, logp.shape[1])
    ids = np.argsort(-logp, axis=1, kind="stable")[:, :k]
    at, rest = _split(logp, ids)
    return TopK(ids=ids.astype(np.int64), logp=at, rest_logp=rest, argmax=np.argmax(logp, axis=1))


def coarse_kld(p_logp: np.ndarray, p_rest_logp: np.ndarray, q_logp: np.ndarray, q_rest_logp: np.ndarray) -> np.ndarray:
    """KLD(P || Q) per position over k named outcomes plus one rest bucket (log-probabilities in, nats out).

    A term with P = 0 contributes 0; one with P > 0 and Q = 0 is infinite, as the divergence is.
    """
    p = np.exp(p_logp)
    p_rest = np.exp(p_rest_logp)
    with np.errstate(invalid="ignore"):
        named = np.where(p > 0, p * (p_logp - q_logp), 0.0).sum(axis=1)
        rest = np.where(p_rest > 0, p_rest * (p_rest_logp - q_rest_logp), 0.0)
    # rounding can leave a few ulps below the true minimum 0 when P and Q agree
    return np.maximum(named + rest, 0.0)


def compare(base: TopK, q_logp: np.ndarray, q_rest_logp: np.ndarray, q_argmax: np.ndarray) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """(KLD per position, top-1 match per position as 1.0/0.0) from the cell's log-probabilities at the baseline's
    top-k ids, its log mass on every other token and its argmax (what pipeline.kld_capture reduces its logits to)."""
    if len(q_logp) != len(base.ids):
        raise ValueError(f"{len(q_logp)} cell positions against {len(base.ids)} baseline positions")
    match = (np.asarray(q_argmax) == base.argmax).astype(np.float64)
    return coarse_kld(base.logp, base.rest_logp, q_logp, q_rest_logp), match


def compare_logits(base: TopK, cell_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`compare` from the cell's full logits (positions x vocabulary)."""
    logp = log_softmax(cell_logits)
    at, rest = _split(logp, base.ids)
    return compare(base, at, rest, np.argmax(logp, axis=1))


def kld_records(kld: np.ndarray, top1_match: np.ndarray, baseline_rest_mass: np.ndarray, top_k: int,
                inputs_digest: str) -> dict[str, ProbeRecord]:
    """The records over all positions, and the baseline's mean rest mass over them (how far below the exact KLD
    the coarse-grained one may lie: 0 means exact)."""
    kld = np.asarray(kld, dtype=np.float64)
    match = np.asarray(top1_match, dtype=np.float64)
    rest = np.asarray(baseline_rest_mass, dtype=np.float64)
    if not len(kld) or not len(kld) == len(match) == len(rest):
        raise ValueError("KLD needs the same, non-zero number of positions for the divergence, the top-1 match and "
                         "the rest mass")
    version = f"{VERSION} top-{top_k}"
    per_position = tuple(float(x) for x in kld)

    def record(name, value, per_item):
        return ProbeRecord(name, float(value), len(kld), per_item, version, inputs_digest)

    return {
        "kld_mean": record("kld_mean", np.mean(kld), per_position),
        "kld_p99": record("kld_p99", np.percentile(kld, 99), per_position),
        "top1_agreement": record("top1_agreement", np.mean(match), tuple(float(x) for x in match)),
        "kld_rest_mass": record("kld_rest_mass", np.mean(rest), tuple(float(x) for x in rest)),
    }
