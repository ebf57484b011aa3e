"""Mechanistic probes (SPEC §4, TR146): informational figures on every quantized cell.

They never gate a deploy on their values (TR146 found none predicts hidden danger); the screen fails only when a
probe cannot run or gives NaN/inf, which means the checkpoint or its loading is broken.
"""
import pytest

from quantscreen.verdicts.rules import MECHANISTIC_PROBES


def test_mechanistic_probes_recorded(cell, decided):
    if MECHANISTIC_PROBES.name not in cell.screens:
        pytest.skip("mechanistic probes are off (probes: {enabled: false} in models.yaml, or --no-probes), or cannot "
                    "see this cell (a served model, or a quantized KV cache: torch runs the weights with an f16 cache)")
    decided(MECHANISTIC_PROBES)
    assert not cell.violates(MECHANISTIC_PROBES), cell.explain(MECHANISTIC_PROBES)
