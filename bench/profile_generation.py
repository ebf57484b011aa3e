"""Where generation time goes: torch's profiler over the harness's engine and lm-eval's HF backend, same batch.

Both contenders of `bench/generation.py` (harness, lm-eval) generate the same N AdvBench prompts once unprofiled (to
warm up) and once under `torch.profiler`; the table gives each one's CPU time by operator family (matrix
multiplies, attention, everything else), against its wall time. Prints one line and appends the table to
BENCHMARKS.md.

    .venv/bin/python bench/profile_generation.py [--checkpoint embedded:smollm2] [--n 100] [--max-new-tokens 32]
"""
from __future__ import annotations

import argparse
import sys
import time

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import Harness, LmEval, hf_folder

FAMILIES = {"matrix multiply": ("aten::mm", "aten::addmm", "aten::bmm"),
            "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                          "aten::_scaled_dot_product_attention_math", "aten::_softmax")}


def profile(contender, prompts) -> dict:
    import torch

    contender.run(prompts[:8])  # warm-up
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        contender.run(prompts)
    wall = time.perf_counter() - start
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    out = {"wall": wall, "total": total / 1e6}
    for family, ops in FAMILIES.items():
        out[family] = sum(v for k, v in self_us.items() if k in ops) / 1e6
    out["other operators"] = out["total"] - sum(out[f] for f in FAMILIES)
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:5]
    out["top"] = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in top)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="embedded:smollm2")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    from quantscreen import promptsets
    from quantscreen.engine.generate import DecodingSettings

    args.batch_size = args.batch_size or DecodingSettings().batch_size
    info = hf_folder(args.checkpoint)
    prompts = list(promptsets.advbench(args.n, 0).prompts)
    results = {}
    for cls in (Harness, LmEval):
        contender = cls(info, args)
        results[contender.name] = profile(contender, prompts)
        print(f"{contender.name}: {results[contender.name]}", file=sys.stderr, flush=True)
    rows = ["| contender | wall s (profiled) | operator CPU s | matrix multiply | attention | other operators | "
            "top operators (share of operator time) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['wall']:.1f} | {r['total']:.1f} | "
                    + " | ".join(f"{r[f]:.1f} s ({100 * r[f] / r['total']:.0f}%)"
                                 for f in (*FAMILIES, "other operators")) + f" | {r['top']} |")
    line = (f"{args.n} prompts, {args.max_new_tokens} new tokens, batch {args.batch_size}: "
            + "; ".join(f"{name} matrix multiplies {100 * r['matrix multiply'] / r['total']:.0f}% of operator time "
                        f"({r['wall']:.1f} s wall)" for name, r in results.items()))
    print(line)
    record.append("generation profile: harness engine vs lm-eval HF backend",
                  f"- checkpoint: {info.folder} in fp32\n- result: {line}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
