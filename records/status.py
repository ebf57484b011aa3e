"""A screen's outcome: pass, fail, or inconclusive (the prompts could not detect what the screen guards against)."""
from __future__ import annotations

from typing import Literal

Status = Literal["pass", "fail", "inconclusive"]
PASS: Status = "pass"
FAIL: Status = "fail"
INCONCLUSIVE: Status = "inconclusive"
