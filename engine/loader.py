"""Load a checkpoint into torch: GGUF files are dequantized through transformers, HF folders load as they are.

Only local files are read (`local_files_only=True`), remote code never runs unless the user asks for it, and weights
come from safetensors or GGUF only.
"""
from __future__ import annotations

import os

from quantscreen.engine.checkpoint import CheckpointInfo
from quantscreen.records.errors import ScreenInputError


def pick_device(requested: str, cuda_count: int, worker_index: int | None = None) -> str:
    """The torch device for `--device` (auto | cpu | cuda | cuda:N), given how many CUDA devices torch sees.

    Under pytest-xdist, worker N takes cuda:(N mod count) for `auto` and `cuda`, so two workers on a two-GPU host
    never share a device; an explicit `cuda:N` is honoured as given.
    """
    requested = (requested or "auto").strip().lower()
    if requested == "cpu":
        return "cpu"
    if requested == "auto" and cuda_count == 0:
        return "cpu"
    if requested in ("auto", "cuda"):
        if cuda_count == 0:
            raise ScreenInputError("--device", "asks for cuda but torch sees no CUDA device",
                                   "run on a GPU machine with a CUDA build of torch, or pass --device cpu")
        return f"cuda:{(worker_index or 0) % cuda_count}"
    if requested.startswith("cuda:") and requested[5:].isdigit():
        index = int(requested[5:])
        if index >= cuda_count:
            seen = f"only {cuda_count} CUDA device(s)" if cuda_count else "no CUDA device"
            raise ScreenInputError("--device", f"asks for {requested} but torch sees {seen}",
                                   "pass --device auto, or an index below the device count")
        return requested
    raise ScreenInputError("--device", f"'{requested}' is not a device", "use cpu, cuda, cuda:N or auto")


def xdist_worker_index() -> int | None:
    """N for pytest-xdist worker gwN, None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def threads_per_worker() -> int:
    """CPU threads for one process when pytest-xdist runs several on this machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def resolve_device(device: str) -> str:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pick_device(device, count, xdist_worker_index())


def load_tokenizer(info: CheckpointInfo, chat_template: str | None):
    """The tokenizer whose chat template renders prompts; a served model's is its `tokenizer:` checkpoint's (None
    under api: chat, where the server renders them)."""
    from transformers import AutoTokenizer

    if info.kind == "served":
        return None if info.tokenizer is None else load_tokenizer(info.tokenizer, chat_template)

    kwargs = {"gguf_file": info.path.name} if info.kind == "gguf" else {}
    try:
        tok = AutoTokenizer.from_pretrained(str(info.folder), local_files_only=True, **kwargs)
    except Exception as exc:
        raise ScreenInputError(info.path, f"tokenizer could not be loaded ({type(exc).__name__}: {exc})".replace(
            "\n", " ")[:400], "copy the original model's tokenizer files next to the weights") from None
    if chat_template:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise ScreenInputError(info.path, "tokenizer has no chat template",
                               "pass --chat-template FILE (a Jinja template) or set chat_template: in models.yaml")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # batched decoder-only generation continues from the right edge
    return tok


def load_model(info: CheckpointInfo, tok, device: str = "cpu", dtype: str = "float32",
               trust_remote_code: bool = False):
    """The weights of a checkpoint whose tokenizer is already loaded (GGUF tokenizers take seconds to build)."""
    import torch
    from transformers import AutoModelForCausalLM

    # GGUF, or safetensors only: a pickle (*.bin) lying beside the weights is never unpickled.
    kwargs = {"gguf_file": info.path.name} if info.kind == "gguf" else {"use_safetensors": True}
    if info.quant_method:  # GPTQ / AWQ: transformers hands the layers to gptqmodel's kernels
        from quantscreen.engine.quantize import gptqmodel_env

        gptqmodel_env()
        kwargs["device_map"] = device
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(info.folder), dtype=getattr(torch, dtype), local_files_only=True,
            trust_remote_code=trust_remote_code, **kwargs)
    except Exception as exc:
        raise ScreenInputError(info.path, f"weights could not be loaded ({type(exc).__name__}: {exc})".replace(
            "\n", " ")[:400], "check the checkpoint is complete and its architecture is supported by transformers "
                              "(pass --trust-remote-code only for code you trust)") from None
    model.to(device)
    model.eval()
    if model.config.vocab_size and len(tok) > model.config.vocab_size:
        raise ScreenInputError(info.path, f"tokenizer has {len(tok)} tokens but the model only {model.config.vocab_size}",
                               "pair the weights with their own tokenizer")
    return model


def load_engine_model(engine: str, info: CheckpointInfo, tok, device: str = "cpu", dtype: str = "float32",
                      trust_remote_code: bool = False, batch_invariant: bool = False, system_prompt: str | None = None,
                      kv_cache: str | None = None, flash_attn: bool = False):
    """The weights in the engine that generates with them: a transformers model, a `LlamaCppModel`
    (`batch_invariant`: llama.cpp kernels whose small batches compute what one-token decoding computes; `kv_cache`:
    its KV cache types, `flash_attn`: flash attention), or a served model's client (`system_prompt`: what it sends under api: chat)."""
    if engine == "openai":
        return info.client(system_prompt)
    if engine == "vllm":
        from quantscreen.engine.vllm_engine import VllmModel

        return VllmModel(info.path, device, dtype, kv_cache)
    if engine == "llamacpp":
        from quantscreen.engine.llamacpp import LlamaCppModel

        return LlamaCppModel(info.path, device, threads=threads_per_worker(), batch_invariant=batch_invariant,
                             kv_cache=kv_cache, flash_attn=flash_attn)
    if kv_cache:
        raise ScreenInputError(info.path, f"has kv_cache: {kv_cache}, which the transformers engine does not run",
                               "screen KV-cache cells of a GGUF (llama.cpp) or of a served model")
    return load_model(info, tok, device, dtype, trust_remote_code)


def load_model_and_tokenizer(info: CheckpointInfo, chat_template: str | None, device: str = "cpu",
                             dtype: str = "float32", trust_remote_code: bool = False):
    tok = load_tokenizer(info, chat_template)
    return load_model(info, tok, device, dtype, trust_remote_code), tok


def build_plain_model(model, dtype):
    """A plain (non-GGUF-tagged) copy of a loaded model, so it can be written with save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(model.config.to_dict())
    for attr in ("quantization_config", "gguf_file"):
        if hasattr(config, attr):
            delattr(config, attr)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()}, assign=True, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    missing = [n for n, p in plain.named_parameters() if p.device.type == "meta"]
    if missing:
        raise RuntimeError(f"parameters not copied into the plain model: {missing[:5]}")
    return plain
