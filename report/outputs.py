"""The files a screening session writes from its matrix: matrix/*.csv, claim_ledger.csv, regime_scatter.png and
summary.html, plus deployment_actions.csv rows for an imported matrix. Called once, by the reporter on the
controller."""
from __future__ import annotations

from report.html import summary_html
from report.scatter import regime_scatter
from verdicts.ledger import LEDGER_COLUMNS, MATRIX_DIR, cell_claims, matrix_claims
from verdicts.table import write_csv


def imported_action_rows(report) -> list[dict]:
    """deployment_actions.csv for an imported matrix: the recomputed regime and action of every row."""
    q = report.thresholds.quality_metric
    rows = []
    for c, r in zip(report.matrix.cells, report.classified):
        rows.append({"model": c.model, "quant": c.quant, "format": c.format, "bits_per_weight": c.bits_per_weight,
                     "regime": r["regime"], "taxonomy_tags": r["taxonomy_tags"], "action": r["action"],
                     "quant_level_role": r["quant_level_role"], "quality_delta_pp": c.deltas.get(q),
                     **{f"{m}_delta_pp": c.deltas.get(m) for m in ("refusal_rate_regex", "refusal_rate_judge",
                                                                   "benign_refusal_rate_regex")}})
    return rows


def write_matrix_outputs(out, report, cell_rows: list[dict], actions: list[dict], cell_nodes: dict,
                         matrix_nodes: dict, outcomes: dict) -> None:
    """matrix/*.csv, claim_ledger.csv, regime_scatter.png and summary.html, written once by the controller."""
    t = report.thresholds
    for name, rows in report.tables().items():
        columns = list(dict.fromkeys(k for r in rows for k in r)) or ["note"]
        write_csv(out / MATRIX_DIR / name, columns, rows)
    ledger = cell_claims(cell_rows, t, cell_nodes) + matrix_claims(report, matrix_nodes)
    write_csv(out / "claim_ledger.csv", LEDGER_COLUMNS, ledger)
    points = []
    for c, r in zip(report.matrix.cells, report.classified):
        if c.is_baseline:
            continue
        y = c.deltas.get("refusal_rate_regex", c.deltas.get("refusal_rate_judge"))
        points.append({"model": c.model, "quant": c.quant, "quality_delta_pp": c.deltas.get(t.quality_metric),
                       "refusal_delta_pp": y, "regime": r["regime"],
                       "refusal_rate_judge_delta_pp": c.deltas.get("refusal_rate_judge")
                       if "refusal_rate_regex" in c.deltas else None})
    regime_scatter(points, t, out / "regime_scatter.png")
    sections = [(f"matrix/{name}", _EXPLAIN.get(name, ""), list(dict.fromkeys(k for r in rows for k in r)), rows)
                for name, rows in report.tables().items() if rows]
    disagree = sum(not a["agree"] for a in report.audit)
    notes = [f"matrix: {report.matrix.source_file}, {len(report.matrix.cells)} rows, "
             f"{len(report.matrix.models)} model(s)",
             f"floor {report.floor['level']}: {report.floor['status']}",
             f"sign reversal (TAX_001): {sum(s['sign_reversal'] for s in report.sign)}/{len(report.sign)} pairs",
             f"claims in claim_ledger.csv: {len(ledger)}"] + ([f"published labels disagreeing with SPEC §3: {disagree}"]
                                                                  if report.audit else [])
    summary_html(out / "summary.html", title="quantscreen summary", verdict_counts=dict(sorted(outcomes.items())),
                 actions=actions, sections=sections, scatter_png="regime_scatter.png", notes=notes)


_EXPLAIN = {
    "quant_levels.csv": "Per quant level across models: role (not_blanket_safe when any row is rejected), coverage "
                        "and the largest refusal movement.",
    "cheapest_quant.csv": "Per model, the lowest-bpw quant with no reject or manual review and every refusal delta "
                          "within the refusal-drop tolerance.",
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
