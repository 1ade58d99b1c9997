"""The per-class section: precision, recall and F1 of every class, and confusion matrices.

Shown for multi-class tasks (more than two classes), from each successful run's
`class_metrics` (written by train.py from its test predictions), with classes named by their
original label values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftbench.report.document import Block, Table
from peftbench.report.runs import Run, as_dict

if TYPE_CHECKING:
    from peftbench.report.sections import ReportInputs


def _per_class(run: Run) -> dict[str, Any]:
    return as_dict(as_dict(run.record.get("class_metrics")).get("per_class"))


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, int | float) else f"{100 * value:.1f}"


def _figures_table(runs: list[Run], names: list[str]) -> Table:
    """Rows: classes; columns: each run's precision / recall / F1 (%)."""
    headers = ["class", "test examples"] + [f"{_name(run, runs)} P / R / F1 (%)" for run in runs]
    rows = []
    for name in names:
        support = _per_class(runs[0]).get(name, {}).get("support", "—")
        cells = []
        for run in runs:
            figures = as_dict(_per_class(run).get(name))
            cells.append(" / ".join(_pct(figures.get(k)) for k in ("precision", "recall", "f1")))
        rows.append([name, str(support), *cells])
    return Table(headers, rows)


def _name(run: Run, runs: list[Run]) -> str:
    """The run's method label, with its seed where the method has several runs."""
    several = sum(r.label == run.label for r in runs) > 1
    return f"{run.label} (seed {run.seed})" if several else run.label


def _confusion_table(run: Run, names: list[str]) -> Table | None:
    matrix = as_dict(run.record.get("class_metrics")).get("confusion_matrix")
    if not isinstance(matrix, list) or len(matrix) != len(names):
        return None
    headers = ["gold \\ predicted", *names]
    return Table(headers, [[name, *map(str, row)] for name, row in zip(names, matrix, strict=True)])


def class_section(inputs: ReportInputs) -> list[Block]:
    """Per-class figures and confusion matrices of each multi-class experiment."""
    blocks: list[Block] = []
    for group in dict.fromkeys(run.group for run in inputs.runs):
        runs = [r for r in inputs.runs if r.group == group and r.ok and _per_class(r)]
        if not runs:
            continue
        names = list(_per_class(runs[0]))
        if len(names) <= 2:
            continue
        title = "Per-class results" + (f": {group}" if inputs.several else "")
        blocks += [
            ("h2", title),
            (
                "p",
                "Precision, recall and F1 of each class on the test set after the last epoch, "
                "classes named by their label values in the data; a class with few test "
                "examples has wide uncertainty.",
            ),
            ("table", _figures_table(runs, names)),
        ]
        for run in runs:
            table = _confusion_table(run, names)
            if table is not None:
                blocks += [("h3", f"Confusion matrix: {_name(run, runs)}"), ("table", table)]
    return blocks
