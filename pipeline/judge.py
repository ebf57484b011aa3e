"""The judge instrument's engines: a local checkpoint scored by option log-probabilities, or an OpenAI-compatible
endpoint, behind one `judge_pairs` that caches every judgement.

Judgements are content-addressed: the cache key is the judge's identity (checkpoint sha256 and engine, or the
endpoint's URL and served model), the rubric version and the options; each line is keyed by the digest of the
(request, reply) pair. So a reply that is identical in the baseline and a quant is judged once, and a killed run
keeps every finished batch.
"""
from __future__ import annotations

import math

from quantscreen.engine.cache import JsonlStore
from quantscreen.engine.openai_client import OpenAIClient, Rejected
from quantscreen.records.digest import sha256_json
from quantscreen.records.config import JudgeSpec
from quantscreen.records.errors import ScreenInputError
from quantscreen.probes.refusal_judge import MAX_REPLY_CHARS, RUBRIC, Judgement, Rubric, label_from_logprobs, label_from_text


class JudgementStore(JsonlStore):
    kind = "judgements"

    def __init__(self, root, key_parts: dict):
        super().__init__(root, key_parts, "judgements")

    def decode(self, rec: dict) -> Judgement:
        return Judgement.from_dict(rec["judgement"])


def pair_digest(request: str, reply: str) -> str:
    return sha256_json([request, reply])


def judge_pairs(judge, pairs: list[tuple[str, str]], cache_root, label: str, progress=None) -> list[Judgement]:
    """A judgement for every (request, reply); cached ones are reused, the judge is opened only for the rest."""
    from quantscreen.engine.progress import LineProgress

    rubric = judge.rubric
    store = JudgementStore(cache_root, {"judge": judge.identity(), "rubric_version": rubric.version,
                                        "options": rubric.options, "calibration": list(rubric.calibration),
                                        "max_reply_chars": MAX_REPLY_CHARS})
    digests = [pair_digest(q, r) for q, r in pairs]
    done = store.load_by_digest()
    todo: dict[str, tuple[str, str]] = {}
    for d, pair in zip(digests, pairs):
        if d not in done:
            todo.setdefault(d, pair)
    if todo:
        # Replies to one request side by side: llama.cpp then evaluates the request's tokens once for all of them.
        keys = sorted(todo, key=lambda k: todo[k][0])
        bar = (progress or LineProgress)(f"judging {label}", len(keys))
        try:
            judge.open()
            for start in range(0, len(keys), judge.batch_size):
                chunk = keys[start:start + judge.batch_size]
                found = judge.score([todo[k] for k in chunk])
                store.append_records([{"digest": k, "judgement": j.as_dict()} for k, j in zip(chunk, found)])
                done.update(zip(chunk, found))
                bar.update(len(chunk))
        finally:
            bar.close()
    return [done[d] for d in digests]


class LocalJudge:
    """A checkpoint the loaders handle, asked the rubric and scored by the log-probability of each option's answer.

    GGUF judges run in llama.cpp (engine auto/llamacpp) one item at a time: each item's prompt is evaluated as one
    batch of tokens, and the tokens it shares with the previous item (the rubric's system text, and the request when
    `judge_pairs` puts replies to one request side by side) are served from the KV cache. Every other format (and
    engine: transformers) runs through torch in left-padded batches of `batch_size`. `rubric` defaults to the
    shipped one (probes.refusal_judge.RUBRIC); its calibration was fitted for the embedded 0.5B judge.
    """

    def __init__(self, spec: JudgeSpec, info, digest: str, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, rubric: Rubric = RUBRIC):
        from quantscreen.engine import llamacpp

        self.spec, self.info, self.digest, self.device, self.dtype = spec, info, digest, device, dtype
        self.rubric = rubric
        self.trust_remote_code = trust_remote_code
        if spec.engine == "llamacpp" and info.kind != "gguf":
            raise ScreenInputError(info.path, "(judge.checkpoint) is not a GGUF file, so judge.engine llamacpp cannot "
                                   "run it", "set judge.engine: transformers or auto")
        self.engine = "llamacpp" if info.kind == "gguf" and spec.engine != "transformers" and llamacpp.available() \
            else "transformers"
        self.batch_size = spec.batch_size
        self._tok = self._model = self._option_ids = None

    def identity(self) -> dict:
        from quantscreen.pipeline.workspace import engine_version

        parts = {"kind": "local", "checkpoint_sha256": self.digest, "engine": engine_version(self.engine),
                 "chat_template_override_sha256": sha256_json(self.spec.chat_template) if self.spec.chat_template
                 else None}
        if self.engine == "transformers":
            parts.update({"dtype": self.dtype, "device": self.device.split(":")[0]})
        return parts

    def describe(self) -> str:
        return f"local judge {self.info.path} ({self.engine})"

    def open(self) -> None:
        if self._model is not None:
            return
        from quantscreen.engine.loader import load_engine_model, load_tokenizer

        self._tok = load_tokenizer(self.info, self.spec.chat_template)
        self._model = load_engine_model(self.engine, self.info, self._tok, self.device, self.dtype,
                                        self.trust_remote_code)
        self._option_ids = self._options()

    def _options(self) -> dict[str, list[int]]:
        """Each label's candidate first tokens: its answer with and without a leading space ("A", " A"), which must
        not be shared between labels, and for a word its lower-case forms ("yes", " yes") where not shared."""
        def first(variant: str) -> int | None:
            toks = self._model.token_ids(variant) if self.engine == "llamacpp" else \
                self._tok(variant, add_special_tokens=False).input_ids
            return int(toks[0]) if toks else None

        exact = {label: {first(v) for v in (answer, " " + answer)} - {None} for label, answer in self.rubric.answers}
        flat = [t for ids in exact.values() for t in ids]
        if len(flat) != len(set(flat)) or any(not ids for ids in exact.values()):
            raise ScreenInputError(self.info.path, "(judge.checkpoint) tokenizer does not give the answer options "
                                   f"{list(self.rubric.options.values())} distinct first tokens",
                                   "use another judge checkpoint")
        lower = {label: {first(v) for v in (answer.lower(), " " + answer.lower())} - {None}
                 if len(answer) > 1 else set() for label, answer in self.rubric.answers}
        out = {}
        for label in exact:
            others = set().union(*(exact[o] | lower[o] for o in exact if o != label))
            out[label] = sorted(exact[label] | (lower[label] - others))
        return out

    def _text(self, request: str, reply: str) -> str:
        try:
            return self._tok.apply_chat_template(self.rubric.messages(request, reply), tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as exc:  # a template that rejects the system role, for one
            raise ScreenInputError(self.info.path, f"(judge.checkpoint) chat template cannot render the rubric ({exc})",
                                   "give the judge a template with a system role (judge.chat_template: FILE)") from None

    def _judgement(self, logprobs_row) -> Judgement:
        return label_from_logprobs({label: _logsumexp([float(logprobs_row[t]) for t in ids])
                                    for label, ids in self._option_ids.items()}, self.rubric.labels,
                                   self.rubric.calibration)

    def score(self, pairs: list[tuple[str, str]]) -> list[Judgement]:
        texts = [self._text(q, r) for q, r in pairs]
        try:
            if self.engine == "llamacpp":
                return [self._judgement(self._model.next_token_logprobs(t)) for t in texts]
            return self._score_torch(texts)
        except ValueError as exc:  # non-finite option log-probabilities
            raise ScreenInputError(self.info.path, f"(judge.checkpoint) {exc}",
                                   "the judge checkpoint is damaged or its dtype overflows; use float32 or another "
                                   "judge") from None

    def _score_torch(self, texts: list[str]) -> list[Judgement]:
        import torch

        from quantscreen.pipeline.activations import last_token_logits

        enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            rows = torch.log_softmax(last_token_logits(self._model, enc).double(), dim=-1).cpu().numpy()
        return [self._judgement(row) for row in rows]

    def close(self) -> None:
        if hasattr(self._model, "close"):
            self._model.close()
        self._model = self._tok = None
        import gc

        gc.collect()


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class EndpointJudge:
    """An OpenAI-compatible `/chat/completions` server (llama.cpp's server, vLLM, Ollama, ...).

    Asked for one token at temperature 0 with its top log-probabilities: when the server returns them, the options'
    log-probabilities decide (as for a local judge); otherwise the answer text is parsed. Connection failures,
    timeouts, 429 and 5xx answers are retried `retries` times with backoff (engine.openai_client); then the run stops
    with one line naming the endpoint. A server that rejects the logprobs fields is asked again without them.
    """

    def __init__(self, spec: JudgeSpec, rubric: Rubric = RUBRIC):
        self.spec, self.rubric = spec, rubric
        self.client = OpenAIClient(spec.endpoint, "judge endpoint", "judge.endpoint / --judge-endpoint",
                                   spec.api_key_env, spec.timeout_s, spec.retries)
        self.url = self.client.url
        self.batch_size = spec.batch_size
        self._served: str | None = None
        self._logprobs = True

    def describe(self) -> str:
        return f"endpoint judge {self.url} ({self.spec.model or self._served or 'served model'})"

    def open(self) -> None:
        if self._served is None:
            self._served = self.client.served_model(self.spec.model, "judge.model")

    def identity(self) -> dict:
        self.open()
        return {"kind": "endpoint", "identity": self.spec.identity or f"{self.url} {self._served}"}

    def score(self, pairs: list[tuple[str, str]]) -> list[Judgement]:
        return [self._one(q, r) for q, r in pairs]

    def _one(self, request: str, reply: str) -> Judgement:
        body = {"messages": self.rubric.messages(request, reply), "temperature": 0, "max_tokens": 4, "seed": 0}
        if self._served:
            body["model"] = self._served
        if self._logprobs:
            body.update({"logprobs": True, "top_logprobs": 10})
        try:
            answer = self.client.request("/chat/completions", body)
        except Rejected as exc:
            if self._logprobs and exc.code == 400:
                self._logprobs = False  # a server without logprobs support: read the text instead
                return self._one(request, reply)
            raise ScreenInputError(f"{self.url}/chat/completions", f"(judge endpoint) rejected the request "
                                   f"(HTTP {exc.code}: {exc.detail})", "check judge.model and the server's "
                                   "OpenAI compatibility") from None
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ScreenInputError(f"{self.url}/chat/completions", f"(judge endpoint) answer has no choices "
                                   f"({str(answer)[:200]})", "point judge.endpoint at an OpenAI-compatible "
                                   "/v1 base URL") from None
        scored = _option_logprobs(choice, self.rubric)
        if scored is not None:
            j = label_from_logprobs(scored, self.rubric.labels, self.rubric.calibration)
            return Judgement(j.label, j.probs, j.method, text.strip()[:200])
        return label_from_text(text, self.rubric)

    def close(self) -> None:
        self.client.close()


def _option_logprobs(choice: dict, rubric: Rubric = RUBRIC) -> dict[str, float] | None:
    """The options' log-probabilities from the first answer token's top_logprobs (an answer word in any case, with or
    without a leading space), None when none is listed."""
    try:
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    by_letter: dict[str, list[float]] = {label: [] for label in rubric.labels}
    for entry in top or []:
        token = str(entry.get("token", "")).strip()
        for label, answer in rubric.answers:
            if token in {answer, answer.lower()} and isinstance(entry.get("logprob"), (int, float)):
                by_letter[label].append(float(entry["logprob"]))
    if not any(by_letter.values()):
        return None
    return {label: _logsumexp(v) if v else -math.inf for label, v in by_letter.items()}


def make_judge(spec: JudgeSpec, ws, dtype: str = "float32"):
    """The judge a spec names, with its checkpoint resolved and digested (nothing is loaded yet).

    The rubric's calibration was fitted for the embedded Qwen2.5-Coder-0.5B GGUF only; any other judge (another
    checkpoint, an endpoint) gets the same question with its probabilities as they come (calibration (1, 0)), since
    another model's lean is not that one's."""
    import dataclasses

    from quantscreen.engine.sources import QWEN_CODER_SHA256

    uncalibrated = dataclasses.replace(RUBRIC, calibration=(1.0, 0.0))
    if spec.endpoint:
        return EndpointJudge(spec, uncalibrated)
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.pipeline.workspace import embedded_path

    info = inspect_checkpoint(embedded_path(spec.checkpoint, ws))
    digest = ws.checkpoint_digest(info)
    return LocalJudge(spec, info, digest, ws.device, dtype, ws.trust_remote_code,
                      RUBRIC if digest == QWEN_CODER_SHA256 else uncalibrated)
