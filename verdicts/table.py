"""The cell table: flat rows for cells.csv and deployment_actions.csv, with fixed ordering and float formatting so
two runs over the same responses write byte-identical files."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from quantscreen.records.atomic import write_atomic
from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.verdicts.cell import (
    CellComparison,
    CellMeasurement,
    judge_regex_agreement,
    refusal_template,
)

METRICS = ("refusal_rate_regex", "refusal_rate_classifier", "refusal_rate_judge", "refusal_rate_judge_strict",
           "harmless_refusal_rate_regex", "harmless_refusal_rate_classifier", "benign_refusal_rate_regex",
           "benign_refusal_rate_classifier", "benign_refusal_rate_judge", "bertscore_f1", "rouge_l_f1", "coherence",
           "top1_agreement", "lm_eval")
# probes/kld.py against the baseline over the KLD text (the baseline row: itself, so 0, 0 and top1_agreement 1);
# kld_* are in nats, higher = further from the baseline; kld_rest_mass is the baseline's mass outside its top k
KLD_COLUMNS = ("kld_mean", "kld_p99", "kld_rest_mass", "kld_n_positions", "kld_version", "kld_error")
# the score read from the checkpoint's lm-eval results file (pipeline.lm_eval_results): its 95% interval from lm-eval's
# stderr, the items it scored, what it is (task, metric, n-shot, lm-eval version) and the file with its sha256
LM_EVAL_COLUMNS = ("lm_eval_ci_low", "lm_eval_ci_high", "lm_eval_stderr", "lm_eval_n", "lm_eval_source", "lm_eval_file",
                   "lm_eval_sha256")
INSTRUMENT_COLUMNS = (  # which refusal instrument drives the verdicts (verdicts.agreement.choose_instruments) and why
    "primary_instrument", "screening_instruments", "instrument_choice", "refusal_delta_pp",
    "refusal_rate_classifier_ci_low", "refusal_rate_classifier_ci_high", "classifier_version", "regime_classifier",
    *(f"{f}_{i}" for i in ("regex", "classifier", "judge") for f in ("refusals_lost", "refusals_gained", "mcnemar_p")),
    "rtsi_regex", "rtsi_classifier", "divergence_pair", "divergence_gap_pp",
)
JUDGE_COLUMNS = (  # SPEC §2's second instrument and how it agrees with the regex (TAX_005)
    "judge", "judge_rubric_version", "refusal_rate_judge_ci_low", "refusal_rate_judge_ci_high", "regime_judge",
    "refusals_lost_judge", "refusals_gained_judge", "mcnemar_p_judge", "judge_regex_n", "judge_regex_agreement",
    "judge_regex_kappa", "judge_minus_regex_pp", "judge_unparsed", "measurement_divergence", "rtsi_judge",
    *INSTRUMENT_COLUMNS,
)
ACCURACY_COLUMNS = (  # each instrument on reference-labelled replies, and the rates corrected by it (Rogan-Gladen)
    "accuracy_source", "regex_sensitivity", "regex_sensitivity_ci_low", "regex_sensitivity_ci_high",
    "regex_specificity", "regex_specificity_ci_low", "regex_specificity_ci_high", "regex_accuracy_n",
    "judge_sensitivity", "judge_sensitivity_ci_low", "judge_sensitivity_ci_high", "judge_specificity",
    "judge_specificity_ci_low", "judge_specificity_ci_high", "judge_accuracy_n", "classifier_sensitivity",
    "classifier_sensitivity_ci_low", "classifier_sensitivity_ci_high", "classifier_specificity",
    "classifier_specificity_ci_low", "classifier_specificity_ci_high", "classifier_accuracy_n", "regex_accuracy",
    "classifier_accuracy", "judge_accuracy", "refusal_rate_classifier_corrected",
    "refusal_rate_classifier_corrected_ci_low", "refusal_rate_classifier_corrected_ci_high",
    "refusal_rate_regex_corrected", "refusal_rate_regex_corrected_ci_low", "refusal_rate_regex_corrected_ci_high",
    "refusal_rate_judge_corrected", "refusal_rate_judge_corrected_ci_low", "refusal_rate_judge_corrected_ci_high",
)
ACCURACY_CSV_COLUMNS = ("instrument", "role", "meets_targets", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                        "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high", "specificity",
                        "specificity_ci_low", "specificity_ci_high", "n", "n_refusals", "n_compliances",
                        "misclassified", "unanswered", "excluded_fitted_rows", "fitted_on", "source")
BENIGN_COLUMNS = ("n_benign", "benign_refusals_gained", "benign_refusals_lost", "benign_mcnemar_p")
PROBE_COLUMNS = (  # SPEC §4, informational; shifts are cell - baseline in the probe's own unit (nats, probability)
    "probe_n_harmful", "probe_n_harmless",
    "probe_entropy", "probe_entropy_shift", "probe_top1", "probe_top1_shift", "probe_top5", "probe_top5_shift",
    "probe_gini", "probe_gini_shift", "probe_logit_range", "probe_logit_range_shift", "probe_ece", "probe_ece_shift",
    "probe_direction_layer", "probe_direction_magnitude", "probe_direction_cosine", "probe_direction_magnitude_ratio",
    "probe_direction_cosine_by_layer", "probe_neuron_layers", "probe_neuron_top_pct", "probe_neuron_prompts",
    "probe_neuron_safety_error", "probe_neuron_other_error", "probe_neuron_ratio_mean", "probe_neuron_ratio_max",
    "probe_neuron_ratio_by_layer", "probe_neuron_ratio_sweep", "probe_error",
)
TEMPLATE_COLUMNS = (  # SPEC §2 over the regex-labelled refusals; RTSI and its components are cell vs baseline
    "template_n_refusals", "template_dominant_prefix_share", "template_unique_prefix_rate", "template_prefix_entropy",
    "template_mean_refusal_tokens", "template_hard_refusal_rate", "rtsi", "rtsi_dominant_prefix_drop",
    "rtsi_unique_prefix_rise", "rtsi_prefix_entropy_rise", "rtsi_hard_refusal_drop", "rtsi_refusal_length_change",
)
CANARY_COLUMNS = ("canary_n", "canary_flips", "canary_text_differs", "canary_composition")  # pipeline.canary
FLIP_RATE_COLUMNS = (  # refusals lost / baseline refusals, gained / baseline compliances (primary instrument)
    "baseline_refusals", "baseline_compliances", "refusals_lost_rate", "refusals_lost_rate_ci_low",
    "refusals_lost_rate_ci_high", "refusals_gained_rate", "refusals_gained_rate_ci_low", "refusals_gained_rate_ci_high",
)
CERTIFY_COLUMNS = ("certifiable", "cannot_certify", "cannot_certify_reason")  # verdicts.actions.CAUSES
VERIFY_COLUMNS = (  # paired verification against the baseline's replies (pipeline.measure.verification_figures)
    "verified_replies", "accepted_prefix_share", "replies_as_baseline", "draft_accepted_share", "tokens_per_forward",
)
CELL_COLUMNS = (
    "model", "quant", "cell_id", "is_baseline", "engine", "format", "bits", "group_size", "bits_per_weight",
    "tensor_types", "same_type_mix_as", "made_by", "loaded_by", "derive", "architecture", "checkpoint_path",
    "checkpoint_sha256", "n_harmful", "n_harmless", "n_quality", "n_benign",
    *METRICS, "refusal_rate_regex_ci_low", "refusal_rate_regex_ci_high",
    *(f"{m}_delta_pp" for m in METRICS), "quality_metric", "quality_delta_pp", "quality_delta_ci_low_pp",
    "quality_delta_ci_high_pp", "quality_source", *KLD_COLUMNS, *LM_EVAL_COLUMNS,
    "refusals_lost", "refusals_gained", "mcnemar_p", "refusal_delta_ci_low_pp", "refusal_delta_ci_high_pp",
    "flip_noise", "mde_pp", "power_at_tolerance", "powered", *CERTIFY_COLUMNS, *CANARY_COLUMNS, *FLIP_RATE_COLUMNS,
    "regime_regex", "regime", "taxonomy_tags",
    "mean_tokens_harmful", "mean_tokens_harmless", "mean_tokens_quality", "mean_tokens_benign", *VERIFY_COLUMNS,
    "regex_version",
    "bertscore_version", "rouge_version", "coherence_version",
    "screen_hidden_danger", "screen_near_hidden_danger", "screen_refusal_drop", "screen_over_refusal", "screen_powered",
    "screen_benign_over_refusal", "screen_instruments_agree", "screen_refusal_template_stable",
    "screen_mechanistic_probes", *JUDGE_COLUMNS, *[c for c in BENIGN_COLUMNS if c != "n_benign"], *ACCURACY_COLUMNS,
    *TEMPLATE_COLUMNS, *PROBE_COLUMNS,
)
FLIP_COLUMNS = ("model", "quant", "cell_id", "prompt_index", "direction", "flipped_by", "harm_categories", "prompt",
                "baseline_regex", "cell_regex", "baseline_classifier", "cell_classifier", "baseline_judge", "cell_judge",
                "baseline_response", "cell_response")
ACTION_COLUMNS = ("model", "quant", "engine", "format", "bits", "group_size", "bits_per_weight", "same_type_mix_as",
                  "made_by", "regime", "taxonomy_tags", "action", "action_reason", "cannot_certify",
                  "quant_level_role", "quality_delta_pp", "primary_instrument", "screening_instruments",
                  "refusal_delta_pp", "refusal_rate_regex_delta_pp", "refusal_rate_classifier_delta_pp",
                  "refusal_rate_judge_delta_pp", "benign_refusal_rate_regex_delta_pp", "refusal_delta_ci_low_pp",
                  "refusal_delta_ci_high_pp", "mcnemar_p", "mde_pp", "powered")


def extra_record_names() -> tuple[str, ...]:
    """The reply probes' record names (probes.registry) that CELL_COLUMNS has no column for, in probe order: a probe
    added to probes/ or installed under the `quantscreen.probes` entry point group. cells.csv appends each after
    CELL_COLUMNS (`cell_columns`), with `<name>_delta_pp` (cell - baseline, in points) beside it. A name that would land
    in a fixed column is refused: one ScreenInputError naming the probe."""
    from quantscreen.probes.registry import reply_probes
    from quantscreen.records.errors import ScreenInputError

    out = []
    for reg in reply_probes():
        for name in reg.probe.names:
            if reg.shipped and name in METRICS:
                continue
            taken = next((c for c in (name, f"{name}_delta_pp") if c in CELL_COLUMNS), None)
            if taken is not None:
                raise ScreenInputError(reg.origin, f"defines a probe record {name!r}, but cells.csv's column "
                                       f"{taken!r} is the harness's own", "give the record a name of its own")
            out.append(name)
    return tuple(out)


def cell_columns(rows: list[dict]) -> tuple[str, ...]:
    """cells.csv's columns: CELL_COLUMNS, then `extra_record_names` that some row measured, each with its delta."""
    extra = [name for name in extra_record_names() if any(name in r for r in rows)]
    return (*CELL_COLUMNS, *(c for name in extra for c in (name, f"{name}_delta_pp")))


def measurement_row(m: CellMeasurement, accuracy: dict | None = None) -> dict:
    """One cell's own figures; `accuracy` (instrument -> Accuracy) adds sensitivity, specificity and corrected rates."""
    rec = m.records
    row = {"model": m.model, "quant": m.quant, "cell_id": m.cell_id, "is_baseline": m.is_baseline,
           "format": m.checkpoint["format"], "bits_per_weight": m.checkpoint["bits_per_weight"],
           "group_size": m.checkpoint.get("group_size"), "made_by": m.checkpoint.get("made_by"),
           "engine": m.checkpoint.get("engine"), "bits": m.checkpoint.get("bits"),
           "tensor_types": m.checkpoint.get("tensor_types"), "loaded_by": m.checkpoint.get("loaded_by"),
           "derive": m.checkpoint.get("derive"), "type_mix_sha256": m.checkpoint.get("type_mix_sha256"),
           "architecture": m.checkpoint.get("architecture"), "checkpoint_path": m.checkpoint["path"],
           "checkpoint_sha256": m.checkpoint["sha256"], "n_harmful": rec["refusal_rate_regex"].n,
           "n_harmless": rec["harmless_refusal_rate_regex"].n, "n_quality": rec["bertscore_f1"].n,
           "refusal_rate_regex_ci_low": rec["refusal_rate_regex"].ci_low,
           "refusal_rate_regex_ci_high": rec["refusal_rate_regex"].ci_high,
           "regex_version": rec["refusal_rate_regex"].version, "bertscore_version": rec["bertscore_f1"].version,
           "rouge_version": rec["rouge_l_f1"].version, "coherence_version": rec["coherence"].version,
           "regime": "baseline" if m.is_baseline else None}
    row.update({name: rec[name].value for name in (*METRICS, *extra_record_names()) if name in rec})
    if "kld_mean" in rec:
        row.update({"kld_mean": rec["kld_mean"].value, "kld_p99": rec["kld_p99"].value,
                    "kld_rest_mass": rec["kld_rest_mass"].value, "kld_n_positions": rec["kld_mean"].n,
                    "kld_version": rec["kld_mean"].version})
    row["kld_error"] = m.kld_error
    if "lm_eval" in rec:
        score = rec["lm_eval"]
        row.update({"lm_eval_ci_low": score.ci_low, "lm_eval_ci_high": score.ci_high, "lm_eval_stderr": score.stderr,
                    "lm_eval_n": score.n or None, "lm_eval_source": score.version,
                    "lm_eval_file": m.imported_from.get("lm_eval"), "lm_eval_sha256": score.inputs_digest})
    row.update({k: m.generation.get(k) for k in VERIFY_COLUMNS})
    if "refusal_rate_classifier" in rec:
        classifier = rec["refusal_rate_classifier"]
        row.update({"refusal_rate_classifier_ci_low": classifier.ci_low,
                    "refusal_rate_classifier_ci_high": classifier.ci_high, "classifier_version": classifier.version})
    if "benign_refusal_rate_regex" in rec:
        row["n_benign"] = rec["benign_refusal_rate_regex"].n
    if "refusal_rate_judge" in rec:
        judge = rec["refusal_rate_judge"]
        row.update({"judge": m.judge, "judge_rubric_version": judge.version, "refusal_rate_judge_ci_low": judge.ci_low,
                    "refusal_rate_judge_ci_high": judge.ci_high, **judge_regex_agreement(m)})
    row.update(_accuracy_figures(m, accuracy or {}))
    row.update({f"mean_tokens_{role}": v for role, v in m.mean_response_tokens.items()})
    if m.capture is not None:
        from quantscreen.probes.mechanistic import intrinsic_figures

        row.update(intrinsic_figures(m.capture))
    row["probe_error"] = m.probe_error
    template = refusal_template(m)
    if template is not None:
        row.update({f"template_{k}": v for k, v in template.as_dict().items() if k != "n_prompts"})
    return row


def _accuracy_figures(m: CellMeasurement, accuracy: dict) -> dict:
    from quantscreen.verdicts.agreement import corrected_rate

    out = {}
    for inst, acc in sorted(accuracy.items()):
        out.update(acc.figures())
        rec = m.records.get(f"refusal_rate_{inst}")
        if rec is not None and rec.n:
            fixed = corrected_rate(rec.value, rec.ci_low, rec.ci_high, acc.sensitivity, acc.specificity)
            if fixed is not None:
                name = f"refusal_rate_{inst}_corrected"
                out.update({name: fixed[0], f"{name}_ci_low": fixed[1], f"{name}_ci_high": fixed[2]})
    if accuracy:
        out["accuracy_source"] = " | ".join(f"{inst}: {acc.source}" for inst, acc in sorted(accuracy.items()))
    return out


MISCLASSIFIED_COLUMNS = ("instrument", "row", "label", "predicted", "kind", "request", "reply")


def accuracy_rows(c: CellComparison) -> list[dict]:
    """instrument_accuracy.csv: every instrument's held-out figures and its role in this run's verdicts."""
    t = c.thresholds
    rows = []
    for inst, acc in sorted(c.accuracy.items()):
        role = ("primary" if inst == c.primary else "screening" if inst in c.instruments.screening
                else "reported_only" if inst in c.instruments.reported else "not_run_on_cells")
        rows.append({**acc.as_row(), "role": role,
                     "meets_targets": acc.meets(t.instrument_min_accuracy, t.instrument_min_specificity)})
    return rows


def baseline_row(c: CellComparison) -> dict:
    row = measurement_row(c.baseline, c.accuracy)
    if c.canary is not None:  # the canary is the baseline's own measurement
        row.update(c.canary.figures())
    return row


def flip_rates(table) -> dict:
    """At-risk flip rates of a paired table (`verdicts.stats.PairedTable`), each with a Wilson 95% interval: refusals
    lost over the baseline's refusals, refusals gained over the baseline's compliances (NaN when nothing is at risk)."""
    from quantscreen.records.probe import wilson_interval

    out = {"baseline_refusals": table.both + table.lost, "baseline_compliances": table.gained + table.neither}
    for name, k, n in (("refusals_lost_rate", table.lost, out["baseline_refusals"]),
                       ("refusals_gained_rate", table.gained, out["baseline_compliances"])):
        lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
        out.update({name: k / n if n else math.nan, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    return out


def comparison_row(c: CellComparison) -> dict:
    row = measurement_row(c.cell, c.accuracy)
    row.update({f"{m}_delta_pp": c.deltas_pp.get(m) for m in METRICS})
    row.update({f"{m}_delta_pp": c.deltas_pp.get(m) for m in extra_record_names() if m in c.cell.records})
    q_ci = c.quality_delta_ci_pp or (None, None)
    row.update({"quality_metric": c.thresholds.quality_metric, "quality_delta_pp": c.quality_delta_pp,
                "quality_delta_ci_low_pp": q_ci[0], "quality_delta_ci_high_pp": q_ci[1],
                "quality_source": quality_source(c),
                "refusals_lost": c.paired.lost, "refusals_gained": c.paired.gained, "mcnemar_p": c.mcnemar_p,
                "refusal_delta_ci_low_pp": c.delta_ci_pp[0], "refusal_delta_ci_high_pp": c.delta_ci_pp[1],
                "flip_noise": c.flip_noise, "mde_pp": c.mde_pp, "power_at_tolerance": c.power_at_tolerance,
                "powered": c.powered, "regime_regex": c.regime_by_instrument.get("regex"),
                "regime_judge": c.regime_by_instrument.get("judge"),
                "regime_classifier": c.regime_by_instrument.get("classifier"), "regime": c.regime,
                "primary_instrument": c.primary, "screening_instruments": ";".join(c.instruments.screening),
                "instrument_choice": c.instruments.statement(), "refusal_delta_pp": c.refusal_delta_pp,
                "taxonomy_tags": ";".join(c.tags)})
    row.update(flip_rates(c.paired))
    if c.canary is not None:
        row.update(c.canary.figures())
    row.update({"certifiable": not c.cannot_certify, "cannot_certify": ";".join(c.cannot_certify),
                "cannot_certify_reason": " | ".join(f"{k}: {v}" for k, v in c.cannot_certify.items())})
    row.update(c.judge_figures)
    benign = c.screens.get("benign_over_refusal")
    if benign is not None:
        row.update({k: benign.figures.get(k) for k in BENIGN_COLUMNS if k in benign.figures})
    row.update({f"screen_{name}": v.status for name, v in c.screens.items()})
    row.update(c.probe_figures)
    row.update({k if k == "rtsi" else f"rtsi_{k}": v for k, v in c.rtsi.items()})
    probe_screen = c.screens.get("mechanistic_probes")
    if probe_screen is not None and probe_screen.status != "pass":
        row["probe_error"] = probe_screen.message
    return row


def quality_source(c: CellComparison) -> str:
    """Where the verdict's quality delta came from: the two lm-eval files (with their sha256), or the probe that
    measured the quality replies."""
    name = c.thresholds.quality_metric
    rec, base = c.cell.records[name], c.baseline.records[name]
    if name in c.cell.imported_from:
        return (f"imported: {c.cell.imported_from[name]} (sha256 {rec.inputs_digest}) against the baseline's "
                f"{c.baseline.imported_from[name]} (sha256 {base.inputs_digest}); {rec.version}")
    return f"measured: {rec.version} over {rec.n} items"


def flip_rows(c: CellComparison, harmful) -> list[dict]:
    """Every harmful prompt whose refusal label changed between baseline and cell under either instrument, both
    directions, with both replies and both instruments' labels.

    `harmful`: the run's harmful `promptsets.PromptSet` (prompts and AdvBench harm categories, in response order).
    """
    base, cell = c.baseline.responses.get("harmful"), c.cell.responses.get("harmful")
    if not base or not cell or harmful is None:
        return []
    labels = {i: (c.baseline.records[f"refusal_rate_{i}"].per_item, c.cell.records[f"refusal_rate_{i}"].per_item)
              for i in c.regime_by_instrument}
    judged = {"baseline": c.baseline.judgements.get("harmful"), "cell": c.cell.judgements.get("harmful")}
    categories = getattr(harmful, "categories", None) or ()
    rows = []
    for i in range(len(cell)):
        changed = {inst: ("refusal_lost" if b[i] == 1.0 else "refusal_gained")
                   for inst, (b, q) in labels.items() if b[i] in (0.0, 1.0) and q[i] in (0.0, 1.0) and b[i] != q[i]}
        if not changed:
            continue
        directions = set(changed.values())
        rows.append({"model": c.cell.model, "quant": c.cell.quant, "cell_id": c.cell.cell_id, "prompt_index": i,
                     "direction": directions.pop() if len(directions) == 1 else "mixed",
                     "flipped_by": ";".join(changed),
                     "harm_categories": ";".join(categories[i]) if i < len(categories) else "",
                     "prompt": harmful.prompts[i],
                     "baseline_regex": _regex_label(labels["regex"][0][i]), "cell_regex": _regex_label(labels["regex"][1][i]),
                     "baseline_classifier": _regex_label(labels["classifier"][0][i]) if "classifier" in labels else "",
                     "cell_classifier": _regex_label(labels["classifier"][1][i]) if "classifier" in labels else "",
                     "baseline_judge": _judge_label(judged["baseline"], i), "cell_judge": _judge_label(judged["cell"], i),
                     "baseline_response": base[i].response, "cell_response": cell[i].response})
    return rows


def _regex_label(x: float) -> str:
    return "refusal" if x == 1.0 else "compliance"


def _judge_label(judgements, i: int) -> str:
    if not judgements:
        return ""
    return judgements[i].label or "unparsed"


def sort_rows(rows: list[dict]) -> list[dict]:
    return mark_same_type_mix(sorted(rows, key=lambda r: (r["model"], not r["is_baseline"], r["quant"],
                                                          r.get("engine") or "")))


def mark_same_type_mix(rows: list[dict]) -> list[dict]:
    """GGUF cells of one model whose tensor-type assignment is identical are one level, not two: name the others."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("type_mix_sha256"):
            groups.setdefault((r["model"], r["type_mix_sha256"]), []).append(r["cell_id"])
    out = []
    for r in rows:
        same = [c for c in groups.get((r["model"], r.get("type_mix_sha256")), []) if c != r["cell_id"]]
        out.append({**r, "same_type_mix_as": ";".join(same)})
    return out


def action_rows(rows: list[dict], t: ScreenThresholds, report=None) -> list[dict]:
    """deployment_actions.csv for a run's cells.csv rows: each row's action, reason and quant-level role as the matrix
    classifies them (`verdicts.matrix_rules.classify_cells`, which reads the run's own regimes, so the actions are
    decided in one place). `report`: the run's MatrixReport of these rows, whose classification is used as it is."""
    from quantscreen.verdicts.matrix import from_cell_rows
    from quantscreen.verdicts.matrix_rules import classify_cells

    rows = sort_rows(rows)
    m = report.matrix if report is not None else from_cell_rows(rows)
    by_key = dict(zip((c.row_key for c in m.cells), report.classified if report is not None else classify_cells(m, t)))
    out = []
    for r in rows:
        c = by_key[f"cell_id={r['cell_id']}"]
        out.append({**{k: r.get(k) for k in ACTION_COLUMNS}, "action": c["action"], "action_reason": c["action_reason"],
                    "quant_level_role": c["quant_level_role"]})
    return out


def format_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.6f}"
    return str(v)


def write_csv(path: Path, columns, rows: list[dict]) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a table."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([format_value(r.get(c)) for c in columns])
    write_atomic(path, buf.getvalue())
