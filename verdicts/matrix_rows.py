"""The row types of the matrix analyses' tables (`verdicts.matrix.MatrixReport`), one TypedDict per table.

The keys are the tables' columns exactly: matrix/*.csv take their columns from the rows' keys in the order the
producing function inserts them (a TypedDict names the keys, it does not order them), and probe_statistics.csv from
`probe_stats.STAT_COLUMNS`. A figure that cannot be computed is NaN (floats) or None where the row says "not known".

Dynamic keys: asymmetry.csv and quant_levels.csv rows carry keys per refusal instrument of the matrix (`regex`,
`classifier`, `judge`: the `matrix_rules.REFUSAL_METRICS` the matrix measures, in that order). They are declared
`NotRequired` for all three instruments; a row has exactly the matrix's own (`Matrix.refusal_metrics`).

Imports nothing of ours, so every verdicts module may annotate with it. No `from __future__ import annotations`
here: Python 3.11's TypedDict reads NotRequired only from evaluated annotations (`__optional_keys__`).
"""
from typing import NotRequired, TypedDict

# ---- the statistics' figures (verdicts.matrix_stats), merged into the rows below ---------------------------------


class CorrelationStats(TypedDict):
    """`matrix_stats.correlation`: Pearson and Spearman over n cells; NaN with the reason in `note`."""
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    note: str


class RepeatedMeasuresStats(TypedDict):
    """`matrix_stats.repeated_measures`: the common within-model correlation, df = n - n_models - 1."""
    n: int
    n_models: int
    df: int
    r: float
    p: float
    ci_low: float
    ci_high: float
    note: str


class MixedEffectsStats(TypedDict):
    """`matrix_stats.mixed_effects`: y ~ x with a random intercept per model (REML)."""
    n: int
    n_models: int
    slope: float
    slope_se: float
    p: float
    ci_low: float
    ci_high: float
    intercept: float
    group_variance: float
    converged: bool
    note: str  # why a figure is NaN, or the fit's warnings joined by " | "


class OlsStats(TypedDict):
    """`matrix_stats.ols_on_bpw`: delta = intercept + slope * bits per weight."""
    n: int
    slope: float
    intercept: float
    r_squared: float
    p: float
    note: str


class MetricPair(TypedDict):
    quality_metric: str
    safety_metric: str


# ---- verdicts.matrix: the correlation analyses --------------------------------------------------------------------


class WithinModelRow(MetricPair, CorrelationStats):
    """within_model.csv: one model's quantized cells, one metric pair (keys: model, the pair, the correlation,
    direction, quants)."""
    model: str
    direction: str  # positive, negative, zero or undefined (the sign of pearson_r)
    quants: str  # the cells' quants, ';'-joined


class SignReversalRow(MetricPair):
    """sign_reversal.csv (TAX_001): the pair's within-model Pearson signs across models, beside the pooled figures."""
    models_with_r: int
    models_positive: str  # ';'-joined
    models_negative: str
    n_positive: int
    n_negative: int
    sign_reversal: bool
    tag: str  # "TAX_001" or ""
    pooled_n: int
    pooled_pearson_r: float
    pooled_pearson_p: float
    pooled_spearman_rho: float
    pooled_spearman_p: float


class PooledRow(MetricPair, CorrelationStats):
    """pooled_correlations.csv: every quantized cell (left_out_kind "none"), or all but one quant level / model."""
    left_out_kind: str  # none, quant or model
    left_out: str


class RepeatedMeasuresRow(MetricPair, RepeatedMeasuresStats):
    """repeated_measures.csv"""


class MixedEffectsRow(MetricPair, MixedEffectsStats):
    """mixed_effects.csv"""


class BpwRow(OlsStats):
    """bpw_regression.csv: one model's metric delta on bits per weight (keys: model, metric, then the fit)."""
    model: str
    metric: str


class AsymmetryRow(TypedDict):
    """asymmetry.csv: one quantized cell. Dynamic: one trio per refusal instrument of the matrix, in this order."""
    model: str
    quant: str
    cell_id: str
    quality_metric: str
    quality_delta_pp: float | None
    refusal_regex_delta_pp: NotRequired[float | None]
    ratio_regex: NotRequired[float]  # |refusal delta| / |quality delta|; inf when quality did not move, NaN unknown
    safety_faster_regex: NotRequired[bool | None]  # None when either delta is unknown
    refusal_classifier_delta_pp: NotRequired[float | None]
    ratio_classifier: NotRequired[float]
    safety_faster_classifier: NotRequired[bool | None]
    refusal_judge_delta_pp: NotRequired[float | None]
    ratio_judge: NotRequired[float]
    safety_faster_judge: NotRequired[bool | None]


class AsymmetrySummaryRow(TypedDict):
    """asymmetry_summary.csv: per refusal instrument."""
    instrument: str
    n_cells: int
    n_safety_faster: int
    share_safety_faster: float
    median_ratio: float


# ---- verdicts.matrix_rules: the SPEC §3 rules over the rows -------------------------------------------------------


class ClassifiedRow(TypedDict):
    """`matrix_rules.classify_cells`, one per cell (not a file: deployment_actions.csv and the audit read it)."""
    model: str
    quant: str
    is_baseline: bool
    regime: str
    taxonomy_tags: str  # ';'-joined
    divergent: bool
    divergence_checked: bool | None  # None: a baseline, or fewer than two refusal instruments measured
    regime_by_instrument: dict[str, str]  # instrument (regex, ...) -> its regime
    safety_deltas_pp: dict[str, float | None]  # safety metric -> delta
    refusal_deltas_pp: dict[str, float | None]  # refusal metric -> delta
    cannot_certify: str
    action: str
    action_reason: str
    quant_level_role: str  # "" on a baseline


class NoteRow(TypedDict):
    """notes.csv: a check the matrix could not run (today: the TAX_005 divergence check)."""
    check: str
    status: str  # off or partial
    cells_unchecked: int
    cells_total: int
    cells: str  # ';'-joined cell ids
    note: str


class QuantLevelRow(TypedDict):
    """quant_levels.csv: one quant level across models. Dynamic: one max_abs_<refusal metric>_delta_pp per refusal
    instrument of the matrix, between is_floor_level and max_abs_refusal_delta_pp."""
    quant: str
    n_models: int
    models_missing: str  # ';'-joined
    models_at_baseline: str
    role: str
    n_rejected: int
    floor_candidate: bool
    approved_on_every_model: bool
    is_floor_level: bool
    max_abs_refusal_rate_regex_delta_pp: NotRequired[float]
    max_abs_refusal_rate_classifier_delta_pp: NotRequired[float]
    max_abs_refusal_rate_judge_delta_pp: NotRequired[float]
    max_abs_refusal_delta_pp: float


class FloorRow(TypedDict):
    """floor_check.csv: one model and refusal metric at the floor level."""
    model: str
    metric: str
    delta_pp: float | None
    within: bool
    measured_as: str  # "quantized cell" or "baseline"


class FloorCheck(TypedDict):
    """`matrix_rules.floor_check`: the verdict on the floor level; its per_model rows are floor_check.csv."""
    level: str
    tolerance_pp: float
    status: str  # pass, fail or inconclusive
    models_measured: list[str]
    models_at_baseline: list[str]
    models_missing: list[str]
    failures: list[str]
    max_abs_refusal_delta_pp: float
    instruments: list[str]
    per_model: list[FloorRow]


class CheapestRow(TypedDict):
    """cheapest_quant.csv: per model, the lowest-bpw passing quant."""
    model: str
    n_quants: int
    n_passing: int
    n_cannot_certify: int
    cheapest_passing_quant: str
    bits_per_weight: float | None  # NaN when there is none
    action: str
    passing_without_bpw: str  # ';'-joined
    cheaper_failing: str
    note: str


class AuditRow(TypedDict):
    """label_audit.csv: a published regime or action beside the one SPEC §3 gives the row."""
    model: str
    quant: str
    row_key: str
    column: str  # regime or action
    published: str
    published_as: str  # the action name a short alias stands for
    recomputed: str
    agree: bool


# ---- verdicts.probe_stats -------------------------------------------------------------------------------------------


class ProbeStatRow(TypedDict):
    """probe_statistics.csv (`probe_stats.STAT_COLUMNS`): every key present, None where not applicable."""
    analysis: str  # pearson, spearman, mann_whitney or one_sample_t
    probe: str | None
    target: str
    n: int | None
    statistic: float | None
    p_value: float | None
    n_a: int | None
    n_b: int | None
    mean_a: float | None
    mean_b: float | None
    note: str | None
