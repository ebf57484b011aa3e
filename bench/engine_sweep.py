"""The harness's generation at several batch sizes and dtypes, side by side: what the defaults are chosen from.

Every contender is `engine.generate.generate` on the same prompts (the first N AdvBench prompts) into an empty
response cache, differing only in `decoding.batch_size` and `decoding.dtype`:

- `--engine transformers`: the checkpoint's HF folder (a GGUF is dequantized to the fp16 reference folder first),
  computed in each dtype asked for;
- `--engine llamacpp`: the GGUF in llama.cpp; batch size 1 is llama.cpp decoding one sequence at a time (what the
  harness did before batched decoding), larger sizes decode that many sequences per `llama_decode`.

Rounds rotate the contenders; medians are reported, with generated tokens per second and how many replies are
identical to the first contender's (the reference: batch shape and dtype change float sums, so greedy text can
differ). Prints one line and appends the table to BENCHMARKS.md.

    .venv/bin/python bench/engine_sweep.py [--engine transformers] [--checkpoint embedded:smollm2]
        [--batch-sizes 16,32,64,128] [--dtypes float32] [--n 100] [--max-new-tokens 64] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import checkpoint, hf_folder
from record import Quiet


def load(engine: str, raw: str, dtype: str):
    from quantscreen.engine.loader import load_engine_model, load_tokenizer

    info = hf_folder(raw) if engine == "transformers" else checkpoint(raw)
    tok = load_tokenizer(info, None)
    return info, tok, load_engine_model(engine, info, tok, "cpu", dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="transformers", choices=["transformers", "llamacpp"])
    parser.add_argument("--checkpoint", default="embedded:smollm2")
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from quantscreen import promptsets
    from quantscreen.engine.cache import ResponseStore
    from quantscreen.engine.generate import DecodingSettings, generate

    prompts = list(promptsets.advbench(args.n, 0).prompts)
    dtypes = args.dtypes.split(",")
    models = {d: load(args.engine, args.checkpoint, d) for d in dtypes}
    contenders = [(int(b), d) for d in dtypes for b in args.batch_sizes.split(",")]
    seconds = {c: [] for c in contenders}
    replies = {}
    for r, c in record.rotations(contenders, args.rounds):
        b, d = c
        info, tok, model = models[d]
        settings = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=b, dtype=d, engine=args.engine)
        with tempfile.TemporaryDirectory(prefix="qs-sweep-") as tmp:
            start = time.perf_counter()
            out = generate(lambda: model, prompts, settings, ResponseStore(Path(tmp), {"sweep": 1}), "sweep",
                           tok, progress=Quiet)
            seconds[c].append(time.perf_counter() - start)
        replies[c] = out
        print(f"round {r}: batch {b} {d}: {seconds[c][-1]:.1f} s", file=sys.stderr, flush=True)

    ref = [x.response for x in replies[contenders[0]]]
    rows = ["| batch size | dtype | median s | rounds (s) | generated tokens | tokens/s | "
            f"replies identical to batch {contenders[0][0]} {contenders[0][1]} |", "|---|---|---|---|---|---|---|"]
    summary = []
    for c in contenders:
        wall = statistics.median(seconds[c])
        tokens = sum(x.n_tokens for x in replies[c])
        same = sum(x.response == y for x, y in zip(replies[c], ref))
        rows.append(f"| {c[0]} | {c[1]} | {wall:.1f} | {' / '.join(f'{s:.1f}' for s in seconds[c])} | {tokens} | "
                    f"{tokens / wall:.1f} | {same}/{args.n} |")
        summary.append(f"batch {c[0]} {c[1]} {wall:.1f} s ({tokens / wall:.0f} tok/s, {same}/{args.n} identical)")
    info = models[dtypes[0]][0]
    line = (f"{args.engine}, {info.path.name if info.kind == 'gguf' else info.folder}, {args.n} AdvBench prompts, "
            f"{args.max_new_tokens} new tokens: " + "; ".join(summary))
    print(line)
    record.append(f"generation engine sweep ({args.engine}): batch size and dtype",
                  f"- result: {line}\n\n" + "\n".join(rows) + "\n")
    for _, _, model in models.values():
        if hasattr(model, "close"):
            model.close()


if __name__ == "__main__":
    main()
