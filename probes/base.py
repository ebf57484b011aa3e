"""What a reply probe is: the one small contract every module in probes/ that scores replies satisfies.

A reply probe is an object (a module's `PROBE`) with
- `names`: every record name it can return, a tuple of str (cells.csv's column names for a probe that table does not
  list: probes.registry says how a probe is found, verdicts.table how its records are written);
- `measure(replies: Replies) -> list[ProbeRecord]`: its records over one cell's replies (a record per role it reads;
  roles the plan has no replies for are left out);
- optionally `sources() -> list[DataSource]`: the files it reads (a fitted head, a word list), each written to
  sources.csv under its role with its sha256.
`Probe` is a ready-made such object; any object with these attributes will do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, runtime_checkable

from quantscreen.records.probe import ProbeRecord

if TYPE_CHECKING:
    from quantscreen.engine.sources import DataSource


@dataclass(frozen=True)
class Replies:
    """One cell's replies as a probe reads them: per role (harmful, harmless, quality; benign where the plan has it)
    the prompts and the model's replies in prompt order, the quality prompts' reference answers, and the quality
    encoder's folder (the shipped all-MiniLM-L6-v2 that BERTScore, coherence and the classifier embed with)."""
    prompts: Mapping[str, tuple[str, ...]]
    replies: Mapping[str, tuple[str, ...]]
    references: tuple[str, ...] = ()
    encoder_path: str | None = None

    def has(self, role: str) -> bool:
        """Whether the cell has replies for `role` (an absent or empty set is skipped by per-role probes)."""
        return bool(self.replies.get(role))


@runtime_checkable
class ReplyProbe(Protocol):
    """The contract (this module's docstring); `sources()` is optional, so it is not part of the Protocol's check."""
    names: tuple[str, ...]

    def measure(self, replies: Replies) -> list[ProbeRecord]: ...


@dataclass(frozen=True)
class Probe:
    """A reply probe from its record names and functions (module-level `PROBE = Probe(...)`)."""
    names: tuple[str, ...]
    measure: Callable[[Replies], list[ProbeRecord]]
    sources: Callable[[], list[DataSource]] | None = None
