"""One forward pass per prompt feeds all four mechanistic probes (SPEC §4), and the result is cached on disk.

For each prompt (chat template applied, nothing generated) forward hooks on the decoder blocks keep the residual
stream at the last prompt token for the probe layers only, and the next-token logits are reduced at once to the
first-token statistics, so a 150k-token vocabulary is never stored. The hooks are removed on exit, error or not.
Entries go to an append-only, checksummed JSONL store keyed like the response cache, one batch at a time, so a
baseline is captured once and a quantized cell is later measured with only itself in memory.
"""
from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass

import numpy as np

from quantscreen.engine.cache import JsonlStore
from quantscreen.probes import first_token
from quantscreen.probes.mechanistic import ProbeSettings, capture_layers, direction_layer, neuron_layers
from quantscreen.records.errors import ScreenInputError

CAPTURE_VERSION = "capture-v1"


@dataclass
class Capture:
    """Last-prompt-token activations of one checkpoint: `hidden[role]` is prompts x len(layers) x hidden size."""
    layers: tuple[int, ...]
    direction_layer: int
    neuron_layers: tuple[int, ...]
    n_layers: int
    vocab_size: int
    hidden: dict
    logit_stats: dict  # role -> statistic -> per-prompt array
    forward_passes: int = 0  # prompts this process ran through the model (0: all from the cache)

    def at(self, role: str, layer: int) -> np.ndarray:
        return self.hidden[role][:, self.layers.index(layer)]

    def stack(self, role: str, layers) -> np.ndarray:
        return self.hidden[role][:, [self.layers.index(layer) for layer in layers]]


class ActivationStore(JsonlStore):
    kind = "activations"

    def __init__(self, root, key_parts: dict):
        super().__init__(root, key_parts, "activations")


def encode_entry(i: int, prompt_sha256: str, hidden: np.ndarray, stats: dict, meta: dict) -> dict:
    return {"i": i, "prompt_sha256": prompt_sha256, **meta, "shape": list(hidden.shape),
            "hidden": base64.b64encode(np.ascontiguousarray(hidden, dtype="<f4").tobytes()).decode("ascii"),
            "stats": {k: float(v) for k, v in stats.items()}}


def decode_hidden(rec: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(rec["hidden"]), dtype="<f4").reshape(rec["shape"])


def text_config(model):
    """The language model's config (a multimodal model nests it)."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def decoder_blocks(model):
    """The model's list of decoder blocks: the ModuleList as long as the configured number of layers."""
    import torch

    n = getattr(text_config(model), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and n and len(module) == n:
            return module
    raise ScreenInputError(type(model).__name__, f"has no list of {n} decoder blocks to probe",
                           "probes support decoder-only transformers; set probes: {enabled: false} for this model")


@contextlib.contextmanager
def residual_hooks(model, layers):
    """Yields {layer: last-token residual stream} filled by each forward pass; hooks are removed on exit."""
    blocks = decoder_blocks(model)
    grabbed: dict = {}

    def hook_for(layer):
        def hook(_module, _inputs, output):
            h = output[0] if isinstance(output, (tuple, list)) else output
            grabbed[layer] = h[:, -1, :].detach()
        return hook

    handles = [blocks[layer - 1].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        yield grabbed
    finally:
        for h in handles:
            h.remove()


def last_token_logits(model, enc):
    """Logits at the last position of a left-padded batch (explicit position ids, so padding shifts nothing)."""
    position_ids = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    try:
        out = model(**enc, position_ids=position_ids, use_cache=False, logits_to_keep=1)
    except TypeError:  # a model class without logits_to_keep computes every position's logits
        out = model(**enc, position_ids=position_ids, use_cache=False)
    return out.logits[:, -1, :]


def forward_batch(model, tok, texts: list[str], layers, device: str):
    """(hidden: batch x layers x H float32, logits statistics) at each text's last token."""
    import torch

    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    if tok.padding_side != "left":
        raise ValueError("the tokenizer must pad on the left so the last position is the last prompt token")
    with residual_hooks(model, layers) as grabbed, torch.inference_mode():
        logits = last_token_logits(model, enc).double().cpu().numpy()
        hidden = torch.stack([grabbed[layer] for layer in layers], dim=1).float().cpu().numpy()
    return hidden, first_token.logit_stats(logits), logits.shape[1]


def capture(load_model, load_tokenizer, prompts_by_role: dict, key_parts: dict, settings: ProbeSettings,
            cache_root, batch_size: int, device: str, system_prompt: str | None, label: str,
            progress=None) -> Capture:
    """The capture of every role's prompts; cached entries are reused and the model is loaded only if one is missing."""
    from quantscreen.engine.generate import plan_batches, prompt_digests, render
    from quantscreen.engine.progress import LineProgress

    found_by_role, stores, digests_by_role = {}, {}, {}
    for role, prompts in prompts_by_role.items():
        if not prompts:
            raise ScreenInputError(f"probes ({role} prompts)", "no prompts to probe", "give the prompt set prompts")
        digests_by_role[role] = prompt_digests(prompts)
        stores[role] = ActivationStore(cache_root, {**key_parts, "role": role, "capture_version": CAPTURE_VERSION,
                                                    "probe_capture": settings.capture_key()})
        found_by_role[role] = stores[role].load_records(digests_by_role[role])
    missing = sum(len(p) - len(found_by_role[r]) for r, p in prompts_by_role.items())
    forwarded = 0
    if missing:
        model, tok = load_model(), load_tokenizer()
        n_layers = int(text_config(model).num_hidden_layers)
        layers = capture_layers(n_layers, settings)
        meta = {"layers": layers, "n_layers": n_layers,
                "direction_layer": direction_layer(n_layers, settings.direction_depth),
                "neuron_layers": neuron_layers(n_layers, settings.neuron_depths, settings.neuron_layer_count)}
        bar = (progress or LineProgress)(f"probing {label} (one forward pass per prompt)", missing)
        try:
            for role, prompts in prompts_by_role.items():
                done = found_by_role[role]
                texts = [render(tok, p, system_prompt) for p in prompts]
                lengths = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
                for batch in plan_batches(lengths, batch_size):
                    if all(i in done for i in batch):
                        continue
                    hidden, stats, vocab = forward_batch(model, tok, [texts[i] for i in batch], layers, device)
                    entries = [encode_entry(i, digests_by_role[role][i], hidden[j],
                                            {k: v[j] for k, v in stats.items()}, {**meta, "vocab_size": vocab})
                               for j, i in enumerate(batch)]
                    stores[role].append_records(entries)
                    done.update({e["i"]: e for e in entries})
                    forwarded += len(batch)
                    bar.update(len(batch))
        finally:
            bar.close()
    return _assemble(found_by_role, prompts_by_role, forwarded)


def _assemble(found_by_role: dict, prompts_by_role: dict, forwarded: int) -> Capture:
    first = next(iter(found_by_role.values()))[0]
    hidden, stats = {}, {}
    for role, prompts in prompts_by_role.items():
        entries = [found_by_role[role][i] for i in range(len(prompts))]
        if any(e["layers"] != first["layers"] or e["vocab_size"] != first["vocab_size"] for e in entries):
            raise ValueError("cached activations disagree on layers or vocabulary; clear the activations cache")
        hidden[role] = np.stack([decode_hidden(e) for e in entries])
        stats[role] = {k: np.array([e["stats"][k] for e in entries]) for k in first_token.STATS}
    return Capture(layers=tuple(first["layers"]), direction_layer=first["direction_layer"],
                   neuron_layers=tuple(first["neuron_layers"]), n_layers=first["n_layers"],
                   vocab_size=first["vocab_size"], hidden=hidden, logit_stats=stats, forward_passes=forwarded)
