"""The report's statistics: per-run intervals and paired tests between methods.

Works on the test-set predictions each run saves (`results.Predictions`): a percentile
bootstrap interval of each run's accuracy and macro-F1, a t interval across seeds, and for
every pair of methods of an experiment, per seed both ran, McNemar's exact test and a paired
bootstrap of the accuracy difference, Holm-corrected over all comparisons of the experiment.
The statistics themselves are in `peftbench.stats`; this module reads and pairs the runs'
predictions; `report.document` turns the results into tables.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from peftbench.report.runs import MethodStats, Run
from peftbench.results import finite_number, predictions_path
from peftbench.stats import (
    DEFAULT_ALPHA,
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    METRICS,
    Interval,
    McNemar,
    PairedBootstrap,
    accuracy,
    bootstrap_intervals,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    seed_interval,
)


class PredictionsError(Exception):
    """A predictions file that cannot be used: missing, unreadable or malformed."""


class MissingPredictions(PredictionsError):
    """No predictions file where the run should have written one."""


@dataclass(frozen=True)
class Settings:
    """How the statistics are computed: bootstrap resamples, interval level, test level, seed."""

    resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    alpha: float = DEFAULT_ALPHA
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {self.resamples}")
        if not 0.0 < self.level < 1.0 or not 0.0 < self.alpha < 1.0:
            raise ValueError(f"level and alpha must be in (0, 1), got {self.level}, {self.alpha}")

    def rng_seed(self, *keys: str) -> list[int]:
        """A seed of its own for each named computation, stable across runs and machines."""
        return [self.seed, *(zlib.crc32(key.encode("utf-8")) for key in keys)]


@dataclass(frozen=True)
class RunPredictions:
    """One successful run's test-set predictions as arrays."""

    run_id: str
    seed: Any
    example_ids: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.size)

    def same_examples(self, other: RunPredictions) -> bool:
        """Whether both runs predicted the same test examples, in the same order, same labels."""
        return np.array_equal(self.example_ids, other.example_ids) and np.array_equal(
            self.labels, other.labels
        )


def _int_list(data: dict[str, Any], key: str) -> np.ndarray:
    values = data.get(key)
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise PredictionsError(f"'{key}' is not a list of integers")
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError as exc:
        raise PredictionsError(f"'{key}' holds integers out of range") from exc


def read_predictions(path: Path, run_id: str, seed: Any) -> RunPredictions:
    """Read and check one predictions file; raise PredictionsError saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MissingPredictions(f"{path}: no predictions file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictionsError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise PredictionsError(f"{path}: not a predictions object")
    try:
        arrays = [_int_list(data, key) for key in ("example_ids", "labels", "predictions")]
    except PredictionsError as exc:
        raise PredictionsError(f"{path}: {exc}") from exc
    sizes = {a.size for a in arrays}
    if len(sizes) != 1 or 0 in sizes:
        raise PredictionsError(
            f"{path}: example_ids, labels, predictions have lengths "
            f"{', '.join(str(a.size) for a in arrays)}: need one non-zero length"
        )
    return RunPredictions(run_id, seed, *arrays)


def check_against_record(pred: RunPredictions, recorded_accuracy: Any) -> str | None:
    """A message when the predictions do not give the accuracy the record states, else None."""
    if finite_number(recorded_accuracy) is None:
        return None
    found = accuracy(pred.labels, pred.predictions)
    if abs(found - recorded_accuracy) > 0.5 / pred.n + 1e-9:
        return (
            f"run {pred.run_id}: its predictions give accuracy {100 * found:.2f} % but its "
            f"record says {100 * recorded_accuracy:.2f} %: predictions not used"
        )
    return None


# ----- per-method intervals -----


@dataclass(frozen=True)
class RunIntervals:
    """Bootstrap intervals of one run's metrics."""

    run_id: str
    seed: Any
    n: int
    intervals: dict[str, Interval]


@dataclass
class MethodIntervals:
    """One method's per-run bootstrap intervals and its across-seed t intervals."""

    group: str
    label: str
    n_seeds: int  # successful seeds
    runs: list[RunIntervals] = field(default_factory=list)
    across_seeds: dict[str, Interval] = field(default_factory=dict)  # needs >= 2 seeds


def method_intervals(
    group: str,
    label: str,
    predictions: Sequence[RunPredictions],
    seed_metrics: Mapping[str, Sequence[float]],
    n_seeds: int,
    settings: Settings,
) -> MethodIntervals:
    """Bootstrap intervals per run with predictions; t intervals of each metric's seed values."""
    result = MethodIntervals(group, label, n_seeds)
    for pred in predictions:
        intervals = bootstrap_intervals(
            pred.labels,
            pred.predictions,
            METRICS,
            settings.resamples,
            settings.level,
            settings.rng_seed(group, pred.run_id),
        )
        result.runs.append(RunIntervals(pred.run_id, pred.seed, pred.n, intervals))
    for metric in METRICS:
        interval = seed_interval(list(seed_metrics.get(metric, ())), settings.level)
        if interval is not None:
            result.across_seeds[metric] = interval
    return result


# ----- pairwise comparisons -----


@dataclass
class SeedComparison:
    """Two methods' runs with one seed, compared on the same test examples."""

    seed: Any
    run_a: str
    run_b: str
    n: int
    mcnemar: McNemar
    bootstrap: PairedBootstrap
    holm_p: float = 1.0  # McNemar p adjusted over the experiment's family of comparisons
    significant: bool = False  # holm_p <= alpha

    @property
    def difference(self) -> float:
        """accuracy(A) - accuracy(B) on this seed's runs."""
        return self.bootstrap.difference


@dataclass
class PairComparison:
    """Method A against method B in one experiment, over the seeds both ran (A: higher mean)."""

    group: str
    a: str
    b: str
    seeds: list[SeedComparison] = field(default_factory=list)
    across_seeds: Interval | None = None  # t interval of the per-seed differences

    @property
    def mean_difference(self) -> float:
        """Mean over seeds of accuracy(A) - accuracy(B)."""
        return float(np.mean([s.difference for s in self.seeds])) if self.seeds else 0.0

    @property
    def significant_seeds(self) -> int:
        """Seeds on which the difference is significant and in the direction of the mean."""
        sign = np.sign(self.mean_difference)
        return sum(s.significant and np.sign(s.difference) == sign for s in self.seeds)

    @property
    def significant(self) -> bool:
        """Significant on every compared seed, in the same direction (A better)."""
        return (
            bool(self.seeds)
            and self.mean_difference > 0
            and self.significant_seeds == len(self.seeds)
        )

    @property
    def p_value(self) -> float:
        """The deciding p: the largest Holm-adjusted McNemar p over the seeds."""
        return max((s.holm_p for s in self.seeds), default=1.0)

    def involves(self, x: str, y: str) -> bool:
        return {self.a, self.b} == {x, y}


def find_comparison(comparisons: Sequence[PairComparison], x: str, y: str) -> PairComparison | None:
    """The comparison between methods x and y (either order), or None."""
    return next((c for c in comparisons if c.involves(x, y) and c.seeds), None)


def _compare_runs(
    group: str, a: RunPredictions, b: RunPredictions, settings: Settings
) -> SeedComparison:
    boot = paired_bootstrap(
        a.labels,
        a.predictions,
        b.predictions,
        settings.resamples,
        settings.level,
        settings.rng_seed(group, a.run_id, b.run_id),
    )
    test = mcnemar_exact(a.labels, a.predictions, b.predictions)
    return SeedComparison(a.seed, a.run_id, b.run_id, a.n, test, boot)


def compare_methods(
    group: str, methods: Mapping[str, Sequence[RunPredictions]], settings: Settings
) -> tuple[list[PairComparison], list[str]]:
    """Every pair of methods compared per common seed, Holm-corrected over the experiment.

    Within a pair, A is the method with the higher mean accuracy over the common seeds (the
    first given on a tie). Returns the comparisons and a message for each pair not compared.
    """
    messages: list[str] = []
    labels = [label for label, preds in methods.items() if preds]
    pairs: list[PairComparison] = []
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            by_seed = {p.seed: p for p in methods[second]}
            common = [(p, by_seed[p.seed]) for p in methods[first] if p.seed in by_seed]
            if not common:
                messages.append(
                    f"{group}: {first} and {second} have no seed in common: not compared pairwise"
                )
                continue
            usable = []
            for x, y in common:
                if x.same_examples(y):
                    usable.append((x, y))
                else:
                    messages.append(
                        f"{group}: {x.run_id} and {y.run_id} did not predict the same test "
                        "examples: not compared"
                    )
            if not usable:
                continue
            mean_first = np.mean([accuracy(x.labels, x.predictions) for x, _ in usable])
            mean_second = np.mean([accuracy(y.labels, y.predictions) for _, y in usable])
            if mean_second > mean_first:
                usable = [(y, x) for x, y in usable]
                first_label, second_label = second, first
            else:
                first_label, second_label = first, second
            pair = PairComparison(group, first_label, second_label)
            pair.seeds = [_compare_runs(group, x, y, settings) for x, y in usable]
            pair.across_seeds = seed_interval([s.difference for s in pair.seeds], settings.level)
            pairs.append(pair)
    family = [s for pair in pairs for s in pair.seeds]
    adjusted, reject = holm([s.mcnemar.p_value for s in family], settings.alpha)
    for comparison, p, significant in zip(family, adjusted, reject, strict=True):
        comparison.holm_p, comparison.significant = p, significant
    return pairs, messages


@dataclass
class Statistics:
    """Everything the report's statistics section shows, and what could not be used."""

    settings: Settings
    intervals: list[MethodIntervals] = field(default_factory=list)
    comparisons: dict[str, list[PairComparison]] = field(default_factory=dict)  # by experiment
    messages: list[str] = field(default_factory=list)


# ----- from the report's runs -----


def _figure(record: Mapping[str, Any], metric: str) -> float | None:
    """A finite metric from a record's `metrics`, else None (records are read, not trusted)."""
    metrics = record.get("metrics")
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    value = finite_number(value)
    return None if value is None else float(value)


def collect_predictions(
    runs: Sequence[Run],
) -> tuple[dict[tuple[str, str], list[RunPredictions]], list[str]]:
    """Predictions of each successful run by (experiment, label), and a message for each gap."""
    found: dict[tuple[str, str], list[RunPredictions]] = {}
    missing: dict[str, list[str]] = {}
    messages: list[str] = []
    for run in runs:
        if not run.ok:
            continue
        run_id = str(run.record.get("run_id"))
        try:
            pred = read_predictions(predictions_path(run.run_dir, run_id), run_id, run.seed)
        except MissingPredictions:
            missing.setdefault(run.group, []).append(run_id)
            continue
        except PredictionsError as exc:
            messages.append(f"{run.group}: {exc}: predictions not used")
            continue
        problem = check_against_record(pred, _figure(run.record, "accuracy"))
        if problem:
            messages.append(f"{run.group}: {problem}")
            continue
        found.setdefault((run.group, run.label), []).append(pred)
    for group, run_ids in missing.items():
        messages.append(
            f"{group}: no predictions file for {', '.join(run_ids)}: no bootstrap interval or "
            "paired test for these runs (recommendations fall back to the binomial-noise rule)"
        )
    return found, messages


def run_statistics(runs: Sequence[Run], settings: Settings) -> Statistics:
    """Per-method intervals and per-experiment pairwise comparisons of the successful runs."""
    predictions, messages = collect_predictions(runs)
    result = Statistics(settings, messages=messages)
    methods: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.ok:
            methods.setdefault((run.group, run.label), []).append(run)
    for (group, label), good in methods.items():
        metrics = {
            m: [v for v in (_figure(run.record, m) for run in good) if v is not None]
            for m in METRICS
        }
        preds = predictions.get((group, label), [])
        result.intervals.append(method_intervals(group, label, preds, metrics, len(good), settings))
    for group in dict.fromkeys(run.group for run in runs):
        in_group = {label: p for (g, label), p in predictions.items() if g == group}
        pairs, notes = compare_methods(group, in_group, settings)
        result.comparisons[group] = pairs
        result.messages += notes
    return result


def fmt_p(p: float) -> str:
    """A p-value to four decimals, '< 0.0001' below that."""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def p_is(p: float) -> str:
    """'p = 0.0386' or 'p < 0.0001', for running text."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def with_intervals(stats: Sequence[MethodStats], statistics: Statistics) -> list[MethodStats]:
    """Each method with its accuracy interval: t over seeds, or the one run's bootstrap CI."""
    found = {(m.group, m.label): m for m in statistics.intervals}
    level = f"{100 * statistics.settings.level:g} %"
    result = []
    for s in stats:
        m = found.get((s.group, s.label))
        across = m.across_seeds.get("accuracy") if m else None
        if across is not None:
            kind = f"{level} t interval over {s.n_seeds} seeds"
            s = replace(s, accuracy_interval=(across.low, across.high), interval_kind=kind)
        elif m and s.n_seeds == 1 and len(m.runs) == 1:
            run = m.runs[0].intervals["accuracy"]
            kind = f"{level} bootstrap CI"
            s = replace(s, accuracy_interval=(run.low, run.high), interval_kind=kind)
        result.append(s)
    return result
