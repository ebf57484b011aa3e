"""Quality imported from lm-evaluation-harness: one task's metric, read from the results JSON lm-eval writes
(`lm_eval --output_path DIR ...` saves DIR/<model>/results_<date>.json; `simple_evaluate` returns the same mapping).

What is read (lm-eval 0.4.x): `results[task]["<metric>,<filter>"]` (e.g. "acc,none") and its standard error
`"<metric>_stderr,<filter>"` (a number, or "N/A" when lm-eval ran without bootstrap); the items each task scored
(`n-samples[task].effective`, after `--limit`), its few-shot count (`n-shot`), its version (`versions`), whether higher
is better (`higher_is_better`), and a group's subtasks (`group_subtasks`). A group's score is lm-eval's own aggregate
of its subtasks and its item count the sum of theirs.

The score becomes the `lm_eval` record (value 0..1, items, a 95% interval from the stderr), so
`screen.quality_metric: lm_eval` takes its delta, 100 x (cell - baseline) pp, like any measured quality metric.
A cell's file and its baseline's are compared only when both scored the same items the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from quantscreen.engine.sources import DataSource
from quantscreen.records.digest import sha256_bytes
from quantscreen.records.errors import ScreenInputError
from quantscreen.records.probe import ProbeRecord

RECORD = "lm_eval"  # the record's name, and the screen.quality_metric value that selects it
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class LmEvalScore:
    path: str
    sha256: str
    task: str
    metric: str  # "<metric>,<filter>" as lm-eval keys it
    value: float
    stderr: float | None  # None: lm-eval wrote "N/A" (no bootstrap) or nothing
    n: int | None  # items scored (None: the file does not say)
    scored_as: dict  # what must match between a cell's file and its baseline's: items per task, n-shot, version, limit
    lm_eval_version: str = ""

    def record(self) -> ProbeRecord:
        low = high = None
        if self.stderr is not None:
            low, high = max(0.0, self.value - _Z95 * self.stderr), min(1.0, self.value + _Z95 * self.stderr)
        return ProbeRecord(name=RECORD, value=self.value, n=self.n or 0, per_item=(), version=self.description,
                           inputs_digest=self.sha256, ci_low=low, ci_high=high, stderr=self.stderr)

    @property
    def description(self) -> str:
        """What the figure is, for cells.csv (lm_eval_source) and sources.csv."""
        shot, version = self.scored_as.get("n-shot"), self.scored_as.get("version")
        return (f"lm-eval {self.lm_eval_version or '(version not recorded)'}: {self.task} {self.metric}"
                + (f", task version {version}" if version is not None else "")
                + (f", {shot}-shot" if shot is not None else "") + (f", {self.n} items" if self.n else ""))

    def source(self, role: str) -> DataSource:
        return DataSource(role=role, package="lm-eval results", version=self.lm_eval_version,
                          path_inside=f"{self.task} {self.metric}", sha256=self.sha256, path=self.path)


def read_score(path: str | Path, task: str, metric: str, whose: str) -> LmEvalScore:
    """`task`'s `metric` from an lm-eval results file; one ScreenInputError naming the file and the fix otherwise.
    `whose`: the cell (or baseline) the file belongs to, for the message."""
    path = Path(path)
    subject = f"{path} (lm-eval results of {whose})"
    data, digest = _load(path, subject)
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        raise ScreenInputError(subject, "has no 'results' mapping, so it is not an lm-eval results file",
                               "name the results_<date>.json lm-eval wrote under its --output_path")
    entry = results.get(task)
    if not isinstance(entry, dict):
        entry = (data.get("groups") or {}).get(task)  # lm-eval before 0.4.3 also kept group scores here
    if not isinstance(entry, dict):
        raise ScreenInputError(subject, f"has no task '{task}' (tasks there: {', '.join(sorted(results))})",
                               f"set lm_eval.task to one of them, or run lm-eval with --tasks {task}")
    metrics = sorted(k for k in entry if "," in k and "_stderr," not in k)
    if metric not in entry:
        raise ScreenInputError(subject, f"has no metric '{metric}' for {task} (metrics there: {', '.join(metrics)})",
                               "set lm_eval.metric to one of them, written as lm-eval keys it: <metric>,<filter>")
    value = _number(entry[metric])
    if value is None:
        raise ScreenInputError(subject, f"gives {task} {metric} as {entry[metric]!r}, not a number",
                               "re-run lm-eval for this task, or choose another lm_eval.metric")
    name = metric.split(",", 1)[0]
    if (data.get("higher_is_better") or {}).get(task, {}).get(name) is False:
        raise ScreenInputError(subject, f"says lower is better for {task} {name}, but a quality delta is read as "
                               f"higher = better", "choose a metric where higher is better (acc, acc_norm, "
                               "exact_match, f1 ...)")
    if not 0.0 <= value <= 1.0:
        raise ScreenInputError(subject, f"gives {task} {metric} = {value:g}, not a 0..1 score (the quality delta is "
                               f"100 x (cell - baseline) in pp)", "choose a 0..1 metric (acc, acc_norm, exact_match, "
                               "f1 ...)")
    stderr_key = f"{name}_stderr,{metric.split(',', 1)[1]}"
    leaves = _leaves(task, data.get("group_subtasks") or {})
    samples = {t: _effective(data, t) for t in leaves}
    counted = [n for n in samples.values() if n is not None]
    n = entry.get("sample_len") if isinstance(entry.get("sample_len"), int) else (
        sum(counted) if counted and len(counted) == len(samples) else None)
    config = data.get("config") or {}
    limit = ("none" if config["limit"] is None else config["limit"]) if "limit" in config and not counted else None
    scored_as = {"items": samples if counted else None, "n-shot": (data.get("n-shot") or {}).get(task),
                 "version": (data.get("versions") or {}).get(task), "limit": limit}
    return LmEvalScore(path=str(path), sha256=digest, task=task, metric=metric, value=value,
                       stderr=_number(entry.get(stderr_key)), n=n, scored_as=scored_as,
                       lm_eval_version=str(data.get("lm_eval_version") or ""))


def check_comparable(cell: LmEvalScore, baseline: LmEvalScore, whose: str) -> None:
    """Refuse a delta between files that scored different items, or the same items differently: with --limit N,
    lm-eval scores each task's first N items, so another limit is another test, and another few-shot count or task
    version another way of asking. Only what both files record is compared."""
    names = {"items": "items scored per task (n-samples, after --limit)", "n-shot": "few-shot examples (n-shot)",
             "version": "task version (versions)", "limit": "--limit (config.limit)"}
    for key, name in names.items():
        mine, theirs = cell.scored_as.get(key), baseline.scored_as.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            raise ScreenInputError(f"{cell.path} (lm-eval results of {whose})",
                                   f"differs from its baseline's {baseline.path} in {name}: {_short(mine)} here, "
                                   f"{_short(theirs)} there, so the two {cell.task} scores are not comparable",
                                   "run lm-eval on the baseline and the quant with the same --tasks, --limit and "
                                   "--num_fewshot")


def _load(path: Path, subject: str) -> tuple[dict, str]:
    if path.is_dir():
        found = sorted(p.name for p in path.rglob("results_*.json"))[:3]
        raise ScreenInputError(subject, "is a folder", "name one results_<date>.json file"
                               + (f" (found: {', '.join(found)})" if found else " lm-eval wrote"))
    if not path.is_file():
        raise ScreenInputError(subject, "does not exist",
                               "point at the results_<date>.json lm-eval wrote (paths are relative to models.yaml)")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ScreenInputError(subject, f"is not valid JSON ({exc})",
                               "name the results_<date>.json lm-eval wrote, unedited") from None
    if not isinstance(data, dict):
        raise ScreenInputError(subject, "holds no JSON object, so it is not an lm-eval results file",
                               "name the results_<date>.json lm-eval wrote under its --output_path")
    return data, sha256_bytes(raw)


def _number(value) -> float | None:
    """A finite number (lm-eval writes "N/A" for a stderr it did not compute); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _leaves(task: str, group_subtasks: dict, seen: frozenset = frozenset()) -> list[str]:
    """The tasks that scored items under `task`: itself, or a group's subtasks, recursively."""
    children = group_subtasks.get(task) or []
    if not children or task in seen:
        return [task]
    return [leaf for child in children for leaf in _leaves(child, group_subtasks, seen | {task})]


def _effective(data: dict, task: str) -> int | None:
    count = (data.get("n-samples") or {}).get(task)
    value = count.get("effective") if isinstance(count, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value) -> str:
    if isinstance(value, dict):
        parts = [f"{k} {v}" for k, v in sorted(value.items())]
        return ", ".join(parts[:4]) + (f" (+{len(parts) - 4} more)" if len(parts) > 4 else "")
    return str(value)
