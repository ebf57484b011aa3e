"""models.yaml validation: every error names the file, key and line, and the fix."""
import textwrap

import pytest

from engine.errors import ScreenInputError
from engine.plan import load_plan
from verdicts.thresholds import ScreenThresholds

GOOD = """
models:
  - id: m
    baseline: embedded:smollm2
    quants:
      - {id: Q4_0, derive: "gguf:Q4_0"}
"""


def write(tmp_path, text):
    p = tmp_path / "models.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path, text, overrides=None) -> str:
    with pytest.raises(ScreenInputError) as info:
        load_plan(write(tmp_path, text), overrides or {})
    return str(info.value)


def test_good_file_loads_with_defaults(tmp_path):
    plan = load_plan(write(tmp_path, GOOD), {})
    assert [c[1].quant for c in plan.cells()] == ["Q4_0"]
    assert plan.thresholds == ScreenThresholds() and plan.max_new_tokens == 128
    assert plan.prompts["harmful"].source == "advbench" and plan.prompts["harmful"].n == 100


@pytest.mark.parametrize("text,expected", [
    ("screen:\n  hiden_danger: 1\n" + GOOD, "screen.hiden_danger (line 2): unknown key"),
    ("screen:\n  alpha: high\n" + GOOD, "alpha (line 2): alpha must be a number"),
    ("screen:\n  power: 2\n" + GOOD, "power = 2.0 is out of range"),
    ("screen:\n  refusal_collapse_pp: 10\n" + GOOD, "refusal_collapse_pp = 10.0 is out of range"),
    ("screen:\n  quality_metric: bleu\n" + GOOD, "quality_metric = 'bleu' is not a quality metric"),
    ("decoding:\n  max_new_tokens: lots\n" + GOOD, "decoding.max_new_tokens (line 2): must be int"),
    ("decoding:\n  dtype: int4\n" + GOOD, "'int4' is not supported"),
    (GOOD + "      - {id: Q4_0, derive: \"gguf:Q8_0\"}\n", "cell id 'm-Q4_0' is used twice"),
    (GOOD.replace("derive: \"gguf:Q4_0\"", "derive: \"gguf:Q9_9\""), "is not a known recipe"),
    (GOOD.replace("derive: \"gguf:Q4_0\"", "pth: x"), "quants[0].pth (line 6): unknown key 'pth'"),
    ("models: []\n", "must be a non-empty list"),
    ("models:\n  - id: m\n", "has no baseline"),
    ("screen: {alpha: 0.05, alpha: 0.01}\n" + GOOD, "key 'alpha' appears twice"),
    ("models: [\n", "is not valid YAML"),
    ("prompts:\n  harmful: {n: -3}\n" + GOOD, "n must be a positive integer"),
    ("probes:\n  n_prompt: 10\n" + GOOD, "probes.n_prompt (line 2): unknown key"),
    ("probes:\n  neuron_top_pct: 0\n" + GOOD, "probes.neuron_top_pct (line 2): must be a number between"),
    ("probes:\n  enabled: yes please\n" + GOOD, "probes.enabled (line 2): must be true or false"),
    ("probes:\n  n_prompts: 1.5\n" + GOOD, "probes.n_prompts (line 2): must be a number between 2"),
    ("probes:\n  neuron_sweep_pct: [1, 300]\n" + GOOD, "neuron_sweep_pct (line 2): must be a list"),
    ("probes:\n  neuron_depths: [0.8, 0.2]\n" + GOOD, "is not [low, high] within (0, 1]"),
    ("probes: false\n" + GOOD, "probes: must be a mapping"),
])
def test_malformed_models_yaml(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert expected in message and "fix:" in message and "models.yaml" in message


def test_probe_settings_and_the_off_switch(tmp_path):
    plan = load_plan(write(tmp_path, "probes: {n_prompts: 20, neuron_sweep_pct: [2, 4], all_layers: true}\n" + GOOD), {})
    assert plan.probes.enabled and plan.probes.n_prompts == 20 and plan.probes.neuron_sweep_pct == (2.0, 4.0)
    assert plan.probes.all_layers and plan.probes.neuron_top_pct == 5.0
    assert not load_plan(write(tmp_path, GOOD), {"no_probes": True}).probes.enabled


def test_missing_models_file(tmp_path):
    with pytest.raises(ScreenInputError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml", {})


def test_cli_checkpoints_need_a_baseline(tmp_path):
    msg = error_of(tmp_path, GOOD, {"checkpoints": [str(tmp_path)]})
    assert "--checkpoint: was given without --baseline" in msg


def test_cli_missing_checkpoint_path(tmp_path):
    msg = error_of(tmp_path, GOOD, {"checkpoints": [str(tmp_path / "missing.gguf")], "baseline": "embedded:smollm2"})
    assert "missing.gguf: does not exist" in msg
