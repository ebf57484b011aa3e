"""The llama.cpp engine (through llama-cpp-python): greedy completion of already-rendered chat prompts.

Prompts are rendered with the same transformers chat template as the transformers engine, so the two engines see
identical text; only the forward pass differs. A GGUF cell and its baseline always run through the same engine
(`engine.measure.choose_engine`), so an engine difference is never counted as quantization damage.
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from engine.errors import ModelRunError, ScreenInputError


def available() -> bool:
    try:
        importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def version() -> str:
    return f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"


class LlamaCppModel:
    """One GGUF loaded in llama.cpp; `complete` decodes greedily until an end-of-generation token or the limit."""

    def __init__(self, path: Path, device: str = "cpu", n_ctx: int = 2048, threads: int | None = None):
        import llama_cpp

        self._llama_cpp = llama_cpp
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                                       n_gpu_layers=-1 if device.startswith("cuda") else 0, seed=0, verbose=False)
        except Exception as exc:  # llama.cpp raises ValueError("Failed to load model from file") and friends
            raise ScreenInputError(path, f"llama.cpp could not load it ({type(exc).__name__}: {exc})",
                                   "check the file is a complete GGUF of an architecture llama.cpp supports, "
                                   "or set engine: transformers for this model") from None
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count()
        self.max_sequences = int(llama_cpp.llama_max_parallel_sequences())

    def is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def complete(self, text: str, max_new_tokens: int, label: str, check_logits: bool = False) -> tuple[str, int, bool]:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) + max_new_tokens > self.n_ctx:
            raise ModelRunError(label, f"a prompt of {len(ids)} tokens plus {max_new_tokens} new tokens exceeds "
                                   f"the llama.cpp context of {self.n_ctx}", "use shorter prompts or fewer new tokens")
        out, finished = [], False
        for token in self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if check_logits and not out:
                self._check_finite(label)
            if self.is_eog(token):
                finished = True
                break
            out.append(token)
            if len(out) >= max_new_tokens:
                break
        text_out = self.llm.detokenize(out).decode("utf-8", errors="replace").strip()
        return text_out, len(out), finished

    def complete_batch(self, texts: list[str], max_new_tokens: int, label: str,
                       check_logits: bool = False) -> list[tuple[str, int, bool]]:
        """Greedy replies to several prompts decoded together: every step is one `llama_decode` over one token of
        each sequence still generating, so the weights are read once per step for all of them, and a sequence leaves
        (its cache cells freed) as soon as it emits an end-of-generation token. Returns what `complete` returns,
        per prompt."""
        import numpy as np

        lib = self._llama_cpp
        prompts = [self.llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
        longest = max(len(ids) for ids in prompts)
        if longest + max_new_tokens > self.n_ctx:
            raise ModelRunError(label, f"a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds "
                                f"the llama.cpp context of {self.n_ctx}", "use shorter prompts or fewer new tokens")
        n_seq = len(prompts)
        if n_seq > self.max_sequences:
            raise ValueError(f"llama.cpp decodes at most {self.max_sequences} sequences together, not {n_seq}")
        base = self.llm.context_params  # the settings `complete` decodes with (attention kernel, cache types...)
        params = type(base).from_buffer_copy(base)
        params.n_ctx = sum(len(ids) for ids in prompts) + n_seq * max_new_tokens + 256
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = n_seq
        params.kv_unified = True  # one cache shared by all sequences, each using only what it needs
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        ctx = lib.llama_init_from_model(self.llm.model, params)
        if not ctx:
            raise ModelRunError(label, f"llama.cpp could not make a context for {n_seq} sequences",
                                "lower decoding.batch_size")
        batch = lib.llama_batch_init(max(512, n_seq), 0, 1)
        n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        try:
            memory = lib.llama_get_memory(ctx)
            # prefill: every prompt's tokens, in chunks of n_batch; logits only at each prompt's last token
            entries = [(s, pos, tok, pos == len(ids) - 1) for s, ids in enumerate(prompts)
                       for pos, tok in enumerate(ids)]
            last_logits = {}
            for start in range(0, len(entries), 512):
                chunk = entries[start:start + 512]
                self._fill(batch, chunk)
                self._decode(ctx, batch, label)
                wanted = [s for s, _, _, want in chunk if want]
                if wanted:
                    out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(len(wanted), n_vocab))
                    last_logits.update({s: out[k].argmax() for k, s in enumerate(wanted)})
                    if check_logits and start == 0 and not np.isfinite(out[0]).all():
                        raise ModelRunError(label, "produces NaN or inf logits on the first prompt",
                                            "the checkpoint is damaged; re-download or re-quantize it")
            replies = [[] for _ in range(n_seq)]
            finished = [False] * n_seq
            live = list(range(n_seq))
            token = {s: int(last_logits[s]) for s in live}
            for step in range(max_new_tokens):
                still = []
                for s in live:
                    if self.is_eog(token[s]):
                        finished[s] = True
                        lib.llama_memory_seq_rm(memory, s, -1, -1)
                    else:
                        replies[s].append(token[s])
                        if len(replies[s]) < max_new_tokens:
                            still.append(s)
                live = still
                if not live:
                    break
                self._fill(batch, [(s, len(prompts[s]) + step, token[s], True) for s in live])
                self._decode(ctx, batch, label)
                out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(len(live), n_vocab))
                token = dict(zip(live, out.argmax(axis=1).tolist()))
        finally:
            lib.llama_batch_free(batch)
            lib.llama_free(ctx)
        return [(self.llm.detokenize(r).decode("utf-8", errors="replace").strip(), len(r), f)
                for r, f in zip(replies, finished)]

    @staticmethod
    def _fill(batch, entries) -> None:
        """Put (sequence, position, token, wants logits) entries into a llama_batch."""
        for k, (seq, pos, tok, want) in enumerate(entries):
            batch.token[k] = tok
            batch.pos[k] = pos
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = seq
            batch.logits[k] = want
        batch.n_tokens = len(entries)

    def _decode(self, ctx, batch, label: str) -> None:
        code = self._llama_cpp.llama_decode(ctx, batch)
        if code != 0:
            raise ModelRunError(label, f"llama_decode failed (code {code})",
                                "lower decoding.batch_size, or use engine: transformers for this model")

    def next_token_logprobs(self, text: str):
        """log-softmax of the next-token logits after `text`; the tokens it shares with the previous call's text
        are not evaluated again (llama.cpp keeps their KV cache), so texts with a common opening are cheap."""
        from scipy.special import log_softmax

        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) >= self.n_ctx:
            raise ScreenInputError("judge", f"a judge prompt of {len(ids)} tokens exceeds the llama.cpp context of "
                                   f"{self.n_ctx}", "judge shorter replies")
        previous = self.llm.input_ids[:self.llm.n_tokens]
        keep = 0
        limit = min(len(previous), len(ids) - 1)  # always evaluate at least the last token
        while keep < limit and previous[keep] == ids[keep]:
            keep += 1
        self.llm.n_tokens = keep
        self.llm.eval(ids[keep:])
        return log_softmax(self._last_logits())

    def token_ids(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _last_logits(self):
        """The logits of the last evaluated token (llama-cpp-python no longer copies them into `scores`)."""
        import numpy as np

        n_vocab = self._llama_cpp.llama_vocab_n_tokens(self._vocab)
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)

    def _check_finite(self, label: str) -> None:
        import numpy as np

        if not np.isfinite(self._last_logits()).all():
            raise ModelRunError(label, "produces NaN or inf logits on the first prompt",
                                   "the checkpoint is damaged; re-download or re-quantize it")

    def close(self) -> None:
        self.llm.close()
