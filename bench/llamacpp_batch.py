"""Is decoding a batch of sequences together in llama.cpp faster than one at a time, on this machine?

The harness's llama.cpp engine decodes one sequence at a time (`LlamaCppModel.complete`). This experiment decodes the
same prompts as one batch through llama.cpp's multi-sequence API (`complete_batch` below: one `llama_decode` per step
over one token of each sequence still generating, in a context made with the engine's own context settings), with
one cache shared by all sequences (`kv_unified`) or one cache stream per sequence. Same GGUF, same rendered chat
prompts (the first N AdvBench prompts), greedy, rounds rotating the three contenders, medians reported, and how many
replies are identical to the one-at-a-time ones. Prints one line and appends the table to BENCHMARKS.md.

    .venv/bin/python bench/llamacpp_batch.py [--checkpoint embedded:qwen2.5-coder-0.5b] [--n 32]
        [--max-new-tokens 32] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import checkpoint


def _batch_context(model, prompts: list[list[int]], max_new_tokens: int, unified: bool):
    """A llama.cpp context for all the prompts' sequences at once, with the settings `complete` decodes with and
    room for every prompt and reply (exits when llama.cpp cannot make it)."""
    lib = model._llama_cpp
    longest = max(len(ids) for ids in prompts)
    n_seq = len(prompts)
    base = model.llm.context_params  # the settings `complete` decodes with (attention kernel, cache types...)
    params = type(base).from_buffer_copy(base)
    per_seq = -(-(longest + max_new_tokens + 1) // 256) * 256
    params.n_ctx = sum(len(ids) for ids in prompts) + n_seq * max_new_tokens + 256 if unified else n_seq * per_seq
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = n_seq
    params.kv_unified = unified
    params.n_threads = params.n_threads_batch = base.n_threads
    params.no_perf = True
    ctx = lib.llama_init_from_model(model.llm.model, params)
    if not ctx:
        sys.exit(f"llama.cpp could not make a context for {n_seq} sequences")
    return ctx


def complete_batch(model, texts: list[str], max_new_tokens: int, unified: bool) -> list[tuple[str, int, bool]]:
    """Greedy replies to several prompts decoded together: every step is one `llama_decode` over one token of each
    sequence still generating, and a sequence leaves (its cache cells freed) at its end-of-generation token.
    `unified`: one cache for all sequences (each token's attention spans every sequence's cells, masked), else one
    cache stream per sequence. Returns what `LlamaCppModel.complete` returns, per prompt."""
    import numpy as np

    lib = model._llama_cpp
    prompts = [model.llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
    n_seq = len(prompts)
    ctx = _batch_context(model, prompts, max_new_tokens, unified)
    batch = lib.llama_batch_init(max(512, n_seq), 0, 1)
    n_vocab = lib.llama_vocab_n_tokens(model._vocab)
    try:
        memory = lib.llama_get_memory(ctx)
        # prefill: every prompt's tokens, in chunks of n_batch; logits only at each prompt's last token
        entries = [(s, pos, tok, pos == len(ids) - 1) for s, ids in enumerate(prompts)
                   for pos, tok in enumerate(ids)]
        last_logits = {}
        for start in range(0, len(entries), 512):
            chunk = entries[start:start + 512]
            fill(batch, chunk)
            decode(model, ctx, batch)
            wanted = [s for s, _, _, want in chunk if want]
            if wanted:
                out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(len(wanted), n_vocab))
                last_logits.update({s: out[k].argmax() for k, s in enumerate(wanted)})
        replies = [[] for _ in range(n_seq)]
        finished = [False] * n_seq
        live = list(range(n_seq))
        token = {s: int(last_logits[s]) for s in live}
        for step in range(max_new_tokens):
            still = []
            for s in live:
                if model.is_eog(token[s]):
                    finished[s] = True
                    lib.llama_memory_seq_rm(memory, s, -1, -1)
                else:
                    replies[s].append(token[s])
                    if len(replies[s]) < max_new_tokens:
                        still.append(s)
            live = still
            if not live:
                break
            fill(batch, [(s, len(prompts[s]) + step, token[s], True) for s in live])
            decode(model, ctx, batch)
            out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(len(live), n_vocab))
            token = dict(zip(live, out.argmax(axis=1).tolist()))
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
    return [(model.llm.detokenize(r).decode("utf-8", errors="replace").strip(), len(r), f)
            for r, f in zip(replies, finished)]

def fill(batch, entries) -> None:
    """Put (sequence, position, token, wants logits) entries into a llama_batch."""
    for k, (seq, pos, tok, want) in enumerate(entries):
        batch.token[k] = tok
        batch.pos[k] = pos
        batch.n_seq_id[k] = 1
        batch.seq_id[k][0] = seq
        batch.logits[k] = want
    batch.n_tokens = len(entries)

def decode(model, ctx, batch) -> None:
    code = model._llama_cpp.llama_decode(ctx, batch)
    if code != 0:
        sys.exit(f"llama_decode failed (code {code})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="embedded:qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from quantscreen import promptsets
    from quantscreen.engine.generate import render
    from quantscreen.engine.llamacpp import LlamaCppModel
    from quantscreen.engine.loader import load_tokenizer, threads_per_worker

    info = checkpoint(args.checkpoint)
    tok = load_tokenizer(info, None)
    texts = [render(tok, p, None) for p in promptsets.advbench(args.n, 0).prompts]
    model = LlamaCppModel(info.path, threads=threads_per_worker())
    contenders = {
        "one at a time (the engine)": lambda: [model.complete(t, args.max_new_tokens, "bench") for t in texts],
        "batched, one cache per sequence": lambda: complete_batch(model, texts, args.max_new_tokens, False),
        "batched, one shared cache": lambda: complete_batch(model, texts, args.max_new_tokens, True),
    }
    names = list(contenders)
    seconds = {name: [] for name in names}
    replies = {}
    for r, name in record.rotations(names, args.rounds):
        start = time.perf_counter()
        replies[name] = contenders[name]()
        seconds[name].append(time.perf_counter() - start)
        print(f"round {r}: {name} {seconds[name][-1]:.1f} s", file=sys.stderr, flush=True)
    model.close()
    ref = replies[names[0]]
    rows = ["| contender | median s | rounds (s) | generated tokens | tokens/s | replies identical to one at a time |",
            "|---|---|---|---|---|---|"]
    summary = []
    for name in names:
        wall, tokens = statistics.median(seconds[name]), sum(n for _, n, _ in replies[name])
        same = sum(a == b for a, b in zip(replies[name], ref))
        rows.append(f"| {name} | {wall:.1f} | {' / '.join(f'{s:.1f}' for s in seconds[name])} | {tokens} | "
                    f"{tokens / wall:.1f} | {same}/{args.n} |")
        summary.append(f"{name} {wall:.1f} s ({same}/{args.n} identical)")
    line = (f"{info.path.name}, {args.n} AdvBench prompts in one batch, {args.max_new_tokens} new tokens: "
            + "; ".join(summary))
    print(line)
    record.append("llama.cpp: one sequence at a time vs batched decoding",
                  f"- result: {line}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
