"""Config types read from models.yaml that more than one layer needs (the rest live with their parser, pipeline/plan.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeSpec:
    """models.yaml `judge:` (or --judge / --judge-endpoint / --judge-checkpoint)."""
    enabled: bool = False
    checkpoint: str | None = None  # local judge: any checkpoint the loaders handle (embedded:... too)
    engine: str = "auto"  # local judge: auto (llama.cpp for a GGUF) | transformers | llamacpp
    endpoint: str | None = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1
    model: str | None = None  # the model name sent to the endpoint (default: the first one /models lists)
    identity: str | None = None  # cache identity of an endpoint's judge (default: URL + served model id)
    api_key_env: str | None = None  # environment variable holding a bearer token
    timeout_s: float = 60.0
    retries: int = 3
    batch_size: int = 8
    chat_template: str | None = None  # template text for a local judge whose tokenizer has none
    accuracy: str = "default"  # labelled replies for every instrument's accuracy: default | harness | pyrit | uncensorbench | none | FILE

    @property
    def kind(self) -> str:
        return "endpoint" if self.endpoint else "local"
