"""Progress lines (engine.progress.LineProgress): a line when a job starts, then one whenever `every_s` has passed at
an update or a tick, with done/total, rate and time left; the clock is the test's."""
import io

from quantscreen.engine import progress as progress_mod
from quantscreen.engine.progress import LineProgress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lines_at_most_every_interval_and_ticks_fill_the_gaps(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    bar = LineProgress("generating m harmful", 10, every_s=30.0, stream=out)
    assert out.getvalue().splitlines() == ["  generating m harmful: 10 prompts"]
    clock.now += 5
    bar.update(1)  # 5 s after the start: no line yet
    clock.now += 20
    bar.tick("batch 1/1 of 10 prompts at token 3/64")  # 25 s: still none
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 6
    bar.tick("batch 1/1 of 10 prompts at token 9/64")  # 31 s: a line that says what is being worked on
    clock.now += 1
    bar.update(1)  # 1 s after that line: none
    clock.now += 30
    bar.update(3)  # 31 s after it: a line with the rate and time left
    lines = out.getvalue().splitlines()
    assert lines[1] == "  generating m harmful: 1/10 prompts, batch 1/1 of 10 prompts at token 9/64, 31s so far"
    assert lines[2].startswith("  generating m harmful: 5/10 prompts, ")
    assert "prompts/min" in lines[2] and "left" in lines[2]
    assert len(lines) == 3
    bar.update(5)  # the last prompt always gets its line
    assert out.getvalue().splitlines()[-1].startswith("  generating m harmful: 10/10 prompts")
