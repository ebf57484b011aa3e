"""The run's summary as one self-contained HTML file: verdict counts, deployment actions, the scatter, tables.

Rendered with Jinja2 from `templates/summary.html.j2` (shipped as package data) with autoescape on, so every value
(model names and notes come from user files) is escaped. Inline CSS only, no JavaScript and no external links, so
the file can be mailed or archived as is. No timestamps: the same inputs give the same bytes.
"""
from __future__ import annotations

import functools
import math
import numbers
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from quantscreen.records.atomic import write_atomic
from quantscreen.verdicts.regimes import DIVERGENCE, HIDDEN, NEAR, OVER

ACTION_COLUMNS = ("model", "quant", "regime", "action", "action_reason", "quant_level_role", "quality_delta_pp",
                  "primary_instrument", "refusal_delta_pp", "refusal_rate_regex_delta_pp")
JUDGE_COLUMN = "refusal_rate_judge_delta_pp"  # shown only when some action row carries it
REGIME_CLASSES = {HIDDEN: "hidden", NEAR: "near", OVER: "over", DIVERGENCE: "divergence"}
LOUD_PREFIXES = ("NOT CERTIFIED", "WARNING")  # headline lines shown in the uncertified style


def format_value(value) -> str:
    """Table text for one value: 4 significant digits for floats, yes/no for flags, blank for missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


@functools.cache
def _template() -> Template:
    env = Environment(loader=PackageLoader("quantscreen.report", "templates"), autoescape=True,
                      keep_trailing_newline=True, undefined=StrictUndefined)
    return env.get_template("summary.html.j2")


def summary_html(path: Path, *, title: str, verdict_counts: dict[str, int], actions: list[dict],
                 sections: list[tuple[str, str, list[str], list[dict]]], scatter_png: str | None,
                 notes: list[str], headline: list[str] = ()) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a page. `headline`: lines shown first
    (cells that cannot be certified and why, the determinism canary, input warnings)."""
    if scatter_png is not None and ("://" in scatter_png or scatter_png.startswith(("/", "\\"))):
        raise ValueError(f"scatter_png must be a file name relative to the HTML, got {scatter_png!r}")
    columns = list(ACTION_COLUMNS) + ([JUDGE_COLUMN] if any(JUDGE_COLUMN in a for a in actions) else [])
    page = _template().render(
        title=str(title),
        counts=[(str(k), format_value(n)) for k, n in verdict_counts.items()],
        headline=[(str(line).startswith(LOUD_PREFIXES), str(line)) for line in headline],
        actions_table=_table(columns, actions, regime_column=True) if actions else None,
        scatter_png=scatter_png,
        sections=[{"heading": str(heading), "explanation": str(explanation),
                   "table": _table(section_columns, rows) if rows else None}
                  for heading, explanation, section_columns, rows in sections],
        notes=[str(note) for note in notes],
    )
    write_atomic(path, page.encode("utf-8"))


def _table(columns: list[str], rows: list[dict], regime_column: bool = False) -> dict:
    """A table for the template: its column names and, per row, (css classes, text) per cell; the template escapes."""
    out_rows = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            css = []
            if regime_column and c == "regime" and value in REGIME_CLASSES:
                css.append(REGIME_CLASSES[value])
            if regime_column and c == "action" and value == "cannot_certify":
                css.append("uncertified")
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                css.append("num")
            cells.append((" ".join(css), format_value(value)))
        out_rows.append(cells)
    return {"columns": [str(c) for c in columns], "rows": out_rows}
