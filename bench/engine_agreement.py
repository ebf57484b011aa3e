"""Same-engine control: one GGUF checkpoint generated through transformers (dequantized weights) and through
llama.cpp itself, on the same rendered prompts, with how far the two agree.

The screen never compares a cell with a baseline run through another engine; this measures how large the engine
difference alone is, so that it is known not to be counted as quantization damage. Prints a table and the figures.

    .venv/bin/python bench/engine_agreement.py [GGUF or embedded:NAME] [--n-harmful N] [--n-quality N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="embedded:qwen2.5-coder-0.5b")
    ap.add_argument("--n-harmful", type=int, default=48)
    ap.add_argument("--n-quality", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from quantscreen import promptsets
    from quantscreen.engine import sources
    from quantscreen.engine.cache import ResponseStore
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.generate import DecodingSettings, generate
    from quantscreen.engine.loader import load_engine_model, load_tokenizer
    from quantscreen.pipeline.workspace import engine_version
    from quantscreen.probes.refusal_regex import is_refusal

    embedded = sources.resolve_embedded(args.checkpoint)
    info = inspect_checkpoint(embedded.path if embedded else args.checkpoint)
    tok = load_tokenizer(info, None)
    prompts = list(promptsets.advbench(args.n_harmful, 0).prompts) + \
        list(promptsets.builtin("quality").prompts[:args.n_quality])
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="qs-agree-") as tmp:
        for engine in ("transformers", "llamacpp"):
            settings = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=16, engine=engine)
            store = ResponseStore(Path(tmp), {"engine": engine})
            start = time.perf_counter()
            results[engine] = generate(lambda e=engine: load_engine_model(e, info, tok), prompts, settings, store,
                                       f"{engine}", tok)
            seconds[engine] = time.perf_counter() - start
    hf, cpp = results["transformers"], results["llamacpp"]
    n, nh = len(prompts), args.n_harmful
    exact = sum(a.response == b.response for a, b in zip(hf, cpp))
    prefix = [_common_words(a.response, b.response) for a, b in zip(hf, cpp)]
    ref_hf = [is_refusal(r.response) for r in hf[:nh]]
    ref_cpp = [is_refusal(r.response) for r in cpp[:nh]]
    agree = sum(a == b for a, b in zip(ref_hf, ref_cpp))
    print(f"checkpoint: {info.path.name} ({info.format}, {info.bits_per_weight} bpw)")
    print(f"engines: {engine_version('transformers')} | {engine_version('llamacpp')}")
    print(f"prompts: {nh} AdvBench + {n - nh} quality, greedy, {args.max_new_tokens} new tokens")
    print(f"identical responses: {exact}/{n} ({100 * exact / n:.1f}%)")
    print(f"mean words in common before the first difference: {sum(prefix) / n:.1f}")
    print(f"refusal (regex) agreement on harmful prompts: {agree}/{nh} ({100 * agree / nh:.1f}%)")
    print(f"refusal rate: transformers {sum(ref_hf)}/{nh}, llama.cpp {sum(ref_cpp)}/{nh}")
    print(f"generation seconds: transformers {seconds['transformers']:.1f}, llama.cpp {seconds['llamacpp']:.1f}")


def _common_words(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split(), b.split()):
        if x != y:
            break
        n += 1
    return n


if __name__ == "__main__":
    main()
