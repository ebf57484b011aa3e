"""Labelled replies: (request, reply, is_refusal) triples an instrument's accuracy is measured on.

Sources: a user's CSV/TSV/JSONL file (`labelled_file`), the human-labelled refusal sets that ship in the pyrit wheel
(`pyrit_refusal_labelled`), uncensorbench's paired replies (`uncensorbench_labelled`), and the harness's own replies
labelled by reading (`promptsets.harness_labels`). Every set follows the refusal definition of
`probes.refusal_definition` unless its file says otherwise (a `definition` column or a `# definition: ...` line);
whatever it says is kept in `definition` and reported beside the figures.

A user file is read leniently, the way public labelled sets are written: `#` comment lines, a `,` `;` or tab
delimiter, labels as words (refusal, partial_refusal, compliance, ...), 1/0, true/false or yes/no (1 = refusal), and
the common column names of public sets (`objective` or `goal` for the request, `assistant_response` for the reply,
`human_score` for the label). A missing column is named together with the header that was found.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from quantscreen.records.digest import sha256_file
from quantscreen.records.errors import ScreenInputError
from quantscreen.engine.sources import DataSource, locate, uncensorbench_json

REQUEST_COLUMNS = ("prompt", "request", "objective", "goal", "behavior", "question", "instruction", "user")
REPLY_COLUMNS = ("response", "reply", "assistant_response", "completion", "output", "answer", "target_response",
                 "generation", "assistant")
LABEL_COLUMNS = ("label", "human_score", "is_refusal", "refusal", "human_label", "gold", "score")
REFUSAL_LABELS = {"refusal": True, "full_refusal": True, "partial_refusal": True, "partial": True, "refused": True,
                  "refuse": True, "1": True, "1.0": True, "true": True, "yes": True,
                  "compliance": False, "complied": False, "comply": False, "complies": False, "0": False,
                  "0.0": False, "false": False, "no": False}
# how pyrit's refusal scorer data label (our words): a refusal says it will not do the task or replies with something
# unrelated to it; a reply that gives related content is not one. That is refusal-definition-v1 without "partial".
PYRIT_DEFINITION = "pyrit refusal-scorer labels (refusal = declines, or replies unrelated to the objective)"
PYRIT_REFUSAL_FILES = ("datasets/scorer_evals/refusal_scorer/refusal.csv",
                       "datasets/scorer_evals/refusal_scorer/refusal_extra.csv")


@dataclass(frozen=True)
class LabelledSet:
    """(request, reply, is_refusal) triples with human or reference labels, to measure an instrument's accuracy."""
    requests: tuple[str, ...]
    replies: tuple[str, ...]
    refusal: tuple[bool, ...]
    source: DataSource
    definition: str = "refusal-definition-v1"  # which refusal definition the labels follow
    kinds: tuple[str, ...] = ()  # optional per-row category (explicit, lecture, off_topic, ...) for error analysis
    title: str = ""  # how reports name it (default: package, version and path inside)

    def __len__(self) -> int:
        return len(self.replies)

    @property
    def name(self) -> str:
        src = self.source
        return self.title or f"{src.package} {src.version} {src.path_inside}".replace("  ", " ").strip()


def combine(sets: list[LabelledSet], title: str = "") -> LabelledSet:
    """Several labelled sets as one (their sources joined), so every instrument is measured on the same rows."""
    if len(sets) == 1:
        return sets[0]
    src = DataSource(role="labelled_replies", package=" + ".join(s.source.package for s in sets),
                     version=" + ".join(s.source.version for s in sets),
                     path_inside=" + ".join(s.source.path_inside for s in sets),
                     sha256=" + ".join(s.source.sha256[:16] for s in sets), path=" + ".join(s.source.path for s in sets))
    definitions = sorted({s.definition for s in sets})
    return LabelledSet(sum((s.requests for s in sets), ()), sum((s.replies for s in sets), ()),
                       sum((s.refusal for s in sets), ()), src, " + ".join(definitions),
                       sum(((s.kinds or ("",) * len(s)) for s in sets), ()),
                       title or " + ".join(f"{s.name} ({len(s)})" for s in sets))


def uncensorbench_labelled() -> LabelledSet:
    """uncensorbench 0.3.7: every prompt with its refusing (label refusal) and its complying (compliance) reply."""
    src = uncensorbench_json()
    try:
        prompts = json.loads(Path(src.path).read_text(encoding="utf-8"))["prompts"]
        triples = [(p["prompt"], p["censored_response"], True) for p in prompts] + \
                  [(p["prompt"], p["uncensored_response"], False) for p in prompts]
    except (ValueError, KeyError, TypeError) as exc:
        raise ScreenInputError(src.path, f"is not the uncensorbench format ({exc})",
                               "reinstall uncensorbench==0.3.7 with --no-deps, or set judge.accuracy: FILE") from None
    requests, replies, labels = (tuple(x) for x in zip(*triples))
    return LabelledSet(requests, replies, labels, src, "uncensorbench pairs (stock refusal vs compliance)")


AUTHORED_PATH = Path(__file__).parent / "data" / "authored_replies.jsonl"
AUTHORED_VERSION = "authored-replies-v1"


def authored_labelled(path: Path | str = AUTHORED_PATH) -> LabelledSet:
    """Requests and replies written for this project in the refusal and compliance styles of current assistants
    (authored_replies.md: how, by whom, and its limits), labelled under refusal-definition-v1 as written. An evaluation
    set: the shipped classifier head is not fitted on it (scripts/fit_refusal_classifier.py --fit-authored measures
    what fitting on it would do)."""
    p = Path(path)
    src = DataSource(role="labelled_replies", package="quantscreen", version=AUTHORED_VERSION,
                     path_inside="promptsets/data/authored_replies.jsonl",
                     sha256=sha256_file(p) if p.is_file() else "", path=str(p))
    ls = labelled_file(p, source=src)
    kinds = tuple(str(json.loads(line).get("kind", "")) for line in p.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#"))
    return dataclasses.replace(ls, kinds=kinds if len(kinds) == len(ls) else (),
                               title=f"quantscreen {AUTHORED_VERSION} (written for the project)")


def pyrit_refusal_labelled() -> LabelledSet:
    """The human-labelled refusal sets that ship in the pyrit wheel (its refusal scorer's evaluation data): requests
    with real assistant replies, `human_score` 1 = refusal. Read as user files are; never fitted on by the harness."""
    sets = []
    for inside in PYRIT_REFUSAL_FILES:
        src = locate("labelled_replies", "pyrit", "pyrit", inside)
        sets.append(dataclasses.replace(labelled_file(src.path, source=src), definition=PYRIT_DEFINITION))
    return combine(sets, f"pyrit {sets[0].source.version} refusal-scorer sets (refusal.csv {len(sets[0])} + "
                         f"refusal_extra.csv {len(sets[1])}, human-labelled)")


def labelled_file(path: str | Path, source: DataSource | None = None) -> LabelledSet:
    """A CSV/TSV/JSONL of labelled replies (see the module docstring for the columns and labels accepted)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ScreenInputError(p.resolve(), "(labelled replies) does not exist", "pass an existing CSV or JSONL file")
    rows, header, comments = read_rows(p)
    if not rows:
        raise ScreenInputError(p, "(labelled replies) holds no rows", "add prompt,response,label rows")
    columns = {c.strip().lower(): c for c in header}
    picked = {}
    for role, names in (("request", REQUEST_COLUMNS), ("reply", REPLY_COLUMNS), ("label", LABEL_COLUMNS)):
        found = next((columns[n] for n in names if n in columns), None)
        if found is None:
            raise ScreenInputError(p, f"(labelled replies) has no {role} column; its header is {list(header)[:10]}",
                                   f"name the {role} column one of {list(names[:4])}")
        picked[role] = found
    triples = []
    for n, r in enumerate(rows, 1):
        values = {role: str(r.get(col) if r.get(col) is not None else "").strip() for role, col in picked.items()}
        missing = [role for role in ("request", "label") if not values[role]]
        if missing:
            raise ScreenInputError(p, f"row {n} has no {missing[0]} ('{picked[missing[0]]}')",
                                   "give every row a request, a reply and a label")
        label = values["label"].lower()
        if label not in REFUSAL_LABELS:
            raise ScreenInputError(p, f"row {n} has label {values['label']!r} in '{picked['label']}'",
                                   "use refusal / partial_refusal / compliance, or 1 (refusal) / 0 (compliance)")
        triples.append((values["request"], values["reply"], REFUSAL_LABELS[label]))
    src = source or DataSource(role="labelled_replies", package="user file", version="", path_inside=p.name,
                               sha256=sha256_file(p), path=str(p.resolve()))
    definition = _definition(comments, rows)
    requests, replies, labels = (tuple(x) for x in zip(*triples))
    return LabelledSet(requests, replies, labels, src, definition)


def _definition(comments: list[str], rows: list[dict]) -> str:
    for line in comments:
        m = re.match(r"#\s*definition\s*[:=]\s*(.+)", line, re.IGNORECASE)
        if m:
            return m.group(1).strip()
    stated = {str(r.get("definition")).strip() for r in rows if r.get("definition")}
    return " + ".join(sorted(stated)) if stated else "refusal-definition-v1 (assumed: the file does not say)"


def read_rows(p: Path) -> tuple[list[dict], list[str], list[str]]:
    """(rows, header, comment lines) of a CSV/TSV/JSONL file; `#` lines are comments; the CSV delimiter is sniffed."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScreenInputError(p, f"is not UTF-8 text (byte {exc.start})", "re-save the file as UTF-8") from None
    lines = text.splitlines(keepends=True)
    comments = [ln.strip() for ln in lines if ln.lstrip().startswith("#")]
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ScreenInputError(f"{p}:{n}", f"is not valid JSON ({exc.msg})",
                                       "write one JSON object per line") from None
            if not isinstance(row, dict):
                raise ScreenInputError(f"{p}:{n}", "is not a JSON object", "write one JSON object per line")
            rows.append(row)
        header = list(dict.fromkeys(k for r in rows for k in r))
        return rows, header, comments
    if suffix in (".csv", ".tsv"):
        body = _strip_leading_comments(lines)
        first = body.split("\n", 1)[0]
        delimiter = "\t" if suffix == ".tsv" else max((",", ";", "\t"), key=first.count)
        reader = csv.DictReader(io.StringIO(body), delimiter=delimiter)
        rows = [dict(r) for r in reader]
        return rows, list(reader.fieldnames or []), comments
    raise ScreenInputError(p, "has an unknown extension", "use .csv, .tsv or .jsonl")


def _strip_leading_comments(lines: list[str]) -> str:
    """CSV text without its leading `#` lines (a `#` inside a quoted field later on is data, not a comment)."""
    start = 0
    while start < len(lines) and (lines[start].lstrip().startswith("#") or not lines[start].strip()):
        start += 1
    return "".join(lines[start:])


LABELLED_SET_NAMES = ("default", "harness", "harness-all", "pyrit", "uncensorbench", "authored", "none")


def named_set(name: str) -> LabelledSet | None:
    """The labelled replies a setting names (`judge.accuracy`, `scripts/accuracy`): a set name or a file path.

    default = the held-out (test) split of the harness's own labelled replies + pyrit's human-labelled refusal sets:
    replies of the kind the screens produce, and replies of other models labelled by other people.
    """
    from quantscreen.promptsets import harness_labels

    if name == "none":
        return None
    if name == "default":
        return combine([harness_labels.load("test"), pyrit_refusal_labelled()],
                       "harness labelled replies, test split + pyrit refusal-scorer sets")
    if name == "harness":
        return harness_labels.load("test")
    if name == "harness-all":
        return harness_labels.load("all")
    if name == "pyrit":
        return pyrit_refusal_labelled()
    if name == "uncensorbench":
        return uncensorbench_labelled()
    if name == "authored":
        return authored_labelled()
    return labelled_file(name)
