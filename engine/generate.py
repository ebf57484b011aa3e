"""Greedy, batched generation with the checkpoint's own chat template, resumable through the response cache.

Batches are a fixed partition of the prompt set (sorted by prompt length, then index, in batches of equal size), so a
batch's composition, and therefore its greedy output, does not depend on which worker runs it or on what was cached
before (transformers caches a batch at a time; llama.cpp, one sequence at a time, caches each reply as it
finishes). Within a batch, a sequence leaves as soon as it emits a stop token (`greedy_decode`), so a refusal that
ends after 20 tokens no longer rides along to the token limit of the batch's longest answer. BENCHMARKS.md has the
measurements behind each choice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from quantscreen.engine.cache import CachedResponse, ResponseStore
from quantscreen.engine.progress import LineProgress
from quantscreen.records.digest import sha256_bytes
from quantscreen.records.errors import ModelRunError, ScreenInputError

# What produces a batch's tokens (transformers), in the response cache key: batch shapes and row order change float
# sums, so a change of algorithm starts new cache files instead of mixing outputs of two decoders.
DECODER = "balanced-batches+drop-finished/1"
LLAMACPP_CONTEXT = 2048  # the llama.cpp engine's context window (engine.llamacpp.LlamaCppModel's n_ctx)
VERIFIER = "draft-verified/1"  # paired verification (engine.draft), in the cache key the same way


@dataclass(frozen=True)
class DecodingSettings:
    max_new_tokens: int = 128
    batch_size: int = 128
    dtype: str = "float32"
    device: str = "cpu"
    system_prompt: str | None = None
    engine: str = "transformers"
    # Paired verification: the response-cache key of the baseline replies drafted from (engine.draft); None: plain
    # greedy decoding. The drafts decide the batch shapes, so their source is part of this cache's key.
    drafts_from: str | None = None
    # llama.cpp's kernels: flash attention and no repacked weights, under which paired verification's batches give
    # one-token decoding's floats exactly (engine.llamacpp); baseline and cells of a verified run both use them
    batch_invariant: bool = False
    # A quantized KV cache (llama.cpp's K type, or K/V types: engine.llamacpp.KV_TYPES); for a served model, what its
    # server was started with. llama.cpp runs a KV-cache cell and its baseline with flash attention (which a quantized
    # V cache needs), so the one difference between them is the cache's type.
    kv_cache: str | None = None
    flash_attn: bool = False

    def key_parts(self) -> dict:
        parts = asdict(self)
        parts["device"] = self.device.split(":")[0]  # cuda:0 and cuda:1 compute alike; cpu and cuda do not
        parts["greedy"] = True
        parts["decoder"] = {"transformers": DECODER, "openai": "the server's",
                            "vllm": "vllm batches, batch-invariant"}.get(self.engine, "one sequence at a time")
        for name in ("batch_invariant", "kv_cache", "flash_attn"):
            if not parts[name]:
                del parts[name]  # the default kernels keep the keys (and caches) they always had
        if self.drafts_from is None:
            del parts["drafts_from"]
        else:
            from quantscreen.engine.draft import DraftPolicy

            parts["decoder"] = f"{VERIFIER} ({parts['decoder']} when no draft)"
            parts["draft_policy"] = DraftPolicy().key_parts()
        return parts


def render(tok, prompt: str, system_prompt: str | None) -> str:
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
               [{"role": "user", "content": prompt}]
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja raises TemplateError for roles the template rejects
        hint = "remove system_prompt for this model" if system_prompt else "supply a working --chat-template"
        raise ScreenInputError("chat template", f"failed to render a prompt ({exc})", hint) from None


def prompt_digests(prompts: list[str]) -> list[str]:
    return [sha256_bytes(p.encode("utf-8")) for p in prompts]


def stop_token_ids(model, tok) -> list[int]:
    ids = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(x) for x in source)
    return sorted(ids)


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Prompt indices sorted by length (longest first, then index), cut into the fewest batches of at most
    `batch_size`, as equal in size as possible: 100 prompts at 64 make two batches of 50, not 64 and 36."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if not order:
        return []
    n_batches = -(-len(order) // batch_size)
    base, extra = divmod(len(order), n_batches)
    out, start = [], 0
    for k in range(n_batches):
        size = base + (k < extra)
        out.append(order[start:start + size])
        start += size
    return out


def context_limit(settings: DecodingSettings, tokenizer) -> int | None:
    """The most tokens a prompt and its reply may take: llama.cpp's context window, else the tokenizer's declared
    maximum (None where it declares none)."""
    declared = getattr(tokenizer, "model_max_length", None)
    declared = declared if isinstance(declared, int) and 0 < declared < 10**7 else None
    if settings.engine == "llamacpp":
        return min(LLAMACPP_CONTEXT, declared or LLAMACPP_CONTEXT)
    return declared


def check_context(prompts: list[str], lengths: list[int], settings: DecodingSettings, tokenizer, where: str) -> None:
    """Every rendered prompt plus max_new_tokens fits the context, checked before a model loads: one line naming the
    prompt source, how many prompts are too long and the first of them."""
    limit = context_limit(settings, tokenizer)
    if limit is None:
        return
    over = [i for i, n in enumerate(lengths) if n + settings.max_new_tokens > limit]
    if over:
        i = over[0]
        raise ScreenInputError(where, f"{len(over)} prompt(s) do not fit the context of {limit} tokens with "
                               f"max_new_tokens {settings.max_new_tokens}: the first, prompt {i + 1} "
                               f"({prompts[i][:40]!r}...), renders to {lengths[i]} tokens",
                               "shorten or remove those prompts, or lower --max-new-tokens")


def generate(load_model, prompts: list[str], settings: DecodingSettings, store: ResponseStore,
             label: str, tokenizer, progress=None, drafts: list[CachedResponse] | None = None,
             source: str | None = None) -> list[CachedResponse]:
    """Responses for every prompt: cached ones are reused, missing batches are generated and appended.

    `load_model` is called only when something is missing, so a warm cache never loads weights. `tokenizer` None:
    the prompts go as they are to a server that renders them (engine.served, api: chat). `drafts`: the
    baseline's replies in prompt order, checked as drafts (paired verification) when `settings.drafts_from` says so.
    `source`: where the prompts come from (a file), named by the error when one does not fit the context.
    """
    if (drafts is None) != (settings.drafts_from is None):
        raise ValueError("drafts and settings.drafts_from go together")
    digests = prompt_digests(prompts)
    done = store.load(digests)
    if tokenizer is None:  # a server that renders the conversation itself (engine.served, api: chat)
        texts, lengths = list(prompts), [0] * len(prompts)
    else:
        texts = [render(tokenizer, p, settings.system_prompt) for p in prompts]
        lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        check_context(prompts, lengths, settings, tokenizer, source or label)  # before any weights load
    todo = [b for b in plan_batches(lengths, settings.batch_size) if any(i not in done for i in b)]
    if todo:
        model = load_model()
        _generate_batches(model, tokenizer, texts, digests, todo, settings, store, done, label, progress, drafts)
    return [done[i] for i in range(len(prompts))]


def _generate_batches(model, tok, texts, digests, batches, settings, store, done, label, progress, drafts) -> None:
    one_by_one = hasattr(model, "complete") or hasattr(model, "complete_many")  # only the missing replies again;
    n_missing = sum(i not in done if one_by_one else 1 for b in batches for i in b)  # transformers: whole batches
    bar = (progress or LineProgress)(f"generating {label}", n_missing)
    try:
        if hasattr(model, "complete_many"):  # a server or vLLM: many at once, each reply cached as it returns
            missing = {i: texts[i] for batch in batches for i in batch if i not in done}
            for i, (reply, n, finished) in model.complete_many(missing, settings.max_new_tokens, label):
                entry = CachedResponse(i, digests[i], reply, n, finished)
                store.append([entry])
                done[i] = entry
                bar.update(1)
        elif one_by_one:  # llama.cpp: one sequence at a time, each reply cached as it finishes
            first = True
            for i in (i for batch in batches for i in batch if i not in done):
                entry = _complete_one(model, texts[i], digests[i], i, settings, label, first,
                                      None if drafts is None else drafts[i])
                first = False
                store.append([entry])
                done[i] = entry
                bar.update(1)
        else:
            if drafts is not None:
                raise ValueError("paired verification runs in the llama.cpp engine only")
            _generate_torch_batches(model, tok, texts, digests, batches, settings, store, done, label, bar)
    finally:
        bar.close()


def _complete_one(model, text: str, digest: str, i: int, settings: DecodingSettings, label: str, check: bool,
                  draft: CachedResponse | None) -> CachedResponse:
    if draft is None or not model.can_verify():  # recurrent models cannot drop a rejected draft: plain decoding
        reply, n, finished = model.complete(text, settings.max_new_tokens, label, check_logits=check)
        return CachedResponse(i, digest, reply, n, finished)
    reference = model.reply_ids(draft.response, draft.finished)
    reply, n, finished, stats = model.complete_verified(text, reference, settings.max_new_tokens, label,
                                                        check_logits=check)
    return CachedResponse(i, digest, reply, n, finished, verify=stats.figures())


def _generate_torch_batches(model, tok, texts, digests, batches, settings, store, done, label, bar) -> None:
    import torch

    stops = stop_token_ids(model, tok)
    fast = supports_greedy_decode(model)
    first = True
    for k, batch in enumerate(batches):
        def on_step(step: int, k=k) -> None:  # a batch can take minutes: say which token it is on
            bar.tick(f"batch {k + 1}/{len(batches)} of {len(batch)} prompts at token {step}/{settings.max_new_tokens}")

        enc = tok([texts[i] for i in batch], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(settings.device)
        with torch.inference_mode():
            if fast:
                new = greedy_decode(model, enc.input_ids, enc.attention_mask, settings.max_new_tokens, stops,
                                    check_label=label if first else None, on_step=on_step)
            else:
                if first:
                    _check_finite_logits(model(**enc).logits[:, -1, :], label)
                out = model.generate(**enc, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                     num_beams=1, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                                     repetition_penalty=1.0, temperature=None, top_p=None, top_k=None)
                new = out[:, enc.input_ids.shape[1]:].tolist()
        first = False
        entries = []
        for i, ids in zip(batch, new):
            cut = next((k for k, t in enumerate(ids) if t in stops), None)
            kept = ids if cut is None else ids[:cut]
            entries.append(CachedResponse(i, digests[i], tok.decode(kept, skip_special_tokens=True).strip(),
                                          len(kept), cut is not None))
        store.append(entries)
        done.update({e.index: e for e in entries})
        bar.update(len(batch))


def _forward_parameters(model):
    import inspect

    return inspect.signature(model.forward).parameters


def _cache_argument(model) -> str | None:
    params = _forward_parameters(model)
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def supports_greedy_decode(model) -> bool:
    """True for decoder-only models whose layers all keep a plain key/value cache (full or sliding-window
    attention), which is what `greedy_decode` knows how to shrink; other architectures (state-space or
    linear-attention layers, encoder-decoders) are generated by `model.generate`."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if getattr(model.config, "is_encoder_decoder", False) or _cache_argument(model) is None:
        return False
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # noqa: BLE001 - a config the cache cannot read: let generate() handle the model
        return False
    return bool(layers) and all(isinstance(layer, DynamicLayer) for layer in layers)


def greedy_decode(model, input_ids, attention_mask, max_new_tokens: int, stops: list[int],
                  check_label: str | None = None, on_step=None) -> list[list[int]]:
    """Pure greedy continuation (argmax, no penalties) of each left-padded row, up to and including its first stop
    token or `max_new_tokens` tokens. A row that stops leaves the batch: its key/value cache rows are dropped, so
    later steps compute only the rows still generating. `check_label`: check the first logits are finite.
    `on_step(step)`: called after each token, for progress.
    """
    import torch
    from transformers import DynamicCache

    n_rows, prompt_len = input_ids.shape
    cache = DynamicCache(config=model.config)
    cache_arg = _cache_argument(model)
    stop_ids = torch.tensor(stops, device=input_ids.device, dtype=input_ids.dtype)
    mask = attention_mask.new_zeros(n_rows, prompt_len + max_new_tokens)
    mask[:, :prompt_len] = attention_mask
    position = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position, use_cache=True,
                   **keep_last, **{cache_arg: cache}).logits[:, -1, :]
    if check_label is not None:
        _check_finite_logits(logits, check_label)
    position = position[:, -1:]
    rows = list(range(n_rows))  # original row of each row still generating
    out: list[list[int]] = [[] for _ in range(n_rows)]
    for step in range(max_new_tokens):
        if on_step is not None:
            on_step(step)
        token = logits.argmax(-1)
        for row, t in zip(rows, token.tolist()):
            out[row].append(t)
        if step == max_new_tokens - 1:
            break
        finished = torch.isin(token, stop_ids)
        if finished.any():
            keep = (~finished).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            rows = [rows[k] for k in keep.tolist()]
            token, position, mask = token[keep], position[keep], mask[keep]
        mask[:, prompt_len + step] = 1
        position = position + 1
        logits = model(input_ids=token[:, None], attention_mask=mask[:, :prompt_len + step + 1],
                       position_ids=position, use_cache=True, **{cache_arg: cache}).logits[:, -1, :]
    return out


def _check_finite_logits(logits, label: str) -> None:
    import torch

    if not torch.isfinite(logits).all():
        raise ModelRunError(label, "produces NaN or inf logits on the first batch",
                            "the checkpoint is damaged or its dtype overflows; try --dtype float32 or re-quantize")
