"""The forward passes behind probes/kld.py: every position's next-token logits over a fixed text, one text at a time.

The baseline's distributions are reduced at once to their stored form (top-k log-probs, rest mass, argmax; see
probes/kld.py) and cached like the probe activations (pipeline/activations.py: append-only, checksummed JSONL keyed by
the checkpoint's content digest). A cell reads that cache, runs its own forward passes and caches its per-position
KLD and top-1 match under a key that includes the baseline's, so a cell is measured with one model in memory and a
warm re-run loads none. The baseline's row of cells.csv is the baseline against its own stored distributions: KLD 0
and top-1 agreement 1, so a delta of top1_agreement is (cell - 1) in pp.

Each text runs alone (batch 1, no padding), through torch like the probe capture (a GGUF is dequantized), with the
tokenizer's usual special tokens; a text longer than `max_tokens` is cut. The texts are
promptsets/data/kld_text.txt: plain English prose, instructions, a letter, a dialogue and Python code written for
this project, texts separated by a line holding only `===`.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantscreen.engine.cache import JsonlStore
from quantscreen.engine.sources import DataSource
from quantscreen.probes.kld import KldSettings, TopK, compare, kld_records
from quantscreen.records.digest import sha256_bytes, sha256_file
from quantscreen.records.errors import ScreenInputError

CAPTURE_VERSION = "kld-capture-v1"
TEXT_FILE = Path(__file__).resolve().parent.parent / "promptsets" / "data" / "kld_text.txt"
_CHUNK = 128  # positions reduced at a time: a 151k vocabulary in float64 is 1.2 MB per position


def load_texts(n: int | None, path: Path = TEXT_FILE) -> tuple[list[str], DataSource]:
    """The first `n` texts of the KLD text set (all when None), and where they came from."""
    texts = [t.strip("\n") for t in path.read_text(encoding="utf-8").split("\n===\n")]
    texts = [t for t in texts if t.strip()]
    if n is not None and n > len(texts):
        raise ScreenInputError("kld.n_texts", f"asks for {n} texts but {path.name} holds {len(texts)}",
                               f"use at most {len(texts)}, or leave n_texts out to use them all")
    source = DataSource(role="kld_text", package="quantscreen", version="builtin",
                        path_inside=f"promptsets/data/{path.name}", sha256=sha256_file(path), path=str(path))
    return texts[:n] if n is not None else texts, source


@dataclass(frozen=True)
class KldCapture:
    """Per-position figures over every text, in text order, with the baseline's rest mass at the same positions."""
    kld: np.ndarray
    top1_match: np.ndarray
    baseline_rest_mass: np.ndarray
    n_texts: int
    top_k: int
    inputs_digest: str  # the baseline store's key: checkpoint, texts, k, settings
    forward_passes: int = 0  # texts this process ran through the model (0: all from the cache)

    def records(self) -> dict:
        return kld_records(self.kld, self.top1_match, self.baseline_rest_mass, self.top_k, self.inputs_digest)


class KldStore(JsonlStore):
    kind = "KLD distributions"

    def __init__(self, root, key_parts: dict):
        super().__init__(root, key_parts, "kld")


def _b64(a: np.ndarray, dtype: str) -> dict:
    a = np.ascontiguousarray(a, dtype=dtype)
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _array(field: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(field["data"]), dtype=field["dtype"]).reshape(field["shape"])


def _token_ids(tok, text: str, max_tokens: int) -> list[int]:
    return list(tok(text, add_special_tokens=True).input_ids)[:max_tokens]


def _chunks(model, ids: list[int], device: str):
    """The logits of every position of one text, `_CHUNK` positions at a time (torch tensors)."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0]
        for start in range(0, logits.shape[0], _CHUNK):
            yield logits[start:start + _CHUNK]


def reduce_logits(logits, k: int | None = None, ids: np.ndarray | None = None) -> TopK:
    """Positions x vocabulary logits (torch) reduced in float64 to the top `k` tokens, or to the given `ids`: their
    log-probabilities, the log of the mass on every other token, and the argmax; probes.kld.top_k_distribution and
    compare_logits spelled in torch with one exp pass over the vocabulary."""
    import torch

    x = logits.detach().double()
    shifted = x - x.max(dim=-1, keepdim=True).values
    mass = shifted.exp()
    log_total = mass.sum(dim=-1, keepdim=True).log()
    logp = shifted - log_total
    chosen = logp.topk(min(k, logp.shape[-1]), dim=-1).indices if ids is None else torch.as_tensor(
        np.asarray(ids, dtype=np.int64), device=x.device)
    rest = mass.scatter(1, chosen, 0.0).sum(dim=-1).log() - log_total[:, 0]
    return TopK(ids=chosen.cpu().numpy(), logp=logp.gather(1, chosen).cpu().numpy(), rest_logp=rest.cpu().numpy(),
                argmax=x.argmax(dim=-1).cpu().numpy())


def _run(load_model, load_tokenizer, store: KldStore, texts: list[str], found: dict, settings: KldSettings,
         device: str, label: str, progress, entry) -> int:
    """Forward every text missing from `found` and append `entry(i, token digest, logits chunks)` to the store."""
    from quantscreen.engine.progress import LineProgress

    missing = [i for i in range(len(texts)) if i not in found]
    if not missing:
        return 0
    model, tok = load_model(), load_tokenizer()
    bar = (progress or LineProgress)(f"KLD text {label} (one forward pass per text)", len(missing))
    try:
        for i in missing:
            ids = _token_ids(tok, texts[i], settings.max_tokens)
            if not ids:
                raise ScreenInputError(f"{TEXT_FILE.name} (text {i + 1})", "tokenizes to nothing", "remove it")
            tokens_sha256 = sha256_bytes(np.asarray(ids, dtype="<i8").tobytes())
            rec = {"i": i, "prompt_sha256": sha256_bytes(texts[i].encode()), "tokens_sha256": tokens_sha256,
                   **entry(i, tokens_sha256, _chunks(model, ids, device))}
            store.append_records([rec])
            found[i] = rec
            bar.update(1)
    finally:
        bar.close()
    return len(missing)


def baseline(load_model, load_tokenizer, texts: list[str], key_parts: dict, settings: KldSettings, cache_root,
             device: str, label: str, progress=None) -> tuple[list[dict], str, KldCapture]:
    """The baseline's stored distributions (one entry per text), their store's key (a cell's cache key names it) and
    the baseline's comparison with itself."""
    store = KldStore(cache_root, {**key_parts, "role": "baseline", "capture_version": CAPTURE_VERSION,
                                  "kld": settings.capture_key()})
    found = store.load_records([sha256_bytes(t.encode()) for t in texts])

    def entry(_i, _tokens_sha256, chunks):
        parts, vocab = [], None
        for c in chunks:
            vocab = int(c.shape[1])
            parts.append(reduce_logits(c, k=settings.top_k))
        top = TopK(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "logp", "rest_logp", "argmax")))
        kld, match = compare(top, top.logp, top.rest_logp, top.argmax)  # the baseline against itself
        return {"ids": _b64(top.ids, "<i4"), "logp": _b64(top.logp, "<f8"), "rest_logp": _b64(top.rest_logp, "<f8"),
                "argmax": _b64(top.argmax, "<i4"), "vocab_size": vocab, "kld": _b64(kld, "<f8"),
                "top1": _b64(match, "<f8")}

    forwarded = _run(load_model, load_tokenizer, store, texts, found, settings, device, label, progress, entry)
    entries = [found[i] for i in range(len(texts))]
    return entries, store.key, _assemble(entries, entries, settings, store.key, forwarded)


def cell(load_model, load_tokenizer, texts: list[str], baseline_entries: list[dict], baseline_key: str,
         key_parts: dict, settings: KldSettings, cache_root, device: str, label: str, progress=None) -> KldCapture:
    """The cell's KLD and top-1 match against the baseline's stored distributions (`baseline` gives them)."""
    store = KldStore(cache_root, {**key_parts, "role": "cell", "baseline_kld_store": baseline_key,
                                  "capture_version": CAPTURE_VERSION, "kld": settings.capture_key()})
    found = store.load_records([sha256_bytes(t.encode()) for t in texts])

    def entry(i, tokens_sha256, chunks):
        base = baseline_entries[i]
        if tokens_sha256 != base["tokens_sha256"]:
            raise _tokenizer_differs(label, i)
        top = TopK(_array(base["ids"]).astype(np.int64), _array(base["logp"]), _array(base["rest_logp"]),
                   _array(base["argmax"]).astype(np.int64))
        kld, match, start = [], [], 0
        for c in chunks:
            if c.shape[1] != base["vocab_size"]:
                raise ScreenInputError(label, f"has {c.shape[1]} logits per position, its baseline "
                                       f"{base['vocab_size']}", "a cell must share its baseline's vocabulary; set "
                                       "kld: {enabled: false} for this model")
            part = TopK(*(getattr(top, f)[start:start + len(c)] for f in ("ids", "logp", "rest_logp", "argmax")))
            q = reduce_logits(c, ids=part.ids)
            k, m = compare(part, q.logp, q.rest_logp, q.argmax)
            kld.append(k)
            match.append(m)
            start += len(c)
        return {"kld": _b64(np.concatenate(kld), "<f8"), "top1": _b64(np.concatenate(match), "<f8")}

    forwarded = _run(load_model, load_tokenizer, store, texts, found, settings, device, label, progress, entry)
    entries = [found[i] for i in range(len(texts))]
    for i, (mine, base) in enumerate(zip(entries, baseline_entries)):
        if mine["tokens_sha256"] != base["tokens_sha256"]:  # cached under another baseline's tokens
            raise _tokenizer_differs(label, i)
    return _assemble(entries, baseline_entries, settings, baseline_key, forwarded)


def _tokenizer_differs(label: str, i: int) -> ScreenInputError:
    return ScreenInputError(label, f"tokenizes KLD text {i + 1} differently from its baseline",
                            "a cell must share its baseline's tokenizer; set kld: {enabled: false} for this model")


def _assemble(entries: list[dict], baseline_entries: list[dict], settings: KldSettings, digest: str,
              forwarded: int) -> KldCapture:
    rest = np.concatenate([np.exp(_array(b["rest_logp"])) for b in baseline_entries])
    return KldCapture(kld=np.concatenate([_array(e["kld"]) for e in entries]),
                      top1_match=np.concatenate([_array(e["top1"]) for e in entries]), baseline_rest_mass=rest,
                      n_texts=len(entries), top_k=settings.top_k, inputs_digest=digest[:16], forward_passes=forwarded)
