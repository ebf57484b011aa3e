"""The models: list of models.yaml (or --checkpoint/--baseline) turned into ModelSpecs: each model's baseline and
quants, where their files are, and the rules a schema cannot say about them (recipes, unique cell ids, served models
and their settings: one engine per model). pipeline.plan reads the rest of the file and applies the overrides.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from quantscreen.records.errors import ScreenInputError
from quantscreen.records.config import Overrides
from quantscreen.records.schema import typed
from quantscreen.engine.sources import EMBEDDED, resolve_embedded
from quantscreen.pipeline.yaml_lines import key_at


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



def cell_id(model: ModelSpec, quant: CheckpointSpec) -> str:
    return f"{model.model_id}-{quant.quant}"


def resolve_path(raw: str, base: Path) -> str:
    if raw in EMBEDDED:
        return raw
    p = Path(raw).expanduser()
    return str(p if p.is_absolute() else (base / p))


def template_file(mapping, base: Path, label: str) -> str | None:
    """The text of the Jinja chat template a mapping's `chat_template:` names (None when it names none)."""
    if "chat_template" not in mapping:
        return None
    tpath = Path(resolve_path(mapping["chat_template"], base))
    if not tpath.is_file():
        raise ScreenInputError(tpath, f"({label}) does not exist", "point at a Jinja template file")
    return tpath.read_text(encoding="utf-8")


def parse_models(data, base: Path, where: str) -> tuple[ModelSpec, ...]:
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
                raise ScreenInputError(key_at(f"{where}.quants[{j}]", q, "derive"),
                                       f"'{q['derive']}' is not a known recipe", exc.fix) from None
        quants.append(CheckpointSpec(quant=q["id"].strip(), derive=q.get("derive"),
                                     path=resolve_path(q["path"], base) if "path" in q else None,
                                     server=q.get("server"), served_model=q.get("model"), kv_cache=q.get("kv_cache"),
                                     bits_per_weight=q.get("bits_per_weight"), format=q.get("format"),
                                     lm_eval=resolve_path(q["lm_eval"], base) if "lm_eval" in q else None))
    raw_base = m["baseline"]
    baseline_lm_eval = resolve_path(m["baseline_lm_eval"], base) if "baseline_lm_eval" in m else None
    baseline = (CheckpointSpec("baseline", server=raw_base["server"], served_model=raw_base.get("model"),
                               bits_per_weight=raw_base.get("bits_per_weight"), format=raw_base.get("format"),
                               lm_eval=baseline_lm_eval)
                if isinstance(raw_base, dict) else CheckpointSpec("baseline", path=resolve_path(raw_base, base),
                                                                  lm_eval=baseline_lm_eval))
    model = ModelSpec(model_id=m["id"].strip(), quants=tuple(quants), system_prompt=m.get("system_prompt") or None,
                      baseline=baseline, chat_template=template_file(m, base, "chat_template"),
                      engine=m.get("engine", ModelSpec.engine), served=_parse_served(m, base, where))
    _check_served(model, m, where)
    return model


_SERVED_KEYS = ("tokenizer", "api", "api_key_env", "concurrency", "timeout_s")


def _parse_served(m, base: Path, where: str) -> ServedSettings | None:
    """A model's served settings when its baseline is a served model (None otherwise; its keys then do nothing)."""
    if not isinstance(m["baseline"], dict):
        stray = next((k for k in _SERVED_KEYS if k in m), None)
        if stray:
            raise ScreenInputError(key_at(where, m, stray), "applies to served models only, and this baseline is a "
                                   "checkpoint", f"remove {stray}:, or make the baseline {{server: URL, model: NAME}}")
        return None
    settings = typed(ServedSettings, {k: m[k] for k in _SERVED_KEYS if k in m})
    if settings.api == "completions":
        if settings.tokenizer is None:
            raise ScreenInputError(key_at(where, m, "baseline"), "is a served model sent rendered prompts "
                                   "(api: completions), but the model names no tokenizer: to render them with",
                                   "add tokenizer: PATH (the checkpoint's GGUF or folder, or embedded:NAME), or "
                                   "api: chat to let the server render the conversation")
        settings = replace(settings, tokenizer=resolve_path(settings.tokenizer, base))
    return settings


def _check_served(model: ModelSpec, m, where: str) -> None:
    """A served baseline's cells are served (or its KV-cache variants, declared on the server); a checkpoint
    baseline's cells are checkpoints: one engine per model, so engine effects cancel in the deltas."""
    served = model.served is not None
    for j, (q, raw) in enumerate(zip(model.quants, m["quants"])):
        at = f"{where}.quants[{j}]"
        if served and not q.server:
            raise ScreenInputError(key_at(at, raw, "id"), "is not served but its baseline is (a cell and its baseline "
                                   "share one engine)", "give it server: URL and model: NAME (a KV-cache variant "
                                   "too: the server runs the cache type, kv_cache: names it)")
        if not served and q.server:
            raise ScreenInputError(key_at(at, raw, "server"), "is a served model but its baseline is a checkpoint "
                                   "(a cell and its baseline share one engine)", "serve the baseline too "
                                   "(baseline: {server: URL, model: NAME}), or give this cell a path:")
        if not served and (q.bits_per_weight is not None or q.format is not None):
            key = "bits_per_weight" if q.bits_per_weight is not None else "format"
            raise ScreenInputError(key_at(at, raw, key), "is read from a checkpoint's own header, not declared",
                                   f"remove {key}: (it applies to served models)")
    if served and model.engine not in ("auto", "openai"):
        raise ScreenInputError(key_at(where, m, "engine"), f"is {model.engine}, but the baseline is a served model",
                               "set engine: openai (or auto)")
    if not served and model.engine == "openai":
        raise ScreenInputError(key_at(where, m, "engine"), "is openai, but the baseline is a checkpoint",
                               "make the baseline {server: URL, model: NAME}, or set engine: auto")


def _check_unique_cells(models: tuple[ModelSpec, ...], raw_models: list, where: str) -> None:
    """Cell ids name output files and cache entries, so two quants (of any models) must not share one."""
    first_line = {}
    for i, (model, raw) in enumerate(zip(models, raw_models)):
        for j, (quant, q) in enumerate(zip(model.quants, raw["quants"])):
            cid = cell_id(model, quant)
            if cid in first_line:
                raise ScreenInputError(key_at(f"{where}.models[{i}].quants[{j}]", q, "id"),
                                       f"cell id '{cid}' is used twice (first on line {first_line[cid]})",
                                       "give each quant a unique id")
            first_line[cid] = q.lines.get("id")



def cli_model(overrides: Overrides) -> ModelSpec:
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
