"""Greedy, batched generation with the checkpoint's own chat template, resumable through the response cache.

Batches are a fixed partition of the prompt set (sorted by prompt length, then index), so a batch's composition,
and therefore its greedy output, does not depend on which worker runs it or on what was cached before.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from engine.cache import CachedResponse, ResponseStore
from engine.digest import sha256_bytes
from engine.errors import ModelRunError, ScreenInputError


@dataclass(frozen=True)
class DecodingSettings:
    max_new_tokens: int = 128
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    system_prompt: str | None = None
    engine: str = "transformers"

    def key_parts(self) -> dict:
        parts = asdict(self)
        parts["device"] = self.device.split(":")[0]  # cuda:0 and cuda:1 compute alike; cpu and cuda do not
        parts["greedy"] = True
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
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate(load_model, prompts: list[str], settings: DecodingSettings, store: ResponseStore,
             label: str, tokenizer, progress=None) -> list[CachedResponse]:
    """Responses for every prompt: cached ones are reused, missing batches are generated and appended.

    `load_model` is called only when something is missing, so a warm cache never loads weights.
    """
    digests = prompt_digests(prompts)
    done = store.load(digests)
    texts = [render(tokenizer, p, settings.system_prompt) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    todo = [b for b in plan_batches(lengths, settings.batch_size) if any(i not in done for i in b)]
    if todo:
        model = load_model()
        _generate_batches(model, tokenizer, texts, digests, todo, settings, store, done, label, progress)
    return [done[i] for i in range(len(prompts))]


def _generate_batches(model, tok, texts, digests, batches, settings, store, done, label, progress) -> None:
    n_missing = sum(len(b) for b in batches)
    bar = (progress or TextProgress)(f"generating {label}", n_missing)
    try:
        if hasattr(model, "complete"):  # llama.cpp: one sequence at a time, a batch is the unit of caching
            for k, batch in enumerate(batches):
                entries = []
                for j, i in enumerate(batch):
                    text, n, finished = model.complete(texts[i], settings.max_new_tokens, label,
                                                       check_logits=k == 0 and j == 0)
                    entries.append(CachedResponse(i, digests[i], text, n, finished))
                store.append(entries)
                done.update({e.index: e for e in entries})
                bar.update(len(batch))
        else:
            _generate_torch_batches(model, tok, texts, digests, batches, settings, store, done, label, bar)
    finally:
        bar.close()


def _generate_torch_batches(model, tok, texts, digests, batches, settings, store, done, label, bar) -> None:
    import torch

    stops = stop_token_ids(model, tok)
    first = True
    for batch in batches:
        enc = tok([texts[i] for i in batch], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(settings.device)
        with torch.inference_mode():
            if first:
                _check_finite_logits(model, enc, label)
                first = False
            out = model.generate(**enc, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                 num_beams=1, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        new = out[:, enc.input_ids.shape[1]:].tolist()
        entries = []
        for i, ids in zip(batch, new):
            cut = next((k for k, t in enumerate(ids) if t in stops), None)
            kept = ids if cut is None else ids[:cut]
            entries.append(CachedResponse(i, digests[i], tok.decode(kept, skip_special_tokens=True).strip(),
                                          len(kept), cut is not None))
        store.append(entries)
        done.update({e.index: e for e in entries})
        bar.update(len(batch))


class TextProgress:
    """Default progress: a tqdm bar on stderr (the pytest plugin passes one that writes past output capture)."""

    def __init__(self, label: str, total: int):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=label, unit="prompt", file=sys.stderr,
                         mininterval=2.0, dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _check_finite_logits(model, enc, label: str) -> None:
    import torch

    logits = model(**enc).logits[:, -1, :]
    if not torch.isfinite(logits).all():
        raise ModelRunError(label, "produces NaN or inf logits on the first batch",
                               "the checkpoint is damaged or its dtype overflows; try --dtype float32 or re-quantize")
