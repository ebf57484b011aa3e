"""Where a cell's inputs come from: the workspace (cache folder, device, what was read), checkpoint paths (embedded
wheels, derivation from the baseline), the engine a cell and its baseline share, and the engines' versions."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quantscreen.engine import sources
from quantscreen.engine.checkpoint import CheckpointInfo, inspect_checkpoint
from quantscreen.pipeline.plan import CheckpointSpec, ModelSpec
from quantscreen.records.digest import DigestMemo
from quantscreen.records.errors import ScreenInputError


@dataclass
class Workspace:
    cache_dir: Path
    device: str = "cpu"
    trust_remote_code: bool = False
    data_sources: dict = field(default_factory=dict)  # role -> DataSource, everything this process read
    served: dict = field(default_factory=dict)  # (URL, model) -> engine.served.ServedCheckpoint, opened once
    digests: DigestMemo = None

    def __post_init__(self):
        if self.digests is None:
            self.digests = DigestMemo(self.cache_dir / "digests.json")

    def checkpoint_digest(self, info: CheckpointInfo) -> str:
        """sha256 of a GGUF file, of the files that define an HF folder's behaviour, or of a served model's identity
        (engine.served: URL, model, what the server lists, request fields and a fingerprint reply)."""
        if info.kind == "served":
            return info.identity_sha256()
        return self.digests.file(info.path) if info.kind == "gguf" else self.digests.files(info.folder,
                                                                                            info.digest_files)


def embedded_path(raw: str, ws: Workspace) -> str:
    src = sources.resolve_embedded(raw, ws.cache_dir)
    if src is None:
        return raw
    ws.data_sources[f"{src.role}:{raw}"] = src  # one entry per embedded model, beside the prompt sets
    return src.path


def resolve_checkpoint(model: ModelSpec, spec: CheckpointSpec, ws: Workspace) -> CheckpointInfo:
    """The checkpoint a spec names: a file or folder, derived from the baseline, the baseline's own (a KV-cache-only
    cell), or a served model (`engine.served.ServedCheckpoint`; nothing is asked of the server yet)."""
    if spec.server:
        return served_checkpoint(model, spec, ws)
    if spec.weights is None:
        return resolve_checkpoint(model, model.baseline, ws)
    if spec.derive:
        from quantscreen.engine.derive import derive

        base = resolve_checkpoint(model, model.baseline, ws)
        check_recipe(model, spec, base)
        return inspect_checkpoint(derive(base.path, ws.checkpoint_digest(base), spec.derive, ws.cache_dir))
    return inspect_checkpoint(embedded_path(spec.path, ws))


def served_checkpoint(model: ModelSpec, spec: CheckpointSpec, ws: Workspace):
    from quantscreen.engine.served import ServedCheckpoint

    s = model.served
    tokenizer = inspect_checkpoint(embedded_path(s.tokenizer, ws)) if s.tokenizer else None
    key = (spec.server, spec.served_model)
    if key not in ws.served:  # one client per served model and run: its identity is asked for once
        ws.served[key] = ServedCheckpoint(spec.server, spec.served_model, tokenizer, s.api, s.api_key_env,
                                          s.concurrency, s.timeout_s, spec.bits_per_weight, spec.format,
                                          setting=f"models.yaml model {model.model_id}")
    return ws.served[key]


def choose_engine(requested: str, cell: CheckpointInfo, baseline: CheckpointInfo) -> str:
    """The one engine a cell and its baseline both run through, so engine effects cancel in the deltas.

    auto: openai for served models (pipeline.plan allows no mix), llama.cpp when both are GGUF files and
    llama-cpp-python is installed, transformers otherwise.
    """
    from quantscreen.engine import llamacpp

    if cell.kind == "served" or baseline.kind == "served":
        return "openai"
    if requested == "vllm":
        other = next((c for c in (cell, baseline) if c.kind != "hf"), None)
        if other is not None:
            raise ScreenInputError(other.path, "is not a Hugging Face folder, so engine vllm does not run it (a cell "
                                   "and its baseline share one engine)", "set engine: auto for GGUF models")
        return "vllm"
    if requested == "transformers":
        return "transformers"
    both_gguf = cell.kind == "gguf" and baseline.kind == "gguf"
    if requested == "llamacpp":
        if not both_gguf:
            other = cell if cell.kind != "gguf" else baseline
            raise ScreenInputError(other.path, "is not a GGUF file, so engine llamacpp cannot run it (a cell and its "
                                   "baseline share one engine)", "set engine: transformers or auto for this model")
        if not llamacpp.available():
            raise ScreenInputError("engine llamacpp", "needs llama-cpp-python, which is not installed",
                                   "run scripts/test once (it installs requirements.txt), or use engine: transformers")
        return "llamacpp"
    return "llamacpp" if both_gguf and llamacpp.available() else "transformers"


def engine_version(engine: str) -> str:
    import importlib.metadata

    if engine == "llamacpp":
        from quantscreen.engine import llamacpp
        return llamacpp.version()
    if engine == "vllm":
        from quantscreen.engine import vllm_engine
        return vllm_engine.version()
    if engine == "openai":  # the server's own version is not exposed by the API: its identity is in the cache key
        return f"OpenAI-compatible server through httpx {importlib.metadata.version('httpx')}"
    return f"transformers {importlib.metadata.version('transformers')}, torch {importlib.metadata.version('torch')}"


def check_recipe(model: ModelSpec, spec: CheckpointSpec, base: CheckpointInfo) -> None:
    if spec.derive.startswith(("gguf:", "llamacpp:")) and base.kind != "gguf":
        raise ScreenInputError(f"{model.model_id}.{spec.quant}", f"recipe {spec.derive} needs a GGUF baseline",
                               "use gptq:, awq: or rtn: recipes for HF baselines, or a GGUF baseline")
