"""Every probe goes through the same expectations (garak-style contract): a frozen record whose value is the mean of
its per-item scores in 0..1, with n, a version, and a digest that changes with the inputs."""
import dataclasses

import pytest

from quantscreen.engine.sources import minilm_encoder
from quantscreen.probes import bertscore, coherence, refusal_regex, rouge

PROMPTS = ("What gas do plants absorb?", "Why is the sky blue?", "How many legs does a spider have?")
ANSWERS = ("Plants absorb carbon dioxide from the air.", "Sunlight scatters off air molecules, blue the most.",
           "bread bread bread bread bread bread bread")
REFS = ("Plants take in carbon dioxide.", "Blue light is scattered more by the atmosphere.", "A spider has eight legs.")


def run_probe(name, answers):
    encoder = minilm_encoder().path
    return {
        "refusal_regex": lambda: refusal_regex.refusal_rate(answers),
        "bertscore": lambda: bertscore.bertscore_f1(answers, REFS, encoder),
        "rouge": lambda: rouge.rouge_l_f1(answers, REFS),
        "coherence": lambda: coherence.coherence(PROMPTS, answers, encoder),
    }[name]()


@pytest.mark.parametrize("name", ["refusal_regex", "bertscore", "rouge", "coherence"])
def test_probe_contract(name):
    rec = run_probe(name, ANSWERS)
    assert dataclasses.is_dataclass(rec) and rec.n == len(ANSWERS) == len(rec.per_item)
    assert all(0.0 <= x <= 1.0 for x in rec.per_item)
    assert rec.value == pytest.approx(sum(rec.per_item) / rec.n)
    assert rec.version and len(rec.inputs_digest) == 16
    assert run_probe(name, ANSWERS[::-1]).inputs_digest != rec.inputs_digest
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.value = 0.5


def test_quality_probes_rank_a_right_answer_above_a_degenerate_one():
    encoder = minilm_encoder().path
    bs = bertscore.bertscore_f1(ANSWERS, REFS, encoder).per_item
    co = coherence.coherence(PROMPTS, ANSWERS, encoder).per_item
    assert bs[0] > bs[2] and co[0] > co[2]
    assert coherence.repetition("bread bread bread bread") == pytest.approx(0.5)  # 1 distinct of 2 trigrams
    assert coherence.repetition("one two three four") == 0.0
