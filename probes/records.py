"""The record every probe returns: a value with its sample size, interval where one exists, version and input digest."""
from __future__ import annotations

from dataclasses import dataclass

from engine.digest import sha256_json


@dataclass(frozen=True)
class ProbeRecord:
    name: str
    value: float
    n: int
    per_item: tuple[float, ...]
    version: str
    inputs_digest: str
    ci_low: float | None = None
    ci_high: float | None = None


def digest_inputs(*parts) -> str:
    return sha256_json([list(p) if isinstance(p, tuple) else p for p in parts])[:16]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
