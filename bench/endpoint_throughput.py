"""The served engine's throughput against the in-process engines on the same cell, side by side in one run.

One GGUF (default: the embedded Qwen2.5-Coder-0.5B Q4_K_M, the default job's family) answers the same prompts through
the harness's own generation path (`engine.generate.generate`, a fresh cache per arm), in turn:
  - llama.cpp in this process, one sequence at a time (the default job's engine);
  - llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), 1 and 4 requests in flight;
  - llama.cpp's own `llama-server` with 4 parallel slots (continuous batching), 4 in flight, when `--llama-server
    PATH` names a binary (none ships with this project: build it from llama.cpp's sources);
  - transformers on the same weights dequantized (fp32), batched (`--transformers-batch`).
Each server gets the same threads as the in-process engine and is started and stopped by this script on 127.0.0.1.
Reported: seconds, replies and tokens per second, the ratio to in-process llama.cpp, and how many replies equal its
replies. Prints the table and appends it to BENCHMARKS.md.

    .venv/bin/python bench/endpoint_throughput.py [--model embedded:qwen2.5-coder-0.5b] [--n-harmful 32]
        [--n-quality 8] [--max-new-tokens 64] [--llama-server PATH] [--transformers-batch 40]
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/record.py: appends to BENCHMARKS.md
from generation import checkpoint

THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_arm(name: str, engine: str, load, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 1):
    """(seconds, replies) through engine.generate.generate with an empty cache, as a screening run would generate."""
    from quantscreen.engine.cache import ResponseStore
    from quantscreen.engine.generate import DecodingSettings, generate

    settings = DecodingSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine)
    with tempfile.TemporaryDirectory() as d:
        store = ResponseStore(Path(d), {"bench": name})
        start = time.perf_counter()
        replies = generate(load, prompts, settings, store, name, tok, progress=Silent)
        seconds = time.perf_counter() - start
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return seconds, replies


class Silent:
    def __init__(self, *_):
        pass

    def update(self, _n=1):
        pass

    def tick(self, _text):
        pass

    def close(self):
        pass


def _table(arms: list) -> str:
    """Each arm's speed and replies against the first arm's (in-process llama.cpp)."""
    ref_s, ref = arms[0][1], arms[0][2]
    lines = ["| engine | seconds | replies/s | tokens/s | vs in-process llama.cpp | replies equal to it |",
             "|---|---|---|---|---|---|"]
    for name, seconds, replies in arms:
        tokens = sum(r.n_tokens for r in replies)
        same = sum(a.response == b.response for a, b in zip(replies, ref))
        lines.append(f"| {name} | {seconds:.1f} | {len(replies) / seconds:.2f} | {tokens / seconds:.1f} "
                     f"| {ref_s / seconds:.2f}x | {same}/{len(ref)} |")
    return "\n".join(lines)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded:qwen2.5-coder-0.5b", help="a GGUF file or embedded:NAME")
    ap.add_argument("--n-harmful", type=int, default=32)
    ap.add_argument("--n-quality", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--llama-server", default=None, help="llama.cpp's llama-server binary (parallel slots)")
    ap.add_argument("--slots", type=int, default=4, help="llama-server's parallel slots and the requests in flight")
    ap.add_argument("--transformers-batch", type=int, default=40, help="0: leave the transformers arm out")
    return ap.parse_args()


def main() -> None:
    args = _parse_args()

    from quantscreen import promptsets
    from quantscreen.engine.llamacpp import LlamaCppModel, kernels
    from quantscreen.engine.loader import load_model, load_tokenizer
    from quantscreen.engine.openai_client import running_server
    from quantscreen.engine.served import ServedModel

    info = checkpoint(args.model)
    tok = load_tokenizer(info, None)
    prompts = list(promptsets.advbench(args.n_harmful).prompts) + list(promptsets.builtin("quality").prompts)[
        :args.n_quality]
    m, path = args.max_new_tokens, str(info.path)
    arms = []  # (name, seconds, replies)

    def add(name, engine, load, batch_size=1):
        arms.append((name, *run_arm(name, engine, load, tok, prompts, m, batch_size)))

    holder = {}

    def in_process():
        holder["llama"] = LlamaCppModel(info.path, threads=THREADS)
        return holder["llama"]

    add("llama.cpp in process, one at a time", "llamacpp", in_process)
    holder.pop("llama").close()
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", path, "--model_alias", "cell", "--host",
               "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(THREADS)]
        with running_server(cmd, f"http://127.0.0.1:{port}/v1", Path(d) / "llama_cpp_server.log") as url:
            for inflight in (1, args.slots):
                add(f"llama-cpp-python server, {inflight} in flight", "openai",
                    lambda n=inflight: ServedModel(url, "cell", concurrency=n))
        if args.llama_server:
            port = free_port()
            cmd = [args.llama_server, "-m", path, "--alias", "cell", "--host", "127.0.0.1", "--port", str(port),
                   "-t", str(THREADS), "-np", str(args.slots), "-c", str(2048 * args.slots), "-fa", "off"]
            with running_server(cmd, f"http://127.0.0.1:{port}/v1", Path(d) / "llama_server.log") as url:
                add(f"llama-server, {args.slots} slots, {args.slots} in flight", "openai",
                    lambda: ServedModel(url, "cell", concurrency=args.slots))
    if args.transformers_batch:
        add(f"transformers (fp32 dequantized), batch {args.transformers_batch}", "transformers",
            lambda: load_model(info, tok), args.transformers_batch)

    ref_s = arms[0][1]
    table = _table(arms)
    print(table)
    best = max(arms[1:], key=lambda a: ref_s / a[1])
    record.append(
        "the served engine against the in-process engines, same cell",
        f"- model: {args.model} ({info.format}); {args.n_harmful} AdvBench + {args.n_quality} quality prompts, greedy, "
        f"{m} new tokens; {THREADS} threads for every llama.cpp (in process or server); llama.cpp CPU kernels: "
        f"{kernels()}\n- result: fastest other arm: {best[0]}, {ref_s / best[1]:.2f}x in-process llama.cpp\n\n{table}\n")


if __name__ == "__main__":
    main()
