"""Measure one cell: resolve its checkpoint (deriving it if needed), generate or reuse responses, run the probes.

The model is loaded only when some response is missing from the cache, and released before this returns, so a
worker holds at most one model at a time and a warm re-run loads none.
"""
from __future__ import annotations

import gc
from dataclasses import replace

from quantscreen.engine import __version__
from quantscreen.engine.checkpoint import CheckpointInfo
from quantscreen.records.digest import sha256_bytes
from quantscreen.records.errors import ModelRunError, ScreenInputError
from quantscreen.pipeline.plan import CheckpointSpec, ModelSpec, Plan
from quantscreen.pipeline.workspace import Workspace, engine_version, resolve_checkpoint
from quantscreen.records.measurement import CellMeasurement
from quantscreen.records.probe import ProbeRecord


def response_key(checkpoint_sha256: str, prompt_set_sha256: str, settings, chat_template: str | None) -> dict:
    """What a cached response depends on: any change here starts a new cache file, so nothing stale is reused."""
    return {"checkpoint_sha256": checkpoint_sha256, "prompt_set_sha256": prompt_set_sha256,
            "decoding": settings.key_parts(),
            "chat_template_override_sha256": sha256_bytes(chat_template.encode()) if chat_template else None,
            "harness_version": __version__, "engine_version": engine_version(settings.engine)}


def measure(model: ModelSpec, spec: CheckpointSpec, plan: Plan, prompt_sets: dict, ws: Workspace,
            is_baseline: bool = False, progress=None, engine: str = "transformers",
            info: CheckpointInfo | None = None, baseline: CellMeasurement | None = None,
            flash_attn: bool = False) -> CellMeasurement:
    """The one pipeline function that measures a cell: responses (cached or generated), the classifier and regex
    records, quality, the mechanistic probes' capture and KLD, with the model loaded at most once and released before
    returning. `info`: the checkpoint already resolved by the caller (it is resolved here otherwise). `baseline`: the
    baseline's measurement, whose replies are this cell's drafts under paired verification. `flash_attn`: llama.cpp
    with flash attention (a KV-cache cell and its baseline). Over 60 lines: the lazily
    loaded model, tokenizer and torch weights are closures shared by the steps, which is what keeps a warm run from
    loading any model."""
    from quantscreen.engine.cache import ResponseStore
    from quantscreen.engine.generate import generate, prompt_digests
    from quantscreen.engine.loader import load_engine_model, load_tokenizer

    info = info or resolve_checkpoint(model, spec, ws)
    label = f"{model.model_id}-{spec.quant}" if not is_baseline else baseline_label(model, engine, flash_attn)
    digest = ws.checkpoint_digest(info)
    settings = decoding_settings(model, plan, ws, engine, spec.kv_cache, flash_attn)
    # what torch cannot see: a server's weights, or a KV cache's quantization (torch runs an f16 cache)
    torch_blind = ("the replies come from a server; probes and KLD need the weights in this process"
                   if engine == "openai" else "a quantized KV cache: torch, which the probes and KLD run in, would "
                   "see the baseline's own weights and cache" if spec.kv_cache else None)
    holder: dict = {}
    tokenizer = None

    def get_tokenizer():
        nonlocal tokenizer
        if tokenizer is None:
            tokenizer = load_tokenizer(info, model.chat_template)
        return tokenizer

    def load_model():
        if "model" not in holder:
            holder["model"] = load_engine_model(engine, info, get_tokenizer(), ws.device, plan.dtype,
                                                ws.trust_remote_code, settings.batch_invariant, settings.system_prompt,
                                                settings.kv_cache, settings.flash_attn)
        return holder["model"]

    def load_torch():  # probes and KLD read logits and activations through torch (a GGUF is dequantized)
        if engine == "transformers":
            return load_model()
        if "torch" not in holder:
            from quantscreen.engine.loader import load_model as load_weights
            holder["torch"] = load_weights(info, get_tokenizer(), ws.device, plan.dtype, ws.trust_remote_code)
        return holder["torch"]

    responses = {}
    kld_baseline, kld_error = None, None
    if plan.kld.enabled and not is_baseline and torch_blind is None:  # before this cell's model loads: one at a time
        kld_baseline, kld_error = _kld_baseline(model, plan, ws, progress)
    try:
        for role, ps in prompt_sets.items():
            role_settings, drafts = settings, None
            if verifies(plan, engine, baseline) and baseline.responses.get(role):
                drafts = list(baseline.responses[role])
                role_settings = drafting_from(baseline, ps.digest, settings, model, ws)
            store = ResponseStore(ws.cache_dir, response_key(digest, ps.digest, role_settings, model.chat_template))
            found = store.load(prompt_digests(list(ps.prompts)))
            if len(found) == len(ps):  # warm: no tokenizer, no model
                responses[role] = [found[i] for i in range(len(ps))]
                continue
            try:
                responses[role] = generate(load_model, list(ps.prompts), role_settings, store, f"{label} {role}",
                                           get_tokenizer(), progress, drafts,
                                           source=f"{ps.source.path or ps.source.package} ({role} prompts)")
            except ModelRunError as exc:
                raise ModelRunError(f"{info.path} ({exc.subject})", exc.problem, exc.fix) from None
        if engine == "llamacpp" and "model" in holder:
            holder.pop("model").close()  # never two copies of the weights in memory
        capture, probe_error, kld = None, None, None
        if torch_blind is None:
            capture, probe_error = _capture(model, info, plan, prompt_sets, ws, digest, label, progress, load_torch,
                                            get_tokenizer)
            if plan.kld.enabled and kld_error is None:
                kld, kld_error = _kld(plan, ws, digest, label, progress, load_torch, get_tokenizer, kld_baseline)
        elif plan.kld.enabled:
            kld_error = f"not measured: {torch_blind}"
    finally:
        if hasattr(holder.get("model"), "close"):
            holder["model"].close()
        holder.clear()
        gc.collect()
    _check_not_degenerate(label, info, responses["quality"])
    imported = _imported_quality(spec, plan, ws, label)
    return CellMeasurement(
        cell_id=label, model=model.model_id, quant="baseline" if is_baseline else spec.quant, is_baseline=is_baseline,
        checkpoint={"path": str(info.path), "format": info.format + (f" + KV {spec.kv_cache}" if spec.kv_cache else ""),
                    "bits_per_weight": info.bits_per_weight, "sha256": digest, "kv_cache": spec.kv_cache or "",
                    "group_size": info.group_size, "made_by": info.made_by,
                    "architecture": info.architecture, "vocab_size": info.vocab_size, "bits": info.bits,
                    "engine": engine, "loaded_by": engine_version(engine) + _kernel(info) + _cpu_kernels(engine, ws.device)
                    + (", batch-invariant: flash attention, no repacked weights" if settings.batch_invariant else "")
                    + (", flash attention" if settings.flash_attn and not settings.batch_invariant else ""),
                    "tensor_types": ";".join(f"{k}:{v}" for k, v in info.tensor_types.items()),
                    "type_mix_sha256": info.type_mix_sha256, "derive": spec.derive or ""},
        records={**_probe_records(prompt_sets, responses, ws), **(kld.records() if kld is not None else {}),
                 **{r.name: r for r in imported}}, imported_from={r.name: spec.lm_eval for r in imported},
        mean_response_tokens={role: sum(r.n_tokens for r in rs) / len(rs) for role, rs in responses.items() if rs},
        capture=capture, probe_error=probe_error, responses={role: tuple(rs) for role, rs in responses.items()},
        kld_error=kld_error, generation=verification_figures(responses))


def decoding_settings(model: ModelSpec, plan: Plan, ws: Workspace, engine: str, kv_cache: str | None = None,
                      flash_attn: bool = False):
    """How this model's replies are decoded (a baseline and its cells alike, but for a KV-cache cell's cache type;
    engine.generate.DecodingSettings)."""
    from quantscreen.engine.generate import DecodingSettings

    return DecodingSettings(max_new_tokens=plan.max_new_tokens, batch_size=plan.batch_size, dtype=plan.dtype,
                            device=ws.device, system_prompt=model.system_prompt, engine=engine,
                            batch_invariant=plan.paired_verification and engine == "llamacpp", kv_cache=kv_cache,
                            flash_attn=flash_attn and engine == "llamacpp")


def flash_attention_for(spec: CheckpointSpec, engine: str) -> bool:
    """llama.cpp runs a KV-cache cell, and the baseline it is compared with, with flash attention: a quantized V cache
    needs it, and the baseline must differ from the cell in the cache's type alone."""
    return engine == "llamacpp" and spec.kv_cache is not None


def baseline_label(model: ModelSpec, engine: str, flash_attn: bool = False) -> str:
    return f"{model.model_id}-baseline-{engine}" + ("-flash-attn" if flash_attn else "")


def drafting_from(baseline: CellMeasurement, prompt_set_sha256: str, settings, model: ModelSpec, ws: Workspace):
    """`settings` checking drafts taken from `baseline`'s replies to a prompt set: keyed by their response store."""
    from quantscreen.engine.cache import ResponseStore

    own = replace(settings, kv_cache=None)  # the baseline's settings: a KV-cache cell's baseline runs an f16 cache
    key = ResponseStore(ws.cache_dir, response_key(baseline.checkpoint["sha256"], prompt_set_sha256, own,
                                                   model.chat_template)).key
    return replace(settings, drafts_from=key)


def verifies(plan: Plan, engine: str, baseline: CellMeasurement | None) -> bool:
    """Paired verification applies to a llama.cpp cell measured after its baseline (engine.draft)."""
    return plan.paired_verification and engine == "llamacpp" and baseline is not None


def verification_figures(responses: dict) -> dict:
    """cells.csv's paired-verification columns over every reply verified against its baseline's (all roles):
    the share of the baseline's reply tokens the cell repeats from the start (a quality signal of its own: 1.0 is a
    cell that says exactly what its baseline says), the share of drafted tokens accepted, and the reply tokens each
    forward pass produced (1.0 is plain decoding). Empty for plain decoding."""
    verified = [r for rs in responses.values() for r in rs if r.verify is not None]
    if not verified:
        return {}
    stats = [r.verify for r in verified]
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    tokens = sum(r.n_tokens for r in verified)
    return {"verified_replies": len(stats),
            "accepted_prefix_share": total["prefix_tokens"] / total["reference_tokens"]
            if total["reference_tokens"] else None,
            "replies_as_baseline": sum(r.verify["prefix_tokens"] == r.verify["reference_tokens"] == r.n_tokens
                                       for r in verified) / len(verified),
            "draft_accepted_share": total["accepted"] / total["drafted"] if total["drafted"] else None,
            "tokens_per_forward": tokens / total["steps"] if total["steps"] else None}


def _kld_key(plan: Plan, ws: Workspace, digest: str) -> dict:
    """What a KLD cache entry depends on (the texts' digest and k are added by pipeline.kld_capture)."""
    return {"checkpoint_sha256": digest, "dtype": plan.dtype, "device": ws.device.split(":")[0],
            "harness_version": __version__, "engine_version": engine_version("transformers")}


def _kld_texts(plan: Plan, ws: Workspace) -> list[str]:
    from quantscreen.pipeline.kld_capture import load_texts

    texts, source = load_texts(plan.kld.n_texts)
    ws.data_sources[source.role] = source
    return texts


def _kld_baseline(model: ModelSpec, plan: Plan, ws: Workspace, progress):
    """((entries, store key), None): the baseline's stored distributions, from the cache or by loading the baseline
    alone; or (None, why) when they cannot be had (reported in cells.csv's kld_error)."""
    from quantscreen.pipeline import kld_capture
    from quantscreen.engine.loader import load_model, load_tokenizer

    base = resolve_checkpoint(model, model.baseline, ws)
    digest = ws.checkpoint_digest(base)
    holder: dict = {}

    def tok():
        if "tok" not in holder:
            holder["tok"] = load_tokenizer(base, model.chat_template)
        return holder["tok"]

    def weights():
        if "model" not in holder:
            holder["model"] = load_model(base, tok(), ws.device, plan.dtype, ws.trust_remote_code)
        return holder["model"]

    try:
        entries, key, _ = kld_capture.baseline(weights, tok, _kld_texts(plan, ws), _kld_key(plan, ws, digest),
                                               plan.kld, ws.cache_dir, ws.device, f"{model.model_id}-baseline",
                                               progress)
        return (entries, key), None
    except ScreenInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in cells.csv (kld_error), never swallowed silently
        return None, _kld_failure(base.path, exc)
    finally:
        holder.clear()
        gc.collect()


def _kld(plan: Plan, ws: Workspace, digest: str, label: str, progress, load_torch, load_tok, baseline):
    """(KldCapture, None), or (None, why): the cell against `baseline` (None: this is the baseline)."""
    from quantscreen.pipeline import kld_capture

    try:
        texts, key = _kld_texts(plan, ws), _kld_key(plan, ws, digest)
        if baseline is None:
            return kld_capture.baseline(load_torch, load_tok, texts, key, plan.kld, ws.cache_dir, ws.device, label,
                                        progress)[2], None
        entries, baseline_key = baseline
        return kld_capture.cell(load_torch, load_tok, texts, entries, baseline_key, key, plan.kld, ws.cache_dir,
                                ws.device, label, progress), None
    except ScreenInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in cells.csv (kld_error), never swallowed silently
        return None, _kld_failure(label, exc)


def _kld_failure(subject, exc: Exception) -> str:
    return f"KLD could not run on {subject}: {type(exc).__name__}: {exc}".replace("\n", " ")[:600]


def _capture(model: ModelSpec, info: CheckpointInfo, plan: Plan, prompt_sets: dict, ws: Workspace, digest: str,
             label: str, progress, load_torch_model, load_tok):
    """The mechanistic probes' activations (always through torch: llama.cpp exposes no residual stream).

    Returns (capture, None), or (None, why) when they cannot run: the probes are informational, so that fails the
    probe screen and leaves the behavioural verdicts standing.
    """
    from quantscreen.pipeline import activations
    from quantscreen.engine.loader import load_model

    if not plan.probes.enabled:
        return None, None
    n = plan.probes.n_prompts
    prompts = {role: list(prompt_sets[role].prompts[:n]) for role in ("harmful", "harmless")}
    key = {"checkpoint_sha256": digest, "prompt_sets_sha256": {r: prompt_sets[r].digest for r in prompts},
           "dtype": plan.dtype, "device": ws.device.split(":")[0], "batch_size": plan.batch_size,
           "system_prompt": model.system_prompt, "harness_version": __version__,
           "chat_template_override_sha256": sha256_bytes(model.chat_template.encode()) if model.chat_template else None,
           "engine_version": engine_version("transformers")}
    holder: dict = {}

    def load():
        if load_torch_model is not None:
            return load_torch_model()
        if "model" not in holder:
            holder["model"] = load_model(info, load_tok(), ws.device, plan.dtype, ws.trust_remote_code)
        return holder["model"]

    try:
        return activations.capture(load, load_tok, prompts, key, plan.probes, ws.cache_dir, plan.batch_size,
                                   ws.device, model.system_prompt, label, progress), None
    except Exception as exc:  # noqa: BLE001 - reported on the probe screen, never swallowed silently
        return None, f"mechanistic probes could not run on {info.path}: {type(exc).__name__}: {exc}".replace(
            "\n", " ")[:600]
    finally:
        holder.clear()


def _probe_records(prompt_sets: dict, responses: dict, ws: Workspace, probes=None) -> dict:
    """Every reply probe's records (probes.registry; `probes`: those registered probes instead), each probe's data
    sources recorded in `ws.data_sources` first."""
    from quantscreen.probes.base import Replies
    from quantscreen.probes.registry import reply_probes

    encoder = ws.data_sources.get("quality_encoder")
    replies = Replies(prompts={role: tuple(ps.prompts) for role, ps in prompt_sets.items()},
                      replies={role: tuple(r.response for r in rs) for role, rs in responses.items()},
                      references=tuple(prompt_sets["quality"].references or ()) if "quality" in prompt_sets else (),
                      encoder_path=encoder.path if encoder is not None else None)
    records: dict = {}
    for reg in reply_probes() if probes is None else probes:
        for source in (reg.probe.sources() if getattr(reg.probe, "sources", None) is not None else ()):
            ws.data_sources[source.role] = source
        for rec in reg.probe.measure(replies):
            wrong = _wrong_record(rec, reg.probe.names, records)
            if wrong:
                raise ScreenInputError(reg.origin, f"returned {wrong}",
                                       "return one ProbeRecord (quantscreen.records.probe) per name it declares")
            records[rec.name] = rec
    return records


def _wrong_record(rec, names: tuple[str, ...], records: dict) -> str | None:
    """What is wrong with a record a probe returned, or None: it must be a ProbeRecord of a name the probe declares,
    returned once."""
    if not isinstance(rec, ProbeRecord):
        return f"a {type(rec).__name__}, not a ProbeRecord"
    if rec.name not in names:
        return f"a record {rec.name!r} that its names {names!r} do not declare"
    return f"the record {rec.name!r} twice" if rec.name in records else None


def _imported_quality(spec: CheckpointSpec, plan: Plan, ws: Workspace, label: str) -> list:
    """The checkpoint's score read from its lm-eval results file (pipeline.lm_eval_results), where models.yaml names
    one; recorded in sources.csv like every file a run reads. The quality replies are still generated (the degenerate
    check, BERTScore, ROUGE-L and coherence read them); screen.quality_metric decides which figure the verdict uses."""
    if spec.lm_eval is None or plan.lm_eval is None:
        return []
    from quantscreen.pipeline.lm_eval_results import read_score

    score = read_score(spec.lm_eval, plan.lm_eval.task, plan.lm_eval.metric, label)
    ws.data_sources[f"lm_eval:{label}"] = score.source(f"lm_eval:{label}")
    return [score.record()]


def _cpu_kernels(engine: str, device: str) -> str:
    """Which CPU kernels ran (cells.csv loaded_by): llama.cpp's feature set, or torch's CPU capability and oneDNN."""
    if not device.startswith("cpu") or engine == "openai":
        return ""
    if engine == "llamacpp":
        from quantscreen.engine import llamacpp

        return f" (CPU kernels: {llamacpp.kernels()})"
    import torch

    return (f" (CPU kernels: {torch.backends.cpu.get_cpu_capability()}, oneDNN "
            f"{'on' if torch.backends.mkldnn.is_available() else 'off'})")


def _kernel(info: CheckpointInfo) -> str:
    import importlib.metadata

    if info.quant_method:
        return f", gptqmodel {importlib.metadata.version('gptqmodel')} ({info.quant_method} kernel)"
    return ""


def degenerate(text: str) -> bool:
    """Empty, or one token (word or character) repeated: what a broken quantizer or loader emits."""
    words = text.split()
    if not words:
        return True
    if len(words) >= 4 and len(set(words)) == 1:
        return True
    squeezed = "".join(words)
    return len(squeezed) >= 8 and len(set(squeezed)) <= 2


def _check_not_degenerate(label: str, info: CheckpointInfo, responses) -> None:
    """A variant whose quality answers are mostly empty or one repeated token is a production or loading bug."""
    bad = sum(degenerate(r.response) for r in responses)
    if responses and bad > len(responses) / 2:
        example = next(r.response for r in responses if degenerate(r.response))
        raise ScreenInputError(info.path, f"gives degenerate output on {bad} of {len(responses)} quality prompts "
                               f"(e.g. {example[:40]!r}): a broken checkpoint or loader, not a finding",
                               "re-create the checkpoint, or load it with another engine (engine: transformers)")
