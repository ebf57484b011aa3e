"""Everything about a plan that can be checked without loading weights, checked before the first test runs.

Headers, tokenizer files, chat templates, prompt files, the labelled replies, lm-eval results files, the device and the
cache folder: a mistake in any of them is one line naming the file or option and the fix (pytest's usage error, exit
code 4), seconds after the run starts rather than after an hour of generation. What only a loaded model can show (NaN
logits, degenerate output) is still found when the cell is measured, and fails that cell's screens alone.
"""
from __future__ import annotations

import os
from pathlib import Path

from quantscreen.engine.checkpoint import CheckpointInfo, inspect_checkpoint
from quantscreen.records.errors import ScreenInputError


def preflight(plan, ws, device: str) -> dict:
    """Check the plan's inputs; returns the loaded prompt sets (role -> PromptSet) so they are read once."""
    from quantscreen.pipeline.prompts import load_prompt_sets

    check_device(device)
    check_writable(ws.cache_dir, "--cache-dir")
    if any(m.engine == "vllm" for m in plan.models):
        from quantscreen.engine.loader import resolve_device
        from quantscreen.engine.vllm_engine import check_usable

        for model in plan.models:
            for spec in model.quants if model.engine == "vllm" else ():
                check_usable(resolve_device(device), spec.kv_cache)
    for model in plan.models:
        check_model(model, ws)
    if plan.lm_eval is not None:
        check_lm_eval(plan)
    if plan.judge.enabled and plan.judge.checkpoint:
        from quantscreen.pipeline.workspace import embedded_path

        judge = inspect_checkpoint(embedded_path(plan.judge.checkpoint, ws))
        check_template(judge, plan.judge.chat_template, "the judge")
    if plan.judge.enabled or plan.judge.accuracy != "none":
        from quantscreen.pipeline.instruments import labelled_set

        labelled_set(plan.judge.accuracy)
    from quantscreen.probes.refusal_classifier import load_head

    load_head()  # the classifier instrument's fitted head: a missing or damaged file is one line, before any load
    from quantscreen.probes.registry import reply_probes

    reply_probes()  # every reply probe, the package's and installed distributions': a malformed one is one line too
    return load_prompt_sets(plan, ws)


def check_device(requested: str) -> None:
    """Only a CUDA request can be wrong on a machine that runs at all; `auto` and `cpu` never import torch here."""
    if (requested or "auto").strip().lower() in ("auto", "cpu"):
        return
    from quantscreen.engine.loader import resolve_device

    resolve_device(requested)


def check_writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ScreenInputError(f"{option} {folder}", f"is not a writable folder ({exc.strerror or exc})",
                               f"pass {option} a folder you can write to") from None


def check_model(model, ws) -> None:
    from quantscreen.pipeline.workspace import check_recipe, choose_engine, embedded_path

    if model.served is not None:
        check_served(model, ws)
        return
    base = inspect_checkpoint(embedded_path(model.baseline.path, ws))
    check_template(base, model.chat_template, model.model_id)
    for spec in model.quants:
        if spec.kv_cache:
            check_kv_cache(model, spec, base)
        if spec.weights is None:  # a KV-cache cell of the baseline's own weights
            continue
        if spec.derive:
            check_recipe(model, spec, base)
            continue
        cell = inspect_checkpoint(embedded_path(spec.path, ws))
        check_template(cell, model.chat_template, model.model_id)
        check_pair(base, cell)
        choose_engine(model.engine, cell, base)


def check_served(model, ws) -> None:
    """The tokenizer that renders a served model's prompts, and every served model of it: reachable, serving the
    model named, answering a greedy completion (its fingerprint), all before anything is generated."""
    from quantscreen.pipeline.workspace import resolve_checkpoint

    if model.served.tokenizer:
        check_template(resolve_checkpoint(model, model.baseline, ws).tokenizer, model.chat_template, model.model_id)
    for spec in (model.baseline, *model.quants):
        ws.checkpoint_digest(resolve_checkpoint(model, spec, ws))


def check_kv_cache(model, spec, base: CheckpointInfo) -> None:
    """A quantized KV cache is run by llama.cpp, in a type it has (a served model's is its server's business)."""
    from quantscreen.engine.llamacpp import kv_types
    from quantscreen.pipeline.plan import cell_id

    if model.engine == "vllm":  # vLLM's own cache types, checked with the engine (vllm_engine.check_usable)
        return
    if base.kind != "gguf" or model.engine == "transformers":
        raise ScreenInputError(f"{cell_id(model, spec)} (kv_cache: {spec.kv_cache})", "needs llama.cpp, which runs "
                               f"a quantized KV cache, but {base.path} is not a GGUF file or the engine is "
                               f"{model.engine}", "screen KV-cache cells of a GGUF baseline with engine auto or "
                               "llamacpp, or of a served model (kv_cache: names what its server runs)")
    kv_types(spec.kv_cache)


def check_lm_eval(plan) -> None:
    """Every lm-eval results file the plan names holds its task's metric as a 0..1 number, and each cell's file scored
    the same items the same way as its baseline's (pipeline.lm_eval_results)."""
    from quantscreen.pipeline.lm_eval_results import check_comparable, read_score
    from quantscreen.pipeline.plan import cell_id

    task, metric = plan.lm_eval.task, plan.lm_eval.metric
    for model in plan.models:
        if model.baseline.lm_eval is None:
            continue
        base = read_score(model.baseline.lm_eval, task, metric, f"{model.model_id}'s baseline")
        for spec in model.quants:
            cid = cell_id(model, spec)
            check_comparable(read_score(spec.lm_eval, task, metric, cid), base, cid)


def check_template(info: CheckpointInfo, override: str | None, whose: str) -> None:
    if not info.has_chat_template and not override:
        raise ScreenInputError(info.path, f"({whose}) has no chat template, so prompts cannot be rendered as the "
                               "model was trained to read them",
                               "pass --chat-template FILE (a Jinja template) or set chat_template: in models.yaml")


def check_pair(base: CheckpointInfo, cell: CheckpointInfo) -> None:
    """A cell must be a quantization of its baseline: same architecture, same vocabulary.

    Between a GGUF and an HF folder the names differ by convention (and an HF vocab_size may be padded), so across
    formats only a vocabulary the model cannot embed is refused."""
    if base.kind == cell.kind:
        if base.architecture and cell.architecture and base.architecture != cell.architecture:
            raise ScreenInputError(cell.path, f"is a {cell.architecture} model but its baseline {base.path} is "
                                   f"{base.architecture}", "pair each checkpoint with the model it was quantized from")
        if base.vocab_size and cell.vocab_size and base.vocab_size != cell.vocab_size:
            raise ScreenInputError(cell.path, f"has a vocabulary of {cell.vocab_size} tokens but its baseline "
                                   f"{base.path} has {base.vocab_size}",
                                   "pair each checkpoint with the model it was quantized from")
        return
    gguf, hf = (base, cell) if base.kind == "gguf" else (cell, base)
    if gguf.vocab_size and hf.vocab_size and gguf.vocab_size > hf.vocab_size:
        raise ScreenInputError(cell.path, f"and its baseline {base.path} have different vocabularies "
                               f"({gguf.vocab_size} GGUF tokens, {hf.vocab_size} in config.json)",
                               "pair each checkpoint with the model it was quantized from")


def input_warnings(plan, prompt_sets: dict, ws) -> list[str]:
    """What the run can do but should say before it does: a prompt set smaller than asked for (the screens run on
    what there is, and its cells cannot be certified), and a cell that is its own baseline (same sha256: a canary
    run, not a screen of a quantization)."""
    from quantscreen.pipeline.workspace import embedded_path
    from quantscreen.pipeline.plan import cell_id

    out = []
    for role, spec in plan.prompts.items():
        ps = prompt_sets.get(role)
        if ps is not None and spec.n is not None and len(ps) < spec.n:
            where = ps.source.path or ps.source.path_inside or role
            out.append(f"{where}: holds {len(ps)} {role} prompt(s) but {spec.n} were asked for (--n-{role} / "
                       f"prompts.{role}.n); the screens run on {len(ps)}"
                       + ("; no cell can be certified" if role == "harmful" else ""))
    for model in plan.models:
        if model.served is not None:
            continue
        base = inspect_checkpoint(embedded_path(model.baseline.path, ws))
        for spec in model.quants:
            if spec.derive or spec.weights is None:  # derived, or a KV-cache cell of the baseline's weights
                continue
            cell = inspect_checkpoint(embedded_path(spec.path, ws))
            if ws.checkpoint_digest(cell) == ws.checkpoint_digest(base):
                out.append(f"{cell_id(model, spec)}: {cell.path} has the same sha256 as its baseline {base.path}: "
                           f"this is a canary run (the baseline against itself), not a screen of a quantization; "
                           f"the cell cannot be certified")
    return out
