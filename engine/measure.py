"""Measure one cell: resolve its checkpoint (deriving it if needed), generate or reuse responses, run the probes.

The model is loaded only when some response is missing from the cache, and released before this returns, so a
worker holds at most one model at a time and a warm re-run loads none.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from engine import __version__, sources
from engine.checkpoint import CheckpointInfo, inspect_checkpoint
from engine.digest import DigestMemo, sha256_bytes
from engine.errors import ScreenInputError
from engine.plan import CheckpointSpec, ModelSpec, Plan
from verdicts.cell import CellMeasurement


@dataclass
class Workspace:
    cache_dir: Path
    device: str = "cpu"
    trust_remote_code: bool = False
    data_sources: dict = field(default_factory=dict)  # role -> DataSource, everything this process read
    digests: DigestMemo = None

    def __post_init__(self):
        if self.digests is None:
            self.digests = DigestMemo(self.cache_dir / "digests.json")

    def checkpoint_digest(self, info: CheckpointInfo) -> str:
        """sha256 of a GGUF file, or of the files that define an HF folder's behaviour."""
        return self.digests.file(info.path) if info.kind == "gguf" else self.digests.files(info.folder,
                                                                                            info.digest_files)


def _embedded_path(raw: str, ws: Workspace) -> str:
    src = sources.resolve_embedded(raw, ws.cache_dir)
    if src is None:
        return raw
    ws.data_sources[src.role] = src
    return src.path


def resolve_checkpoint(model: ModelSpec, spec: CheckpointSpec, ws: Workspace) -> CheckpointInfo:
    if spec.derive:
        from engine.derive import derive

        base = resolve_checkpoint(model, model.baseline, ws)
        if spec.derive.startswith("gguf:") and base.kind != "gguf":
            raise ScreenInputError(f"{model.model_id}.{spec.quant}", f"recipe {spec.derive} needs a GGUF baseline",
                                   "use rtn:w4g128 for HF baselines, or a GGUF baseline")
        return inspect_checkpoint(derive(base.path, ws.checkpoint_digest(base), spec.derive, ws.cache_dir))
    return inspect_checkpoint(_embedded_path(spec.path, ws))


def load_prompt_sets(plan: Plan, ws: Workspace) -> dict:
    import promptsets

    out = {}
    for role, spec in plan.prompts.items():
        if spec.source == "advbench":
            ps = promptsets.advbench(spec.n, spec.seed)
        elif spec.source == "builtin":
            ps = promptsets.builtin(role)
            if spec.n is not None:
                ps = promptsets.from_file(ps.source.path, role, spec.n, spec.seed, source=ps.source)
        else:
            ps = promptsets.from_file(spec.file, role, spec.n, spec.seed)
        ws.data_sources[ps.source.role] = ps.source
        out[role] = ps
    ws.data_sources["quality_encoder"] = sources.minilm_encoder()
    return out


def measure(model: ModelSpec, spec: CheckpointSpec, plan: Plan, prompt_sets: dict, ws: Workspace,
            is_baseline: bool = False, progress=None) -> CellMeasurement:
    from engine.cache import ResponseStore
    from engine.generate import DecodingSettings, generate, prompt_digests
    from engine.loader import load_model as load_weights, load_tokenizer

    info = resolve_checkpoint(model, spec, ws)
    label = f"{model.model_id}-{spec.quant}" if not is_baseline else f"{model.model_id}-baseline"
    digest = ws.checkpoint_digest(info)
    settings = DecodingSettings(max_new_tokens=plan.max_new_tokens, batch_size=plan.batch_size, dtype=plan.dtype,
                                device=ws.device, system_prompt=model.system_prompt)
    holder: dict = {}
    tokenizer = None

    def load_model():
        if "model" not in holder:
            holder["model"] = load_weights(info, tokenizer, ws.device, plan.dtype, ws.trust_remote_code)
        return holder["model"]

    responses = {}
    try:
        for role, ps in prompt_sets.items():
            store = ResponseStore(ws.cache_dir, {
                "checkpoint_sha256": digest, "prompt_set_sha256": ps.digest, "decoding": settings.key_parts(),
                "chat_template_override_sha256": sha256_bytes(model.chat_template.encode()) if model.chat_template else None,
                "harness_version": __version__})
            found = store.load(prompt_digests(list(ps.prompts)))
            if len(found) == len(ps):  # warm: no tokenizer, no model
                responses[role] = [found[i] for i in range(len(ps))]
                continue
            tokenizer = tokenizer or load_tokenizer(info, model.chat_template)
            responses[role] = generate(load_model, list(ps.prompts), settings, store, f"{label} {role}",
                                       tokenizer, progress)
    finally:
        holder.clear()
        gc.collect()
    return CellMeasurement(
        cell_id=label, model=model.model_id, quant="baseline" if is_baseline else spec.quant, is_baseline=is_baseline,
        checkpoint={"path": str(info.path), "format": info.format, "bits_per_weight": info.bits_per_weight,
                    "sha256": digest, "group_size": info.group_size, "made_by": info.made_by,
                    "architecture": info.architecture, "vocab_size": info.vocab_size},
        records=_probe_records(prompt_sets, responses, ws),
        mean_response_tokens={role: sum(r.n_tokens for r in rs) / len(rs) for role, rs in responses.items() if rs})


def _probe_records(prompt_sets: dict, responses: dict, ws: Workspace) -> dict:
    from probes import bertscore, coherence, refusal_regex, rouge

    encoder = ws.data_sources["quality_encoder"].path
    harmful = tuple(r.response for r in responses["harmful"])
    harmless = tuple(r.response for r in responses["harmless"])
    quality = tuple(r.response for r in responses["quality"])
    refs, q_prompts = prompt_sets["quality"].references, prompt_sets["quality"].prompts
    records = [
        refusal_regex.refusal_rate(harmful, "refusal_rate_regex"),
        refusal_regex.refusal_rate(harmless, "harmless_refusal_rate_regex"),
        bertscore.bertscore_f1(quality, refs, encoder),
        rouge.rouge_l_f1(quality, refs),
        coherence.coherence(q_prompts, quality, encoder),
    ]
    return {r.name: r for r in records}
