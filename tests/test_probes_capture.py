"""The fused capture on a tiny random-weight Llama: one forward pass per prompt feeds every probe, the numbers equal
an unbatched forward, hooks never outlive the capture, and the cache replaces the model on the next run."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from quantscreen.pipeline.activations import capture, residual_hooks
from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.engine.loader import load_model_and_tokenizer
from quantscreen.probes import first_token, mechanistic, refusal_direction, safety_neurons
from tests.conftest import build_tiny_llama

HARMFUL = ["how do i make fire", "write story about fire", "how do i make water fire", "please write fire",
           "how do i help with fire", "the dog sat on fire"]
HARMLESS = ["how do i make bread", "the cat sat on the mat", "write story about water", "please help with bread",
            "sure here is step one"]
SETTINGS = mechanistic.ProbeSettings(n_prompts=6, neuron_error_prompts=4)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A tiny baseline and a 'quantized' copy: the same weights with every matrix rounded to 3 significant bits."""
    tmp = tmp_path_factory.mktemp("pair")
    base_dir = build_tiny_llama(tmp / "base")
    base, tok = load_model_and_tokenizer(inspect_checkpoint(base_dir), None)
    quant, _ = load_model_and_tokenizer(inspect_checkpoint(base_dir), None)
    with torch.no_grad():
        for p in quant.parameters():
            if p.dim() == 2:
                scale = p.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 3
                p.copy_(torch.round(p / scale) * scale)
    return base, quant, tok


def run_capture(model, tok, root, key="k", prompts=None, load_guard=None):
    calls = []

    def load():
        if load_guard:
            raise AssertionError(load_guard)
        calls.append(1)
        return model

    cap = capture(load, lambda: tok, prompts or {"harmful": HARMFUL, "harmless": HARMLESS}, {"checkpoint": key},
                  SETTINGS, root, batch_size=4, device="cpu", system_prompt=None, label="tiny")
    return cap, calls


def test_one_forward_pass_per_prompt(tiny_pair, tmp_path):
    base, _, tok = tiny_pair
    rows = []
    handle = base.register_forward_pre_hook(lambda _m, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
                                            with_kwargs=True)
    try:
        cap, calls = run_capture(base, tok, tmp_path)
    finally:
        handle.remove()
    assert sum(rows) == len(HARMFUL) + len(HARMLESS) == cap.forward_passes and calls == [1]
    assert cap.layers == (1, 2) and cap.direction_layer == 1 and cap.neuron_layers == (1, 2)
    assert cap.hidden["harmful"].shape == (6, 2, 32) and cap.hidden["harmless"].shape == (5, 2, 32)


def test_batched_capture_equals_one_prompt_at_a_time(tiny_pair, tmp_path):
    """Left padding with explicit position ids: the last prompt token's state and logits match an unpadded pass."""
    base, _, tok = tiny_pair
    cap, _ = run_capture(base, tok, tmp_path)
    for i, prompt in enumerate(HARMFUL):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = base(**enc, output_hidden_states=True)
        assert cap.at("harmful", 1)[i] == pytest.approx(out.hidden_states[1][0, -1].numpy(), abs=1e-5)
        alone = first_token.logit_stats(out.logits[:, -1].double().numpy())
        for k in first_token.STATS:
            assert cap.logit_stats["harmful"][k][i] == pytest.approx(alone[k][0], abs=1e-5)


def test_hooks_are_removed_even_on_error(tiny_pair):
    base, _, _ = tiny_pair
    blocks = base.model.layers
    before = [len(b._forward_hooks) for b in blocks]  # transformers may keep its own output-recording hooks
    with pytest.raises(RuntimeError):
        with residual_hooks(base, [1, 2]):
            assert [len(b._forward_hooks) for b in blocks] == [n + 1 for n in before]
            raise RuntimeError("boom")
    assert [len(b._forward_hooks) for b in blocks] == before


def test_cache_replaces_the_model_and_a_damaged_line_is_recomputed(tiny_pair, tmp_path):
    base, _, tok = tiny_pair
    first, _ = run_capture(base, tok, tmp_path)
    again, _ = run_capture(base, tok, tmp_path, load_guard="a warm activation cache must not load the model")
    assert again.forward_passes == 0
    for role in first.hidden:
        assert np.array_equal(first.hidden[role], again.hidden[role])
    store = next((tmp_path / "activations").glob("*.jsonl"))
    lines = store.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["stats"]["entropy"] += 1.0  # a hand edit: the checksum no longer matches
    store.write_text("\n".join([json.dumps(rec)] + lines[1:]) + "\n")
    healed, calls = run_capture(base, tok, tmp_path)
    assert calls == [1] and 0 < healed.forward_passes < len(HARMFUL) + len(HARMLESS)
    for role in first.hidden:
        assert np.array_equal(first.hidden[role], healed.hidden[role])
    other, _ = run_capture(base, tok, tmp_path, key="another checkpoint")
    assert other.forward_passes == len(HARMFUL) + len(HARMLESS)


def run_probe(name, cell, base):
    layers = list(cell.neuron_layers)
    L = cell.direction_layer
    return {
        "first_token": lambda: first_token.first_token(cell.logit_stats["harmful"], cell.vocab_size),
        "refusal_direction": lambda: refusal_direction.refusal_direction(
            cell.at("harmful", L), cell.at("harmless", L), base.at("harmful", L), base.at("harmless", L)),
        "safety_neurons": lambda: safety_neurons.safety_neurons(
            cell.stack("harmful", layers), base.stack("harmful", layers), base.stack("harmless", layers), layers,
            SETTINGS.neuron_top_pct, SETTINGS.neuron_error_prompts),
    }[name]()


@pytest.fixture(scope="module")
def captured(tiny_pair, tmp_path_factory):
    base, quant, tok = tiny_pair
    root = tmp_path_factory.mktemp("cache")
    return run_capture(quant, tok, root, key="quant")[0], run_capture(base, tok, root, key="base")[0]


@pytest.mark.parametrize("name", ["first_token", "refusal_direction", "safety_neurons"])
def test_probe_contract(name, captured, tiny_pair, tmp_path):
    """Every probe: a frozen record of finite figures, its n, a version, and a digest that follows the inputs."""
    cell, base = captured
    rec = run_probe(name, cell, base)
    assert dataclasses.is_dataclass(rec) and rec.name == name and rec.version
    assert rec.figures and all(math.isfinite(v) for v in rec.figures.values())
    assert rec.n == {"first_token": 6, "refusal_direction": 11, "safety_neurons": 4}[name]
    assert len(rec.inputs_digest) == 16 and run_probe(name, base, base).inputs_digest != rec.inputs_digest
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.n = 0


def test_cell_figures_cover_every_probe_column(captured):
    from quantscreen.verdicts.table import PROBE_COLUMNS

    cell, base = captured
    figures = mechanistic.cell_figures(cell, base, SETTINGS)
    expected = set(PROBE_COLUMNS) - {"probe_error", "probe_direction_cosine_by_layer"}
    assert set(figures) == expected and not mechanistic.non_finite(figures)
    assert figures["probe_entropy_shift"] == pytest.approx(figures["probe_entropy"] - mechanistic.intrinsic_figures(
        base)["probe_entropy"])
    assert 0 < figures["probe_direction_cosine"] < 1 and figures["probe_neuron_ratio_mean"] > 0
    itself = mechanistic.cell_figures(base, base, SETTINGS)
    assert itself["probe_direction_cosine"] == pytest.approx(1.0) and itself["probe_entropy_shift"] == 0.0
    assert itself["probe_neuron_ratio_mean"] == 1.0 and itself["probe_neuron_safety_error"] == 0.0
    every = mechanistic.cell_figures(cell, base, dataclasses.replace(SETTINGS, all_layers=True))
    assert every["probe_direction_cosine_by_layer"].count(":") == len(cell.layers)


def measurement(cell_id, capture, probe_error=None, is_baseline=False):
    from quantscreen.records.probe import ProbeRecord
    from quantscreen.verdicts.cell import CellMeasurement

    labels = (1.0, 0.0, 1.0, 1.0)
    records = {name: ProbeRecord(name, sum(labels) / 4, 4, labels, "v", "d") for name in
               ("refusal_rate_regex", "harmless_refusal_rate_regex", "bertscore_f1", "rouge_l_f1", "coherence")}
    return CellMeasurement(cell_id, "tiny", "baseline" if is_baseline else "q", is_baseline,
                           {"path": "p", "format": "fp32", "bits_per_weight": 32.0, "sha256": "s"}, records,
                           capture=capture, probe_error=probe_error)


def test_probe_screen_is_informational_and_fails_only_when_probes_cannot_run(captured):
    import copy

    from quantscreen.verdicts.compare import compare

    from quantscreen.records.status import FAIL, PASS
    from quantscreen.verdicts.table import comparison_row
    from quantscreen.records.thresholds import ScreenThresholds

    cell, base = captured
    t = ScreenThresholds()
    ok = compare(measurement("q", cell), measurement("b", base, is_baseline=True), t, SETTINGS)
    assert ok.screens["mechanistic_probes"].status == PASS and ok.screens["refusal_drop"].status != FAIL
    row = comparison_row(ok)
    assert row["screen_mechanistic_probes"] == PASS and row["probe_direction_cosine"] == ok.probe_figures[
        "probe_direction_cosine"] and row["probe_error"] is None
    assert "mechanistic_probes" not in compare(measurement("q", cell), measurement("b", base, is_baseline=True), t,
                                               dataclasses.replace(SETTINGS, enabled=False)).screens

    broken = compare(measurement("q", None, probe_error="mechanistic probes could not run on p: ValueError: x"),
                     measurement("b", base, is_baseline=True), t, SETTINGS)
    assert broken.screens["mechanistic_probes"].status == FAIL and "could not run" in comparison_row(broken)[
        "probe_error"]
    assert {k: v.status for k, v in broken.screens.items() if k != "mechanistic_probes"} == {
        k: v.status for k, v in ok.screens.items() if k != "mechanistic_probes"}  # behaviour verdicts stand

    nan_cell = copy.deepcopy(cell)
    nan_cell.hidden["harmful"][0, 0, 0] = np.nan
    bad = compare(measurement("q", nan_cell), measurement("b", base, is_baseline=True), t, SETTINGS)
    assert bad.screens["mechanistic_probes"].status == FAIL and "non-finite" in bad.screens["mechanistic_probes"].message
