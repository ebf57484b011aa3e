"""Generation throughput of the harness's engine against lm-evaluation-harness and a naive loop, side by side.

Same model, same prompts (the first N AdvBench prompts of the seeded subset the screen uses), the checkpoint's own
chat template, greedy decoding, the same limit of new tokens, fp32 on this machine's CPU:

- harness: `engine.generate.generate` (length-sorted equal batches, finished rows leave the batch), into an empty
  response cache each round, so nothing is reused.
- lm-eval: lm-evaluation-harness's HF backend (`lm_eval.models.huggingface.HFLM`) through `simple_evaluate` on a
  task YAML written to a scratch folder over a local JSONL of the same prompts (`dataset_path: json`; nothing is
  fetched), `apply_chat_template=True`, `until` = the model's end-of-turn token, the same batch size as the harness.
- naive: one prompt at a time through `model.generate` (batch of 1, no padding).
- harness-llamacpp (only when asked for): the same harness generation through llama.cpp on the GGUF itself, which is
  what a screen of a GGUF checkpoint runs by default; it computes on the quantized blocks, not on fp32 weights, so
  its text is compared with the others' but is not expected to match.

Each contender's model is loaded once, before the timed rounds; a round times the generation of all N prompts,
including rendering and tokenizing them. Rounds rotate the contenders' order; medians are reported. Generated tokens
are each contender's replies re-tokenized, so all three are counted alike. The replies are compared with the
harness's, prompt by prompt. Prints one result line and appends it to BENCHMARKS.md.

    .venv/bin/python bench/generation.py [--checkpoint embedded:smollm2] [--n 100] [--max-new-tokens 128]
        [--batch-size 128] [--rounds 3] [--contenders harness,lm-eval,naive[,harness-llamacpp]]

Needs `pip install -c constraints.txt -r requirements-bench.txt` (lm-eval) for the lm-eval contender.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md
from record import Quiet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def checkpoint(raw: str):
    """`raw` (a path or an `embedded:` name) inspected."""
    from quantscreen.engine import sources
    from quantscreen.engine.checkpoint import inspect_checkpoint

    embedded = sources.resolve_embedded(raw, cache_dir())
    return inspect_checkpoint(embedded.path if embedded else raw)


def cache_dir() -> Path:
    from quantscreen.engine import sources

    return Path(os.environ.get("QUANTSCREEN_CACHE") or sources.default_cache_dir())


def hf_folder(raw: str):
    """An HF checkpoint folder for `raw`: a folder as given, or the fp16 reference folder derived from a GGUF."""
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.derive import REFERENCE, derive
    from quantscreen.records.digest import sha256_file

    info = checkpoint(raw)
    if info.kind == "gguf":
        info = inspect_checkpoint(derive(info.path, sha256_file(info.path), REFERENCE, cache_dir()))
    return info


class Harness:
    name, engine = "harness", "transformers"

    def __init__(self, info, args):
        from quantscreen.engine.loader import load_model_and_tokenizer

        self.model, self.tok = load_model_and_tokenizer(info, None)
        self.args = args

    def run(self, prompts: list[str]) -> list[str]:
        from quantscreen.engine.cache import ResponseStore
        from quantscreen.engine.generate import DecodingSettings, generate

        settings = DecodingSettings(max_new_tokens=self.args.max_new_tokens, batch_size=self.args.batch_size,
                                    engine=self.engine)
        with tempfile.TemporaryDirectory(prefix="qs-gen-") as tmp:
            store = ResponseStore(Path(tmp), {"bench": "generation"})
            out = generate(lambda: self.model, prompts, settings, store, "harness", self.tok, progress=Quiet)
        return [r.response for r in out]


class HarnessLlamaCpp(Harness):
    """The engine a screen of a GGUF checkpoint uses by default: llama.cpp on the GGUF's own quantized blocks."""
    name, engine = "harness-llamacpp", "llamacpp"

    def __init__(self, info, args):
        from quantscreen.engine.loader import load_engine_model, load_tokenizer

        gguf = checkpoint(args.checkpoint)
        if gguf.kind != "gguf":
            sys.exit("the harness-llamacpp contender needs a GGUF --checkpoint")
        self.tok = load_tokenizer(gguf, None)
        self.model = load_engine_model("llamacpp", gguf, self.tok)
        self.args = args


class Naive:
    name = "naive"

    def __init__(self, info, args):
        from quantscreen.engine.loader import load_model_and_tokenizer

        self.model, self.tok = load_model_and_tokenizer(info, None)
        self.args = args

    def run(self, prompts: list[str]) -> list[str]:
        import torch

        out = []
        for p in prompts:
            text = self.tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                add_generation_prompt=True)
            enc = self.tok(text, return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=self.args.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tok.pad_token_id)
            out.append(self.tok.decode(ids[0, enc.input_ids.shape[1]:], skip_special_tokens=True).strip())
        return out


class LmEval:
    name = "lm-eval"

    def __init__(self, info, args):
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        self.version = lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?"
        self.lm = HFLM(pretrained=str(info.folder), device="cpu", dtype="float32", batch_size=args.batch_size,
                       max_length=4096, trust_remote_code=False)
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="qs-lmeval-"))
        self.TaskManager = TaskManager
        self.generate_seconds = []  # the time inside HFLM.generate_until, without task set-up and scoring
        timed = self.lm.generate_until

        def generate_until(*a, **kw):
            start = time.perf_counter()
            try:
                return timed(*a, **kw)
            finally:
                self.generate_seconds.append(time.perf_counter() - start)

        self.lm.generate_until = generate_until

    def run(self, prompts: list[str]) -> list[str]:
        import lm_eval

        data = self.tmp / "prompts.jsonl"
        data.write_text("".join(json.dumps({"prompt": p, "target": ""}) + "\n" for p in prompts))
        eot = self.lm.tokenizer.decode([self.lm.tokenizer.eos_token_id])
        (self.tmp / "qs_advbench.yaml").write_text(
            "task: qs_advbench\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
            "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{target}}'\n"
            f"generation_kwargs:\n  until: [{json.dumps(eot)}]\n  do_sample: false\n"
            f"  max_gen_toks: {self.args.max_new_tokens}\n"
            "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
        results = lm_eval.simple_evaluate(model=self.lm, tasks=["qs_advbench"], num_fewshot=0,
                                          apply_chat_template=True, log_samples=True,
                                          task_manager=self.TaskManager(include_path=str(self.tmp)),
                                          verbosity="ERROR")
        samples = sorted(results["samples"]["qs_advbench"], key=lambda s: s["doc_id"])
        return [s["resps"][0][0].strip() for s in samples]


def first_difference(a: str, b: str) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="embedded:smollm2")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the harness's default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contenders", default="harness,lm-eval,naive")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()

    from quantscreen import promptsets
    import torch
    from quantscreen.engine.generate import DecodingSettings

    args.batch_size = args.batch_size or DecodingSettings().batch_size
    info = hf_folder(args.checkpoint)
    prompts = list(promptsets.advbench(args.n, 0).prompts)
    kinds = {"harness": Harness, "harness-llamacpp": HarnessLlamaCpp, "lm-eval": LmEval, "naive": Naive}
    contenders = [kinds[name](info, args) for name in args.contenders.split(",")]
    tok = contenders[0].tok if hasattr(contenders[0], "tok") else contenders[0].lm.tokenizer
    seconds = {c.name: [] for c in contenders}
    replies = {}
    for r, c in record.rotations(contenders, args.rounds):
        start = time.perf_counter()
        replies[c.name] = c.run(prompts)
        seconds[c.name].append(time.perf_counter() - start)
        print(f"round {r}: {c.name} {seconds[c.name][-1]:.1f} s", file=sys.stderr, flush=True)

    rows, diffs = [], []
    ref = replies[contenders[0].name]
    for c in contenders:
        wall = statistics.median(seconds[c.name])
        tokens = sum(len(tok(t, add_special_tokens=False).input_ids) for t in replies[c.name])
        same = [k for k in range(len(prompts)) if replies[c.name][k] == ref[k]]
        rows.append((c.name, wall, tokens, tokens / wall, len(same), seconds[c.name]))
        for k in range(len(prompts)):
            if k not in same and c is not contenders[0]:
                at = first_difference(replies[c.name][k], ref[k])
                diffs.append(f"{c.name} prompt {k}: differs from char {at}: {ref[k][at:at + 40]!r} vs "
                             f"{replies[c.name][k][at:at + 40]!r}")
    base = {name: wall for name, wall, *_ in rows}
    ratios = ", ".join(f"{base[c.name] / base[contenders[0].name]:.2f}x faster than {c.name}"
                       for c in contenders[1:])
    line = (f"{args.n} AdvBench prompts, {args.max_new_tokens} new tokens, batch {args.batch_size}, "
            f"{info.path.parent.name if info.path.name == 'model' else info.path.name}: "
            + "; ".join(f"{name} {wall:.1f} s ({tps:.0f} tok/s, {same}/{args.n} replies as the harness's)"
                        for name, wall, _, tps, same, _ in rows) + f"; {contenders[0].name} {ratios}")
    print(line)
    table = ["| contender | median s | rounds (s) | generated tokens | tokens/s | replies identical to harness |",
             "|---|---|---|---|---|---|"]
    table += [f"| {name} | {wall:.1f} | {' / '.join(f'{s:.1f}' for s in secs)} | {tokens} | {tps:.1f} | "
              f"{same}/{args.n} |" for name, wall, tokens, tps, same, secs in rows]
    inner = "".join(f"- {c.name} inside `HFLM.generate_until` (no task set-up or scoring): rounds "
                    f"{' / '.join(f'{x:.1f}' for x in c.generate_seconds)} s, median "
                    f"{statistics.median(c.generate_seconds):.1f} s\n" for c in contenders if isinstance(c, LmEval))
    versions = (f"- versions: torch {torch.__version__}, transformers {__import__('transformers').__version__}"
                + "".join(f", lm-eval {c.version}" for c in contenders if isinstance(c, LmEval)) + "\n")
    body = (f"- checkpoint: {info.path} ({info.format}), fp32 on CPU, {torch.get_num_threads()} threads\n"
            + versions + f"- result: {line}\n" + inner + "\n" + "\n".join(table) + "\n"
            + ("".join(f"\n- {d}" for d in diffs[:12]) + (f"\n- ... {len(diffs) - 12} more" if len(diffs) > 12 else "")
               + "\n" if diffs else ""))
    record.append("generation: harness engine vs lm-eval HF backend vs naive loop", body)


if __name__ == "__main__":
    main()
