"""The report's input: run records loaded, ordered, and averaged per method.

`load_runs` reads every record under each run directory (skipping, with a message, what it
cannot use) in the experiment config's method order; `summarize` turns the successful runs of
each method into a `MethodStats` (means and sample stds over seeds); `learning_curves` gives
the per-epoch figures. Nothing here computes a test or draws anything.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from peftbench.report.columns import COLUMNS, COLUMNS_BY_KEY, PUBLISHED_MEMORY_KEY
from peftbench.results import MEMORY_COMPONENTS as COMPONENTS
from peftbench.results import RUNS_DIR, RunRecord, finite_number, load_records

FIGURES = [c for c in COLUMNS if c.higher_is_better is not None]
EXPERIMENT_FILE = "experiment.yaml"  # written by the runner next to runs/


@dataclass
class MethodStats:
    """One method's figures in one experiment: means and sample stds over its successful seeds."""

    name: str  # what a reader sees, unique in the report
    n_seeds: int  # successful runs the means are taken over
    test_size: int | None = None  # test examples each accuracy was measured on
    mean: dict[str, float] = field(default_factory=dict)  # COLUMNS key -> mean
    std: dict[str, float] = field(default_factory=dict)  # COLUMNS key -> sample std (n >= 2)
    failures: list[str] = field(default_factory=list)  # one message per failed/canceled run
    group: str = ""  # experiment the method ran in
    label: str = ""  # method label within the experiment
    reference: bool = False  # published figures, not measured here
    # Interval of the accuracy from the predictions or the seeds, and what kind it is,
    # e.g. (0.877, 0.903) and "95 % bootstrap CI"; None where not computed.
    accuracy_interval: tuple[float, float] | None = None
    interval_kind: str = ""
    # Tensor memory by component at each phase's peak (MiB), means over the successful seeds
    # that measured it: {"train": {component: MiB}, "eval": {...}}; empty where not measured.
    memory_components: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class LearningCurve:
    """Per-epoch figures of one method, averaged over its successful seeds."""

    name: str
    label: str
    group: str = ""
    epochs: list[int] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)  # eval accuracy, fraction
    accuracy_std: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)  # nats
    n_seeds: list[int] = field(default_factory=list)  # seeds behind each epoch's mean
    test_size: int | None = None  # examples each evaluation was measured on


@dataclass
class Run:
    """One record, with the experiment and method label it is reported under."""

    record: RunRecord
    group: str
    label: str
    run_dir: Path

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "success"

    @property
    def seed(self) -> Any:
        return info(self.record).get("seed")


def as_dict(value: Any) -> dict[str, Any]:
    """The value if it is a dict, else an empty one (records are read, not trusted)."""
    return value if isinstance(value, dict) else {}


def info(record: RunRecord) -> dict[str, Any]:
    return as_dict(record.get("run_info"))


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def config_order(run_dir: Path) -> list[str]:
    """Method labels in the order the experiment config lists them ([] when unknown)."""
    try:
        config = yaml.safe_load((Path(run_dir) / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    methods = as_dict(config).get("methods")
    if not isinstance(methods, list):
        return []
    return [str(m.get("label") or m.get("method")) for m in methods if isinstance(m, dict)]


def in_config_order(records: list[RunRecord], order: Sequence[str]) -> list[RunRecord]:
    """Records by the config's method order, then seed; labels the config lacks come last."""

    def key(record: RunRecord) -> tuple[int, str, str]:
        run_info = info(record)
        label = str(run_info.get("label") or run_info.get("method") or "")
        index = order.index(label) if label in order else len(order)
        return index, str(run_info.get("seed")), str(record.get("run_id"))

    return sorted(records, key=key)


def load_runs(run_dirs: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """Every valid record under the run dirs, and a message for each thing skipped."""
    loaded: list[tuple[Path, list[RunRecord]]] = []
    skipped: list[str] = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            skipped.append(f"{run_dir}: no such directory")
            continue
        records, bad = load_records(run_dir)
        skipped.extend(bad)
        if not records and not bad:
            skipped.append(
                f"{run_dir}: no run records (looked for {RUNS_DIR}/<run_id>/record.json)"
            )
        loaded.append((run_dir, in_config_order(records, config_order(run_dir))))
    names: dict[str, set[Path]] = {}
    for run_dir, records in loaded:
        for record in records:
            names.setdefault(_group_name(record, run_dir), set()).add(run_dir)
    runs = []
    for run_dir, records in loaded:
        for run in runs_from_records(records, run_dir):
            if len(names[run.group]) > 1:
                run.group = f"{run.group} ({run_dir.name})"
            runs.append(run)
    return runs, skipped


def runs_from_records(records: Iterable[RunRecord], run_dir: Path) -> list[Run]:
    """The final runs among one directory's records (search runs are reported through them)."""
    runs = []
    for record in records:
        run_info = info(record)
        if run_info.get("role") == "search":
            continue
        label = str(run_info.get("label") or run_info.get("method") or record.get("run_id"))
        runs.append(Run(record, _group_name(record, run_dir), label, run_dir))
    return runs


def _group_name(record: RunRecord, run_dir: Path) -> str:
    return str(info(record).get("experiment") or run_dir.resolve().name)


def failure_text(run: Run) -> str:
    """'seed 1: failed — Type: message (epochs completed: N)' for a run that did not succeed."""
    error = as_dict(run.record.get("error"))
    text = f"seed {run.seed}: {run.record.get('status')}"
    if error:
        text += f" — {error.get('type', 'error')}: {one_line(str(error.get('message', '')))}"
        if error.get("epoch_reached") is not None:
            text += f" (epochs completed: {error['epoch_reached']})"
    return text


def by_method(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (experiment, label), in order of first appearance."""
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.group, run.label), []).append(run)
    return grouped


def run_precision(run: Run) -> str | None:
    """The precision (bf16, fp32, ...) a run computed in, as its record says (the column's)."""
    value = COLUMNS_BY_KEY["precision"].get(run.record)
    return value if isinstance(value, str) else None


def precisions_of(runs: Iterable[Run]) -> list[str]:
    """The precisions the successful runs computed in, in order of appearance."""
    return list(dict.fromkeys(p for run in runs if run.ok and (p := run_precision(run))))


def mixed_precision_warnings(runs: Sequence[Run]) -> list[str]:
    """A warning for each experiment whose successful runs computed in different precisions
    (`precision: auto` resolves per machine): their differences mix precision with method."""
    warnings = []
    for group in dict.fromkeys(run.group for run in runs):
        good = [run for run in runs if run.group == group and run.ok]
        found = precisions_of(good)
        if len(found) < 2:
            continue
        parts = []
        for precision in found:
            labels = Counter(run.label for run in good if run_precision(run) == precision)
            listed = ", ".join(f"{label} ({n} run{'s' * (n != 1)})" for label, n in labels.items())
            parts.append(f"{precision}: {listed}")
        warnings.append(
            f"{group}: the runs computed in different precisions ({'; '.join(parts)}), so a "
            "difference between methods may come from precision as well as from the method. "
            "To compare the methods alone, rerun them in one precision: on one kind of machine "
            "(training.precision: auto resolves per machine), or with training.precision set."
        )
    return warnings


def summarize(runs: Sequence[Run]) -> list[MethodStats]:
    """One MethodStats per (experiment, label): means and sample stds of successful seeds."""
    several = len({run.group for run in runs}) > 1
    stats = []
    for (group, label), members in by_method(runs).items():
        good = [run for run in members if run.ok]
        entry = MethodStats(
            name=f"{group} / {label}" if several else label,
            n_seeds=len(good),
            failures=[failure_text(run) for run in members if not run.ok],
            group=group,
            label=label,
        )
        for column in FIGURES:
            values = [
                v for v in (finite_number(column.get(run.record)) for run in good) if v is not None
            ]
            if values:
                entry.mean[column.key] = statistics.fmean(values)
            if len(values) >= 2:
                entry.std[column.key] = statistics.stdev(values)
        entry.test_size = evaluated_size(good)
        entry.memory_components = memory_components(good)
        stats.append(entry)
    return stats


def memory_components(runs: Sequence[Run]) -> dict[str, dict[str, float]]:
    """Mean MiB per component at the train and eval peaks, over the runs that recorded it."""
    means: dict[str, dict[str, float]] = {}
    for phase in ("train", "eval"):
        entries = [
            as_dict(as_dict(_tensor_memory(run)).get(phase))
            for run in runs
            if as_dict(_tensor_memory(run)).get(phase)
        ]
        values = {
            component: [finite_number(entry.get(component)) for entry in entries]
            for component in COMPONENTS
        }
        if entries and all(v is not None for vs in values.values() for v in vs):
            means[phase] = {c: statistics.fmean(vs) for c, vs in values.items()}  # type: ignore[arg-type]
    return means


def _tensor_memory(run: Run) -> Any:
    return as_dict(as_dict(run.record.get("measurements")).get("memory")).get("tensor_mib")


def evaluated_size(runs: Sequence[Run]) -> int | None:
    """The number of test examples the runs were evaluated on (the first one recorded)."""
    sizes = [finite_number(as_dict(run.record.get("data_info")).get("test_size")) for run in runs]
    return next((int(n) for n in sizes if n), None)


def _epoch_items(members: Sequence[Run]) -> dict[int, list[dict[str, Any]]]:
    per_epoch: dict[int, list[dict[str, Any]]] = {}
    for run in members:
        epochs = as_dict(run.record.get("train_info")).get("epochs") or []
        for item in epochs if isinstance(epochs, list) else []:
            if isinstance(item, dict) and finite_number(item.get("epoch")) is not None:
                per_epoch.setdefault(int(item["epoch"]), []).append(item)
    return per_epoch


def learning_curves(runs: Sequence[Run], stats: Sequence[MethodStats]) -> list[LearningCurve]:
    """Per-epoch eval accuracy and train loss of each method, averaged over successful seeds."""
    names = {(s.group, s.label): s.name for s in stats}
    curves = []
    for (group, label), members in by_method(run for run in runs if run.ok).items():
        per_epoch = _epoch_items(members)
        curve = LearningCurve(
            names[(group, label)], label, group, test_size=evaluated_size(members)
        )
        for epoch in sorted(per_epoch):
            items = per_epoch[epoch]
            accs = [finite_number(as_dict(i.get("eval")).get("accuracy")) for i in items]
            accs = [a for a in accs if a is not None]
            losses = [
                v for v in (finite_number(i.get("train_loss")) for i in items) if v is not None
            ]
            curve.epochs.append(epoch)
            curve.accuracy.append(statistics.fmean(accs) if accs else None)
            curve.accuracy_std.append(statistics.stdev(accs) if len(accs) >= 2 else None)
            curve.train_loss.append(statistics.fmean(losses) if losses else None)
            curve.n_seeds.append(len(accs))
        curves.append(curve)
    return curves


def read_study() -> dict[str, Any]:
    """The reference study's published figures (peftbench/reference/study.json), as written."""
    text = resources.files("peftbench").joinpath("reference", "study.json").read_text("utf-8")
    study: dict[str, Any] = json.loads(text)
    return study


def load_reference() -> list[MethodStats]:
    """The reference study's published figures, as MethodStats marked `reference`."""
    study = read_study()
    stats = []
    for item in study["methods"]:
        figures = {
            "accuracy": item.get("accuracy"),
            "trainable_params": item.get("trainable_params"),
            "train_time_s": item.get("train_time_s"),
            PUBLISHED_MEMORY_KEY: item.get("gpu_memory_mb"),
        }
        stats.append(
            MethodStats(
                name=f"{item['label']} (published)",
                n_seeds=0,
                mean={k: v for k, v in figures.items() if v is not None},
                group=f"reference study: {study['model']} {study['dataset']}",
                label=item["label"],
                reference=True,
            )
        )
    return stats


def memory_key(runs: Sequence[Run]) -> str | None:
    """The memory figure plots and advice use: tensor memory (what the method keeps, measured
    alike on every device) if every run has it, else CUDA peak allocated, else process RSS."""
    good = [run.record for run in runs if run.ok]
    tensors = COLUMNS_BY_KEY["tensor_peak_mib"]
    cuda, rss = COLUMNS_BY_KEY["cuda_peak_allocated_mb"], COLUMNS_BY_KEY["peak_rss_mb"]
    for column in (tensors, cuda):
        if good and all(finite_number(column.get(r)) is not None for r in good):
            return column.key
    for column in (rss, cuda):
        if any(finite_number(column.get(r)) is not None for r in good):
            return column.key
    return None
