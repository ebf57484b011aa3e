"""KLD and top-1 agreement against the baseline (probes/kld.py, pipeline/kld_capture.py): the formula on a hand-computed
example, exact when k covers the vocabulary and the documented lower bound when it does not; the capture on tiny
random-weight models (a model against itself gives 0 and 1, another gives more, the baseline is cached); and the
columns and quality metric downstream."""
import math

import numpy as np
import pytest

from quantscreen.records.errors import ScreenInputError
from quantscreen.probes import kld
from quantscreen.records.probe import ProbeRecord
from quantscreen.verdicts.compare import compare
from quantscreen.verdicts.cell import CellMeasurement
from quantscreen.records.thresholds import ScreenThresholds

# two positions over a four-token vocabulary; logits are log-probabilities plus a constant (softmax ignores it)
P = [[0.5, 0.25, 0.15, 0.10], [0.1, 0.6, 0.2, 0.1]]
Q = [[0.4, 0.3, 0.2, 0.1], [0.5, 0.3, 0.1, 0.1]]


def logits(rows, shift):
    return np.log(np.array(rows)) + shift


def by_hand_exact():
    a = 0.5 * math.log(0.5 / 0.4) + 0.25 * math.log(0.25 / 0.3) + 0.15 * math.log(0.15 / 0.2) + 0.1 * math.log(1.0)
    b = 0.1 * math.log(0.1 / 0.5) + 0.6 * math.log(0.6 / 0.3) + 0.2 * math.log(0.2 / 0.1) + 0.1 * math.log(1.0)
    return [a, b]


def by_hand_top2():
    # position 1: P's top two are tokens 0 and 1, rest 0.25 against Q's 0.2 + 0.1 = 0.3
    a = 0.5 * math.log(0.5 / 0.4) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.3)
    # position 2: P's top two are tokens 1 and 2, rest 0.1 + 0.1 = 0.2 against Q's 0.5 + 0.1 = 0.6
    b = 0.6 * math.log(0.6 / 0.3) + 0.2 * math.log(0.2 / 0.1) + 0.2 * math.log(0.2 / 0.6)
    return [a, b]


def test_k_covering_the_vocabulary_gives_the_exact_kld_and_top1():
    base = kld.top_k_distribution(logits(P, 3.0), k=4)
    divergence, match = kld.compare_logits(base, logits(Q, -7.0))
    assert divergence == pytest.approx(by_hand_exact(), abs=1e-12)
    assert list(match) == [1.0, 0.0]  # argmax 0 in both; then 1 against 0
    assert np.all(np.exp(base.rest_logp) == 0.0)


def test_smaller_k_gives_the_documented_lower_bound():
    base = kld.top_k_distribution(logits(P, 0.0), k=2)
    divergence, match = kld.compare_logits(base, logits(Q, 0.0))
    assert divergence == pytest.approx(by_hand_top2(), abs=1e-12)
    assert all(d < e for d, e in zip(divergence, by_hand_exact()))
    assert np.exp(base.rest_logp) == pytest.approx([0.25, 0.2], abs=1e-12)
    assert list(match) == [1.0, 0.0]  # top-1 is over the whole vocabulary whatever k is


def test_records_mean_p99_agreement_and_rest_mass():
    base = kld.top_k_distribution(logits(P, 0.0), k=2)
    divergence, match = kld.compare_logits(base, logits(Q, 0.0))
    rec = kld.kld_records(divergence, match, np.exp(base.rest_logp), 2, "d")
    a, b = by_hand_top2()
    assert rec["kld_mean"].value == pytest.approx((a + b) / 2, abs=1e-12) and rec["kld_mean"].n == 2
    low, high = sorted([a, b])
    assert rec["kld_p99"].value == pytest.approx(low + 0.99 * (high - low), abs=1e-12)  # linear interpolation
    assert rec["top1_agreement"].value == 0.5
    assert rec["kld_rest_mass"].value == pytest.approx((0.25 + 0.2) / 2, abs=1e-12)
    assert rec["kld_mean"].version == "kld-v1 top-2"


def test_identical_distributions_give_zero_and_a_zero_cell_probability_infinity():
    base = kld.top_k_distribution(logits(P, 1.0), k=3)
    same, match = kld.compare_logits(base, logits(P, 1.0))
    assert np.all(same == 0.0) and np.all(match == 1.0)
    shifted, _ = kld.compare_logits(base, logits(P, -2.0))  # the same distribution, other rounding
    assert shifted == pytest.approx([0.0, 0.0], abs=1e-15) and np.all(shifted >= 0.0)
    with np.errstate(divide="ignore"):
        impossible = np.log(np.array([[0.0, 0.5, 0.25, 0.25]]))  # the cell gives the baseline's top token no mass
        div, _ = kld.compare_logits(kld.top_k_distribution(logits(P[:1], 0.0), k=4), impossible)
    assert div[0] == math.inf


def test_the_torch_reduction_equals_the_plain_definition():
    import torch

    from quantscreen.pipeline.kld_capture import reduce_logits

    rng = np.random.default_rng(7)
    base_logits, cell_logits = rng.normal(size=(6, 50)) * 3, rng.normal(size=(6, 50)) * 3
    fast = reduce_logits(torch.tensor(base_logits, dtype=torch.float32), k=5)
    plain = kld.top_k_distribution(base_logits.astype(np.float32), k=5)
    assert np.array_equal(fast.ids, plain.ids) and np.array_equal(fast.argmax, plain.argmax)
    assert fast.logp == pytest.approx(plain.logp, abs=1e-12)
    assert fast.rest_logp == pytest.approx(plain.rest_logp, abs=1e-12)
    q = reduce_logits(torch.tensor(cell_logits, dtype=torch.float32), ids=plain.ids)
    div, match = kld.compare(plain, q.logp, q.rest_logp, q.argmax)
    ref_div, ref_match = kld.compare_logits(plain, cell_logits.astype(np.float32))
    assert div == pytest.approx(ref_div, abs=1e-12) and np.array_equal(match, ref_match)


# ---- the capture on tiny random-weight models -----------------------------------------------------------------

TEXTS = ["the cat sat on the mat", "how do i make bread sure here is step one two three",
         "please write story about water fire system", "sorry cannot help with that the dog sat"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.loader import load_model_and_tokenizer
    from tests.conftest import build_tiny_llama

    tmp = tmp_path_factory.mktemp("kld")
    loaded = [load_model_and_tokenizer(inspect_checkpoint(build_tiny_llama(tmp / f"s{seed}", seed=seed)), None)
              for seed in (0, 1)]
    return loaded


def loaders(model, tok, calls, guard=None):
    def load():
        if guard:
            raise AssertionError(guard)
        calls.append(1)
        return model
    return load, lambda: tok


def run_baseline(model, tok, root, settings, guard=None):
    from quantscreen.pipeline import kld_capture

    calls = []
    load, get_tok = loaders(model, tok, calls, guard)
    entries, key, own = kld_capture.baseline(load, get_tok, TEXTS, {"checkpoint": "base"}, settings, root, "cpu",
                                             "tiny")
    return entries, key, own, calls


def run_cell(model, tok, root, settings, entries, key, name, guard=None):
    from quantscreen.pipeline import kld_capture

    calls = []
    load, get_tok = loaders(model, tok, calls, guard)
    cap = kld_capture.cell(load, get_tok, TEXTS, entries, key, {"checkpoint": name}, settings, root, "cpu", name)
    return cap, calls


def test_a_model_against_itself_gives_zero_and_agreement_one(tiny_models, tmp_path):
    (base, tok), _ = tiny_models
    settings = kld.KldSettings(top_k=8)
    entries, key, own, calls = run_baseline(base, tok, tmp_path, settings)
    same, _ = run_cell(base, tok, tmp_path, settings, entries, key, "same")
    n = sum(len(tok(t).input_ids) for t in TEXTS)
    for cap in (own, same):
        assert len(cap.kld) == n and np.all(cap.kld == 0.0) and np.all(cap.top1_match == 1.0)
    rec = same.records()
    assert rec["kld_mean"].value == 0.0 and rec["kld_p99"].value == 0.0 and rec["top1_agreement"].value == 1.0
    assert 0.0 < rec["kld_rest_mass"].value < 1.0  # k = 8 of a larger vocabulary: a coarse-grained figure
    assert calls == [1] and own.forward_passes == len(TEXTS)


def test_another_model_diverges_and_k_covering_the_vocabulary_is_exact(tiny_models, tmp_path):
    import torch

    (base, tok), (other, _) = tiny_models
    vocab = base.config.vocab_size
    settings = kld.KldSettings(top_k=vocab)
    entries, key, _, _ = run_baseline(base, tok, tmp_path, settings)
    cap, _ = run_cell(other, tok, tmp_path, settings, entries, key, "other")
    assert cap.kld.mean() > 0.01 and cap.top1_match.mean() < 1.0
    assert np.all(cap.baseline_rest_mass == 0.0)
    exact = []
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tok(text).input_ids])
            p = torch.log_softmax(base(input_ids=ids).logits[0].double(), -1)
            q = torch.log_softmax(other(input_ids=ids).logits[0].double(), -1)
            exact.append((p.exp() * (p - q)).sum(-1).numpy())
    assert cap.kld == pytest.approx(np.concatenate(exact), rel=1e-5, abs=1e-9)
    smaller = kld.KldSettings(top_k=4)
    e4, k4, _, _ = run_baseline(base, tok, tmp_path, smaller)
    bound, _ = run_cell(other, tok, tmp_path, smaller, e4, k4, "other")
    assert np.all(bound.kld <= cap.kld + 1e-12) and bound.kld.mean() < cap.kld.mean()


def test_the_baseline_is_cached_and_a_warm_cell_loads_no_model(tiny_models, tmp_path):
    (base, tok), (other, _) = tiny_models
    settings = kld.KldSettings(top_k=8)
    entries, key, _, calls = run_baseline(base, tok, tmp_path, settings)
    again, key2, own, _ = run_baseline(base, tok, tmp_path, settings, guard="a cached baseline must not load a model")
    assert calls == [1] and key2 == key and own.forward_passes == 0
    assert [e["logp"] for e in again] == [e["logp"] for e in entries]
    first, calls = run_cell(other, tok, tmp_path, settings, again, key, "other")
    warm, _ = run_cell(other, tok, tmp_path, settings, again, key, "other", guard="a cached cell must not load")
    assert calls == [1] and warm.forward_passes == 0 and np.array_equal(first.kld, warm.kld)


def test_a_cell_with_another_tokenization_is_refused(tiny_models, tmp_path):
    (base, tok), (other, _) = tiny_models
    settings = kld.KldSettings(top_k=8)
    entries, key, _, _ = run_baseline(base, tok, tmp_path, settings)
    shifted = [{**e, "tokens_sha256": "0" * 64} for e in entries]
    with pytest.raises(ScreenInputError, match="tokenizes KLD text 1 differently"):
        run_cell(other, tok, tmp_path, settings, shifted, key, "other")


def test_text_set_loads_and_n_texts_beyond_it_is_refused():
    from quantscreen.pipeline.kld_capture import load_texts

    texts, source = load_texts(None)
    assert len(texts) >= 10 and all(t.strip() and "===" not in t for t in texts)
    assert load_texts(3)[0] == texts[:3] and source.path_inside == "promptsets/data/kld_text.txt"
    with pytest.raises(ScreenInputError, match="kld.n_texts"):
        load_texts(len(texts) + 1)


# ---- downstream: cells.csv columns and screen.quality_metric ---------------------------------------------------

def measured(name, top1, divergence, baseline=False):
    labels = (1.0, 0.0, 1.0, 1.0)
    records = {n: ProbeRecord(n, sum(labels) / 4, 4, labels, "v", "d") for n in
               ("refusal_rate_regex", "harmless_refusal_rate_regex", "bertscore_f1", "rouge_l_f1", "coherence")}
    match = np.array([1.0] * top1 + [0.0] * (10 - top1))
    records.update(kld.kld_records(np.full(10, divergence), match, np.full(10, 0.01), 32, "d"))
    return CellMeasurement(name, "m", "baseline" if baseline else "q", baseline,
                           {"path": "p", "format": "f", "bits_per_weight": 4.0, "sha256": "s"}, records)


def test_top1_agreement_is_a_quality_metric_and_kld_fills_cells_csv():
    from quantscreen.verdicts.table import CELL_COLUMNS, baseline_row, comparison_row

    t = ScreenThresholds(quality_metric="top1_agreement")
    c = compare(measured("q", 8, 0.25), measured("b", 10, 0.0, baseline=True), t)
    assert c.quality_delta_pp == pytest.approx(-20.0)
    row, base = comparison_row(c), baseline_row(c)
    assert row["kld_mean"] == 0.25 and row["kld_p99"] == 0.25 and row["top1_agreement"] == 0.8
    assert row["top1_agreement_delta_pp"] == pytest.approx(-20.0) and row["kld_n_positions"] == 10
    assert base["kld_mean"] == 0.0 and base["top1_agreement"] == 1.0
    assert {"kld_mean", "kld_p99", "top1_agreement", "kld_rest_mass", "kld_error"} <= set(CELL_COLUMNS)


def test_a_missing_quality_metric_names_the_kld_failure():
    from dataclasses import replace

    cell = replace(measured("q", 8, 0.25), records={k: v for k, v in measured("q", 8, 0.25).records.items()
                                                    if not k.startswith(("kld", "top1"))},
                   kld_error="KLD could not run on q: boom")
    with pytest.raises(ScreenInputError, match="boom"):
        compare(cell, measured("b", 10, 0.0, baseline=True), ScreenThresholds(quality_metric="top1_agreement"))


def test_plan_refuses_top1_quality_metric_without_the_kld_pass(tmp_path):
    from quantscreen.pipeline.plan import load_plan

    models = tmp_path / "models.yaml"
    models.write_text("screen: {quality_metric: top1_agreement}\nkld: {enabled: false}\n"
                      "models:\n  - {id: m, baseline: embedded:smollm2, quants: [{id: Q4_0, derive: 'gguf:Q4_0'}]}\n")
    with pytest.raises(ScreenInputError, match="top1_agreement"):
        load_plan(models, {})
    models.write_text(models.read_text().replace("enabled: false", "top_k: 16"))
    plan = load_plan(models, {})
    assert plan.kld.top_k == 16 and plan.kld.enabled and plan.thresholds.quality_metric == "top1_agreement"


def test_an_imported_matrix_takes_top1_agreement_as_quality_and_ignores_kld(tmp_path):
    from quantscreen.verdicts.matrix_input import load_matrix

    path = tmp_path / "cells.csv"
    path.write_text("model,quant,is_baseline,top1_agreement,kld_mean,kld_p99,refusal_rate_regex\n"
                    "m,baseline,true,1.0,0.0,0.0,0.9\nm,Q4,false,0.95,0.004,0.02,0.85\n"
                    "m,Q2,false,0.8,1.7,6.5,0.6\n")
    m = load_matrix(path)
    assert m.quality_metrics == ("top1_agreement",) and m.safety_metrics == ("refusal_rate_regex",)
    deltas = {c.quant: c.deltas["top1_agreement"] for c in m.cells}
    assert deltas == {"baseline": 0.0, "Q4": pytest.approx(-5.0), "Q2": pytest.approx(-20.0)}
