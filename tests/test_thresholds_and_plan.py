"""models.yaml validation: every error names the file, key and line, and the fix."""
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from quantscreen.records.errors import ScreenInputError
from quantscreen.records.config import JudgeSpec
from quantscreen.pipeline.plan import load_plan
from quantscreen.records.schema import schema
from quantscreen.probes.mechanistic import ProbeSettings
from quantscreen.records.thresholds import ScreenThresholds

ROOT = Path(__file__).resolve().parents[1]

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
    ("screen:\n  hiden_danger: 1\n" + GOOD, "screen.hiden_danger (line 2): unknown key 'hiden_danger'"),
    ("screen:\n  alpha: high\n" + GOOD, "screen.alpha (line 2): must be a number, got 'high'"),
    ("screen:\n  power: 2\n" + GOOD, "screen.power (line 2): 2 is out of range (0.5 to <1)"),
    ("screen:\n  refusal_collapse_pp: 10\n" + GOOD, "refusal_collapse_pp (line 2): 10 is out of range (-100 to 0)"),
    ("screen:\n  quality_metric: bleu\n" + GOOD, "'bleu' is not one of bertscore_f1, rouge_l_f1, coherence"),
    ("screen:\n  alpha: 0\n" + GOOD, "screen.alpha (line 2): 0 is out of range (>0 to <0.5)"),
    ("screen:\n  near_hidden_quality_min_pp: -1\n" + GOOD,
     "near_hidden_quality_min_pp (line 2): -1.0 is above hidden_danger_quality_min_pp (-3.0)"),
    ("decoding:\n  max_new_tokens: lots\n" + GOOD, "decoding.max_new_tokens (line 2): must be an integer, got 'lots'"),
    ("decoding:\n  dtype: int4\n" + GOOD, "dtype (line 2): 'int4' is not one of float32, bfloat16, float16"),
    (GOOD + "      - {id: Q4_0, derive: \"gguf:Q8_0\"}\n",
     "quants[1].id (line 7): cell id 'm-Q4_0' is used twice (first on line 6)"),
    (GOOD.replace("gguf:Q4_0", "gguf:Q9_9"), "quants[0].derive (line 6): 'gguf:Q9_9' is not a known recipe"),
    (GOOD.replace("derive: \"gguf:Q4_0\"", "pth: x"),
     "quants[0].pth (line 6): unknown key 'pth'; fix: did you mean 'path'?"),
    (GOOD + "      - {id: 3, path: x}\n", "models[0].quants[1].id (line 7): must be text, got 3"),
    (GOOD.replace("    baseline:", "    colour: red\n    baseline:"),
     "models[0].colour (line 4): unknown key 'colour'"),
    (GOOD.replace("derive: \"gguf:Q4_0\"", "derive: \"gguf:Q4_0\", path: x.gguf"),
     "models[0].quants[0] (line 6): has both path and derive"),
    (GOOD.replace(", derive: \"gguf:Q4_0\"", ""), "models[0].quants[0] (line 6): needs path or derive"),
    ("models: []\n", "models (line 1): must list at least 1 item, got 0"),
    ("models:\n  id: m\n  baseline: x\n", "models (line 1): must be a list, got a mapping"),
    ("models:\n  - id: m\n", "models[0] (line 2): has no baseline"),
    ("models:\n  - id: m\n    baseline: x\n    quants: []\n", "models[0].quants (line 4): must list at least 1 item"),
    ("screen: {alpha: 0.05}\n", "models.yaml: has no models: list"),
    ("colour: red\n" + GOOD, "models.yaml.colour (line 1): unknown key 'colour'; fix: keys here: screen, decoding"),
    ("- m\n", "models.yaml: must be a mapping, got a list"),
    ("screen: {alpha: 0.05, alpha: 0.01}\n" + GOOD, "(line 1): key 'alpha' appears twice"),
    ("models: [\n", "is not valid YAML"),
    ("prompts:\n  harmful: {n: -3}\n" + GOOD, "prompts.harmful.n (line 2): -3 is out of range (at least 1)"),
    ("prompts:\n  harmful: {source: builtin}\n" + GOOD, "'builtin' is not one of advbench, file"),
    ("prompts:\n  quality: {source: file}\n" + GOOD, "prompts.quality (line 2): has no file"),
    ("probes:\n  n_prompt: 10\n" + GOOD, "probes.n_prompt (line 2): unknown key"),
    ("probes:\n  neuron_top_pct: 0\n" + GOOD, "probes.neuron_top_pct (line 2): 0 is out of range (0.01 to 100)"),
    ("probes:\n  enabled: yes please\n" + GOOD, "probes.enabled (line 2): must be true or false"),
    ("probes:\n  n_prompts: 1.5\n" + GOOD, "probes.n_prompts (line 2): must be an integer, got 1.5"),
    ("probes:\n  n_prompts: 2.0\n" + GOOD, "probes.n_prompts (line 2): must be an integer, got 2.0"),
    ("probes:\n  neuron_sweep_pct: [1, 300]\n" + GOOD, "neuron_sweep_pct[1] (line 2): 300 is out of range (>0 to 100)"),
    ("probes:\n  neuron_sweep_pct:\n    - 1\n    - 300\n" + GOOD, "neuron_sweep_pct[1] (line 4): 300 is out of range"),
    ("probes:\n  neuron_depths: [0.8, 0.2]\n" + GOOD, "neuron_depths (line 2): [0.8, 0.2] is not [low, high]"),
    ("probes:\n  neuron_depths: [0.2]\n" + GOOD, "neuron_depths (line 2): must list exactly 2 items, got 1"),
    ("probes: false\n" + GOOD, "probes (line 1): must be a mapping, got false"),
    ("judge:\n  timeout_s: 0\n" + GOOD, "judge.timeout_s (line 2): 0 is out of range (0.1 to 3600)"),
])
def test_malformed_models_yaml(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert expected in message and "; fix: " in message and "models.yaml" in message and "\n" not in message


def test_the_first_mistake_in_the_file_is_reported(tmp_path):
    text = "screen:\n  power: 2\n" + GOOD.replace("id: m", "id: m\n    colour: red")
    assert "screen.power (line 2)" in error_of(tmp_path, text)


@pytest.mark.parametrize("overrides,expected", [
    ({"max_new_tokens": 0}, "--max-new-tokens: 0 is out of range (1 to 8192); fix: write e.g. --max-new-tokens=128"),
    ({"batch_size": 9000}, "--batch-size: 9000 is out of range (1 to 8192)"),
    ({"n_harmful": 0}, "--n-harmful: 0 is out of range (at least 1)"),
    ({"engine": "tensorrt"}, "--engine: 'tensorrt' is not one of auto, transformers, llamacpp, openai, vllm"),
])
def test_command_line_overrides_obey_the_schema(tmp_path, overrides, expected):
    assert expected in error_of(tmp_path, GOOD, overrides)


@pytest.mark.parametrize("name", ["models.yaml", "matrix.yaml"])
def test_the_repos_own_files_validate(name):
    assert load_plan(ROOT / name, {}).cells()
    assert (ROOT / name).read_text().startswith("# yaml-language-server: $schema=records/models.schema.json\n")


def test_the_schema_is_a_valid_draft_2020_12_schema_that_describes_every_key():
    Draft202012Validator.check_schema(schema())
    sections = schema()["properties"]
    for name, cls in (("screen", ScreenThresholds), ("probes", ProbeSettings), ("judge", JudgeSpec)):
        assert list(sections[name]["properties"]) == [f.name for f in fields(cls)], name

    def undescribed(node, where):
        for key, prop in node.get("properties", {}).items():
            if "description" not in prop and key != "source":  # a role's source is described in $defs/promptSet
                yield f"{where}.{key}"
            yield from undescribed(prop, f"{where}.{key}")

    nodes = [("models.yaml", schema()), *schema()["$defs"].items()]
    assert not [where for name, node in nodes for where in undescribed(node, name)]


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
