"""The served engine: greedy replies from a model behind an OpenAI-compatible server (vLLM, SGLang, llama.cpp's
server, TGI, Ollama), for checkpoints a deploy engineer already serves rather than loads into this process.

By default the harness renders each prompt with the checkpoint's own chat template (the model's `tokenizer:` in
models.yaml) and sends the text to `/v1/completions`, so a baseline and its cell read exactly the same text, as in
the in-process engines; `api: chat` sends the conversation to `/v1/chat/completions` and lets the server render it.
Every request asks for greedy decoding (temperature 0, top_p 1, seed 0, no repetition penalty under either name
servers use) and at most `max_new_tokens`; fields a strict server refuses are dropped once, on the first request,
and what was sent is part of the model's identity. Up to `concurrency` requests are in flight at once, so a server
with parallel slots or continuous batching batches them.

A served model's identity (the response cache's key in place of a checkpoint's sha256) is its URL, the model id it
is asked for, what `/v1/models` says of that model, the request fields sent and a fingerprint: its greedy reply to a
fixed request, asked when the model is opened. New weights behind the same name change the fingerprint, and with it
the cache key, so no reply of the old weights is reused.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from quantscreen.engine.openai_client import OpenAIClient, Rejected
from quantscreen.records.digest import sha256_json
from quantscreen.records.errors import ScreenInputError

APIS = ("completions", "chat")
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "n": 1, "stream": False}
# Not in OpenAI's API; the servers that take them default to other values: llama-cpp-python's repeat_penalty is 1.1,
# and vLLM adds the tokenizer's BOS to a completion prompt that (rendered by the chat template) already has one.
EXTRAS = {"repeat_penalty": 1.0, "repetition_penalty": 1.0, "top_k": 1, "add_special_tokens": False}
FINGERPRINT_TEXT = "Count from one to twelve in words, separated by commas:"
FINGERPRINT_TOKENS = 24
# /v1/models fields that describe the model rather than the moment (vLLM lists `created` as the time it was asked)
LISTED_FIELDS = ("id", "root", "parent", "max_model_len", "owned_by")


class ServedModel:
    """A model name on a server: `complete` and `complete_many` give greedy replies (text, tokens, finished)."""

    def __init__(self, url: str, model: str | None, api: str = "completions", api_key_env: str | None = None,
                 concurrency: int = 4, timeout_s: float = 600.0, retries: int = 3, system_prompt: str | None = None,
                 setting: str = "models.yaml"):
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}")
        self.client = OpenAIClient(url, "served model", f"server: of {setting}", api_key_env,
                                   timeout_s, retries)
        self.url, self.wanted, self.api, self.setting = self.client.url, model, api, setting
        self.concurrency, self.system_prompt = max(1, concurrency), system_prompt
        self.model: str | None = None  # the name sent, once opened
        self._extras = dict(EXTRAS)
        self._identity: dict | None = None

    def describe(self) -> str:
        return f"{self.url} ({self.model or self.wanted or 'served model'}, {self.api})"

    def open(self) -> dict:
        """Check the server serves the model and take its identity (one fingerprint request); idempotent."""
        if self._identity is None:
            self.model = self.client.served_model(self.wanted, f"model: under {self.setting}")
            listed = next((m for m in self.client.models() if str(m["id"]) == self.model), {})
            fingerprint = self._ask(self._body(FINGERPRINT_TEXT, FINGERPRINT_TOKENS, raw=True), "fingerprint")
            self._identity = {"url": self.url, "model": self.model, "api": self.api,
                              "listed": {k: listed[k] for k in LISTED_FIELDS if k in listed},
                              "request": {**GREEDY, **self._extras}, "fingerprint": list(fingerprint)}
        return self._identity

    def identity_sha256(self) -> str:
        """The digest that stands for a checkpoint's sha256 in the cache keys and in cells.csv."""
        return sha256_json(self.open())

    def complete(self, text: str, max_new_tokens: int, label: str, check_logits: bool = False) -> tuple[str, int, bool]:
        """The greedy reply to `text` (a rendered prompt, or the user's message under api: chat). The server's logits
        are not visible, so `check_logits` cannot be honoured; degenerate output is still caught downstream."""
        self.open()
        return self._ask(self._body(text, max_new_tokens), label)

    def complete_many(self, texts: dict[int, str], max_new_tokens: int, label: str):
        """(index, (reply, tokens, finished)) for every text, yielded as each finishes, `concurrency` in flight.
        Stopping early (an exception, Ctrl-C) cancels the requests not yet sent."""
        self.open()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="quantscreen-served")
        pending = {}
        items = iter(texts.items())
        try:
            for i, text in items:  # keep exactly `concurrency` requests queued: the rest wait here, not in the pool
                pending[pool.submit(self.complete, text, max_new_tokens, label)] = i
                if len(pending) >= self.concurrency:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = pending.pop(future)
                    yield i, future.result()
                    nxt = next(items, None)
                    if nxt is not None:
                        pending[pool.submit(self.complete, nxt[1], max_new_tokens, label)] = nxt[0]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _body(self, text: str, max_new_tokens: int, raw: bool = False) -> dict:
        body = {"model": self.model, "max_tokens": max_new_tokens, **GREEDY, **self._extras}
        if not self.model:
            del body["model"]
        if self.api == "chat":
            system = [] if raw or not self.system_prompt else [{"role": "system", "content": self.system_prompt}]
            body["messages"] = system + [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        return body

    def _ask(self, body: dict, label: str) -> tuple[str, int, bool]:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        try:
            answer = self.client.request(path, body)
        except Rejected as exc:
            if exc.code in (400, 422) and any(k in body for k in self._extras) and self._identity is None:
                self._extras = {}  # a strict server: plain OpenAI fields only (said in the identity)
                return self._ask({k: v for k, v in body.items() if k not in EXTRAS}, label)
            raise ScreenInputError(f"{self.url}{path}", f"(served model {self.model or ''}) rejected the request for "
                                   f"{label} (HTTP {exc.code}: {exc.detail})", f"check model: and api: in "
                                   f"{self.setting}, and that the server speaks OpenAI's {path}") from None
        return self._reply(answer, path)

    def _reply(self, answer: dict, path: str) -> tuple[str, int, bool]:
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") if self.api == "chat" else choice["text"]
            reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ScreenInputError(f"{self.url}{path}", f"(served model) answer has no choices ({str(answer)[:200]})",
                                   f"point server: in {self.setting} at an OpenAI-compatible /v1 base URL") from None
        usage = answer.get("usage") or {}
        tokens = usage.get("completion_tokens")
        if not isinstance(tokens, int):
            raise ScreenInputError(f"{self.url}{path}", "(served model) answer does not report usage.completion_tokens",
                                   "use a server that reports token usage (vLLM, llama.cpp, SGLang, TGI do)")
        return (text or "").strip(), tokens, reason == "stop"

    def close(self) -> None:
        self.client.close()


class ServedCheckpoint:
    """A served model where the pipeline expects a checkpoint (`engine.checkpoint.CheckpointInfo`): what the reports
    say of it, the tokenizer that renders its prompts (`tokenizer`, a CheckpointInfo; None under api: chat), and its
    identity digest in place of a file's sha256. The model is opened (one request to /models, one fingerprint) the
    first time its identity is asked for, and kept for the rest of the run."""

    kind = "served"
    quant_method = None
    group_size = None
    bits = None
    type_mix_sha256 = ""
    made_by = ""

    def __init__(self, url: str, model: str | None, tokenizer, api: str = "completions", api_key_env: str | None = None,
                 concurrency: int = 4, timeout_s: float = 600.0, bits_per_weight: float | None = None,
                 format: str | None = None, setting: str = "models.yaml"):
        self.url, self.model, self.tokenizer, self.api = url.rstrip("/"), model, tokenizer, api
        self.api_key_env, self.concurrency, self.timeout_s, self.setting = api_key_env, concurrency, timeout_s, setting
        self.bits_per_weight = bits_per_weight
        self.format = format or "served"  # a kv_cache: is added to it where every cell's is (pipeline.measure)
        self.tensor_types: dict = {}
        self.architecture = getattr(tokenizer, "architecture", "")
        self.vocab_size = getattr(tokenizer, "vocab_size", 0)
        self.has_chat_template = tokenizer is None or tokenizer.has_chat_template
        self._client: ServedModel | None = None

    @property
    def path(self) -> str:
        """How errors and reports name it (a URL and a model name, not a file)."""
        return f"{self.url} ({self.model or 'served model'})"

    def client(self, system_prompt: str | None = None) -> ServedModel:
        if self._client is None:
            self._client = ServedModel(self.url, self.model, self.api, self.api_key_env, self.concurrency,
                                       self.timeout_s, system_prompt=system_prompt, setting=self.setting)
        self._client.system_prompt = system_prompt
        return self._client

    def identity_sha256(self) -> str:
        return self.client().identity_sha256()
