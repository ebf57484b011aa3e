"""The regime scatter PNG and the HTML summary: valid, deterministic to the byte, escaped, and complete."""
from __future__ import annotations

import math
import re

import matplotlib.image
import pytest

from quantscreen.records.thresholds import ScreenThresholds
from quantscreen.report.html import format_value, summary_html
from quantscreen.report.scatter import DPI, FIGSIZE_IN, NO_CELLS_NOTE, UNNAMED_NOTE, regime_figure, regime_scatter

T = ScreenThresholds()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POINTS = [
    {"model": "qwen", "quant": "Q2_K", "quality_delta_pp": -1.2, "refusal_delta_pp": -25.0,
     "refusal_rate_judge_delta_pp": -31.0, "regime": "hidden_danger"},
    {"model": "qwen", "quant": "Q3_K_M", "quality_delta_pp": -4.0, "refusal_delta_pp": -14.0,
     "refusal_rate_judge_delta_pp": None, "regime": "near_hidden_danger"},
    {"model": "smol", "quant": "Q2_K", "quality_delta_pp": -12.0, "refusal_delta_pp": 9.0, "regime": "over_refusal"},
    {"model": "smol", "quant": "Q4_K_M", "quality_delta_pp": -0.5, "refusal_delta_pp": 2.0,
     "refusal_rate_judge_delta_pp": 26.0, "regime": "measurement_divergence"},
    {"model": "smol", "quant": "Q8_0", "quality_delta_pp": 0.1, "refusal_delta_pp": -0.5, "regime": "neutral"},
]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


def _offsets(ax) -> list[tuple[float, float]]:
    return sorted(tuple(map(float, xy)) for c in ax.collections for xy in c.get_offsets())


def test_scatter_writes_a_png_of_figsize_times_dpi(tmp_path):
    path = tmp_path / "out" / "regimes.png"
    regime_scatter(POINTS, T, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (round(FIGSIZE_IN[1] * DPI), round(FIGSIZE_IN[0] * DPI))
    assert [p.name for p in path.parent.iterdir()] == ["regimes.png"]  # no temporary file left behind


def test_scatter_bytes_are_identical_across_writes(tmp_path):
    regime_scatter(POINTS, T, tmp_path / "a.png")
    regime_scatter(POINTS, T, tmp_path / "b.png")
    regime_scatter(POINTS[:2], T, tmp_path / "c.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in (tmp_path / "a.png").read_bytes()  # no tool version stamped into the bytes
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_scatter_draws_every_regex_and_judge_point_labelled_and_named_zones():
    fig = regime_figure(POINTS, T)
    ax = fig.axes[0]
    regex = [(p["quality_delta_pp"], p["refusal_delta_pp"]) for p in POINTS]
    judge = [(p["quality_delta_pp"], p["refusal_rate_judge_delta_pp"]) for p in POINTS
             if p.get("refusal_rate_judge_delta_pp") is not None]
    assert _offsets(ax) == sorted(regex + judge)
    connectors = ax.lines[2:]  # after the two dashed zero lines
    assert sorted((float(line.get_xdata()[0]), *map(float, line.get_ydata())) for line in connectors) == sorted(
        (p["quality_delta_pp"], p["refusal_delta_pp"], p["refusal_rate_judge_delta_pp"]) for p in POINTS
        if p.get("refusal_rate_judge_delta_pp") is not None)
    texts = _texts(fig)
    for p in POINTS:
        assert f"{p['model']}-{p['quant']}" in texts
    for zone in ("hidden danger", "near-hidden danger", "over-refusal"):
        assert any(t.startswith(zone + "\n") for t in texts), zone
    assert ax.get_xlabel() == "quality delta (pp, bertscore_f1)"
    assert ax.get_ylabel() == "refusal delta (pp)"
    assert len(ax.patches) == 3


def test_scatter_limits_hold_extreme_points_and_every_zone_boundary():
    far = [{"model": "m", "quant": "a", "quality_delta_pp": 100.0, "refusal_delta_pp": -100.0, "regime": "neutral"},
           {"model": "m", "quant": "b", "quality_delta_pp": -100.0, "refusal_delta_pp": 100.0, "regime": "neutral",
            "refusal_rate_judge_delta_pp": -100.0}]
    for points in (far, []):
        ax = regime_figure(points, T).axes[0]
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        xs = [p["quality_delta_pp"] for p in points] + [T.hidden_danger_quality_min_pp, T.near_hidden_quality_min_pp,
                                                        T.over_refusal_quality_max_pp, 0.0]
        ys = [p["refusal_delta_pp"] for p in points] + [T.refusal_collapse_pp, T.over_refusal_refusal_min_pp, 0.0]
        assert x0 < min(xs) and max(xs) < x1
        assert y0 < min(ys) and max(ys) < y1


def test_scatter_with_no_points_draws_zones_and_says_so(tmp_path):
    fig = regime_figure([], T)
    assert NO_CELLS_NOTE in _texts(fig)
    assert len(fig.axes[0].patches) == 3
    regime_scatter([], T, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC


def test_scatter_skips_nan_and_missing_deltas_and_counts_them(tmp_path):
    broken = [{"model": "m", "quant": "nan", "quality_delta_pp": math.nan, "refusal_delta_pp": -50.0,
               "regime": "neutral"},
              {"model": "m", "quant": "none", "quality_delta_pp": -1.0, "refusal_delta_pp": None, "regime": "neutral"}]
    fig = regime_figure(POINTS[:1] + broken, T)
    ax = fig.axes[0]
    assert len(_offsets(ax)) == 2  # the one good cell: its regex and its judge marker
    assert all(math.isfinite(v) for v in ax.get_xlim() + ax.get_ylim())
    assert ax.get_ylim()[0] > -50.0  # the skipped cell's refusal delta did not stretch the axes
    assert any(t.startswith("2 cell(s)") for t in _texts(fig))
    assert "m-nan" not in _texts(fig)
    regime_scatter(POINTS[:1] + broken, T, tmp_path / "nan.png")
    assert (tmp_path / "nan.png").read_bytes()[:8] == PNG_MAGIC


# 30 neutral cells packed within a few pp of the origin, and a hidden and a near-hidden cell
CROWD = [{"model": f"m{i}", "quant": "Q8_0", "quality_delta_pp": (i % 6) * 0.3 - 0.8,
          "refusal_delta_pp": (i // 6) * 0.6 - 1.5, "refusal_rate_judge_delta_pp": (i // 6) * 0.6 - 1.0,
          "regime": "neutral"} for i in range(30)] + POINTS[:2]


def test_scatter_names_every_cell_outside_the_neutral_cluster_and_no_label_overlaps_in_the_crowd(tmp_path):
    fig = regime_figure(CROWD, T)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts if t.get_text().startswith(("m", "qwen"))}
    assert {"qwen-Q2_K", "qwen-Q3_K_M"} <= set(labels)  # hidden and near-hidden cells are always named
    boxes = list(labels.values())
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    named = sum(name.startswith("m") for name in labels)
    assert 0 < named < 30 and f"{30 - named} {UNNAMED_NOTE}" in _texts(fig)
    regime_scatter(CROWD, T, tmp_path / "a.png")
    regime_scatter(CROWD, T, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_scatter_rejects_an_unknown_regime():
    with pytest.raises(ValueError, match="hidden-danger"):
        regime_figure([dict(POINTS[0], regime="hidden-danger")], T)


ACTIONS = [
    {"model": "<script>alert(1)</script>", "quant": "Q2_K", "regime": "hidden_danger",
     "action": "reject_hidden_danger", "quant_level_role": "not_blanket_safe", "quality_delta_pp": -1.23456,
     "refusal_rate_regex_delta_pp": -25.0, "refusal_rate_judge_delta_pp": None},
    {"model": "smol", "quant": "Q8_0", "regime": "neutral", "action": "conservative_floor_candidate",
     "quant_level_role": "model_specific_review_only", "quality_delta_pp": 0.1, "refusal_rate_regex_delta_pp": -0.5,
     "refusal_rate_judge_delta_pp": 1.5},
]
SECTIONS = [
    ("Refusal flips", "Prompts whose refusal changed & why it matters.", ["model", "lost", "p", "powered"],
     [{"model": "smol", "lost": 3, "p": 0.0123456, "powered": True},
      {"model": "qwen", "lost": 0, "p": math.nan, "powered": False}]),
    ("Probe statistics", "One row per probe.", ["probe", "value"], [{"probe": "rtsi", "value": None}]),
]


def _summary(path, scatter_png: str | None = "regimes.png") -> str:
    summary_html(path, title="Screen <run>", verdict_counts={"passed": 12, "failed": 2, "skipped": 3},
                 actions=ACTIONS, sections=SECTIONS, scatter_png=scatter_png, notes=["judge off <b>"])
    return path.read_text(encoding="utf-8")


def test_html_escapes_values_from_user_files(tmp_path):
    text = _summary(tmp_path / "s.html")
    assert "<script" not in text and "<b>judge" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Screen &lt;run&gt;" in text and "changed &amp; why" in text


def test_html_is_self_contained(tmp_path):
    text = _summary(tmp_path / "s.html")
    assert not re.search(r"https?://|<link|<script|\bsrc=\"(?!regimes\.png)", text)
    with pytest.raises(ValueError):
        summary_html(tmp_path / "x.html", title="t", verdict_counts={}, actions=[], sections=[],
                     scatter_png="https://example.org/a.png", notes=[])


def test_html_lists_counts_every_action_row_and_sections_in_order(tmp_path):
    text = _summary(tmp_path / "s.html")
    for name, n in (("passed", 12), ("failed", 2), ("skipped", 3)):
        assert f"{name}: <b>{n}</b>" in text
    actions_table = text.split("<h2>Deployment actions</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", actions_table)
    assert len(rows) == 1 + len(ACTIONS)
    assert "<th>refusal_rate_judge_delta_pp</th>" in rows[0]
    assert rows[1].startswith("<td>&lt;script&gt;") and '<td class="hidden">hidden_danger</td>' in rows[1]
    assert "<td>conservative_floor_candidate</td>" in rows[2] and '<td class="num">1.5</td>' in rows[2]
    assert '<td class="num">-1.235</td>' in rows[1]  # 4 significant digits
    assert text.index("<h2>Refusal flips</h2>") < text.index("<h2>Probe statistics</h2>")
    assert "<td>yes</td>" in text and "<td>no</td>" in text and '<td class="num">nan</td>' in text
    assert "<li>judge off &lt;b&gt;</li>" in text


def test_html_omits_judge_column_when_no_row_has_it(tmp_path):
    path = tmp_path / "s.html"
    summary_html(path, title="t", verdict_counts={}, actions=[{k: v for k, v in a.items()
                                                               if k != "refusal_rate_judge_delta_pp"}
                                                              for a in ACTIONS],
                 sections=[], scatter_png=None, notes=[])
    text = path.read_text(encoding="utf-8")
    assert "refusal_rate_judge_delta_pp" not in text and "<th>refusal_rate_regex_delta_pp</th>" in text


def test_html_img_tag_only_when_a_png_is_given(tmp_path):
    with_png = _summary(tmp_path / "with.html")
    assert with_png.count("<img") == 1 and '<img src="regimes.png"' in with_png
    assert "<img" not in _summary(tmp_path / "without.html", scatter_png=None)


def test_html_bytes_are_identical_across_writes(tmp_path):
    _summary(tmp_path / "a.html")
    _summary(tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]


@pytest.mark.parametrize("value,text", [(0.0123456, "0.01235"), (1234567.0, "1.235e+06"), (math.nan, "nan"),
                                        (None, ""), (True, "yes"), (False, "no"), (7, "7"), ("Q4_K_M", "Q4_K_M")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_html_headline_names_cells_that_cannot_be_certified_first(tmp_path):
    from quantscreen.report.outputs import headline

    actions = ACTIONS + [{"model": "smol", "quant": "Q4_0", "regime": "neutral", "action": "cannot_certify",
                          "action_reason": "underpowered: 8 prompts <too few>"}]
    cells = [{"cell_id": "smol-baseline", "is_baseline": True, "canary_n": 16, "canary_flips": 0,
              "canary_text_differs": 1, "canary_composition": "reversed"}]
    lines = headline(actions, cells, ["two.jsonl: holds 2 harmful prompt(s) but 50 were asked for"])
    assert lines == ["NOT CERTIFIED: smol-Q4_0: underpowered: 8 prompts <too few>",
                     "determinism canary of smol-baseline: 0 refusal flip(s) and 1 text difference(s) over 16 harmful "
                     "prompts generated twice (reversed)",
                     "WARNING: two.jsonl: holds 2 harmful prompt(s) but 50 were asked for"]
    path = tmp_path / "s.html"
    summary_html(path, title="t", verdict_counts={}, actions=actions, sections=[], scatter_png=None, notes=[],
                 headline=lines)
    text = path.read_text(encoding="utf-8")
    assert text.index('<ul class="headline">') < text.index("<h2>Deployment actions</h2>")
    assert '<li class="uncertified">NOT CERTIFIED: smol-Q4_0: underpowered: 8 prompts &lt;too few&gt;</li>' in text
    assert '<td class="uncertified">cannot_certify</td>' in text and "<th>action_reason</th>" in text
