"""Safety-neuron error (TR146 phase 4, after Chen et al. 2024; SPEC §4).

On the baseline, the safety dimensions of a layer's residual stream are the top `top_pct` percent by
|mean(harmful) - mean(harmless)| (floor(pct/100 x hidden), at least one). The cell's error on a dimension is
mean |h_cell - h_baseline| over the first `n_error` harmful prompts (the same prompts, paired); the ratio is the mean
error on safety dimensions over the mean error on the rest. Ratios above 1 mean the safety dimensions absorb more
than their share. A cell identical to its baseline has no error anywhere and ratio 1.
"""
from __future__ import annotations

import math

import numpy as np

from quantscreen.records.probe import FigureRecord, digest_arrays

VERSION = "safety-neurons-v1"


def safety_dims(base_harmful, base_harmless, top_pct: float) -> np.ndarray:
    """Indices of the top `top_pct` percent of dimensions by harmful/harmless contrast, largest first."""
    contrast = np.abs(np.asarray(base_harmful, np.float64).mean(axis=0)
                      - np.asarray(base_harmless, np.float64).mean(axis=0))
    k = max(1, math.floor(top_pct / 100.0 * contrast.shape[0]))
    return np.argsort(-contrast, kind="stable")[:k]


def error_ratio(cell_harmful, base_harmful, dims: np.ndarray) -> tuple[float, float, float]:
    """(mean error on `dims`, mean error on the other dimensions, their ratio) over paired prompts."""
    err = np.abs(np.asarray(cell_harmful, np.float64) - np.asarray(base_harmful, np.float64)).mean(axis=0)
    mask = np.zeros(err.shape[0], dtype=bool)
    mask[dims] = True
    safety, other = float(err[mask].mean()), float(err[~mask].mean()) if (~mask).any() else float("nan")
    if safety == 0.0 and other == 0.0:
        return safety, other, 1.0
    return safety, other, safety / other if other > 0 else float("inf")


def safety_neurons(cell_harmful, base_harmful, base_harmless, layers, top_pct: float = 5.0,
                   n_error: int = 50) -> FigureRecord:
    """Per layer and averaged. The arrays are prompts x layers x hidden, `layers` names the second axis."""
    cell_harmful, base_harmful = np.asarray(cell_harmful), np.asarray(base_harmful)
    if cell_harmful.shape[1:] != base_harmful.shape[1:]:
        raise ValueError(f"activation shapes differ: cell {cell_harmful.shape[1:]}, baseline {base_harmful.shape[1:]}")
    n = min(n_error, len(cell_harmful), len(base_harmful))
    figures, ratios, safeties, others = {}, [], [], []
    for j, layer in enumerate(layers):
        dims = safety_dims(base_harmful[:, j], np.asarray(base_harmless)[:, j], top_pct)
        safety, other, ratio = error_ratio(cell_harmful[:n, j], base_harmful[:n, j], dims)
        figures[f"ratio_layer{layer}"] = ratio
        ratios.append(ratio), safeties.append(safety), others.append(other)
    figures.update({"ratio_mean": float(np.mean(ratios)), "ratio_max": float(np.max(ratios)),
                    "safety_error": float(np.mean(safeties)), "other_error": float(np.mean(others)),
                    "dims_per_layer": float(len(dims)), "top_pct": float(top_pct)})
    return FigureRecord("safety_neurons", figures, n, VERSION,
                        digest_arrays(cell_harmful[:n], base_harmful, np.asarray(base_harmless)))
