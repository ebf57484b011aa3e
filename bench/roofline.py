"""The physical limit of decoding on this machine, and how close the harness's engine gets to it.

A greedy decode step reads every weight once (the tied embedding once, as the output head) whatever the batch
size, and does about 2 x parameters multiply-adds per sequence. So at batch size b:

- weight-bandwidth bound: b x memory bandwidth / weight bytes tokens per second;
- compute bound: peak matmul FLOP/s / (2 x parameters) tokens per second.

Memory bandwidth is measured as torch reading a 1 GiB fp32 tensor (`sum`), peak FLOP/s as a 4096^3 fp32 matmul, each
the median of 5. The engine's decode rate at batch size b is `engine.generate.greedy_decode` on b AdvBench prompts with
no stop token: (b x 64 tokens) / (time for 65 new tokens - time for 1), so the prompts' prefill is not counted; the
prefill share is (time for 1 new token) / (time for 65), what reusing a shared prompt prefix could at most save.
Rounds rotate the batch sizes; medians of `--rounds` are reported. Prints one line and appends the table to
BENCHMARKS.md.

    .venv/bin/python bench/roofline.py [--checkpoint embedded:smollm2] [--batch-sizes 1,4,16,32,64,128] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import hf_folder


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_limits() -> tuple[float, float]:
    import torch

    big = torch.ones(256 * 1024 * 1024)  # 1 GiB of fp32
    read = big.numel() * 4 / median_time(big.sum, 5)
    del big
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    flops = 2 * 4096 ** 3 / median_time(lambda: a @ b, 5)
    return read, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="embedded:smollm2")
    parser.add_argument("--batch-sizes", default="1,4,16,32,64,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    from quantscreen import promptsets
    import torch
    from quantscreen.engine.generate import greedy_decode, render
    from quantscreen.engine.loader import load_model_and_tokenizer

    bandwidth, peak = machine_limits()
    info = hf_folder(args.checkpoint)
    model, tok = load_model_and_tokenizer(info, None)
    params = sum(p.numel() for p in model.parameters())  # a tied embedding is one parameter: counted once
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    pool = list(promptsets.advbench(None, 0).prompts)
    encoded = {}
    for b in sizes:
        texts = [render(tok, pool[i % len(pool)], None) for i in range(b)]
        encoded[b] = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def decode_seconds(b: int, new: int) -> float:
        enc = encoded[b]
        start = time.perf_counter()
        with torch.inference_mode():
            greedy_decode(model, enc.input_ids, enc.attention_mask, new, [])
        return time.perf_counter() - start

    rates = {b: [] for b in sizes}
    prefill = {b: [] for b in sizes}  # share of the batch's time spent before the first new token
    for r, b in record.rotations(sizes, args.rounds):
        full, one = decode_seconds(b, args.new_tokens + 1), decode_seconds(b, 1)
        rates[b].append(b * args.new_tokens / (full - one))
        prefill[b].append(one / full)
        print(f"round {r}: batch {b}: {rates[b][-1]:.1f} decode tok/s", file=sys.stderr, flush=True)

    rows = ["| batch | weight-bandwidth bound tok/s | compute bound tok/s | engine decode tok/s (rounds) | "
            "of bandwidth bound | of the lower bound | prompt prefill share |", "|---|---|---|---|---|---|---|"]
    summary = []
    for b in sizes:
        bw_bound, compute_bound = b * bandwidth / weight_bytes, peak / (2 * params)
        got = statistics.median(rates[b])
        rows.append(f"| {b} | {bw_bound:.0f} | {compute_bound:.0f} | {got:.1f} "
                    f"({' / '.join(f'{x:.0f}' for x in rates[b])}) | {100 * got / bw_bound:.0f}% | "
                    f"{100 * got / min(bw_bound, compute_bound):.0f}% | "
                    f"{100 * statistics.median(prefill[b]):.1f}% |")
        summary.append(f"b={b} {got:.0f} tok/s = {100 * got / min(bw_bound, compute_bound):.0f}%")
    line = (f"memory read {bandwidth / 1e9:.1f} GB/s, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; "
            f"{params / 1e6:.1f}M parameters, {weight_bytes / 1e6:.0f} MB of fp32 weights; engine decode: "
            + ", ".join(summary) + " of the lower bound")
    print(line)
    record.append("decode roofline: memory bandwidth, compute, and the engine's fraction",
                  f"- checkpoint: {info.path} ({info.format}) in fp32, {torch.get_num_threads()} threads, "
                  f"{args.new_tokens} decode steps after the prompt\n- result: {line}\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
