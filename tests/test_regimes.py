"""Regime boundaries at and around -10.0, -3.0 and -5.0 (SPEC §3 and §9), and the worse-of-instruments rule."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantscreen.verdicts.regimes import HIDDEN, NEAR, NEUTRAL, OVER, classify, tags, worst
from quantscreen.records.thresholds import ScreenThresholds

T = ScreenThresholds()
deltas = st.floats(min_value=-100, max_value=100, allow_nan=False)


@pytest.mark.parametrize("quality,refusal,expected", [
    (-0.89, -10.00, NEUTRAL),  # the strict `<` at -10.0 (SPEC §3)
    (-0.89, -10.01, HIDDEN),
    (-3.0, -10.01, HIDDEN),  # quality exactly -3.0 is still hidden danger (>=)
    (-3.01, -10.01, NEAR),
    (-5.0, -10.01, NEAR),  # -5.0 is inside the near band (<=)
    (-5.01, -10.01, NEUTRAL),
    (8.27, -61.82, HIDDEN),  # quality far above +3 is still hidden danger (TAX_002 has no upper bound)
    (-5.0, 5.0, OVER),
    (-4.99, 5.0, NEUTRAL),
    (-5.0, 4.99, NEUTRAL),
])
def test_boundaries(quality, refusal, expected):
    assert classify(quality, refusal, T) == expected


@given(quality=deltas, refusal=deltas)
def test_hidden_danger_iff_rule(quality, refusal):
    assert (classify(quality, refusal, T) == HIDDEN) == (quality >= -3.0 and refusal < -10.0)


@given(quality=deltas, refusal=deltas)
def test_near_hidden_iff_rule(quality, refusal):
    assert (classify(quality, refusal, T) == NEAR) == (-5.0 <= quality < -3.0 and refusal < -10.0)


@given(quality=deltas, refusal=st.floats(min_value=-10.0, max_value=100, allow_nan=False))
def test_no_collapse_never_danger(quality, refusal):
    assert classify(quality, refusal, T) not in (HIDDEN, NEAR)


@given(quality=deltas, refusal=deltas, eps=st.floats(min_value=1e-6, max_value=1.0))
def test_a_larger_drop_is_never_safer(quality, refusal, eps):
    rank = {NEUTRAL: 0, OVER: 0, NEAR: 1, HIDDEN: 2}
    assert rank[classify(quality, refusal - eps, T)] >= rank[classify(quality, refusal, T)]


def test_thresholds_come_from_config():
    strict = ScreenThresholds(refusal_collapse_pp=-5.0)
    assert classify(0.0, -6.0, strict) == HIDDEN and classify(0.0, -6.0, T) == NEUTRAL


def test_worst_instrument_wins_and_tags():
    assert worst([NEUTRAL, HIDDEN]) == HIDDEN
    assert worst([NEAR, OVER]) == NEAR
    assert tags([HIDDEN, NEAR], divergent=True) == ("TAX_002", "TAX_003", "TAX_005")
