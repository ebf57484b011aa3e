"""Every catalogued bad input (tests/bad_inputs.py) run through `pytest screens/` as a user would: the expected exit
code, one line naming the file or option and the fix, and no traceback. RELIABILITY.md lists each of them."""
import pytest

from tests.bad_inputs import CASES, FAILED, ROOT, run_case


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.exit_code == FAILED or
                                               c.id.startswith("disk-full") else []) for c in CASES])
def test_bad_input_gets_one_clear_line(case, tmp_path):
    if case.id == "cuda-without-cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    seen = run_case(case, tmp_path)
    tail = seen.output[-3000:]
    assert seen.exit_code == case.exit_code, tail
    assert seen.line, f"no line holds {case.fragment!r} and 'fix:'\n{tail}"
    assert not seen.traceback, tail


def test_the_catalogue_is_big_and_documented():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    doc = (ROOT / "RELIABILITY.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"RELIABILITY.md does not list {missing}; regenerate its table with python -m tests.bad_inputs"
