"""The report's cost figures: time and memory per method as bars, and tensor memory by
component as stacked bars.

A new cost figure is a `*_figure` function here and one entry in `figures.make_plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from peftbench.report.plots import axis_label, cost_of, method_styles
from peftbench.report.ranking import cost_label
from peftbench.report.runs import MethodStats
from peftbench.results import MEMORY_COMPONENTS as COMPONENTS


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


# One colour per component, the same in every report (tab10, colour-blind-safe order).
COMPONENT_COLOURS = dict(
    zip(COMPONENTS, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"], strict=True)
)
PHASE_TITLES = {"train": "Training step peak", "eval": "Evaluation peak"}


def memory_components_figure(stats: Sequence[MethodStats]) -> Figure | None:
    """Tensor memory at the train and eval peaks per method, stacked by component (MiB);
    None when no method recorded it."""
    rows = [s for s in stats if not s.reference and s.memory_components]
    if not rows:
        return None
    phases = [p for p in PHASE_TITLES if any(p in s.memory_components for s in rows)]
    fig = Figure(figsize=(5.5 * len(phases), 1.8 + 0.4 * len(rows)), layout="constrained")
    axes = fig.subplots(1, len(phases), squeeze=False)[0]
    for ax, phase in zip(axes, phases, strict=True):
        for y, s in enumerate(rows):
            parts = s.memory_components.get(phase)
            if parts is None:
                ax.text(0, y, " not measured", va="center", fontsize=8, color="grey")
                continue
            left = 0.0
            for component in COMPONENTS:
                width = parts[component]
                label = component.replace("_", " ") if y == 0 else None
                ax.barh(y, width, left=left, color=COMPONENT_COLOURS[component], label=label)
                left += width
            ax.text(left, y, f" {left:,.0f}", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), [s.name for s in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel("tensor memory (MiB)")
        ax.set_title(PHASE_TITLES[phase])
        ax.margins(x=0.2)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    return fig


MEMORY_COMPONENTS_CAPTION = (
    "Live tensor memory (MiB = 2**20 bytes) at each phase's peak, by component: frozen "
    "weights (4-bit weights at their stored size), trainable weights, gradients, optimizer "
    "state, activations kept for backward, and temporaries; means over successful seeds. "
    "Process RSS and the CUDA allocator's reserve come on top."
)
