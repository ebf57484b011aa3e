"""Regime scatter: each quantized cell at (quality delta, refusal delta) over the regime zones of SPEC §3.

The zones are drawn from the run's own ScreenThresholds, so the picture and the verdicts cannot disagree about
where a boundary lies. Every point is a row of cells.csv. Matplotlib is imported when a figure is drawn, not at
import time, and only through Figure + FigureCanvasAgg, so no pyplot state or global backend is touched.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from quantscreen.records.atomic import write_atomic
from quantscreen.verdicts.regimes import DIVERGENCE, HIDDEN, NEAR, NEUTRAL, OVER

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from quantscreen.records.thresholds import ScreenThresholds

FIGSIZE_IN = (8.0, 6.0)
DPI = 120
REGIME_COLOURS = {HIDDEN: "#d62728", NEAR: "#ff7f0e", OVER: "#9467bd", DIVERGENCE: "#d4b000", NEUTRAL: "#7f7f7f"}
NO_CELLS_NOTE = "no quantized cells"
UNNAMED_NOTE = "neutral cell(s) in the crowded centre not named (deployment_actions.csv lists every cell)"
_ROOM_PP = 10.0  # each zone gets at least this much room beyond its boundary, so its name fits inside it
_MARKER_PT2 = 36.0  # marker area in pt^2 (matplotlib's `s`)
# Where a point's label may go, in order of preference: (dx, dy) in points, horizontal and vertical alignment.
_LABEL_OFFSETS = [((5, 3), "left", "bottom"), ((5, -3), "left", "top"), ((-5, 3), "right", "bottom"),
                  ((-5, -3), "right", "top")] + [
    option for k in (1, 2, 3) for option in (((5, 3 + 7 * k), "left", "bottom"), ((5, -3 - 7 * k), "left", "top"))]


def regime_figure(points: list[dict], t: ScreenThresholds) -> Figure:
    """The scatter as a Figure, apart from the file write so tests can check what is drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn: list[tuple[str, float, float, float | None, str]] = []
    skipped = 0
    for p in points:
        if p["regime"] not in REGIME_COLOURS:
            raise ValueError(f"cell {p.get('model')}-{p.get('quant')}: unknown regime {p['regime']!r}; "
                             f"expected one of {', '.join(REGIME_COLOURS)}")
        quality, refusal = _finite(p["quality_delta_pp"]), _finite(p["refusal_delta_pp"])
        if quality is None or refusal is None:
            skipped += 1
            continue
        judge = _finite(p.get("refusal_rate_judge_delta_pp"))
        drawn.append((f"{p['model']}-{p['quant']}", quality, refusal, judge, p["regime"]))

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.12)
    ax = fig.add_subplot()
    xlim, ylim = _limits(drawn, t)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8, alpha=0.6, zorder=1)
    ax.axvline(0.0, color="black", linestyle="--", linewidth=0.8, alpha=0.6, zorder=1)
    zones = _draw_zones(ax, t, xlim, ylim)
    obstacles = _draw_markers(ax, drawn)
    # Text goes where it covers the fewest markers and earlier text, measured with the real renderer.
    renderer = canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    for name, colour, xy_options, box in zones:
        obstacles.append(_place(ax, renderer, name, xy_options, obstacles, box, fontsize=7, color=colour, zorder=1))
    # Cells outside the neutral cluster are named first and always; a neutral cell only where its name fits without
    # covering a marker or another name, so the crowded centre stays readable (deployment_actions.csv lists them all).
    unnamed = 0
    for label, quality, refusal, _, regime in sorted(drawn, key=lambda d: d[4] == NEUTRAL):
        options = [((quality, refusal), offset) for offset in _LABEL_OFFSETS]
        box = _place(ax, renderer, label, options, obstacles, frame, optional=regime == NEUTRAL, fontsize=6, zorder=5)
        if box is None:
            unnamed += 1
        else:
            obstacles.append(box)
    _draw_legend(ax, drawn)

    ax.set_xlabel(f"quality delta (pp, {t.quality_metric})")
    ax.set_ylabel("refusal delta (pp)")
    ax.set_title("Quantized cells against their baseline, by regime", fontsize=10)
    if not drawn:
        ax.text(0.5, 0.5, NO_CELLS_NOTE if not points else "no cell has both deltas", transform=ax.transAxes,
                ha="center", va="center", fontsize=11, color="0.3")
    if skipped:
        fig.text(0.01, 0.01, f"{skipped} cell(s) with a missing or NaN delta not drawn", fontsize=7,
                 ha="left", va="bottom", color="0.3")
    if unnamed:
        fig.text(0.99, 0.01, f"{unnamed} {UNNAMED_NOTE}", fontsize=7, ha="right", va="bottom", color="0.3")
    return fig


def regime_scatter(points: list[dict], t: ScreenThresholds, path: Path) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a PNG; no timestamp in the bytes."""
    buf = io.BytesIO()
    regime_figure(points, t).savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    write_atomic(path, buf.getvalue())


def _finite(value) -> float | None:
    """None for a missing, NaN or infinite delta: such a cell has no place on the axes."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _limits(drawn: list[tuple], t: ScreenThresholds) -> tuple[tuple[float, float], tuple[float, float]]:
    xs = [0.0, t.hidden_danger_quality_min_pp + _ROOM_PP, t.near_hidden_quality_min_pp,
          t.over_refusal_quality_max_pp - _ROOM_PP]
    ys = [0.0, t.refusal_collapse_pp - _ROOM_PP, t.over_refusal_refusal_min_pp + _ROOM_PP]
    for _, quality, refusal, judge, _ in drawn:
        xs.append(quality)
        ys.extend([refusal] if judge is None else [refusal, judge])
    x_span, y_span = max(xs) - min(xs), max(ys) - min(ys)
    # More room on the right: point labels run rightwards from their point.
    return (min(xs) - 0.05 * x_span, max(xs) + 0.15 * x_span), (min(ys) - 0.06 * y_span, max(ys) + 0.06 * y_span)




def _draw_zones(ax: Axes, t: ScreenThresholds, xlim: tuple[float, float], ylim: tuple[float, float]) -> list[tuple]:
    """Shade each zone; return (text, colour, placement options, zone box) for naming it once markers are down."""
    from matplotlib.patches import Rectangle

    (x_lo, x_hi), (y_lo, y_hi) = xlim, ylim
    hd, nh, collapse = t.hidden_danger_quality_min_pp, t.near_hidden_quality_min_pp, t.refusal_collapse_pp
    orq, orr = t.over_refusal_quality_max_pp, t.over_refusal_refusal_min_pp
    specs = [  # name, rule, regime, x0, x1, y0, y1
        ("hidden danger", f"quality ≥ {hd:g}, refusal < {collapse:g}", HIDDEN, hd, x_hi, y_lo, collapse),
        ("near-hidden danger", f"{nh:g} ≤ quality < {hd:g}, refusal < {collapse:g}", NEAR, nh, hd, y_lo, collapse),
        ("over-refusal", f"quality ≤ {orq:g}, refusal ≥ {orr:g}", OVER, x_lo, orq, orr, y_hi),
    ]
    zones = []
    for name, rule, regime, x0, x1, y0, y1 in specs:
        if x1 <= x0 or y1 <= y0:  # e.g. near_hidden_quality_min_pp == hidden_danger_quality_min_pp: no band
            continue
        colour = REGIME_COLOURS[regime]
        patch = ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=colour, alpha=0.12, edgecolor=colour,
                                       linewidth=0.6, zorder=0))
        outer_y, inner_y = (y0, y1) if y0 == y_lo else (y1, y0)  # outer: the side on the axes' edge
        up = 1 if outer_y == y0 else -1
        va_outer, va_inner = ("bottom", "top") if up == 1 else ("top", "bottom")
        if regime == NEAR:  # a narrow band: its name stands upright along it
            mid = (x0 + x1) / 2
            options = [((mid, outer_y), ((0, 4 * up), "center", va_outer, 90)),
                       ((mid, inner_y), ((0, -4 * up), "center", va_inner, 90))]
        else:
            outer_x, inner_x = (x1, x0) if x1 == x_hi else (x0, x1)
            right = -1 if outer_x == x1 else 1
            ha_outer, ha_inner = ("right", "left") if right == -1 else ("left", "right")
            options = [((x, y), ((4 * sx, 4 * sy), ha, va, 0))
                       for x, sx, ha in ((outer_x, right, ha_outer), (inner_x, -right, ha_inner))
                       for y, sy, va in ((outer_y, up, va_outer), (inner_y, -up, va_inner))]
        zones.append((f"{name}\n{rule}", colour, options, patch.get_window_extent()))
    return zones


def _draw_markers(ax: Axes, drawn: list[tuple]) -> list:
    """Filled markers for the regex delta, hollow ones for the judge's; returns each marker's box on the canvas."""
    from matplotlib.transforms import Bbox

    for regime, colour in REGIME_COLOURS.items():
        mine = [d for d in drawn if d[4] == regime]
        judged = [d for d in mine if d[3] is not None]
        for _, quality, refusal, judge, _ in judged:
            ax.plot([quality, quality], [refusal, judge], color="0.55", linewidth=0.6, zorder=2)
        if judged:
            ax.scatter([d[1] for d in judged], [d[3] for d in judged], s=_MARKER_PT2, facecolors="none",
                       edgecolors=colour, linewidths=1.2, zorder=3)
        if mine:
            ax.scatter([d[1] for d in mine], [d[2] for d in mine], s=_MARKER_PT2, color=colour, edgecolors="black",
                       linewidths=0.4, zorder=4)
    radius_px = math.sqrt(_MARKER_PT2) / 2 * DPI / 72
    centres = [(q, r) for _, q, r, _, _ in drawn] + [(q, j) for _, q, _, j, _ in drawn if j is not None]
    return [Bbox.from_extents(x - radius_px, y - radius_px, x + radius_px, y + radius_px)
            for x, y in (ax.transData.transform(centres) if centres else [])]


def _place(ax: Axes, renderer, text: str, options: list[tuple], obstacles: list, frame, optional: bool = False,
           **style):
    """Annotate at the first option overlapping the fewest obstacles and staying inside `frame`; return its box.
    `optional`: only where some option overlaps nothing and stays inside, else draw nothing and return None."""
    best = None
    for xy, ((dx, dy), ha, va, *rotation) in options:
        artist = ax.annotate(text, xy=xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                             rotation=rotation[0] if rotation else 0, **style)
        box = artist.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        cost = sum(box.overlaps(o) for o in obstacles) + (0 if inside else 2)
        if best is None or cost < best[0]:
            if best is not None:
                best[1].remove()
            best = (cost, artist, box)
        else:
            artist.remove()
        if cost == 0:
            break
    if optional and best[0] > 0:
        best[1].remove()
        return None
    return best[2]


def _draw_legend(ax: Axes, drawn: list[tuple]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="", marker="o", markerfacecolor=colour, markeredgecolor="black",
                      markeredgewidth=0.4, label=regime.replace("_", " "))
               for regime, colour in REGIME_COLOURS.items() if any(d[4] == regime for d in drawn)]
    if any(d[3] is not None for d in drawn):
        handles += [Line2D([], [], linestyle="", marker="o", color="0.3", label="primary instrument's refusal delta"),
                    Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor="0.3",
                           label="second screening instrument's")]
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.9)
