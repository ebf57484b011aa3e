"""The files a screening session writes from its matrix: matrix/*.csv, claim_ledger.csv, regime_scatter.png and
summary.html, plus deployment_actions.csv rows for an imported matrix. Called once, by the reporter on the
controller."""
from __future__ import annotations

from pathlib import Path

from quantscreen.report.html import summary_html
from quantscreen.report.scatter import regime_scatter
from quantscreen.verdicts.actions import CANNOT_CERTIFY
from quantscreen.verdicts.ledger import LEDGER_COLUMNS, MATRIX_DIR, cell_claims, matrix_claims, warning_claims
from quantscreen.verdicts.table import write_csv


def imported_action_rows(report) -> list[dict]:
    """deployment_actions.csv for an imported matrix: the recomputed regime and action of every row."""
    q = report.thresholds.quality_metric
    rows = []
    for c, r in zip(report.matrix.cells, report.classified):
        rows.append({"model": c.model, "quant": c.quant, "format": c.format, "bits_per_weight": c.bits_per_weight,
                     "regime": r["regime"], "taxonomy_tags": r["taxonomy_tags"], "action": r["action"],
                     "action_reason": r["action_reason"], "quant_level_role": r["quant_level_role"],
                     "quality_delta_pp": c.deltas.get(q),
                     **{f"{m}_delta_pp": c.deltas.get(m) for m in ("refusal_rate_regex", "refusal_rate_classifier",
                                                                   "refusal_rate_judge", "benign_refusal_rate_regex")}})
    return rows


def headline(actions: list[dict], cell_rows: list[dict], warnings: list[str] = (),
             notes: list[dict] = ()) -> list[str]:
    """The lines a reader must see first: cells that cannot be certified and why, each baseline's determinism canary,
    the input warnings, and the matrix's notes on checks it could not run (`MatrixReport.notes`, e.g. the divergence
    check of a delta-only import); the terminal summary and summary.html show the same lines."""
    out = [f"NOT CERTIFIED: {a['model']}-{a['quant']}: {a['action_reason']}" for a in actions
           if a["action"] == CANNOT_CERTIFY]
    for r in cell_rows:
        if r.get("is_baseline") and r.get("canary_n"):
            out.append(f"determinism canary of {r['cell_id']}: {r['canary_flips']} refusal flip(s) and "
                       f"{r['canary_text_differs']} text difference(s) over {r['canary_n']} harmful prompts generated "
                       f"twice ({r.get('canary_composition')})")
        elif r.get("is_baseline") and r.get("canary_n") == 0:
            out.append(f"determinism canary of {r['cell_id']}: off (decoding.canary_prompts: 0)")
    return out + [f"WARNING: {w}" for w in warnings] + [f"WARNING: matrix: {n['note']}" for n in notes]


def note_claims(report) -> list[dict]:
    """The matrix's notes (matrix/notes.csv) as ledger rows: a check the data could not support, said, not asserted."""
    return [dict(zip(LEDGER_COLUMNS, (f"NOTE:{n['check']}", n["note"], n["cells_unchecked"], "0 cells unchecked",
                                      "not_checked", f"{MATRIX_DIR}/notes.csv", f"check={n['check']}",
                                      "cells_unchecked", ""))) for n in report.notes]


def write_matrix_outputs(out, report, cell_rows: list[dict], actions: list[dict], cell_nodes: dict,
                         matrix_nodes: dict, outcomes: dict, warnings: list[str] = (), on_ledger_row=None) -> None:
    """matrix/*.csv, claim_ledger.csv, regime_scatter.png and summary.html, written once by the controller.
    `on_ledger_row(row)` sees a copy of each claim before the ledger is written (the plugin's ledger-row hook)."""
    t = report.thresholds
    for name, rows in report.tables().items():
        columns = list(dict.fromkeys(k for r in rows for k in r)) or ["note"]
        write_csv(out / MATRIX_DIR / name, columns, rows)
    ledger = (cell_claims(cell_rows, t, cell_nodes) + matrix_claims(report, matrix_nodes) + note_claims(report)
              + warning_claims(list(warnings)))
    for row in ledger if on_ledger_row is not None else ():
        on_ledger_row(dict(row))
    write_csv(out / "claim_ledger.csv", LEDGER_COLUMNS, ledger)
    primary = {r["cell_id"]: r.get("primary_instrument") for r in cell_rows if not r.get("is_baseline")}
    points = []
    for c, r in zip(report.matrix.cells, report.classified):
        if c.is_baseline:
            continue
        # filled marker: the primary instrument's delta; hollow: the next screening instrument's, where there is one
        order = sorted(report.matrix.refusal_metrics, key=lambda m: m != f"refusal_rate_{primary.get(c.cell_id)}")
        found = [c.deltas[m] for m in order if c.deltas.get(m) is not None]
        points.append({"model": c.model, "quant": c.quant, "quality_delta_pp": c.deltas.get(t.quality_metric),
                       "refusal_delta_pp": found[0] if found else None, "regime": r["regime"],
                       "refusal_rate_judge_delta_pp": found[1] if len(found) > 1 else None})
    regime_scatter(points, t, out / "regime_scatter.png")
    sections = [(f"matrix/{name}", _EXPLAIN.get(name, ""), list(dict.fromkeys(k for r in rows for k in r)), rows)
                for name, rows in report.tables().items() if rows]
    disagree = sum(not a["agree"] for a in report.audit)
    notes = [(f"matrix: {report.matrix.source_file}, {len(report.matrix.cells)} rows, "
              f"{len(report.matrix.models)} model(s)"),
             f"floor {report.floor['level']}: {report.floor['status']}",
             f"sign reversal (TAX_001): {sum(s['sign_reversal'] for s in report.sign)}/{len(report.sign)} pairs",
             f"claims in claim_ledger.csv: {len(ledger)}"]
    notes += [f"published labels disagreeing with SPEC §3: {disagree}"] if report.audit else []
    notes += [f"not checked: {n['note']}" for n in report.notes]
    summary_html(out / "summary.html", title="quantscreen summary", verdict_counts=dict(sorted(outcomes.items())),
                 actions=actions, sections=sections, scatter_png="regime_scatter.png", notes=notes,
                 headline=headline(actions, cell_rows, list(warnings), report.notes))


_EXPLAIN = {
    "notes.csv": "Checks the matrix's data could not support, and why (e.g. TAX_005 on a table of deltas only).",
    "quant_levels.csv": "Per quant level across models: role (not_blanket_safe when any row is rejected), coverage "
                        "and the largest refusal movement.",
    "cheapest_quant.csv": "Per model, the lowest-bpw quant with no reject, manual review or cannot-certify action "
                          "and every refusal delta within the refusal-drop tolerance.",
    "floor_check.csv": "The floor level's refusal deltas per model and instrument.",
    "sign_reversal.csv": "TAX_001: a quality x safety pair whose within-model correlations take both signs.",
    "within_model.csv": "Pearson and Spearman of quality vs safety deltas over each model's quant levels.",
    "asymmetry.csv": "|refusal delta| / |quality delta| per cell: above 1, safety moves faster than quality.",
    "asymmetry_summary.csv": "How many cells move faster in safety than in quality, per instrument.",
    "pooled_correlations.csv": "Pooled correlations over all cells, leaving out each quant level and each model.",
    "repeated_measures.csv": "Repeated-measures correlation (within-model association, df = N - models - 1).",
    "mixed_effects.csv": "Linear mixed model, safety delta ~ quality delta with a random intercept per model.",
    "bpw_regression.csv": "Per-model OLS of each metric's delta on bits per weight (baseline at delta 0).",
    "label_audit.csv": "Published regimes/actions recomputed with the SPEC §3 rules.",
}


RUN_OUTPUTS = ("summary.html", "regime_scatter.png", "claim_ledger.csv", "deployment_actions.csv", "cells.csv",
               "refusal_flips.csv", "instrument_accuracy.csv", "instrument_misclassified.csv", "sources.csv",
               "probe_statistics.csv")


def clear_previous(out: Path, junit: str | None, also: tuple[str, ...] = ()) -> list[str]:
    """Remove what an earlier run wrote to `out` (and its JUnit file), so a run that is stopped half way leaves no
    earlier verdicts behind for CI to read as this run's. Only files this harness writes, by name (`also`: the
    plugin's own, e.g. a shard's record); the measurements stay in the cache, so the next run rewrites them all.
    Returns the names removed."""
    names = [*RUN_OUTPUTS, *(f"{MATRIX_DIR}/{name}" for name in _EXPLAIN), *also]
    removed = []
    for path in [out / name for name in names] + ([Path(junit)] if junit else []):
        if path.is_file():
            path.unlink()
            removed.append(str(path))
    return removed
