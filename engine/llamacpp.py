"""The llama.cpp engine (through llama-cpp-python): greedy completion of already-rendered chat prompts.

Prompts are rendered with the same transformers chat template as the transformers engine, so the two engines see
identical text; only the forward pass differs. A GGUF cell and its baseline always run through the same engine
(`pipeline.workspace.choose_engine`), so an engine difference is never counted as quantization damage.
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from quantscreen.records.errors import ModelRunError, ScreenInputError


def available() -> bool:
    try:
        importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def version() -> str:
    return f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"


def kernels() -> str:
    """The CPU features llama.cpp's kernels use here (`llama_print_system_info`): a portable build reports its
    compile-time set (AVX2 on the default build), a `GGML_CPU_ALL_VARIANTS` build the variant it loaded for this CPU."""
    import llama_cpp

    ensure_backends()
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    feats = [part.split(":")[-1].split("=")[0].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return " ".join(feats) or info.strip()


def ensure_backends() -> None:
    """A llama.cpp built with `GGML_BACKEND_DL=ON` (e.g. `GGML_CPU_ALL_VARIANTS=ON`, whose CPU kernels are picked
    for the machine at run time) keeps its backends in separate libraries that llama-cpp-python 0.3.36 does not load:
    its wheel puts them in `<site-packages>/bin`. Load them from there once, if no backend is loaded yet."""
    import ctypes

    import llama_cpp

    if llama_cpp.llama_print_system_info().strip():
        return
    load = llama_cpp.llama_cpp._lib.ggml_backend_load_all_from_path  # through libllama: the one ggml it links
    load.argtypes, load.restype = [ctypes.c_char_p], None
    for folder in (Path(llama_cpp.__file__).parent.parent / "bin", Path(llama_cpp.__file__).parent / "lib"):
        if folder.is_dir():
            load(str(folder).encode())


# KV cache types llama.cpp runs on a CPU (ggml type ids); models.yaml's kv_cache names one for K and V alike, or K/V
KV_TYPES = {"f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20}


def kv_types(kv_cache: str | None) -> tuple[int | None, int | None]:
    """(type_k, type_v) ggml ids for a kv_cache setting (`q8_0`, or `q8_0/f16` for K and V apart); None: f16."""
    if not kv_cache:
        return None, None
    k, _, v = kv_cache.partition("/")
    if k not in KV_TYPES or (v or k) not in KV_TYPES:
        raise ScreenInputError(f"kv_cache: {kv_cache}", "is not a KV cache type llama.cpp runs",
                               f"use one of {', '.join(KV_TYPES)} (or K/V apart, e.g. q8_0/f16)")
    return KV_TYPES[k], KV_TYPES[v or k]


def load_llama(path: str, n_ctx: int, threads: int, gpu_layers: int = 0, flash_attn: bool = False,
               repack: bool = True, kv_cache: str | None = None):
    """A `llama_cpp.Llama`, greedy-ready. `repack=False` keeps the weights in their file layout (llama.cpp's
    `use_extra_bufts = false`), which llama_cpp.Llama takes no argument for: its default model parameters are
    replaced while it loads. `kv_cache`: the KV cache's types (`kv_types`); a quantized V cache needs flash
    attention."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    ensure_backends()
    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = repack
        return p

    llama_module.llama_cpp.llama_model_default_params = params
    try:
        type_k, type_v = kv_types(kv_cache)
        return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_gpu_layers=gpu_layers, seed=0,
                               verbose=False, flash_attn=flash_attn, type_k=type_k, type_v=type_v)
    finally:
        llama_module.llama_cpp.llama_model_default_params = default


@dataclass
class VerifyStats:
    """How a verified reply was reached: forward passes, drafted and accepted tokens, and the tokens it shares with
    its reference from the start (the accepted-prefix figure of cells.csv)."""
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    prefix_tokens: int = 0
    reference_tokens: int = 0
    near_ties: int = 0  # batched positions evaluated again alone because their top two logits were too close

    def figures(self) -> dict:
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "prefix_tokens": self.prefix_tokens, "reference_tokens": self.reference_tokens,
                "near_ties": self.near_ties}


class LlamaCppModel:
    """One GGUF loaded in llama.cpp; `complete` decodes greedily until an end-of-generation token or the limit."""

    def __init__(self, path: Path, device: str = "cpu", n_ctx: int | None = None, threads: int | None = None,
                 batch_invariant: bool = False, kv_cache: str | None = None, flash_attn: bool = False):
        """`batch_invariant`: flash attention on and no repacked weight layouts, under which a batch of up to 5
        tokens gives the logits of one-token decoding exactly on a CPU (bench/llamacpp_numerics.py); slower.
        `kv_cache`: a quantized KV cache (`kv_types`), `flash_attn`: flash attention (a quantized V cache needs it)."""
        import llama_cpp

        from quantscreen.engine.generate import LLAMACPP_CONTEXT

        n_ctx = n_ctx or LLAMACPP_CONTEXT
        self._llama_cpp = llama_cpp
        try:
            self.llm = load_llama(str(path), n_ctx=n_ctx, threads=threads or os.cpu_count(),
                                  gpu_layers=-1 if device.startswith("cuda") else 0,
                                  flash_attn=batch_invariant or flash_attn, repack=not batch_invariant,
                                  kv_cache=kv_cache)
        except ScreenInputError:
            raise
        except Exception as exc:  # llama.cpp raises ValueError("Failed to load model from file") and friends
            raise ScreenInputError(path, f"llama.cpp could not load it ({type(exc).__name__}: {exc})",
                                   "check the file is a complete GGUF of an architecture llama.cpp supports, "
                                   "or set engine: transformers for this model") from None
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch, self._batch_size = None, 0
        self.n_ctx = n_ctx

    def is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def complete(self, text: str, max_new_tokens: int, label: str, check_logits: bool = False) -> tuple[str, int, bool]:
        ids = self._prompt_ids(text, max_new_tokens, label)
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

    def complete_verified(self, text: str, reference: list[int], max_new_tokens: int, label: str,
                          check_logits: bool = False, policy=None) -> tuple[str, int, bool, VerifyStats]:
        """The reply plain greedy decoding gives, checked against drafts rather than decoded token by token.

        `reference`: the tokens expected (the baseline's reply, its stop token last when it stopped). Each step
        evaluates the reply's last token and a draft (`engine.draft.DraftSource`) in one batch with logits at every
        position, keeps the draft up to the first token that is not the argmax, takes that argmax as the next token,
        and drops the rejected tail from the KV cache. With no draft a step is plain one-token decoding.

        llama.cpp does not promise the same floats for a batch of one and a batch of many: with its default CPU
        kernels they differ by up to about 0.9 logits, so a near-tie can resolve otherwise than in plain decoding.
        Loaded `batch_invariant` and drafting at most 4 tokens a step (DraftPolicy's defaults), the batches give
        one-token decoding's logits exactly (bench/llamacpp_numerics.py; tests/test_verification.py). For other
        kernels, `policy.min_margin` > 0 leaves a batched position whose top two logits are closer than that
        undecided: the token before it is evaluated again alone, as plain decoding would.

        Over 60 lines: it is one decoding loop whose state (the reply, the next token, whether the next step runs
        alone, the KV cache's length) every branch reads and updates; split into helpers, that state would be scattered.
        """
        from quantscreen.engine.draft import DraftPolicy, DraftSource, common_prefix

        policy = policy or DraftPolicy()
        ids = self._prompt_ids(text, max_new_tokens, label)
        source = DraftSource(reference, ids, policy)
        stats = VerifyStats()
        nxt = self._eval_prompt(ids)  # argmax after the prompt, from the same batches plain decoding uses
        if check_logits:
            self._check_finite(label)
        out: list[int] = []
        finished = alone = False
        while True:
            if not alone:  # `nxt` is decided: it joins the reply (it is not in the KV cache yet)
                if self.is_eog(nxt):
                    finished = True
                    break
                out.append(nxt)
                if len(out) >= max_new_tokens:
                    break
            draft = [] if alone else source.propose(out, max_new_tokens - len(out) + 1)  # +1: a drafted stop
            past = self.llm.n_tokens
            predicted, margins = self._decode_all([out[-1]] + draft)
            stats.steps += 1
            stats.drafted += len(draft)
            if not draft:  # a batch of one: plain decoding's own step
                alone, nxt = False, int(predicted[0])
                continue
            row = 0  # rows 0..row-1 are decided and confirmed their drafted token
            while row < len(draft) and margins[row] >= policy.min_margin and int(predicted[row]) == draft[row]:
                row += 1
            kept = draft[:row]
            stats.accepted += row
            stop = next((k for k, t in enumerate(kept) if self.is_eog(t)), None)
            if stop is not None:  # the drafted stop token was the argmax: the reply ends there
                out.extend(kept[:stop])
                finished = True
                break
            out.extend(kept[:max_new_tokens - len(out)])
            if len(out) >= max_new_tokens:
                break
            if margins[row] >= policy.min_margin:  # row decided: its argmax is the next token
                self._truncate(past + 1 + row)  # the rejected tail leaves the KV cache
                alone, nxt = False, int(predicted[row])
            else:  # a near-tie: evaluate the reply's last token again, alone, as plain decoding does
                self._truncate(past + row)
                alone = True
                stats.near_ties += 1
        # the KV cache keeps the prompt and the evaluated reply tokens, nothing of a last, unchecked draft
        self._truncate(common_prefix(list(self.llm.input_ids[:self.llm.n_tokens]), ids + out))
        reference = [t for t in reference if not self.is_eog(t)]
        stats.prefix_tokens, stats.reference_tokens = common_prefix(out, reference), len(reference)
        text_out = self.llm.detokenize(out).decode("utf-8", errors="replace").strip()
        return text_out, len(out), finished, stats

    def reply_ids(self, reply: str, finished: bool) -> list[int]:
        """A cached reply as tokens of this model, its stop token last when it stopped: a draft (a reply stored as
        text need not re-tokenize to the very tokens it was decoded from; a draft only has to be likely)."""
        ids = self.token_ids(reply) if reply else []
        if finished:
            eot = self._llama_cpp.llama_vocab_eot(self._vocab)
            ids.append(eot if eot >= 0 else self._llama_cpp.llama_vocab_eos(self._vocab))
        return ids

    def can_verify(self) -> bool:
        """Verification drops a rejected draft from the KV cache; recurrent and hybrid models cannot do that."""
        return not (getattr(self.llm, "_is_recurrent", False) or getattr(self.llm, "_is_hybrid", False))

    def _prompt_ids(self, text: str, max_new_tokens: int, label: str) -> list[int]:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) + max_new_tokens > self.n_ctx:
            raise ModelRunError(label, f"a prompt of {len(ids)} tokens plus {max_new_tokens} new tokens exceeds "
                                   f"the llama.cpp context of {self.n_ctx}", "use shorter prompts or fewer new tokens")
        return ids

    def _eval_prompt(self, ids: list[int]) -> int:
        """`_eval_after_cached_prefix`, then the argmax of the next token."""
        import numpy as np

        self._eval_after_cached_prefix(ids)
        return int(np.argmax(self._last_logits()))

    def _eval_after_cached_prefix(self, ids: list[int]) -> None:
        """Evaluate `ids` after the longest prefix already in the KV cache (a shared chat-template or rubric opening
        is not evaluated again), in n_batch chunks with logits of the last token only, as plain decoding does."""
        from quantscreen.engine.draft import common_prefix

        keep = min(common_prefix(list(self.llm.input_ids[:self.llm.n_tokens]), ids), len(ids) - 1)  # >= 1 token
        self._truncate(keep)
        self.llm.eval(ids[keep:])

    def _decode_all(self, tokens: list[int]):
        """Evaluate `tokens` after the KV cache's contents with logits at every position: the argmax of each and its
        margin over the runner-up (in logits)."""
        import numpy as np

        llama_cpp, n = self._llama_cpp, len(tokens)
        if self._batch is None or self._batch_size < n:
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            self._batch_size = max(n, 64)
            self._batch = llama_cpp.llama_batch_init(self._batch_size, 0, 1)
        batch, past = self._batch, self.llm.n_tokens
        batch.n_tokens = n
        for i, t in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, past + i, 1, True
            batch.seq_id[i][0] = 0
        if llama_cpp.llama_decode(self.llm.ctx, batch) != 0:
            raise ModelRunError("llama.cpp", f"llama_decode failed on a batch of {n} tokens at position {past}",
                                "lower max_new_tokens or report the model to the project")
        self.llm.input_ids[past:past + n] = tokens
        self.llm.n_tokens = past + n
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.llm.ctx), shape=(n, self._n_vocab))
        top2 = np.partition(logits, -2, axis=1)[:, -2:]
        return logits.argmax(axis=1), top2[:, 1] - top2[:, 0]

    def _truncate(self, n: int) -> None:
        """Keep the first `n` tokens of the KV cache."""
        if n < self.llm.n_tokens:
            mem = self._llama_cpp.llama_get_memory(self.llm.ctx)
            self._llama_cpp.llama_memory_seq_rm(mem, 0, n, -1)
        self.llm.n_tokens = n

    def next_token_logprobs(self, text: str):
        """log-softmax of the next-token logits after `text`; the tokens it shares with the previous call's text
        are not evaluated again (llama.cpp keeps their KV cache), so texts with a common opening are cheap."""
        from scipy.special import log_softmax

        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) >= self.n_ctx:
            raise ScreenInputError("judge", f"a judge prompt of {len(ids)} tokens exceeds the llama.cpp context of "
                                   f"{self.n_ctx}", "judge shorter replies")
        self._eval_after_cached_prefix(ids)
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
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()
