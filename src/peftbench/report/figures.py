"""Which figures the report draws, in order: each is saved as PNG and SVG under plots/.

A new figure is a function returning a `matplotlib.figure.Figure` (in `plots` for accuracy,
`cost_plots` for costs) and one entry in `make_plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from peftbench.report.cost_plots import (
    MEMORY_COMPONENTS_CAPTION,
    cost_bars_figure,
    costs_caption,
    memory_components_figure,
    memory_rows,
)
from peftbench.report.plots import (
    Plot,
    accuracy_figure,
    axis_label,
    interval_note,
    learning_curves_figure,
    save,
    scatter_caption,
    scatter_figure,
)
from peftbench.report.runs import LearningCurve, MethodStats


def make_plots(
    stats: Sequence[MethodStats],
    curves: Sequence[LearningCurve],
    memory_keys: Mapping[str, str | None],
    out_dir: Path,
    best_groups: Mapping[str, set[str]] | None = None,
) -> tuple[list[Plot], list[str]]:
    """Every figure of the report, saved, and a note for each one that had nothing to draw.

    `memory_keys` maps each experiment to the memory figure its plots use (None: not measured);
    `best_groups` each experiment to the labels not distinguishable from its best method.
    """
    plots: list[Plot] = []
    notes: list[str] = []
    measured = [s for s in stats if not s.reference]
    figure = accuracy_figure(stats, best_groups)
    if figure is not None:
        caption = (
            "Test accuracy of each method in the config's order; methods with a black edge "
            "(and the shaded band) are not distinguishable from the most accurate one."
            + interval_note(measured)
        )
        plots.append(save(figure, out_dir, "accuracy", "Accuracy per method", caption))
    kinds = [k for k in dict.fromkeys(memory_keys.values()) if k]
    wanted = [(list(stats), "trainable_params", True)]
    wanted += [(memory_rows(stats, memory_keys, k), k, False) for k in kinds]
    wanted += [(list(stats), "train_time_s", False)]
    for rows, cost_key, log_x in wanted:
        figure = scatter_figure(rows, cost_key, best_groups, log_x=log_x)
        if figure is None:
            notes.append(f"No accuracy-vs-{axis_label(cost_key)} plot: no run measured both.")
            continue
        title = f"Accuracy vs {axis_label(cost_key).split(' (')[0]}"
        caption = scatter_caption(rows, cost_key)
        plots.append(save(figure, out_dir, f"accuracy_vs_{cost_key}", title, caption))
    if not kinds:
        notes.append("No accuracy-vs-memory plot: no run recorded its peak memory.")
    drawn = learning_curves_figure(curves)
    if drawn is None:
        notes.append("No learning curves: no run recorded its epochs.")
    else:
        caption = (
            "Test-split accuracy after each epoch and mean training loss over each epoch; "
            f"means over successful seeds. Error bars: {drawn[1] or 'none known'}. Points of "
            "one epoch are spread sideways so their bars do not overlap."
        )
        plots.append(save(drawn[0], out_dir, "learning_curves", "Learning curves", caption))
    cost_plots, cost_notes = _cost_figures(stats, memory_keys, out_dir)
    return plots + cost_plots, notes + cost_notes


def _cost_figures(
    stats: Sequence[MethodStats], memory_keys: Mapping[str, str | None], out_dir: Path
) -> tuple[list[Plot], list[str]]:
    """The time/memory bars and the tensor memory by component, saved; notes where empty."""
    plots: list[Plot] = []
    notes: list[str] = []
    figure = cost_bars_figure(stats, memory_keys)
    if figure is None:
        notes.append("No time/memory bars: nothing measured.")
    else:
        caption = costs_caption(stats, memory_keys)
        plots.append(save(figure, out_dir, "costs", "Time and memory per method", caption))
    figure = memory_components_figure(stats)
    if figure is None:
        notes.append("No memory-by-component bars: no run recorded its tensor memory.")
    else:
        title = "Tensor memory by component"
        plots.append(save(figure, out_dir, "memory_components", title, MEMORY_COMPONENTS_CAPTION))
    return plots, notes
