"""Progress of long work (generation, probe capture, judging, KLD): one interface for every caller.

`Progress` is what the pipeline calls (`update(n)` as prompts finish, `tick(detail)` while a long item or batch is
still running, `close()`); a `ProgressFactory` makes one per labelled job. `LineProgress` writes a line when a job
starts and then at most every `every_s` seconds (done/total, rate, time left): readable in a terminal and in a CI log
alike. The pytest plugin's TerminalProgress
(quantscreen.fixtures.progress) is a LineProgress that writes past pytest's output capture.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Protocol


class Progress(Protocol):
    def update(self, n: int) -> None: ...

    def tick(self, detail: str) -> None: ...  # still working on the current item(s): a line if one is due

    def close(self) -> None: ...


ProgressFactory = Callable[[str, int], Progress]


class LineProgress:
    def __init__(self, label: str, total: int, every_s: float = 10.0, stream=None):
        self.label, self.total, self.every_s, self.stream = label, total, every_s, stream
        self.done, self.start = 0, time.monotonic()
        self.last = self.start
        self.write(f"{label}: {total} prompts")

    def write(self, text: str) -> None:
        print(f"  {text}", file=self.stream or sys.stderr, flush=True)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            self.write(f"{self.label}: {self.done}/{self.total} prompts, {rate * 60:.0f} prompts/min, "
                       f"about {eta:.0f}s left")

    def tick(self, detail: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.write(f"{self.label}: {self.done}/{self.total} prompts, {detail}, "
                       f"{now - self.start:.0f}s so far")

    def close(self) -> None:
        pass
