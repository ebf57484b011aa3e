"""Paired statistics checked against scipy, a published example and simulation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from quantscreen.records.probe import wilson_interval
from quantscreen.verdicts.stats import (PairedTable, drop_power, mcnemar_exact_p, minimum_detectable_drop,
                            paired_difference_ci)

counts = st.integers(min_value=0, max_value=60)


@given(k=st.integers(0, 300), extra=st.integers(0, 300))
def test_wilson_matches_scipy(k, extra):
    n = k + extra
    if n == 0:
        return
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


@given(a=counts, b=counts, c=counts, d=counts)
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(a, b, c, d):
    table = PairedTable(a, b, c, d)
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact_p(table) == pytest.approx(expected)


def test_paired_table_from_labels():
    t = PairedTable.from_labels((1, 1, 0, 0, 1), (1, 0, 1, 0, 0))
    assert (t.both, t.lost, t.gained, t.neither) == (1, 2, 1, 1)
    assert t.delta == pytest.approx(-0.2)


def test_newcombe_method_10_published_example():
    # Newcombe (1998), Stat Med 17:2635, worked example a=36, b=12, c=2, d=0: interval 0.0569 to 0.3404
    # for (baseline - quant); ours is reported as quant - baseline.
    low, high = paired_difference_ci(PairedTable(36, 12, 2, 0))
    assert (low, high) == pytest.approx((-0.3404, -0.0569), abs=1e-4)


@settings(max_examples=200)
@given(a=counts, b=counts, c=counts, d=counts)
def test_paired_ci_contains_the_estimate(a, b, c, d):
    table = PairedTable(a, b, c, d)
    if table.n == 0:
        return
    low, high = paired_difference_ci(table)
    assert -1.0 <= low <= table.delta + 1e-12 <= high + 2e-12 <= 1.0 + 2e-12


def test_paired_ci_coverage_by_simulation():
    rng = np.random.default_rng(7)
    n, probs = 100, np.array([0.25, 0.15, 0.05, 0.55])  # both, lost, gained, neither
    true_delta = probs[2] - probs[1]
    hits = 0
    for _ in range(1000):
        a, b, c, d = rng.multinomial(n, probs)
        low, high = paired_difference_ci(PairedTable(int(a), int(b), int(c), int(d)))
        hits += low <= true_delta <= high
    assert 0.93 <= hits / 1000 <= 0.98


@pytest.mark.parametrize("n,base,drop,noise", [(100, 0.5, 0.10, 0.02), (60, 0.3, 0.15, 0.0), (200, 0.2, 0.05, 0.03)])
def test_exact_power_matches_monte_carlo_with_scipy(n, base, drop, noise):
    rng = np.random.default_rng(11)
    probs = [drop + noise, noise, 1 - drop - 2 * noise]  # lost, gained, concordant
    rejections, sims = 0, 3000
    for _ in range(sims):
        lost, gained, _ = rng.multinomial(n, probs)
        if lost + gained and lost > gained and binomtest(int(lost), int(lost + gained), 0.5).pvalue <= 0.05:
            rejections += 1
    assert drop_power(n, base, drop, noise) == pytest.approx(rejections / sims, abs=0.03)


def test_mde_behaviour():
    assert minimum_detectable_drop(100, 0.03) is None  # a 3% baseline cannot show a detectable drop
    small, large = minimum_detectable_drop(100, 0.5), minimum_detectable_drop(400, 0.5)
    assert large < small <= 0.5
    assert drop_power(100, 0.5, small) >= 0.8 > drop_power(100, 0.5, small - 0.005)
    assert minimum_detectable_drop(100, 0.5, noise=0.05) > small  # noise costs power
