"""Paired verification against plain greedy decoding, side by side in one run, on quantized cells of one family.

The baseline's replies are generated once (plain, one sequence at a time: the harness's llama.cpp engine). Then, for
each cell, the same prompts are decoded (a) plain, token by token, and (b) by paired verification (the baseline's
reply checked as a draft, `LlamaCppModel.complete_verified`), the two contenders alternating which goes first. Reported
per cell: seconds and tokens/s of each, the speed-up, how many verified replies are identical to plain decoding's
(the identity the method promises, up to llama.cpp's batch-size numerics), the share of the baseline's reply tokens
the cell repeats from the start, drafted tokens accepted, reply tokens per forward pass, and the near-tie positions
evaluated again alone. Prints the table and appends it to BENCHMARKS.md.

    .venv/bin/python bench/paired_verification.py [--model embedded:qwen2.5-coder-0.5b] [--cells Q5_K_M,Q4_K_M]
        [--n-harmful 200] [--n-quality 40] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import cache_dir, checkpoint


def derived(raw: str, recipe: str) -> Path:
    from quantscreen.engine.derive import derive
    from quantscreen.records.digest import sha256_file

    info = checkpoint(raw)
    return derive(info.path, sha256_file(info.path), recipe, cache_dir())


def texts_for(path: Path, prompts: list[str], system_prompt: str | None) -> list[str]:
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.generate import render
    from quantscreen.engine.loader import load_tokenizer

    tok = load_tokenizer(inspect_checkpoint(path), None)
    return [render(tok, p, system_prompt) for p in prompts]


def _row(quant: str, timings: dict, plain: list, verified: list, baseline: list) -> dict:
    """One cell's figures: speed, replies equal to plain decoding's and the baseline's, and the drafts' fate."""
    stats = [v[3] for v in verified]
    tokens = sum(p[1] for p in plain)
    return {
        "cell": quant, "n": len(plain), "tokens": tokens, "plain_s": timings["plain"],
        "verified_s": timings["verified"], "speedup": timings["plain"] / timings["verified"],
        "identical": sum(p[0] == v[0] for p, v in zip(plain, verified)),
        "as_baseline": sum(p[0] == b[0] for p, b in zip(plain, baseline)),
        "prefix_share": sum(s.prefix_tokens for s in stats) / max(1, sum(s.reference_tokens for s in stats)),
        "accepted_share": sum(s.accepted for s in stats) / max(1, sum(s.drafted for s in stats)),
        "per_forward": sum(v[1] for v in verified) / max(1, sum(s.steps for s in stats)),
        "near_ties": sum(s.near_ties for s in stats),
    }


def _table(rows: list[dict]) -> str:
    lines = ["| cell | prompts | tokens (plain) | plain s (tok/s) | verified s (tok/s) | speed-up | verified = plain "
             "| plain = baseline | accepted prefix share | drafted tokens accepted | tokens per forward | near ties |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['n']} | {r['tokens']} | {r['plain_s']:.1f} ({r['tokens'] / r['plain_s']:.1f}) "
                     f"| {r['verified_s']:.1f} ({r['tokens'] / r['verified_s']:.1f}) | {r['speedup']:.2f}x "
                     f"| {r['identical']}/{r['n']} | {r['as_baseline']}/{r['n']} | {r['prefix_share']:.3f} "
                     f"| {r['accepted_share']:.3f} | {r['per_forward']:.2f} | {r['near_ties']} |")
    return "\n".join(lines)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded:qwen2.5-coder-0.5b")
    ap.add_argument("--baseline-recipe", default="gguf:F16", help="the baseline the cells are compared with")
    ap.add_argument("--cells", default="Q5_K_M,Q4_K_M", help="llama.cpp quant types, each derived from the model")
    ap.add_argument("--n-harmful", type=int, default=200)
    ap.add_argument("--n-quality", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--default-kernels", action="store_true",
                    help="llama.cpp's default kernels (batched floats differ) instead of the batch-invariant ones")
    return ap.parse_args()


def main() -> None:
    args = _parse_args()

    from quantscreen import promptsets
    from quantscreen.engine.draft import DraftPolicy
    from quantscreen.engine.llamacpp import LlamaCppModel, kernels

    prompts = list(promptsets.advbench(args.n_harmful).prompts) + list(promptsets.builtin("quality").prompts)[
        :args.n_quality]
    base_path = derived(args.model, args.baseline_recipe)
    texts = texts_for(base_path, prompts, None)
    m = args.max_new_tokens

    invariant = not args.default_kernels
    base = LlamaCppModel(base_path, threads=args.threads, batch_invariant=invariant)
    t0 = time.perf_counter()
    baseline = [base.complete(t, m, "baseline") for t in texts]
    base_s = time.perf_counter() - t0
    base.close()
    print(f"baseline {args.baseline_recipe}: {len(texts)} replies in {base_s:.1f} s", flush=True)

    rows = []
    for quant in args.cells.split(","):
        path = derived(args.model, f"llamacpp:{quant}")
        cell = LlamaCppModel(path, threads=args.threads, batch_invariant=invariant)
        refs = [cell.reply_ids(r, finished) for r, _, finished in baseline]
        timings, results = {}, {}
        for name in ("plain", "verified") if len(rows) % 2 == 0 else ("verified", "plain"):
            t0 = time.perf_counter()
            if name == "plain":
                results[name] = [cell.complete(t, m, quant) for t in texts]
            else:
                results[name] = [cell.complete_verified(t, ref, m, quant) for t, ref in zip(texts, refs)]
            timings[name] = time.perf_counter() - t0
            print(f"  {quant} {name}: {timings[name]:.1f} s", flush=True)
        cell.close()
        rows.append(_row(quant, timings, results["plain"], results["verified"], baseline))

    table = _table(rows)
    print(table)
    summary = "; ".join(f"{r['cell']} {r['speedup']:.2f}x, {r['identical']}/{r['n']} identical" for r in rows)
    record.append(
        "paired verification vs plain greedy decoding (llama.cpp, one quantized cell at a time)",
        f"- model: {args.model}, baseline {args.baseline_recipe} ({len(texts)} replies, plain, {base_s:.1f} s); "
        f"{args.n_harmful} AdvBench + {args.n_quality} quality prompts, greedy, {m} new tokens; CPU kernels: "
        f"{kernels()}{', batch-invariant (flash attention, no repacked weights)' if invariant else ', default'}; "
        f"draft policy {DraftPolicy().key_parts()}\n- result: {summary}\n\n{table}\n")


if __name__ == "__main__":
    main()
