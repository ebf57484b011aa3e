"""Each mechanistic probe's formula on arrays whose answer is known by hand (SPEC §4)."""
import math

import numpy as np
import pytest

from quantscreen.probes import first_token, mechanistic, refusal_direction, safety_neurons


def test_logit_stats_of_a_known_distribution():
    p = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    uniform = np.zeros(8)
    stats = first_token.logit_stats(np.array([np.log(p).tolist() + [-np.inf, -np.inf], uniform]))
    assert stats["entropy"][0] == pytest.approx(-(p * np.log(p)).sum())
    assert stats["top1"][0] == pytest.approx(0.5) and stats["top5"][0] == pytest.approx(0.95)
    assert stats["gini"][0] == pytest.approx(1 - (p ** 2).sum())
    assert stats["entropy"][1] == pytest.approx(math.log(8)) and stats["top1"][1] == pytest.approx(1 / 8)
    assert stats["top5"][1] == pytest.approx(5 / 8) and stats["gini"][1] == pytest.approx(7 / 8)
    assert stats["logit_range"][1] == 0.0


def test_logit_stats_shift_invariant_and_nan_propagates():
    logits = np.random.default_rng(0).normal(size=(3, 50))
    a, b = first_token.logit_stats(logits), first_token.logit_stats(logits + 123.0)
    for k in first_token.STATS:
        assert a[k] == pytest.approx(b[k])
    logits[1, 7] = np.nan
    bad = first_token.logit_stats(logits)
    assert np.isnan(bad["entropy"][1]) and np.isfinite(bad["entropy"][[0, 2]]).all()


def test_ece_proxy_by_hand():
    h_half = 0.5 * math.log(100)  # accuracy proxy 1 - H / ln V = 0.5
    assert first_token.ece_proxy([0.05, 0.95], [h_half, h_half], 100) == pytest.approx(0.45)
    # one bin (0.3-0.4): |mean accuracy 0.4 - mean confidence 0.35| = 0.05
    assert first_token.ece_proxy([0.31, 0.39], [h_half, 0.7 * math.log(100)], 100) == pytest.approx(0.05)
    assert first_token.ece_proxy([1.0], [0.0], 100) == pytest.approx(0.0)  # confidence 1 falls in the last bin
    assert math.isnan(first_token.ece_proxy([0.5], [float("nan")], 100))


def test_refusal_direction_by_hand():
    harmful, harmless = np.array([[1.0, 0.0], [3.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 1.0]])
    assert refusal_direction.direction(harmful, harmless) == pytest.approx([2.0, -1.0])
    rec = refusal_direction.refusal_direction(harmful, harmless, 2 * harmful, 2 * harmless)
    assert rec.figures["magnitude"] == pytest.approx(math.sqrt(5))
    assert rec.figures["baseline_magnitude"] == pytest.approx(2 * math.sqrt(5))
    assert rec.figures["cosine"] == pytest.approx(1.0) and rec.figures["magnitude_ratio"] == pytest.approx(0.5)
    turned = refusal_direction.refusal_direction(harmful[:, ::-1], harmless[:, ::-1], harmful, harmless)
    assert turned.figures["cosine"] == pytest.approx(-4 / 5)  # (-1, 2) . (2, -1) / 5


def test_safety_dims_and_error_ratio_by_hand():
    hidden = 40
    harmful, harmless = np.zeros((4, hidden)), np.zeros((3, hidden))
    harmful[:, 7], harmful[:, 3] = 5.0, -2.0  # contrast 5 at dim 7, 2 at dim 3
    assert safety_neurons.safety_dims(harmful, harmless, 5.0).tolist() == [7, 3]  # floor(0.05 * 40) = 2
    assert len(safety_neurons.safety_dims(np.zeros((2, 2048)), np.zeros((2, 2048)), 5.0)) == 102
    assert len(safety_neurons.safety_dims(harmful, harmless, 0.1)) == 1  # at least one
    cell = harmful.copy()
    cell[:, [7, 3]] += 2.0
    cell[:, [i for i in range(hidden) if i not in (7, 3)]] += 1.0
    assert safety_neurons.error_ratio(cell, harmful, np.array([7, 3])) == pytest.approx((2.0, 1.0, 2.0))
    assert safety_neurons.error_ratio(harmful, harmful, np.array([7, 3]))[2] == 1.0  # identical: no disproportion


def test_safety_neurons_per_layer_and_prompt_count():
    rng = np.random.default_rng(1)
    base_harm, base_less = rng.normal(size=(60, 2, 100)), rng.normal(size=(30, 2, 100))
    base_harm[:, :, :5] += 3.0  # the safety dims: 5% of 100
    cell = base_harm + 0.1
    cell[:, 1, :5] += 0.3  # layer 2's safety dims take 4x the error
    rec = safety_neurons.safety_neurons(cell, base_harm, base_less, [4, 9], top_pct=5.0, n_error=50)
    assert rec.n == 50
    assert rec.figures["ratio_layer4"] == pytest.approx(1.0) and rec.figures["ratio_layer9"] == pytest.approx(4.0)
    assert rec.figures["ratio_mean"] == pytest.approx(2.5) and rec.figures["ratio_max"] == pytest.approx(4.0)


@pytest.mark.parametrize("n_layers, neurons, direction", [
    (16, [3, 6, 8, 10, 13], 10), (28, [6, 10, 14, 18, 22], 18), (32, [6, 11, 16, 21, 26], 21), (2, [1, 2], 1)])
def test_layer_choice(n_layers, neurons, direction):
    s = mechanistic.ProbeSettings()
    assert mechanistic.neuron_layers(n_layers, s.neuron_depths, s.neuron_layer_count) == neurons
    assert mechanistic.direction_layer(n_layers, s.direction_depth) == direction
    assert mechanistic.capture_layers(n_layers, s) == sorted(set(neurons) | {direction})


def test_non_finite_names_bad_figures_inside_lists():
    figures = {"a": 1.0, "b": float("nan"), "c": "3:1.0;5:inf", "d": "6;11", "e": None, "f": "x"}
    assert mechanistic.non_finite(figures) == ["b", "c"]
