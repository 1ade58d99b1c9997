"""The report's figures: trade-off scatter plots with their Pareto fronts, learning curves, costs.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas directly, never
through pyplot, so drawing needs no display and changes no global backend. Each figure is
saved as PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from peftbench.report.columns import COLUMNS_BY_KEY, PUBLISHED_MEMORY_KEY
from peftbench.report.recommend import ACCURACY, cost_label, pareto_front
from peftbench.report.runs import LearningCurve, MethodStats

GPU_MEMORY_KEYS = ("cuda_peak_allocated_mb", "cuda_peak_reserved_mb", "nvml_peak_used_mb")
LINESTYLES = ("-", "--", ":", "-.")  # one per experiment in the learning curves
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class Plot:
    """One saved figure: where its PNG and SVG are and what it shows."""

    key: str
    title: str
    caption: str
    png: Path
    svg: Path


def axis_label(key: str) -> str:
    """The axis label of a figure: its COLUMNS label, which carries the unit."""
    if key == "trainable_params":
        return "trainable parameters (count, log scale)"
    return COLUMNS_BY_KEY[key].label


def _colors(labels: Sequence[str]) -> dict[str, str]:
    """One colour per method label, stable in order of first appearance."""
    unique = list(dict.fromkeys(labels))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(unique)}


def _save(fig: Figure, out_dir: Path, key: str, title: str, caption: str) -> Plot:
    """Write a figure as PNG and SVG under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{key}.png", out_dir / f"{key}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg, metadata={"Date": None})
    return Plot(key, title, caption, png, svg)


def _cost_of(stats: MethodStats, cost_key: str) -> float | None:
    """A method's cost figure; published rows give their GPU memory for any GPU memory axis."""
    if stats.reference and cost_key in GPU_MEMORY_KEYS:
        return stats.mean.get(PUBLISHED_MEMORY_KEY)
    return stats.mean.get(cost_key)


def _scatter_axes(ax: Axes, stats: Sequence[MethodStats], cost_key: str) -> None:
    """Points, error bars, labels and one Pareto front per experiment."""
    colors = _colors([s.label for s in stats])
    groups = list(dict.fromkeys(s.group for s in stats if not s.reference))
    scale = 100.0
    for gi, group in enumerate(groups):
        members = [s for s in stats if s.group == group and not s.reference]
        points = {
            s.name: {ACCURACY: s.mean.get(ACCURACY), cost_key: _cost_of(s, cost_key)}
            for s in members
        }
        front = set(pareto_front(points, [ACCURACY, cost_key]))
        marker = MARKERS[gi % len(MARKERS)]
        for s in members:
            x, y = points[s.name][cost_key], points[s.name][ACCURACY]
            if x is None or y is None:
                continue
            on_front = s.name in front
            ax.errorbar(
                x,
                scale * y,
                yerr=scale * s.std[ACCURACY] if ACCURACY in s.std else None,
                xerr=s.std.get(cost_key),
                fmt=marker,
                color=colors[s.label],
                markersize=9 if on_front else 6,
                markeredgecolor="black" if on_front else colors[s.label],
                alpha=1.0 if on_front else 0.55,
                capsize=3,
                zorder=3,
            )
            ax.annotate(
                s.name, (x, scale * y), textcoords="offset points", xytext=(6, 5), fontsize=8
            )
        ordered = sorted((points[n][cost_key], points[n][ACCURACY]) for n in front)
        if ordered:
            xs, ys = zip(*ordered, strict=True)
            ax.plot(xs, [scale * y for y in ys], "--", color="black", linewidth=1, zorder=2)
    for s in stats:
        x, y = _cost_of(s, cost_key), s.mean.get(ACCURACY)
        if not s.reference or x is None or y is None:
            continue
        ax.plot(
            x,
            scale * y,
            "*",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor=colors[s.label],
            zorder=3,
        )
        ax.annotate(
            f"{s.label} (published)",
            (x, scale * y),
            textcoords="offset points",
            xytext=(6, -10),
            fontsize=8,
            style="italic",
        )


def _scatter_legend(ax: Axes, stats: Sequence[MethodStats]) -> None:
    """Legend for marker meanings, which are the same in every scatter plot."""
    handles = [
        Line2D([], [], linestyle="--", color="black", label="Pareto front"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="grey",
            markeredgecolor="black",
            markersize=9,
            label="Pareto-optimal",
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="grey",
            alpha=0.55,
            markersize=6,
            label="dominated",
        ),
    ]
    if any(s.reference for s in stats):
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                linestyle="",
                markerfacecolor="none",
                markeredgecolor="grey",
                markersize=11,
                label="published (reference study)",
            )
        )
    groups = list(dict.fromkeys(s.group for s in stats if not s.reference))
    if len(groups) > 1:
        handles += [
            Line2D([], [], marker=MARKERS[i % len(MARKERS)], linestyle="", color="grey", label=g)
            for i, g in enumerate(groups)
        ]
    ax.legend(handles=handles, fontsize=8, loc="best")


def scatter_plot(
    stats: Sequence[MethodStats], cost_key: str, out_dir: Path, *, log_x: bool = False
) -> Plot | None:
    """Accuracy against one cost with the Pareto front dashed; None when nothing has both."""
    measured = [
        s
        for s in stats
        if not s.reference and s.mean.get(ACCURACY) is not None and s.mean.get(cost_key) is not None
    ]
    if not measured:
        return None
    shown = [s for s in stats if s in measured or (s.reference and _cost_of(s, cost_key))]
    what = axis_label(cost_key).split(" (")[0]
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    _scatter_axes(ax, shown, cost_key)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(cost_key))
    ax.set_ylabel(COLUMNS_BY_KEY[ACCURACY].label)
    ax.set_title(f"Accuracy vs {what}")
    ax.grid(True, which="major", alpha=0.3)
    _scatter_legend(ax, shown)
    key = f"accuracy_vs_{cost_key}"
    caption = (
        f"Test accuracy against {axis_label(cost_key)}. Up and to the left is better; the "
        "dashed line joins the Pareto-optimal measured methods of each experiment."
    )
    if any(s.reference for s in shown):
        caption += " Hollow stars: published figures of the reference study (not measured here)."
    return _save(fig, out_dir, key, f"Accuracy vs {what}", caption)


def learning_curves_plot(curves: Sequence[LearningCurve], out_dir: Path) -> Plot | None:
    """Eval accuracy and train loss per epoch, one line per method; None without epochs."""
    curves = [c for c in curves if c.epochs]
    if not curves:
        return None
    colors = _colors([c.label for c in curves])
    groups = list(dict.fromkeys(c.group for c in curves))
    styles = {g: LINESTYLES[i % len(LINESTYLES)] for i, g in enumerate(groups)}
    fig = Figure(figsize=(11.0, 4.5), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for c in curves:
        acc = [
            (e, 100 * a, 100 * (s or 0.0))
            for e, a, s in zip(c.epochs, c.accuracy, c.accuracy_std, strict=True)
            if a is not None
        ]
        if acc:
            xs, ys, errs = zip(*acc, strict=True)
            acc_ax.plot(xs, ys, styles[c.group], marker="o", color=colors[c.label], label=c.name)
            if any(errs):
                low = [y - e for y, e in zip(ys, errs, strict=True)]
                high = [y + e for y, e in zip(ys, errs, strict=True)]
                acc_ax.fill_between(xs, low, high, color=colors[c.label], alpha=0.15)
        loss = [(e, v) for e, v in zip(c.epochs, c.train_loss, strict=True) if v is not None]
        if loss:
            xs, ys = zip(*loss, strict=True)
            loss_ax.plot(xs, ys, styles[c.group], marker="o", color=colors[c.label], label=c.name)
    acc_ax.set(xlabel="epoch", ylabel="eval accuracy (%)", title="Eval accuracy per epoch")
    loss_ax.set(xlabel="epoch", ylabel="mean train loss (nats)", title="Train loss per epoch")
    for ax in (acc_ax, loss_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    caption = (
        "Test-split accuracy after each epoch and mean training loss over each epoch; "
        "lines are means over successful seeds, shaded bands ± one sample std."
    )
    return _save(fig, out_dir, "learning_curves", "Learning curves", caption)


def _bars(ax: Axes, stats: Sequence[MethodStats], key: str, colors: dict[str, str]) -> None:
    """Horizontal bars of one cost, published rows hatched, missing figures marked."""
    names = [s.name for s in stats]  # published rows are named "X (published)"
    values = [_cost_of(s, key) for s in stats]
    ys = range(len(stats))
    for y, s, value in zip(ys, stats, values, strict=True):
        if value is None:
            missing = " not published" if s.reference else " not measured"
            ax.text(0, y, missing, va="center", fontsize=8, color="grey")
            continue
        ax.barh(
            y,
            value,
            xerr=s.std.get(key) or None,
            color=colors[s.label],
            capsize=3,
            hatch="//" if s.reference else None,
            alpha=0.5 if s.reference else 0.9,
        )
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.set_ylim(len(stats) - 0.5, -0.5)  # first method on top, room for unmeasured rows
    ax.set_xlabel(axis_label(key))
    ax.margins(x=0.2)
    ax.grid(True, axis="x", alpha=0.3)


def _memory_rows(
    stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None], key: str
) -> list[MethodStats]:
    """Methods whose experiment reports memory as `key`, and published rows that fit that axis."""
    return [
        s
        for s in stats
        if (s.reference and _cost_of(s, key) is not None)
        or (not s.reference and memory_keys.get(s.group) == key)
    ]


def cost_bars_plot(
    stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None], out_dir: Path
) -> Plot | None:
    """Train time and peak memory (one panel per kind) per method; None when nothing measured."""
    kinds = [k for k in dict.fromkeys(memory_keys.values()) if k]
    panels = [("train_time_s", "Training time per method", stats)] + [
        (k, f"Peak memory per method: {cost_label(k)}", _memory_rows(stats, memory_keys, k))
        for k in kinds
    ]
    if not any(
        _cost_of(s, k) is not None for k, _, rows in panels for s in rows if not s.reference
    ):
        return None
    colors = _colors([s.label for s in stats])
    height = 1.6 + 0.35 * max(len(rows) for _, _, rows in panels)
    fig = Figure(figsize=(5.5 * len(panels), height), layout="constrained")
    for ax, (key, title, rows) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        _bars(ax, rows, key, colors)
        ax.set_title(title)
    caption = "Training time (evaluation excluded) and peak memory of each method"
    caption += f"; memory is {', '.join(axis_label(k) for k in kinds)}." if kinds else "."
    if any(s.reference for s in stats):
        caption += " Hatched bars: published figures of the reference study."
    return _save(fig, out_dir, "costs", "Time and memory per method", caption)


def make_plots(
    stats: Sequence[MethodStats],
    curves: Sequence[LearningCurve],
    memory_keys: Mapping[str, str | None],
    out_dir: Path,
) -> tuple[list[Plot], list[str]]:
    """Every figure of the report, and a note for each one that had nothing to draw.

    `memory_keys` maps each experiment to the memory figure its plots use (None: not measured).
    """
    plots: list[Plot] = []
    notes: list[str] = []
    kinds = [k for k in dict.fromkeys(memory_keys.values()) if k]
    wanted = [(stats, "trainable_params", True)]
    wanted += [(_memory_rows(stats, memory_keys, k), k, False) for k in kinds]
    wanted += [(stats, "train_time_s", False)]
    for rows, cost_key, log_x in wanted:
        plot = scatter_plot(rows, cost_key, out_dir, log_x=log_x)
        if plot is None:
            notes.append(f"No accuracy-vs-{axis_label(cost_key)} plot: no run measured both.")
        else:
            plots.append(plot)
    if not kinds:
        notes.append("No accuracy-vs-memory plot: no run recorded its peak memory.")
    for plot, what in (
        (learning_curves_plot(curves, out_dir), "learning curves: no run recorded its epochs"),
        (cost_bars_plot(stats, memory_keys, out_dir), "time/memory bars: nothing measured"),
    ):
        if plot is None:
            notes.append(f"No {what}.")
        else:
            plots.append(plot)
    return plots, notes
