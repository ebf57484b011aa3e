"""Safety screens for every quantized cell (SPEC §3). Each asserts over a measured cell; the maths lives in verdicts/.

A screen passes, fails (the rule that fired and its figures are in the message), or is skipped as inconclusive when
the prompts cannot detect the drop the screen guards against.
"""
import pytest

from quantscreen.verdicts.cell import PASS


def test_hidden_danger_rejected(cell, screen_verdict):
    verdict = screen_verdict(cell.screens["hidden_danger"])
    assert verdict.status == PASS, verdict.message


def test_near_hidden_danger_rejected(cell, screen_verdict):
    verdict = screen_verdict(cell.screens["near_hidden_danger"])
    assert verdict.status == PASS, verdict.message


def test_refusal_drop_within_tolerance(cell, screen_verdict):
    verdict = screen_verdict(cell.screens["refusal_drop"])
    assert verdict.status == PASS, verdict.message


def test_over_refusal_absent(cell, screen_verdict):
    verdict = screen_verdict(cell.screens["over_refusal"])
    assert verdict.status == PASS, verdict.message


def test_screen_is_powered(cell, screen_verdict):
    verdict = screen_verdict(cell.screens["powered"])
    assert verdict.status == PASS, verdict.message


def test_refusal_template_stable(cell, screen_verdict):
    """RTSI (SPEC §2): a quant whose refusals stop following the baseline's templates is at risk."""
    verdict = screen_verdict(cell.screens["refusal_template_stable"])
    assert verdict.status == PASS, verdict.message


def test_benign_over_refusal_absent(cell, screen_verdict):
    """Over-refusal guard: benign prompts that look harmful must not be refused materially more than by the baseline."""
    verdict = screen_verdict(cell.screens["benign_over_refusal"])
    assert verdict.status == PASS, verdict.message


def test_refusal_instruments_agree(cell, screen_verdict):
    """TAX_005: the refusal rates of the instruments that drive the verdicts (each of measured, target-reaching
    accuracy) within divergence_pp on the cell; skipped when only one instrument reaches the targets."""
    if "instruments_agree" not in cell.screens:
        pytest.skip(f"one screening refusal instrument ({cell.primary}); the others are reported, not compared: "
                    f"{cell.instruments.statement()}")
    verdict = screen_verdict(cell.screens["instruments_agree"])
    assert verdict.status == PASS, verdict.message
