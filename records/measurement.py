"""What the pipeline hands over for one checkpoint: its probe records per metric, replies and judgements."""
from __future__ import annotations

from dataclasses import dataclass, field

from quantscreen.records.probe import ProbeRecord

REFUSAL_INSTRUMENTS = ("regex", "classifier", "judge")  # each counts where the cell and its baseline were both measured


@dataclass(frozen=True)
class CellMeasurement:
    cell_id: str
    model: str
    quant: str
    is_baseline: bool
    checkpoint: dict  # path, format, bits_per_weight, sha256, group_size, made_by
    records: dict[str, ProbeRecord]
    mean_response_tokens: dict[str, float] = field(default_factory=dict)
    capture: object = None  # pipeline.activations.Capture when the mechanistic probes ran
    responses: dict = field(default_factory=dict)  # role -> tuple of engine.cache.CachedResponse, prompt order
    probe_error: str | None = None  # why they could not run
    judgements: dict = field(default_factory=dict)  # role -> tuple of probes.refusal_judge.Judgement, prompt order
    judge: str | None = None  # which judge labelled them
    kld_error: str | None = None  # why the KLD pass (probes/kld.py) could not run
    generation: dict = field(default_factory=dict)  # paired verification's figures (pipeline.measure), if it ran
    imported_from: dict = field(default_factory=dict)  # record name -> the file a figure was read from (lm_eval)

    @property
    def instruments(self) -> tuple[str, ...]:
        return tuple(i for i in REFUSAL_INSTRUMENTS if f"refusal_rate_{i}" in self.records)

    def value(self, name: str) -> float | None:
        rec = self.records.get(name)
        return None if rec is None else rec.value
