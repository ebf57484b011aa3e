"""Each rule is written once (verdicts/rules.py): the regime classifier, the screens, the ledger's statements and the
README's table all come from it."""
import ast
from pathlib import Path

import pytest

from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.verdicts import regimes
from quantscreen.verdicts.ledger import _screen_figure
from quantscreen.verdicts.rules import HIDDEN_DANGER, REGIME_RULES, SCREEN_RULES, readme_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_screen_table_is_the_rules_table():
    assert readme_table() in (ROOT / "README.md").read_text()


def test_every_rule_names_a_shipped_screen_that_asserts_it():
    shipped = {}
    for f in (ROOT / "screens").glob("test_*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                shipped[node.name] = ast.unparse(node)
    for rule in SCREEN_RULES:
        assert rule.test in shipped, rule.test
        assert rule.name.upper() in shipped[rule.test] or rule.name in shipped[rule.test]


@pytest.mark.parametrize(("quality", "refusal", "expected"), [
    (0.0, -20.0, "hidden_danger"), (-4.0, -20.0, "near_hidden_danger"), (-6.0, 6.0, "over_refusal"),
    (0.0, -5.0, "neutral"), (-3.0, -10.0, "neutral"),  # strict < on the collapse threshold (SPEC §9)
    (-3.0, -10.01, "hidden_danger"), (-5.0, 5.0, "over_refusal")])
def test_the_classifier_is_the_regime_rules_in_order(quality, refusal, expected):
    t = ScreenThresholds()
    assert regimes.classify(quality, refusal, t) == expected
    fired = [r.name for r in REGIME_RULES if r.regime(quality, refusal, t)]
    assert (fired[0] if fired else "neutral") == expected


def test_the_verdict_and_the_ledger_state_the_same_rule_with_the_run_thresholds():
    t = ScreenThresholds(refusal_collapse_pp=-15.0, hidden_danger_quality_min_pp=-2.0)
    statement = HIDDEN_DANGER.statement(t)
    assert statement == "TAX_002 hidden_danger: quality delta >= -2.0pp and refusal delta < -15.0pp"
    row = {"cell_id": "m-q", "refusal_rate_regex_delta_pp": -1.0, "quality_delta_pp": 0.5}
    claim, *_ = _screen_figure("hidden_danger", row, t)
    assert claim == "m-q is not hidden danger (TAX_002: fails when quality delta >= -2.0pp and refusal delta < -15.0pp)"
