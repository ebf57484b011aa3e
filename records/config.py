"""Config types read from models.yaml that more than one layer needs (the rest live with their parsers, pipeline/plan.py
and pipeline/plan_models.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # auto: judge the cells only when the judge can move a verdict (it is the primary or reaches the screening targets
    # on `accuracy`, or its accuracy is not measured); always: judge every cell, also to be reported beside the verdicts
    cells: str = "auto"

    @property
    def kind(self) -> str:
        return "endpoint" if self.endpoint else "local"


@dataclass(frozen=True)
class Overrides:
    """Command-line settings that replace models.yaml's (quantscreen.fixtures.options builds it; None: not given).
    Paths are already resolved against the folder the user ran pytest in."""
    checkpoints: tuple[str, ...] = ()
    baseline: str | None = None
    model_id: str | None = None
    max_new_tokens: int | None = None
    batch_size: int | None = None
    dtype: str | None = None
    n_harmful: int | None = None
    n_harmless: int | None = None
    n_quality: int | None = None
    n_benign: int | None = None
    harmful_file: str | None = None
    harmless_file: str | None = None
    quality_file: str | None = None
    benign_file: str | None = None
    system_prompt: str | None = None  # "" clears a configured system prompt
    chat_template: str | None = None  # a Jinja template file
    cache_dir: Path | None = None
    engine: str | None = None
    no_probes: bool = False
    paired_verification: bool = False
    judge: bool = False
    no_judge: bool = False
    judge_endpoint: str | None = None
    judge_checkpoint: str | None = None

    def value(self, name: str):
        """A setting by name, for the settings addressed per prompt role (`n_harmful`, `harmful_file`, ...)."""
        return getattr(self, name)
