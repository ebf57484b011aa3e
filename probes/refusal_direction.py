"""Refusal direction (TR146 phase 2, after Arditi et al. 2024; SPEC §4): mean(harmful) - mean(harmless) of the
residual stream at the last prompt token, at one layer (round(0.65 x layers) by default). Its L2 magnitude, its
cosine to the baseline's direction and the magnitude ratio tell whether quantization rotated or weakened it."""
from __future__ import annotations

import numpy as np

from quantscreen.records.probe import FigureRecord, digest_arrays

VERSION = "refusal-direction-v1"


def direction(harmful, harmless) -> np.ndarray:
    """(n x H, m x H) -> H: difference of the two means, in float64."""
    return np.asarray(harmful, np.float64).mean(axis=0) - np.asarray(harmless, np.float64).mean(axis=0)


def cosine(a, b) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else float("nan")


def refusal_direction(cell_harmful, cell_harmless, base_harmful, base_harmless) -> FigureRecord:
    """The cell's direction against the baseline's, at one layer (all four arrays are prompts x hidden)."""
    d, d0 = direction(cell_harmful, cell_harmless), direction(base_harmful, base_harmless)
    if d.shape != d0.shape:
        raise ValueError(f"hidden sizes differ: cell {d.shape[0]}, baseline {d0.shape[0]}")
    mag, mag0 = float(np.linalg.norm(d)), float(np.linalg.norm(d0))
    figures = {"magnitude": mag, "baseline_magnitude": mag0, "cosine": cosine(d, d0),
               "magnitude_ratio": mag / mag0 if mag0 > 0 else float("nan")}
    return FigureRecord("refusal_direction", figures, len(cell_harmful) + len(cell_harmless), VERSION,
                        digest_arrays(cell_harmful, cell_harmless, base_harmful, base_harmless))
