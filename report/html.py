"""The run's summary as one self-contained HTML file: verdict counts, deployment actions, the scatter, tables.

Inline CSS only, no JavaScript and no external links, so the file can be mailed or archived as is. Every value
comes from a CSV the run wrote and is escaped, since model names and notes come from user files. No timestamps:
the same inputs give the same bytes.
"""
from __future__ import annotations

import html
import math
import numbers
import os
from pathlib import Path

from quantscreen.verdicts.regimes import DIVERGENCE, HIDDEN, NEAR, OVER

ACTION_COLUMNS = ("model", "quant", "regime", "action", "action_reason", "quant_level_role", "quality_delta_pp",
                  "primary_instrument", "refusal_delta_pp", "refusal_rate_regex_delta_pp")
JUDGE_COLUMN = "refusal_rate_judge_delta_pp"  # shown only when some action row carries it
REGIME_CLASSES = {HIDDEN: "hidden", NEAR: "near", OVER: "over", DIVERGENCE: "divergence"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.hidden { background: #f4b6b6; } td.near { background: #fbd3a8; }
td.over { background: #dccbef; } td.divergence { background: #fbef9f; }
.counts span { display: inline-block; margin-right: 1.2em; font-size: 1.1em; }
.counts .failed b { color: #b00020; }
img { max-width: 100%; border: 1px solid #ddd; }
ul.headline li { margin: 0.2em 0; } ul.headline li.uncertified { color: #b00020; font-weight: bold; }
td.uncertified { background: #f4b6b6; }
p.explain { max-width: 60em; color: #444; }
""".strip()


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


def summary_html(path: Path, *, title: str, verdict_counts: dict[str, int], actions: list[dict],
                 sections: list[tuple[str, str, list[str], list[dict]]], scatter_png: str | None,
                 notes: list[str], headline: list[str] = ()) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a page. `headline`: lines shown first
    (cells that cannot be certified and why, the determinism canary, input warnings)."""
    if scatter_png is not None and ("://" in scatter_png or scatter_png.startswith(("/", "\\"))):
        raise ValueError(f"scatter_png must be a file name relative to the HTML, got {scatter_png!r}")
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
           f"<style>\n{_CSS}\n</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>", '<p class="counts">']
    out += [f'<span class="{esc(str(k))}">{esc(str(k))}: <b>{esc(format_value(n))}</b></span>'
            for k, n in verdict_counts.items()]
    out.append("</p>")
    if headline:
        out.append('<ul class="headline">')
        loud = ' class="uncertified"'
        out += [f"<li{loud if line.startswith(('NOT CERTIFIED', 'WARNING')) else ''}>{esc(line)}</li>"
                for line in headline]
        out.append("</ul>")

    out.append("<h2>Deployment actions</h2>")
    columns = list(ACTION_COLUMNS) + ([JUDGE_COLUMN] if any(JUDGE_COLUMN in a for a in actions) else [])
    out += _table(columns, actions, regime_column=True) if actions else ["<p>No deployment actions.</p>"]

    if scatter_png is not None:
        out += ["<h2>Regime scatter</h2>",
                f'<img src="{esc(scatter_png)}" alt="quality delta against refusal delta per quantized cell">']
    for heading, explanation, section_columns, rows in sections:
        out += [f"<h2>{esc(heading)}</h2>", f'<p class="explain">{esc(explanation)}</p>']
        out += _table(section_columns, rows) if rows else ["<p>No rows.</p>"]
    if notes:
        out += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{esc(note)}</li>" for note in notes] + ["</ul>"]
    out += ["</body>", "</html>", ""]

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(out), encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def _table(columns: list[str], rows: list[dict], regime_column: bool = False) -> list[str]:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"]
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
            attr = f' class="{" ".join(css)}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(format_value(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out
