"""The llama.cpp engine (through llama-cpp-python): greedy completion of already-rendered chat prompts.

Prompts are rendered with the same transformers chat template as the transformers engine, so the two engines see
identical text; only the forward pass differs. A GGUF cell and its baseline always run through the same engine
(`pipeline.workspace.choose_engine`), so an engine difference is never counted as quantization damage.
"""
from __future__ import annotations

import importlib.metadata
import os
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
