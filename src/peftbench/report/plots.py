"""The report's figures: accuracy with intervals, trade-offs with Pareto fronts, curves, costs.

Every accuracy carries an interval (`accuracy_error`: the method's bootstrap CI or across-seed
t interval, else a 95 % normal binomial interval on its test examples), and each caption says
which. Methods are told apart by a colour and a marker of their own (`method_styles`) and
named in a legend, never by labels on the points, so nothing overlaps however many methods
there are. The methods not distinguishable from the best (`best_groups`, from the same tie
rule as the recommendations) are drawn as one shaded group.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas directly, never
through pyplot, so drawing needs no display and changes no global backend. Each `*_figure`
function returns the figure (tests read its error bars); `figures.make_plots` saves them
as PNG and SVG. Cost figures (time, memory) are in `cost_plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.stats import t as student_t

from peftbench.report.columns import COLUMNS_BY_KEY, PUBLISHED_MEMORY_KEY
from peftbench.report.ranking import ACCURACY, binomial_half_width, pareto_front
from peftbench.report.runs import LearningCurve, MethodStats

GPU_MEMORY_KEYS = ("cuda_peak_allocated_mb", "cuda_peak_reserved_mb", "nvml_peak_used_mb")
# 20 colours far apart in hue and lightness, all readable on white.
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#000075", "#800000", "#469990", "#f032e6", "#9a6324", "#4363d8",
    "#3cb44b", "#e6194b", "#808000", "#000000",
)  # fmt: skip
# 21 markers: with 20 colours, the (colour, marker) pair is unique for 420 methods.
MARKERS = (
    "o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8",
    "1", "2", "3", "4", "+", "x",
)  # fmt: skip
GROUP_COLOUR = "#8fb8de"  # the band of methods not distinguishable from the best
BINOMIAL = "95 % normal binomial interval on the test examples"


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


def method_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A (colour, marker) per name, in order of first appearance, no two alike."""
    unique = list(dict.fromkeys(names))
    return {
        name: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
        for i, name in enumerate(unique)
    }


def accuracy_error(stats: MethodStats) -> tuple[float, float, str] | None:
    """(low, high, kind) of a method's accuracy as fractions: its computed interval, else the
    binomial interval on its test examples; None when neither is known."""
    accuracy = stats.mean.get(ACCURACY)
    if accuracy is None:
        return None
    if stats.accuracy_interval is not None:
        low, high = stats.accuracy_interval
        return min(low, accuracy), max(high, accuracy), stats.interval_kind or "interval"
    if stats.test_size:
        half = binomial_half_width(accuracy, stats.test_size)
        return accuracy - half, accuracy + half, BINOMIAL
    return None


def interval_note(stats: Sequence[MethodStats]) -> str:
    """Which intervals the error bars of these methods are, for a caption."""
    kinds = sorted({e[2] for e in map(accuracy_error, stats) if e is not None})
    if not kinds:
        return " No interval is known for these accuracies."
    return " Error bars: " + "; ".join(kinds) + "."


def save(fig: Figure, out_dir: Path, key: str, title: str, caption: str) -> Plot:
    """Write a figure as PNG and SVG under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{key}.png", out_dir / f"{key}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, metadata={"Date": None}, bbox_inches="tight")
    return Plot(key, title, caption, png, svg)


def cost_of(stats: MethodStats, cost_key: str) -> float | None:
    """A method's cost figure; published rows give their GPU memory for any GPU memory axis."""
    if stats.reference and cost_key in GPU_MEMORY_KEYS:
        return stats.mean.get(PUBLISHED_MEMORY_KEY)
    return stats.mean.get(cost_key)


def _in_group(stats: MethodStats, best_groups: Mapping[str, set[str]]) -> bool:
    return stats.label in best_groups.get(stats.group, set())


def _group_band(ax: Axes, members: Sequence[MethodStats], horizontal: bool) -> bool:
    """Shade the accuracy range of the best group's means; whether there was a group."""
    accuracies = [100 * s.mean[ACCURACY] for s in members]
    if len(accuracies) < 2:
        return False
    span = (min(accuracies), max(accuracies))
    if horizontal:
        ax.axhspan(*span, color=GROUP_COLOUR, alpha=0.35, zorder=0, linewidth=0)
    else:
        ax.axvspan(*span, color=GROUP_COLOUR, alpha=0.35, zorder=0, linewidth=0)
    return True


def _point(
    ax: Axes,
    s: MethodStats,
    x: float,
    xerr: float | None,
    style: tuple[str, str],
    grouped: bool,
) -> None:
    """One method: its marker, its accuracy interval as a vertical bar, a cost std horizontal."""
    y = 100 * s.mean[ACCURACY]
    error = accuracy_error(s)
    yerr = [[y - 100 * error[0]], [100 * error[1] - y]] if error else None
    colour, marker = style
    ax.errorbar(
        x,
        y,
        yerr=yerr,
        xerr=xerr,
        fmt=marker,
        color=colour,
        markersize=8,
        markeredgecolor="black" if grouped else colour,
        markeredgewidth=1.6 if grouped else 1.0,
        capsize=3,
        elinewidth=1,
        zorder=3,
        label=s.name,
    )


def _legend(fig: Figure, ax: Axes, grouped: bool, reference: bool, pareto: bool) -> None:
    """Method names (colour and marker) and what the lines and shading mean, beside the axes."""
    handles, _ = ax.get_legend_handles_labels()
    if pareto:
        handles.append(Line2D([], [], linestyle="--", color="black", label="Pareto front (means)"))
    if grouped:
        label = "not distinguishable from the best\n(black edge; band: their accuracies)"
        handles.append(Patch(color=GROUP_COLOUR, alpha=0.6, label=label))
    if reference:
        star = {"markerfacecolor": "none", "markeredgecolor": "grey", "markersize": 11}
        label = "published (reference study)"
        handles.append(Line2D([], [], marker="*", linestyle="", label=label, **star))
    columns = 1 if len(handles) <= 24 else 2
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, ncols=columns)


def _published(ax: Axes, stats: Sequence[MethodStats], cost_key: str) -> None:
    """The reference study's figures as hollow stars."""
    for s in stats:
        x, y = cost_of(s, cost_key), s.mean.get(ACCURACY)
        if s.reference and x is not None and y is not None:
            ax.plot(x, 100 * y, "*", markersize=11, markerfacecolor="none", color="grey")


def _front_line(ax: Axes, members: Sequence[MethodStats], cost_key: str) -> None:
    """The dashed Pareto front of one experiment's means."""
    points = {s.name: {ACCURACY: s.mean[ACCURACY], cost_key: cost_of(s, cost_key)} for s in members}
    front = sorted(
        (points[n][cost_key], points[n][ACCURACY])
        for n in pareto_front(points, [ACCURACY, cost_key])
    )
    if front:
        xs, ys = [x for x, _ in front], [100 * y for _, y in front]
        ax.plot(xs, ys, "--", color="black", linewidth=1, zorder=2)


def scatter_figure(
    stats: Sequence[MethodStats],
    cost_key: str,
    best_groups: Mapping[str, set[str]] | None = None,
    *,
    log_x: bool = False,
) -> Figure | None:
    """Accuracy (with intervals) against one cost, the Pareto front dashed and the best group
    shaded; None when no measured method has both figures."""
    groups_of = best_groups or {}
    measured = [
        s
        for s in stats
        if not s.reference and s.mean.get(ACCURACY) is not None and cost_of(s, cost_key) is not None
    ]
    if not measured:
        return None
    styles = method_styles([s.name for s in measured])
    fig = Figure(figsize=(9.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    grouped = False
    for group in dict.fromkeys(s.group for s in measured):
        members = [s for s in measured if s.group == group]
        grouped |= _group_band(ax, [s for s in members if _in_group(s, groups_of)], True)
        for s in members:
            x = cost_of(s, cost_key)
            _point(ax, s, x, s.std.get(cost_key), styles[s.name], _in_group(s, groups_of))
        _front_line(ax, members, cost_key)
    reference = [s for s in stats if s.reference and cost_of(s, cost_key) is not None]
    _published(ax, reference, cost_key)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=axis_label(cost_key), ylabel=COLUMNS_BY_KEY[ACCURACY].label)
    ax.set_title(f"Accuracy vs {axis_label(cost_key).split(' (')[0]}")
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, ax, grouped, bool(reference), True)
    return fig


def scatter_caption(stats: Sequence[MethodStats], cost_key: str) -> str:
    measured = [s for s in stats if not s.reference]
    caption = (
        f"Test accuracy against {axis_label(cost_key)}. Up and to the left is better; the "
        "dashed line joins the Pareto-optimal means of each experiment. Methods with a black "
        "edge are not distinguishable from the most accurate one (the tie rule of the "
        "recommendations); the shaded band spans their accuracies, so the order of the points "
        "inside it is not a ranking." + interval_note(measured)
    )
    if any(s.reference for s in stats):
        caption += " Hollow stars: published figures of the reference study (not measured here)."
    return caption


def accuracy_figure(
    stats: Sequence[MethodStats], best_groups: Mapping[str, set[str]] | None = None
) -> Figure | None:
    """Each method's accuracy with its interval, in the config's order, the best group shaded."""
    groups_of = best_groups or {}
    measured = [s for s in stats if not s.reference and s.mean.get(ACCURACY) is not None]
    if not measured:
        return None
    styles = method_styles([s.name for s in measured])
    fig = Figure(figsize=(8.0, 1.4 + 0.32 * len(measured)), layout="constrained")
    ax = fig.add_subplot()
    grouped = False
    for group in dict.fromkeys(s.group for s in measured):
        members = [s for s in measured if s.group == group and _in_group(s, groups_of)]
        grouped |= _group_band(ax, members, False)
    for y, s in enumerate(measured):
        x = 100 * s.mean[ACCURACY]
        error = accuracy_error(s)
        xerr = [[x - 100 * error[0]], [100 * error[1] - x]] if error else None
        colour, marker = styles[s.name]
        edge = "black" if _in_group(s, groups_of) else colour
        ax.errorbar(
            x, y, xerr=xerr, fmt=marker, color=colour, markeredgecolor=edge, capsize=3,
            markersize=7, label=s.name,
        )  # fmt: skip
    ax.set_yticks(range(len(measured)), [s.name for s in measured], fontsize=8)
    ax.set_ylim(len(measured) - 0.5, -0.5)
    ax.set_xlabel(COLUMNS_BY_KEY[ACCURACY].label)
    ax.set_title("Accuracy per method")
    ax.grid(True, axis="x", alpha=0.3)
    if grouped:
        label = "accuracies of the methods not distinguishable from the best"
        ax.legend(handles=[Patch(color=GROUP_COLOUR, alpha=0.6, label=label)], fontsize=8)
    return fig


def _curve_errors(curve: LearningCurve) -> tuple[list[float], str]:
    """Half-widths (pp) of each epoch's accuracy and their kind: a 95 % t interval over seeds
    where there are several, else the binomial interval on the test examples."""
    halves, kinds = [], set()
    for acc, std, n in zip(curve.accuracy, curve.accuracy_std, curve.n_seeds, strict=True):
        if acc is None:
            continue
        if std is not None and n >= 2:
            halves.append(100 * student_t.ppf(0.975, n - 1) * std / n**0.5)
            kinds.add("95 % t interval over seeds")
        elif curve.test_size:
            halves.append(100 * binomial_half_width(acc, curve.test_size))
            kinds.add(BINOMIAL)
        else:
            halves.append(0.0)
    return halves, "; ".join(sorted(kinds))


def learning_curves_figure(curves: Sequence[LearningCurve]) -> tuple[Figure, str] | None:
    """Eval accuracy (with intervals) and train loss per epoch, one line per method, and the
    kinds of interval drawn; None without epochs."""
    curves = [c for c in curves if c.epochs]
    if not curves:
        return None
    styles = method_styles([c.name for c in curves])
    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    kinds = set()
    dodge = 0.25 / max(len(curves), 1)  # spread the points of one epoch so bars do not overlap
    for i, c in enumerate(curves):
        colour, marker = styles[c.name]
        shift = (i - (len(curves) - 1) / 2) * dodge
        acc = [
            (e + shift, 100 * a) for e, a in zip(c.epochs, c.accuracy, strict=True) if a is not None
        ]
        halves, kind = _curve_errors(c)
        kinds.add(kind)
        if acc:
            xs, ys = zip(*acc, strict=True)
            acc_ax.errorbar(
                xs, ys, yerr=halves, fmt="-", marker=marker, color=colour, capsize=2,
                markersize=5, linewidth=1, label=c.name,
            )  # fmt: skip
        loss = [(e, v) for e, v in zip(c.epochs, c.train_loss, strict=True) if v is not None]
        if loss:
            xs, ys = zip(*loss, strict=True)
            loss_ax.plot(xs, ys, "-", marker=marker, color=colour, markersize=5, label=c.name)
    acc_ax.set(xlabel="epoch", ylabel="eval accuracy (%)", title="Eval accuracy per epoch")
    loss_ax.set(xlabel="epoch", ylabel="mean train loss (nats)", title="Train loss per epoch")
    for ax in (acc_ax, loss_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, _ = loss_ax.get_legend_handles_labels()
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig, "; ".join(sorted(k for k in kinds if k))
