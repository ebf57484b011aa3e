"""The fused probe capture against the four probes run as separate passes the way TR146 did, side by side.

For one baseline and one quantized checkpoint, on the same prompts (the first N AdvBench prompts and the first M
built-in harmless prompts), each contender runs in its own process so its peak RSS is its own:

- one model: load the quantized checkpoint and run one forward batch (the memory reference, "one model").
- fused: `pipeline.activations.capture` on the baseline in one process; then, in a fresh process, on the quantized
  cell alone, with the baseline read back from the activation cache, and every probe figure (one forward pass per
  prompt per model; the second process is "measuring a quantized cell with the cached baseline").
- separate (TR146): both models loaded together; phase 1 entropy (harmful), phase 2 refusal direction (harmful +
  harmless), phase 3 calibration (harmful), phase 4 safety neurons (baseline harmful + harmless to pick the
  neurons, then the first 50 harmful prompts on both models).

Times start after torch and transformers are imported and include loading the checkpoints. Every contender uses
the same batched forward (`pipeline.activations.forward_batch`), so the difference is the number
of passes and of models in memory, not the kernel. Rounds alternate the contenders; medians are reported. Prints one
result line and appends it, with the machine, the command and the date, to BENCHMARKS.md.

    .venv/bin/python bench/probe_capture.py [--baseline embedded:smollm2] [--cell gguf:Q4_0] [--n-harmful 100]
        [--n-harmless 100] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md
from record import Quiet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def checkpoints(args):
    from quantscreen.engine import sources
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.derive import derive
    from quantscreen.records.digest import sha256_file

    cache = Path(os.environ.get("QUANTSCREEN_CACHE") or sources.default_cache_dir())
    embedded = sources.resolve_embedded(args.baseline, cache)
    base = inspect_checkpoint(embedded.path if embedded else args.baseline)
    if ":" in args.cell and not Path(args.cell).exists():
        cell = inspect_checkpoint(derive(base.path, sha256_file(base.path), args.cell, cache))
    else:
        cell = inspect_checkpoint(args.cell)
    return base, cell


def prompts(args) -> dict:
    from quantscreen import promptsets

    return {"harmful": list(promptsets.advbench(args.n_harmful, 0).prompts),
            "harmless": list(promptsets.builtin("harmless").prompts[:args.n_harmless])}


def load(info):
    from quantscreen.engine.loader import load_model_and_tokenizer

    return load_model_and_tokenizer(info, None)


def fused_capture(info, key: str, args, root: Path):
    from quantscreen.pipeline.activations import capture
    from quantscreen.probes.mechanistic import ProbeSettings

    holder = {}

    def model():
        holder["m"], holder["t"] = load(info)
        return holder["m"]

    settings = ProbeSettings(n_prompts=max(args.n_harmful, args.n_harmless))
    return capture(model, lambda: holder["t"], prompts(args), {"checkpoint": key}, settings, root, args.batch_size,
                   "cpu", None, key, progress=Quiet)


def child(mode: str, args) -> dict:
    """One contender, in this process; returns its figures."""
    from quantscreen.pipeline.activations import forward_batch
    from quantscreen.engine.generate import render
    from quantscreen.probes.mechanistic import ProbeSettings, cell_figures

    import torch  # noqa: F401 - imported before the clock starts: every contender pays its own loads, not imports
    import transformers  # noqa: F401

    base, cell = checkpoints(args)
    root = Path(args.cache)
    start = time.perf_counter()
    rows = 0
    if mode == "one_model":
        model, tok = load(cell)
        texts = [render(tok, p, None) for p in prompts(args)["harmful"][:args.batch_size]]
        forward_batch(model, tok, texts, [1], "cpu")
        rows = len(texts)
    elif mode == "fused_baseline":
        rows = fused_capture(base, "baseline", args, root).forward_passes
    elif mode == "fused_cell":
        cap = fused_capture(cell, f"cell-{args.round}", args, root)
        rows = cap.forward_passes
        figures = cell_figures(cap, fused_capture(base, "baseline", args, root), ProbeSettings())
        assert figures["probe_direction_cosine"] == figures["probe_direction_cosine"], "NaN figures"
    elif mode == "separate":
        rows = separate(base, cell, args)
    return {"seconds": time.perf_counter() - start, "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def separate(base_info, cell_info, args) -> int:
    """TR146's protocol: four phases, each its own pass over its prompts, both models in memory."""
    import numpy as np

    from quantscreen.pipeline.activations import forward_batch
    from quantscreen.engine.generate import render
    from quantscreen.probes import first_token, refusal_direction, safety_neurons
    from quantscreen.probes.mechanistic import ProbeSettings, direction_layer, neuron_layers

    models = {"base": load(base_info), "cell": load(cell_info)}
    n_layers = models["base"][0].config.num_hidden_layers
    s = ProbeSettings()
    d_layer = direction_layer(n_layers, s.direction_depth)
    n_layers_list = neuron_layers(n_layers, s.neuron_depths, s.neuron_layer_count)
    ps = prompts(args)
    rows = 0

    def run(which, role, layers, limit=None):
        nonlocal rows
        model, tok = models[which]
        texts = [render(tok, p, None) for p in ps[role][:limit]]
        hidden, stats = [], {k: [] for k in first_token.STATS}
        for i in range(0, len(texts), args.batch_size):
            h, st, vocab = forward_batch(model, tok, texts[i:i + args.batch_size], layers, "cpu")
            hidden.append(h)
            for k in st:
                stats[k].append(st[k])
            rows += len(texts[i:i + args.batch_size])
        return np.concatenate(hidden), {k: np.concatenate(v) for k, v in stats.items()}, vocab

    for which in ("base", "cell"):  # phase 1: first-token entropy
        _, st, vocab = run(which, "harmful", [1])
        first_token.first_token(st, vocab)
    dirs = {w: (run(w, "harmful", [d_layer])[0][:, 0], run(w, "harmless", [d_layer])[0][:, 0])
            for w in ("base", "cell")}  # phase 2: refusal direction
    refusal_direction.refusal_direction(*dirs["cell"], *dirs["base"])
    for which in ("base", "cell"):  # phase 3: calibration
        _, st, vocab = run(which, "harmful", [1])
        first_token.ece_proxy(st["top1"], st["entropy"], vocab)
    base_harm, base_less = run("base", "harmful", n_layers_list)[0], run("base", "harmless", n_layers_list)[0]
    err_base = run("base", "harmful", n_layers_list, 50)[0]  # phase 4: safety neurons
    err_cell = run("cell", "harmful", n_layers_list, 50)[0]
    for j in range(len(n_layers_list)):
        dims = safety_neurons.safety_dims(base_harm[:, j], base_less[:, j], s.neuron_top_pct)
        safety_neurons.error_ratio(err_cell[:, j], err_base[:, j], dims)
    return rows


def spawn(mode: str, args, cache: Path, round_: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--cache", str(cache), "--round", str(round_),
           "--baseline", args.baseline, "--cell", args.cell, "--n-harmful", str(args.n_harmful),
           "--n-harmless", str(args.n_harmless), "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="embedded:smollm2")
    ap.add_argument("--cell", default="gguf:Q4_0", help="a derive recipe applied to the baseline, or a path")
    ap.add_argument("--n-harmful", type=int, default=100)
    ap.add_argument("--n-harmless", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", default=None)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--round", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    checkpoints(args)  # derive the cell once, outside the timed runs
    results: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="qs-probe-bench-") as tmp:
            cache = Path(tmp)
            order = ["separate", "one_model", "fused_baseline", "fused_cell"]
            if r % 2:
                order = ["one_model", "fused_baseline", "fused_cell", "separate"]
            for mode in order:  # fused_cell always finds the baseline that fused_baseline cached
                results.setdefault(mode, []).append(spawn(mode, args, cache, r))
    med = {m: {k: statistics.median(x[k] for x in v) for k in v[0]} for m, v in results.items()}
    n_prompts = args.n_harmful + args.n_harmless
    fused_s = med["fused_baseline"]["seconds"] + med["fused_cell"]["seconds"]
    fused_rows = med["fused_baseline"]["rows"] + med["fused_cell"]["rows"]
    sep = med["separate"]
    one = med["one_model"]["peak_rss_mb"]
    line = (f"{args.baseline} vs {args.cell}, {args.n_harmful} harmful + {args.n_harmless} harmless prompts, "
            f"median of {args.rounds}: forward passes per prompt per model: fused {fused_rows / (2 * n_prompts):.2f}, "
            f"separate {sep['rows'] / (2 * n_prompts):.2f}; wall time (both models' probes, loads included): fused "
            f"{fused_s:.1f} s, separate {sep['seconds']:.1f} s ({sep['seconds'] / fused_s:.2f}x); quantized cell "
            f"with cached baseline {med['fused_cell']['seconds']:.1f} s; peak RSS: one model "
            f"{one:.0f} MB, cell with cached baseline {med['fused_cell']['peak_rss_mb']:.0f} MB "
            f"({med['fused_cell']['peak_rss_mb'] / one:.2f}x), both models loaded "
            f"{sep['peak_rss_mb']:.0f} MB ({sep['peak_rss_mb'] / one:.2f}x)")
    print(line)
    record.append("mechanistic probes: fused capture vs TR146's separate passes", f"- result: {line}\n")


if __name__ == "__main__":
    main()
