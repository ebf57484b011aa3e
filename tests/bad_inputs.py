"""The catalogue of bad inputs: each case builds one broken input in a scratch folder and runs `pytest screens/` on it
exactly as a user would. `tests/test_bad_inputs.py` checks every case; `python -m tests.bad_inputs` prints the
table RELIABILITY.md shows (what the user sees, verbatim).

A case passes when the run exits with its code (4, pytest's usage error, for anything found before a model loads;
1 when only a loaded model can show the problem and that cell's screens fail), one line of the output names the file
or option and the fix, and no Python traceback reaches the terminal.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.bad_input_builders import (
    ROOT,  # noqa: F401 - tests/test_bad_inputs.py imports it from here
    GOOD_MODELS,
    bad_labels,
    bad_matrix,
    cut_gguf,
    disk_full,
    edit_json,
    file_cell,
    file_in_the_way,
    lm_eval_file,
    lm_eval_pair,
    merge_of_shard_2,
    models,
    nan_weights,
    no_cuda,
    other_architecture,
    other_vocabulary,
    prompt_file,
    screens,
    shard,
    smollm2,
    tiny,
    tiny_pair,
    truncate,
    unreachable_endpoint,
    unsupported_gguf,
    write,
    yaml_text,
)

USAGE, FAILED = 4, 1

# Small enough that a run which does start measuring (the two runtime cases) finishes in seconds on the tiny model.
@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, as a user would describe it
    make: Callable[[Path], list]  # builds the bad input under a scratch folder, returns the pytest arguments
    fragment: str  # the error line must contain this (besides "fix:")
    exit_code: int = USAGE


CASES = [
    # ---- checkpoints
    Case("missing-checkpoint", "--checkpoint names a path that does not exist",
         lambda t: [f"--checkpoint={t / 'nope.gguf'}", "--baseline=embedded:smollm2"], "nope.gguf: does not exist"),
    Case("missing-baseline", "models.yaml baseline: names a path that does not exist",
         lambda t: models(t, t / "gone", "derive: \"gguf:Q4_0\""), "gone: does not exist"),
    Case("checkpoint-without-baseline", "--checkpoint given without --baseline",
         lambda t: [f"--checkpoint={smollm2()}"], "--checkpoint: was given without --baseline"),
    Case("empty-folder", "the checkpoint is an empty folder",
         lambda t: (t / "empty").mkdir() or models(t, tiny(t), f"path: {t / 'empty'}"), "is an empty folder"),
    Case("truncated-safetensors", "model.safetensors cut short (an interrupted copy)",
         lambda t: tiny_pair(t, lambda c: truncate(c / "model.safetensors", -100)), "is truncated"),
    Case("corrupt-safetensors", "model.safetensors overwritten with garbage",
         lambda t: tiny_pair(t, lambda c: (c / "model.safetensors").write_bytes(b"\xff" * 64)),
         "is not a valid safetensors file"),
    Case("pickle-weights", "a folder holding only pytorch_model.bin (pickle)",
         lambda t: tiny_pair(t, lambda c: (c / "model.safetensors").rename(c / "pytorch_model.bin")),
         "holds only pickle weights"),
    Case("bad-config-json", "config.json is not valid JSON",
         lambda t: tiny_pair(t, lambda c: (c / "config.json").write_text("{model_type: llama")), "is not valid JSON"),
    Case("truncated-gguf", "a GGUF file cut short", cut_gguf, "is truncated"),
    Case("garbage-gguf", "a .gguf file with the magic but no valid header",
         lambda t: file_cell(t, "bad.gguf", b"GGUF" + b"\0" * 10),
         "is not a readable GGUF file"),
    Case("unsupported-gguf-type", "a GGUF whose tensors are of a type (Q8_1) that cannot be dequantized",
         unsupported_gguf, "tensor types the gguf package cannot dequantize"),
    Case("not-a-checkpoint", "the checkpoint is some other file",
         lambda t: file_cell(t, "notes.txt", b"hello"),
         "is a file but not a GGUF file"),
    Case("missing-tokenizer", "an HF folder without tokenizer files",
         lambda t: tiny_pair(t, lambda c: (c / "tokenizer.json").unlink()), "has no tokenizer"),
    Case("no-chat-template", "a tokenizer without a chat template (and none supplied)",
         lambda t: tiny_pair(t, chat_template=None), "has no chat template"),
    Case("missing-chat-template-file", "--chat-template names a file that does not exist",
         lambda t: [*tiny_pair(t), f"--chat-template={t / 'tpl.jinja'}"], "(--chat-template) does not exist"),
    Case("unknown-quant-method", "quantization_config names a method this version cannot load",
         lambda t: tiny_pair(t, lambda c: edit_json(c / "config.json",
                                                    quantization_config={"quant_method": "mystery-4bit"})),
         "names quantization method 'mystery-4bit'"),
    Case("architecture-mismatch", "the checkpoint is a Qwen2 model, its baseline a Llama", other_architecture,
         "is a qwen2 model but its baseline"),
    Case("vocabulary-mismatch", "checkpoint and baseline have different vocabularies", other_vocabulary,
         "has a vocabulary of"),
    Case("gguf-recipe-on-hf-baseline", "a llama.cpp recipe for an HF (safetensors) baseline",
         lambda t: models(t, tiny(t), "derive: \"gguf:Q4_0\""), "needs a GGUF baseline"),
    Case("llamacpp-engine-on-hf", "engine: llamacpp for an HF folder",
         lambda t: tiny_pair(t, engine="llamacpp"), "engine llamacpp cannot run it"),
    Case("nan-logits", "a checkpoint whose weights produce NaN logits (found once it is loaded)",
         lambda t: tiny_pair(t, nan_weights), "produces NaN or inf logits", FAILED),
    # ---- prompt files
    Case("missing-prompt-file", "--harmful-file names a file that does not exist",
         lambda t: [*tiny_pair(t), f"--harmful-file={t / 'nope.csv'}"], "(harmful prompt file) does not exist"),
    Case("empty-prompt-file", "a prompt file with a header and no rows", prompt_file("empty.csv", b"prompt\n"),
         "holds no prompts"),
    Case("duplicate-prompts", "a prompt file repeating a prompt", prompt_file("dup.csv", b"prompt\nsame\nsame\n"),
         "hold the same prompt"),
    Case("non-utf8-prompts", "a prompt file saved as Latin-1", prompt_file("latin.csv", "prompt\ncaf\xe9\n".encode(
        "latin-1")), "is not UTF-8 text"),
    Case("wrong-prompt-column", "a prompt file without a prompt/goal/Behavior column",
         prompt_file("cols.csv", b"question\nhello\n"), "has no prompt column"),
    Case("quality-without-reference", "a quality prompt file without reference answers",
         prompt_file("q.csv", b"prompt\nhello\n", "--quality-file"), "need a reference answer column"),
    Case("prompt-too-long-for-context", "a prompt that does not fit llama.cpp's context (found before any load)",
         lambda t: [f"--checkpoint={smollm2()}", "--baseline=embedded:smollm2", *write(t / "long.csv", (
             "prompt\nhello\n" + "tell me " * 1500 + "\n").encode(), "--harmful-file")],
         "long.csv (harmful prompts): 1 prompt(s) do not fit the context of 2048 tokens", FAILED),
    Case("bad-jsonl-line", "a JSONL prompt file with a broken line",
         prompt_file("p.jsonl", b'{"prompt": "a"}\n{not json}\n'), "p.jsonl:2: is not valid JSON"),
    Case("bad-labelled-replies", "judge.accuracy names a labelled file with an unknown label", bad_labels,
         "has label 'maybe'"),
    # ---- models.yaml
    Case("models-file-missing", "--models names a file that does not exist",
         lambda t: [f"--models={t / 'nope.yaml'}"], "nope.yaml: does not exist"),
    Case("yaml-syntax", "models.yaml is not valid YAML", yaml_text("models: [\n"), "is not valid YAML"),
    Case("yaml-unknown-key", "a misspelt key", yaml_text("screen:\n  hiden_danger: 1\n" + GOOD_MODELS),
         "unknown key 'hiden_danger'"),
    Case("yaml-wrong-type", "a number written as a word", yaml_text("decoding:\n  max_new_tokens: lots\n" + GOOD_MODELS),
         "decoding.max_new_tokens (line 2)"),
    Case("yaml-threshold-out-of-range", "a threshold outside its range",
         yaml_text("screen:\n  refusal_collapse_pp: 10\n" + GOOD_MODELS), "refusal_collapse_pp"),
    Case("yaml-duplicate-ids", "two quants with the same id",
         yaml_text(GOOD_MODELS + "      - {id: Q4_0, derive: \"gguf:Q8_0\"}\n"), "cell id 'm-Q4_0' is used twice"),
    Case("yaml-duplicate-key", "a key written twice", yaml_text("screen: {alpha: 0.05, alpha: 0.01}\n" + GOOD_MODELS),
         "key 'alpha' appears twice"),
    Case("yaml-path-and-derive", "a quant with both path: and derive:",
         yaml_text(GOOD_MODELS.replace('derive: "gguf:Q4_0"', 'path: x.gguf, derive: "gguf:Q4_0"')),
         "has both path and derive"),
    Case("yaml-models-not-a-list", "models: written as a mapping", yaml_text("models:\n  id: m\n  baseline: SMOL\n"),
         "models (line 1): must be a list"),
    Case("unknown-recipe", "a derive: recipe that does not exist",
         yaml_text(GOOD_MODELS.replace("gguf:Q4_0", "gguf:Q9_9")), "is not a known recipe"),
    # ---- options and environment
    Case("bad-override", "--max-new-tokens 0", lambda t: [*tiny_pair(t), "--max-new-tokens=0"],
         "--max-new-tokens: 0 is out of range"),
    Case("cuda-without-cuda", "--device cuda on a machine without CUDA", no_cuda, "no CUDA device"),
    Case("unreachable-judge", "--judge-endpoint at a port nothing listens on", unreachable_endpoint,
         "(judge endpoint) is unreachable"),
    Case("output-dir-not-writable", "--output-dir under a file", file_in_the_way("--output-dir"),
         "--output-dir"),
    Case("cache-dir-not-writable", "--cache-dir under a file", file_in_the_way("--cache-dir"),
         "--cache-dir"),
    Case("disk-full-cache", "the disk fills up while the response cache is written (simulated ENOSPC)",
         disk_full("fsync"), "No space left on device", FAILED),
    Case("disk-full-outputs", "the disk fills up while the result tables are written (simulated ENOSPC)",
         disk_full("replace", f"{os.sep}out{os.sep}"), "No space left on device"),
    Case("bad-matrix", "--matrix names a table with a non-number", bad_matrix, "matrix.csv"),
    # ---- lm-eval results (quality imported: screen.quality_metric lm_eval)
    Case("lm-eval-missing-file", "baseline_lm_eval names a file that does not exist",
         lm_eval_pair(base=lambda p: None), "(lm-eval results of m's baseline): does not exist"),
    Case("lm-eval-not-json", "an lm-eval results file that is not JSON",
         lm_eval_pair(cell=lm_eval_file(text='{"results": {"arc_easy": ')), "is not valid JSON"),
    Case("lm-eval-no-results", "a JSON file without lm-eval's results mapping (e.g. a samples file)",
         lm_eval_pair(cell=lm_eval_file(change=lambda d: d.pop("results"))), "has no 'results' mapping"),
    Case("lm-eval-task-missing", "lm_eval.task is not in the results file",
         lm_eval_pair(base=lm_eval_file(change=lambda d: d["results"].pop("arc_easy"))),
         "has no task 'arc_easy' (tasks there:"),
    Case("lm-eval-metric-missing", "lm_eval.metric is not among the task's metrics",
         lm_eval_pair(base=lm_eval_file(change=lambda d: d["results"]["arc_easy"].pop("acc,none"))),
         "has no metric 'acc,none' for arc_easy (metrics there:"),
    Case("lm-eval-not-a-number", "the metric's value is not a number",
         lm_eval_pair(cell=lm_eval_file("gptq_w4.json",
                                        lambda d: d["results"]["arc_easy"].update({"acc,none": "N/A"}))),
         "not a number"),
    Case("lm-eval-cell-without-file", "the baseline names an lm-eval results file, its quant none",
         lm_eval_pair(cell=None), "has no lm_eval: results file, but its model has a baseline_lm_eval"),
    Case("lm-eval-baseline-without-file", "a quant names an lm-eval results file, its baseline none",
         lm_eval_pair(base=None), "the model has no baseline_lm_eval to compare it with"),
    Case("lm-eval-other-items", "the quant's lm-eval run used another --limit than the baseline's",
         lm_eval_pair(cell=lm_eval_file("gptq_w4.json", lambda d: (d["n-samples"]["arc_easy"].update(effective=500),
                                                                    d["config"].update(limit=500)))),
         "differs from its baseline's"),
    # ---- served models and KV-cache cells
    Case("unreachable-server", "a served baseline at a port nothing listens on (found before any load)",
         yaml_text("models:\n  - id: m\n    tokenizer: SMOL\n    baseline: {server: 'http://127.0.0.1:9/v1', model: b}\n"
                   "    quants: [{id: q, server: 'http://127.0.0.1:9/v1', model: q}]\n"),
         "http://127.0.0.1:9/v1/models: (served model) is unreachable"),
    Case("served-without-tokenizer", "a served baseline sent rendered prompts with no tokenizer to render them",
         yaml_text("models:\n  - id: m\n    baseline: {server: 'http://127.0.0.1:9/v1'}\n"
                   "    quants: [{id: q, server: 'http://127.0.0.1:9/v1'}]\n"), "names no tokenizer"),
    Case("served-cell-of-a-checkpoint", "a served cell whose baseline is a checkpoint",
         yaml_text("models:\n  - id: m\n    baseline: SMOL\n    quants: [{id: q, server: 'http://127.0.0.1:9/v1'}]\n"),
         "is a served model but its baseline is a checkpoint"),
    Case("kv-cache-without-llamacpp", "a KV-cache cell of a Hugging Face baseline",
         lambda t: models(t, tiny(t, "base"), "kv_cache: q8_0"), "needs llama.cpp"),
    Case("shard-not-k-of-n", "--shard a/b", shard("a/b"), "--shard a/b: is not K/N"),
    Case("shard-zero", "--shard 0/3 (shards count from 1)", shard("0/3"), "--shard 0/3: needs 1 <= K <= N"),
    Case("shard-beyond-n", "--shard 4/3", shard("4/3"), "--shard 4/3: needs 1 <= K <= N"),
    Case("merge-without-record", "--merge names a folder no shard wrote",
         lambda tmp: [*tiny_pair(tmp), f"--merge={tmp / 'base'}"], "holds no quantscreen-shard.json"),
    Case("merge-missing-shard", "--merge given shard 2 of 2 only", merge_of_shard_2(),
         "shard 1/2 missing from --merge"),
    Case("merge-other-plan", "--merge of a shard measured with other settings",
         merge_of_shard_2("--max-new-tokens=5"), "was measured with another plan (max_new_tokens: 4 there, 5 here)"),
]


@dataclass
class Seen:
    exit_code: int
    line: str  # the first output line holding both the fragment and "fix:", or ""
    traceback: bool
    output: str


def run_case(case: Case, tmp: Path, timeout: int = 600) -> Seen:
    tmp.mkdir(parents=True, exist_ok=True)
    proc = screens(tmp, case.make(tmp), timeout)
    output = proc.stdout + proc.stderr
    line = next((x.strip() for x in output.splitlines() if case.fragment in x and "fix:" in x), "")
    return Seen(proc.returncode, line, "Traceback (most recent call last)" in output, output)


def shown(line: str, tmp: Path) -> str:
    """The line as a user would read it, with the scratch folder written as <tmp>."""
    return re.sub(r"^(ERROR|E|FAILED|ERROR [^ ]+ - Failed):? *", "", line.replace(str(tmp), "<tmp>"))


def main() -> None:
    import tempfile

    print("| # | input | exit | what the user sees |\n|---|---|---|---|")
    for n, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as d:
            seen = run_case(case, Path(d))
            ok = seen.exit_code == case.exit_code and seen.line and not seen.traceback
            text = shown(seen.line, Path(d)).replace("|", "\\|") or "(no line found)"
            print(f"| {n} `{case.id}` | {case.input} | {seen.exit_code}{'' if ok else ' **unexpected**'} | {text} |",
                  flush=True)


if __name__ == "__main__":
    main()
