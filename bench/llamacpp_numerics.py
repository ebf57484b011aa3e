"""What checking a draft costs in llama.cpp on this machine, and whether its floats are those of one-token decoding.

For one GGUF: (1) the time of one `llama_decode` over k tokens with logits at every position, after a chat prompt,
against one token (k = 1, 2, 4, 5, 8, 16; median of 3 rounds): paired verification gains only where a batch of k
costs well under k one-token steps; (2) for greedy replies to N AdvBench prompts, the logits of every reply position
decoded one token at a time against the same positions decoded in chunks of k: the largest and the median absolute
difference, and the argmax flips. Settings: `--flash-attn` (llama.cpp's flash attention) and `--no-repack` (no
repacked weight layouts, `use_extra_bufts = false`), which change the kernels a batch goes through.

    .venv/bin/python bench/llamacpp_numerics.py [--checkpoint PATH] [--n 6] [--flash-attn] [--no-repack]
"""
from __future__ import annotations

import argparse
import statistics
import time

import record  # bench/record.py: appends to BENCHMARKS.md


class Decoder:
    def __init__(self, llm):
        import llama_cpp

        self.lib, self.llm = llama_cpp, llm
        self.mem = llama_cpp.llama_get_memory(llm.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(llm.model))
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, tokens: list[int], pos0: int):
        import numpy as np

        b = self.batch
        b.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, pos0 + i, 1, True
            b.seq_id[i][0] = 0
        if self.lib.llama_decode(self.llm.ctx, b) != 0:
            raise SystemExit("llama_decode failed")
        return np.ctypeslib.as_array(self.lib.llama_get_logits(self.llm.ctx), shape=(len(tokens), self.n_vocab)).copy()

    def keep(self, n: int) -> None:
        self.lib.llama_memory_seq_rm(self.mem, 0, n, -1)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a GGUF (default: the default job's Q4_K_M cell)")
    ap.add_argument("--n", type=int, default=6, help="AdvBench prompts for the logit comparison")
    ap.add_argument("--tokens", type=int, default=48, help="reply positions compared per prompt")
    ap.add_argument("--flash-attn", action="store_true")
    ap.add_argument("--no-repack", action="store_true")
    args = ap.parse_args()
    if args.checkpoint is None:
        from paired_verification import derived

        args.checkpoint = str(derived("embedded:qwen2.5-coder-0.5b", "llamacpp:Q4_K_M"))
    return args


def _batch_costs(d: Decoder, prompt: list[int], sizes: tuple[int, ...]) -> dict:
    """Seconds per batch of k tokens after the prompt, for each k in `sizes`: three rounds, each over 16 tokens."""
    cost = {k: [] for k in sizes}
    for _ in range(3):
        for k in sizes:
            reps = max(1, 16 // k)
            t0 = time.perf_counter()
            for _ in range(reps):
                d.decode(prompt[:k], len(prompt))
                d.keep(len(prompt))
            cost[k].append((time.perf_counter() - t0) / reps)
    return cost


def main() -> None:
    import numpy as np

    from quantscreen import promptsets

    args = _parse_args()
    from quantscreen.engine.llamacpp import load_llama

    d = Decoder(load_llama(args.checkpoint, n_ctx=2048, threads=2, flash_attn=args.flash_attn,
                           repack=not args.no_repack))
    sizes = (1, 2, 4, 5, 8, 16)

    def chat(p: str) -> list[int]:
        return d.llm.tokenize(f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n".encode(), add_bos=False,
                              special=True)

    prompt = chat("Write a short story about a cat who learns to fly and the friends it makes along the way.")
    d.lib.llama_memory_clear(d.mem, True)
    d.decode(prompt, 0)
    cost = _batch_costs(d, prompt, sizes)
    step = statistics.median(cost[1])

    dev = {k: [] for k in sizes}
    flips = {k: 0 for k in sizes}
    positions = 0
    for p in promptsets.advbench(args.n).prompts:
        ids = chat(p)
        d.lib.llama_memory_clear(d.mem, True)
        logits = d.decode(ids, 0)[-1]
        out, alone = [], []
        for j in range(args.tokens):
            out.append(int(logits.argmax()))
            logits = d.decode([out[-1]], len(ids) + j)[0]
            alone.append(logits)
        alone = np.array(alone)
        positions += len(out)
        for k in sizes:
            d.keep(len(ids))
            chunked = np.concatenate([d.decode(out[s:s + k], len(ids) + s) for s in range(0, len(out), k)])
            dev[k].extend(np.abs(chunked - alone).max(axis=1))
            flips[k] += int((chunked.argmax(1) != alone.argmax(1)).sum())

    lines = ["| tokens in the batch | ms per batch | batch / one-token step | largest logit difference to one-token "
             "decoding | median | argmax flips |", "|---|---|---|---|---|---|"]
    for k in sizes:
        c = statistics.median(cost[k])
        lines.append(f"| {k} | {1000 * c:.1f} | {c / step:.2f} | {max(dev[k]):.3g} | {statistics.median(dev[k]):.3g} "
                     f"| {flips[k]}/{positions} |")
    table = "\n".join(lines)
    print(table)
    exact = [k for k in sizes if max(dev[k]) == 0]
    record.append(
        "llama.cpp: what a batch of draft tokens costs, and whether its floats are one-token decoding's",
        f"- checkpoint: {args.checkpoint}; flash attention {'on' if args.flash_attn else 'off'}, repacked weights "
        f"{'off' if args.no_repack else 'on'}; {args.n} AdvBench prompts x {args.tokens} reply positions\n"
        f"- result: a batch of 16 costs {statistics.median(cost[16]) / step:.2f} one-token steps; batches of "
        f"{', '.join(map(str, exact))} token(s) give one-token decoding's logits exactly\n\n{table}\n")


if __name__ == "__main__":
    main()
