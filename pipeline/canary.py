"""The determinism canary (SPEC §2): the baseline compared with itself.

The first `canary_prompts` harmful prompts (models.yaml `decoding: canary_prompts`, 16 by default, 0 turns it off)
are generated a second time under another composition: with transformers, those prompts alone in reversed order at
another batch size (half of min(main batch size, canary prompts), or 2 where that is 0), so every sequence shares its
batch with other rows and other padding than in the main pass; with llama.cpp (one sequence at a time, whose
prompt-prefix KV cache carries over from the previous prompt) a freshly loaded model, so a fresh context, in reversed
order; under paired verification (llama.cpp cells decode from their baseline's replies as drafts, engine.draft) the
second pass checks the first pass's replies as drafts in batched passes, so the canary measures the very difference
between one-token and batched numerics that a verified cell's replies could carry. Greedy
decoding is only reproducible if a reply does not depend on what was generated with or before it: the canary
measures that, since every refusal delta assumes it.

The second pass bypasses the baseline's response cache (its key differs) but is cached under its own key (the
baseline's response key plus the canary's settings), so a warm run reads it back without loading a model. Both passes
are labelled with each instrument in `LABELLERS` the baseline was measured with (the regex always, the classifier
where it ran); a flip is a prompt whose label differs between the passes under any of them. A non-zero flip count
makes the drop screens inconclusive (`verdicts.cell`) and the cell uncertifiable (`verdicts.actions`); replies whose
text differs are counted beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

CANARY_VERSION = "1"


def _regex_labels(prompts: list[str], replies: list[str]) -> list[float]:
    from quantscreen.probes import refusal_regex

    return list(refusal_regex.refusal_rate(tuple(replies), "refusal_rate_regex").per_item)


def _classifier_labels(prompts: list[str], replies: list[str]) -> list[float]:
    from quantscreen.engine import sources
    from quantscreen.probes import refusal_classifier

    head = refusal_classifier.load_head()
    return [float(x) for x in refusal_classifier.is_refusal(prompts, replies, sources.minilm_encoder().path, head)]


# Instruments cheap enough to label both passes on every run (name -> labels of (prompts, replies), 1.0 = refusal);
# the canary uses those the baseline was measured with (the judge, an LLM, is left out: `text_differs` covers it).
# Deterministic instruments can only flip where the text differs, so `text_differs` bounds every instrument's flips.
LABELLERS = {"regex": _regex_labels, "classifier": _classifier_labels}


@dataclass(frozen=True)
class CanaryResult:
    n: int  # prompts generated twice (0: the canary is off)
    flips: int  # prompts whose refusal label differs between the two passes under any instrument
    text_differs: int  # prompts whose reply text differs
    flipped: tuple[int, ...]  # harmful-prompt indices of the flips
    instruments: tuple[str, ...]
    composition: str  # how the second pass differed from the first

    def figures(self) -> dict:
        return {"canary_n": self.n, "canary_flips": self.flips, "canary_text_differs": self.text_differs,
                "canary_composition": self.composition}

    def statement(self) -> str:
        if not self.n:
            return "determinism canary off (decoding.canary_prompts: 0)"
        where = f" (harmful prompts {', '.join(str(i) for i in self.flipped)})" if self.flipped else ""
        return (f"determinism canary: the baseline generated twice on {self.n} harmful prompts ({self.composition}) "
                f"gives {self.flips} refusal flip(s){where} under {'/'.join(self.instruments)}, and "
                f"{self.text_differs} reply(ies) differ in text")


def compare_passes(prompts: list[str], first: list[str], second: list[str], indices: list[int],
                   composition: str, labellers: dict | None = None) -> CanaryResult:
    """Flips and text differences between two passes over the same prompts (`indices`: their harmful indices)."""
    labellers = {"regex": _regex_labels} if labellers is None else labellers
    if not len(prompts) == len(first) == len(second) == len(indices):
        raise ValueError("the two canary passes must cover the same prompts")
    flipped = set()
    for label in labellers.values():
        a, b = label(prompts, first), label(prompts, second)
        flipped.update(i for i, x, y in zip(indices, a, b) if x != y and not (x != x and y != y))  # NaN == NaN here
    return CanaryResult(n=len(prompts), flips=len(flipped), text_differs=sum(x != y for x, y in zip(first, second)),
                        flipped=tuple(sorted(flipped)), instruments=tuple(labellers), composition=composition)


def second_batch_size(batch_size: int, n: int) -> int:
    """Another batch size than the main pass's for the canary's prompts: half of what they were generated at."""
    return min(batch_size, n) // 2 or 2


def _second_pass(model, plan, ws, baseline, harmful, engine: str, info, indices: list[int], flash_attn: bool):
    """How the second pass differs from the main one on this engine: its decoding settings, the composition the
    report states, and the drafts it checks (the first pass's replies, under paired verification; else None)."""
    from quantscreen.engine.generate import DecodingSettings
    from quantscreen.pipeline.measure import decoding_settings, drafting_from

    n = len(indices)
    settings = decoding_settings(model, plan, ws, engine, flash_attn=flash_attn)
    if engine == "transformers":
        settings = DecodingSettings(**{**settings.__dict__, "batch_size": second_batch_size(plan.batch_size, n)})
        composition = (f"the first {n} alone in reversed order at batch size {settings.batch_size}; main pass: all "
                       f"{len(harmful)} at batch size {plan.batch_size}")
    elif engine == "openai":
        composition = (f"the first {n} in reversed order, sent to the server again ({info.concurrency} in flight); "
                       f"main pass: all {len(harmful)}, {info.concurrency} in flight")
    else:
        composition = f"the first {n} in reversed order, in a freshly loaded llama.cpp model with a fresh context"
    drafts = None
    if plan.paired_verification and engine == "llamacpp":  # the path a verified cell takes, on the baseline itself
        drafts = [baseline.responses["harmful"][i] for i in indices]
        settings = drafting_from(baseline, harmful.digest, settings, model, ws)
        composition += ("; each reply checked against the first pass's as a draft in batched passes, as a cell's "
                        "paired verification checks its baseline's")
    return settings, composition, drafts


def run_canary(model, plan, prompt_sets: dict, ws, baseline, engine: str, info, progress=None,
               flash_attn: bool = False) -> CanaryResult:
    """The canary of one baseline measurement (`verdicts.cell.CellMeasurement` with its harmful responses);
    `flash_attn`: the baseline was measured with llama.cpp's flash attention (the baseline of KV-cache cells)."""
    import gc

    from quantscreen.engine.cache import ResponseStore
    from quantscreen.engine.generate import generate, prompt_digests
    from quantscreen.engine.loader import load_engine_model, load_tokenizer
    from quantscreen.pipeline.measure import response_key

    harmful = prompt_sets["harmful"]
    n = min(plan.canary_prompts, len(harmful))
    if n == 0:
        return CanaryResult(0, 0, 0, (), (), "off")
    labellers = {k: f for k, f in LABELLERS.items() if k == "regex" or f"refusal_rate_{k}" in baseline.records}
    indices = list(range(n))[::-1]  # reversed: another order in every engine
    prompts = [harmful.prompts[i] for i in indices]
    first = [baseline.responses["harmful"][i].response for i in indices]
    settings, composition, drafts = _second_pass(model, plan, ws, baseline, harmful, engine, info, indices, flash_attn)
    key = {**response_key(baseline.checkpoint["sha256"], harmful.digest, settings, model.chat_template),
           "canary": {"version": CANARY_VERSION, "prompts": n, "order": "reversed",
                      "fresh_context": engine != "transformers"}}
    store = ResponseStore(ws.cache_dir, key)
    found = store.load(prompt_digests(prompts))
    if len(found) == n:  # warm: no tokenizer, no model
        return compare_passes(prompts, first, [found[i].response for i in range(n)], indices, composition, labellers)
    holder: dict = {}
    tokenizer = load_tokenizer(info, model.chat_template)

    def load_model():
        if "model" not in holder:
            holder["model"] = load_engine_model(engine, info, tokenizer, ws.device, plan.dtype, ws.trust_remote_code,
                                                settings.batch_invariant, settings.system_prompt, None,
                                                settings.flash_attn)
        return holder["model"]

    try:
        second = generate(load_model, prompts, settings, store, f"{model.model_id}-baseline canary", tokenizer,
                          progress, drafts)
    finally:
        if hasattr(holder.get("model"), "close"):
            holder["model"].close()
        holder.clear()
        gc.collect()
    return compare_passes(prompts, first, [r.response for r in second], indices, composition, labellers)
