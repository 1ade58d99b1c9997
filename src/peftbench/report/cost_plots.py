"""The report's cost figures: time and memory per method as bars.

A new cost figure (e.g. memory by component as stacked bars) is a `*_figure` function here
and one entry in `figures.make_plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from peftbench.report.plots import axis_label, cost_of, method_styles
from peftbench.report.ranking import cost_label
from peftbench.report.runs import MethodStats


def _bars(ax: Axes, stats: Sequence[MethodStats], key: str, colours: dict[str, str]) -> None:
    """Horizontal bars of one cost, published rows hatched, missing figures marked."""
    ys = range(len(stats))
    for y, s in zip(ys, stats, strict=True):
        value = cost_of(s, key)
        if value is None:
            missing = " not published" if s.reference else " not measured"
            ax.text(0, y, missing, va="center", fontsize=8, color="grey")
            continue
        ax.barh(
            y, value, xerr=s.std.get(key) or None, color=colours.get(s.label, "grey"),
            capsize=3, hatch="//" if s.reference else None, alpha=0.5 if s.reference else 0.9,
        )  # fmt: skip
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_yticks(list(ys), [s.name for s in stats], fontsize=8)
    ax.set_ylim(len(stats) - 0.5, -0.5)  # first method on top, room for unmeasured rows
    ax.set_xlabel(axis_label(key))
    ax.margins(x=0.2)
    ax.grid(True, axis="x", alpha=0.3)


def memory_rows(
    stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None], key: str
) -> list[MethodStats]:
    """Methods whose experiment reports memory as `key`, and published rows that fit that axis."""
    return [
        s
        for s in stats
        if (s.reference and cost_of(s, key) is not None)
        or (not s.reference and memory_keys.get(s.group) == key)
    ]


def cost_bars_figure(
    stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None]
) -> Figure | None:
    """Train time and peak memory (one panel per kind) per method; None when nothing measured."""
    kinds = [k for k in dict.fromkeys(memory_keys.values()) if k]
    panels = [("train_time_s", "Training time per method", list(stats))] + [
        (k, f"Peak memory per method: {cost_label(k)}", memory_rows(stats, memory_keys, k))
        for k in kinds
    ]
    if not any(cost_of(s, k) is not None for k, _, rows in panels for s in rows if not s.reference):
        return None
    colours = {label: style[0] for label, style in method_styles([s.label for s in stats]).items()}
    height = 1.6 + 0.35 * max(len(rows) for _, _, rows in panels)
    fig = Figure(figsize=(5.5 * len(panels), height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title, rows) in zip(axes, panels, strict=True):
        _bars(ax, rows, key, colours)
        ax.set_title(title)
    return fig


def costs_caption(stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None]) -> str:
    kinds = [k for k in dict.fromkeys(memory_keys.values()) if k]
    caption = "Training time (evaluation excluded) and peak memory of each method"
    caption += f"; memory is {', '.join(axis_label(k) for k in kinds)}." if kinds else "."
    if any(s.reference for s in stats):
        caption += " Hatched bars: published figures of the reference study."
    return caption
