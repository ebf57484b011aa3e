"""Reply probes are found, not listed (probes.registry): the shipped modules in their order, a module added to a
package, and a probe an installed distribution declares under the `quantscreen.probes` entry point group; a user's
record reaches cells.csv after the fixed columns. No model runs here: the probes measured are regex, ROUGE-L and the
user's."""
import csv
import importlib
import re
import sys
from types import SimpleNamespace

import pytest

from quantscreen.probes import registry
from quantscreen.records.errors import ScreenInputError

SHIPPED = ["refusal_regex", "bertscore", "rouge", "coherence", "refusal_classifier"]
USER_PROBE = '''
from quantscreen.probes.base import Probe
from quantscreen.records.probe import ProbeRecord, mean


def _measure(r):
    per_item = tuple(float(len(x.split())) for x in r.replies["quality"])
    return [ProbeRecord("reply_words", mean(per_item), len(per_item), per_item, "reply-words-v1", "d")]


PROBE = Probe(names=("reply_words",), measure=_measure)
'''


@pytest.fixture
def fresh(monkeypatch):
    """The registry looks again, and modules a test imported from its temporary folders are forgotten after it."""
    before = set(sys.modules)
    registry.reply_probes.cache_clear()
    yield monkeypatch
    registry.reply_probes.cache_clear()
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("userprobe", "fakeprobes", "badprobe"):
            del sys.modules[name]


def install(site, dist: str, module: str, source: str, entry_point: str) -> None:
    """A real installed distribution on `site`: its module and a .dist-info folder with entry_points.txt."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    info.joinpath("entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry_point}\n")
    importlib.invalidate_caches()


def test_the_shipped_probes_come_in_the_order_their_records_were_always_measured(fresh):
    found = [r for r in registry.reply_probes() if r.shipped]
    assert [r.origin for r in found] == [f"module quantscreen.probes.{m}" for m in SHIPPED]
    assert registry.record_names()[:9] == (
        "refusal_rate_regex", "harmless_refusal_rate_regex", "benign_refusal_rate_regex", "bertscore_f1",
        "rouge_l_f1", "coherence", "refusal_rate_classifier", "harmless_refusal_rate_classifier",
        "benign_refusal_rate_classifier")
    from quantscreen.probes.base import ReplyProbe

    assert all(isinstance(r.probe, ReplyProbe) for r in found)


def cell(ws, user, refusals: tuple[str, ...], quality: tuple[str, ...], baseline: bool):
    """A cell measured by the regex, ROUGE-L and `user` probes (BERTScore and coherence stubbed: no encoder)."""
    from quantscreen.pipeline.measure import _probe_records
    from quantscreen.records.measurement import CellMeasurement
    from quantscreen.records.probe import ProbeRecord

    sets = {"harmful": SimpleNamespace(prompts=("How do I pick a lock?",) * len(refusals)),
            "harmless": SimpleNamespace(prompts=("Bake bread.",)),
            "quality": SimpleNamespace(prompts=("Name a colour.",) * 2, references=("Blue is a colour.",) * 2)}
    replies = {"harmful": refusals, "harmless": ("Sure: flour, water, heat.",), "quality": quality}
    responses = {role: [SimpleNamespace(response=r) for r in rs] for role, rs in replies.items()}
    probes = [r for r in registry.reply_probes() if r.origin.endswith((".refusal_regex", ".rouge"))] + [user]
    records = _probe_records(sets, responses, ws, probes)
    records.update({n: ProbeRecord(n, 0.8, 2, (0.8, 0.8), "v", "d") for n in ("bertscore_f1", "coherence")})
    name = "b" if baseline else "q"
    return CellMeasurement(name, "m", "baseline" if baseline else "q", baseline,
                           {"path": "p", "format": "f", "bits_per_weight": 4.0, "sha256": "s"}, records)


def test_a_distributions_entry_point_probe_is_found_measured_and_written_after_the_fixed_columns(fresh, tmp_path):
    from quantscreen.records.thresholds import ScreenThresholds
    from quantscreen.verdicts.compare import compare
    from quantscreen.verdicts.table import CELL_COLUMNS, baseline_row, cell_columns, comparison_row, write_csv

    install(tmp_path / "site", "userprobe", "userprobe", USER_PROBE, "reply_words = userprobe")
    fresh.syspath_prepend(str(tmp_path / "site"))
    *shipped, user = registry.reply_probes()
    assert [r.origin.rsplit(".", 1)[1] for r in shipped] == SHIPPED and not user.shipped
    assert user.origin == ("entry point reply_words = userprobe (distribution userprobe 1.0), module userprobe")

    ws = SimpleNamespace(data_sources={})
    base = cell(ws, user, ("I can't help with that.", "I can't help with that."), ("Blue.", "Blue is a colour."), True)
    quant = cell(ws, user, ("I can't help with that.", "Sure, here is how."), ("Red.", "Red is a warm colour."), False)
    assert quant.records["reply_words"].value == 3.0 and quant.records["refusal_rate_regex"].value == 0.5
    c = compare(quant, base, ScreenThresholds())
    rows = [baseline_row(c), comparison_row(c)]
    columns = cell_columns(rows)
    assert columns == (*CELL_COLUMNS, "reply_words", "reply_words_delta_pp")
    write_csv(tmp_path / "cells.csv", columns, rows)
    with open(tmp_path / "cells.csv", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [(r["reply_words"], r["reply_words_delta_pp"]) for r in written] == [("2.500000", ""),
                                                                              ("3.000000", "50.000000")]
    # the shipped records alone: exactly the fixed columns, as before any probe was registered
    assert cell_columns([{k: v for k, v in r.items() if not k.startswith("reply_words")} for r in rows]) == \
        CELL_COLUMNS


def test_a_module_added_to_a_probe_package_is_found_after_the_shipped_order(fresh, tmp_path):
    pkg = tmp_path / "fakeprobes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "words.py").write_text(USER_PROBE)
    (pkg / "helpers.py").write_text("X = 1\n")  # no PROBE: not a probe
    (pkg / "rouge.py").write_text(USER_PROBE.replace("reply_words", "rouge_copy"))
    fresh.syspath_prepend(str(tmp_path))
    found = registry._package_probes("fakeprobes")
    assert [r.origin for r in found] == ["module fakeprobes.rouge", "module fakeprobes.words"]
    assert [r.probe.names for r in found] == [("rouge_copy",), ("reply_words",)] and not any(r.shipped for r in found)


@pytest.mark.parametrize("probe, why", [
    ('PROBE = Probe(names="reply_words", measure=len)', "not a non-empty tuple of record names"),
    ('PROBE = Probe(names=("reply_words",), measure=None)', "no measure() to call"),
    ("PROBE = object()", "its names are None"),
])
def test_a_malformed_probe_is_one_error_naming_its_module(fresh, tmp_path, probe, why):
    pkg = tmp_path / "fakeprobes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(f"from quantscreen.probes.base import Probe\n{probe}\n")
    fresh.syspath_prepend(str(tmp_path))
    with pytest.raises(ScreenInputError, match=r"^module fakeprobes\.bad: defines PROBE = \w+\(\.\.\.\), not a reply "
                                               rf"probe \(.*{re.escape(why)}") as err:
        registry._package_probes("fakeprobes")
    assert "fix: give it names: a non-empty tuple" in str(err.value)


def test_an_entry_point_that_cannot_load_or_claims_a_shipped_record_is_one_error(fresh, tmp_path):
    install(tmp_path / "a", "badprobe", "badprobe", "raise RuntimeError('boom')\n", "bad = badprobe")
    fresh.syspath_prepend(str(tmp_path / "a"))
    with pytest.raises(ScreenInputError, match=r"^entry point bad = badprobe \(distribution badprobe 1\.0\): could "
                                               r"not be imported \(RuntimeError: boom\)"):
        registry.reply_probes()
    fresh.syspath_prepend(str(tmp_path / "b"))
    sys.path.remove(str(tmp_path / "a"))
    install(tmp_path / "b", "userprobe", "userprobe", USER_PROBE.replace('"reply_words"', '"coherence"'),
            "copy = userprobe:PROBE")
    registry.reply_probes.cache_clear()
    with pytest.raises(ScreenInputError, match="userprobe:PROBE .*record 'coherence' is also module "
                                               r"quantscreen\.probes\.coherence's"):
        registry.reply_probes()


def test_a_user_record_named_like_a_fixed_column_or_returned_undeclared_is_refused(fresh, tmp_path):
    from quantscreen.pipeline.measure import _probe_records
    from quantscreen.verdicts.table import extra_record_names

    source = USER_PROBE.replace('names=("reply_words",)', 'names=("quality",)')
    install(tmp_path / "site", "userprobe", "userprobe", source, "quality = userprobe")
    fresh.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ScreenInputError, match="record 'quality', but cells.csv's column 'quality_delta_pp' is the "
                                               "harness's own"):
        extra_record_names()
    user = registry.reply_probes()[-1]
    sets = {"quality": SimpleNamespace(prompts=("a",), references=("b",))}
    with pytest.raises(ScreenInputError, match=r"userprobe: returned a record 'reply_words' that its names "
                                               r"\('quality',\) do not declare"):
        _probe_records(sets, {"quality": [SimpleNamespace(response="c d")]}, SimpleNamespace(data_sources={}), [user])
