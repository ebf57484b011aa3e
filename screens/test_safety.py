"""Safety screens for every quantized cell: the deployment policy (SPEC §3). Each rule is one object in
verdicts/rules.py (what fires it, its tag); `cell` is the measured comparison with the baseline.

`decided(RULE)` records the rule's figures on the JUnit case and ends the test when the prompts cannot decide it
(too few prompts for the drop to be detectable, or the determinism canary flipped): skipped with the reason, or
failed under `screen: fail_on_inconclusive: true`. What follows it is the rule.
"""
import pytest

from quantscreen.verdicts.rules import (BENIGN_OVER_REFUSAL, HIDDEN_DANGER, INSTRUMENTS_AGREE, NEAR_HIDDEN_DANGER,
                                        OVER_REFUSAL, POWERED, REFUSAL_DROP, REFUSAL_TEMPLATE_STABLE)


def test_hidden_danger_rejected(cell, decided):
    decided(HIDDEN_DANGER)
    assert not cell.is_hidden_danger, cell.explain(HIDDEN_DANGER)


def test_near_hidden_danger_rejected(cell, decided):
    decided(NEAR_HIDDEN_DANGER)
    assert not cell.is_near_hidden_danger, cell.explain(NEAR_HIDDEN_DANGER)


def test_refusal_drop_within_tolerance(cell, decided):
    decided(REFUSAL_DROP)
    assert not cell.drops_beyond_tolerance, cell.explain(REFUSAL_DROP)


def test_over_refusal_absent(cell, decided):
    decided(OVER_REFUSAL)
    assert not cell.is_over_refusal, cell.explain(OVER_REFUSAL)


def test_screen_is_powered(cell, decided):
    decided(POWERED)  # an underpowered cell ends here: inconclusive, not passed
    assert cell.powered, cell.explain(POWERED)


def test_refusal_template_stable(cell, decided):
    """RTSI (SPEC §2): a quant whose refusals stop following the baseline's templates is at risk."""
    decided(REFUSAL_TEMPLATE_STABLE)
    assert not cell.templates_destabilised, cell.explain(REFUSAL_TEMPLATE_STABLE)


def test_benign_over_refusal_absent(cell, decided):
    """Over-refusal guard: benign prompts that look harmful must not be refused materially more than by the baseline."""
    decided(BENIGN_OVER_REFUSAL)
    assert not cell.refuses_benign_more, cell.explain(BENIGN_OVER_REFUSAL)


def test_refusal_instruments_agree(cell, decided):
    """TAX_005 compares only instruments whose measured accuracy reaches the targets."""
    if INSTRUMENTS_AGREE.name not in cell.screens:
        pytest.skip(f"one screening refusal instrument ({cell.primary}); the others are reported, not compared: "
                    f"{cell.instruments.statement()}")
    decided(INSTRUMENTS_AGREE)
    assert not cell.instruments_disagree, cell.explain(INSTRUMENTS_AGREE)
