"""The Python API: the command line's steps as functions, for notebooks and scripts.

    import peftbench

    config = peftbench.load_config(
        "configs/imdb-minilm-cpu.yaml", overrides={"training.epochs": 1}, methods=["lora", "ia3"]
    )
    print(peftbench.plan(config).text)
    outcome = peftbench.run(config)
    for record in outcome.records:
        print(record["run_id"], record["status"], record["metrics"].get("accuracy"))
    report = peftbench.report([config.output_path], out="report")

`run` uses the same runner as `peftbench run`, and leaves the process's signal handlers as it
found them (a notebook's kernel keeps its own).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    load_raw,
    parse_config,
    select_methods,
    set_dotted,
)

if TYPE_CHECKING:  # the heavy modules load when a function needs them
    from peftbench.execution import ExperimentOutcome
    from peftbench.report import ReportResult


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | Sequence[str] = (),
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> ExperimentConfig:
    """An experiment config from a YAML file or a dict, validated.

    `overrides`: {"training.epochs": 1} or ["training.epochs=1"] (values parsed as YAML);
    `methods`: run labels to keep (the others are dropped); `seeds`: replaces `seeds:`.
    Raises peftbench.PeftbenchError (ConfigError) naming the field and the fix."""
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    elif isinstance(source, str | Path):
        raw = load_raw(source)
    else:
        raise ConfigError(f"load_config: expected a path or a dict, got {type(source).__name__}")
    if isinstance(overrides, Mapping):
        for dotted, value in overrides.items():
            set_dotted(raw, dotted, copy.deepcopy(value))
    else:
        for override in overrides:
            apply_override(raw, override)
    if seeds is not None:
        raw["seeds"] = list(seeds)
    if methods is not None:
        select_methods(raw, list(methods))
    return parse_config(raw)


def run(config: ExperimentConfig, *, force: bool = False) -> ExperimentOutcome:
    """Do every run of the experiment that is not finished yet; its records and what ran.

    Results are written under config.output_path exactly as by `peftbench run`; a failed run
    is a record with status "failed", not an exception. Bad input raises PeftbenchError
    before anything is run or written."""
    from peftbench.execution import run_experiment
    from peftbench.logs import configure, is_configured

    if not is_configured():
        configure()
    return run_experiment(config, force=force)  # which puts back the signal handlers it changes


def report(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    formats: Sequence[str] = ("md", "html", "csv"),
    **options: Any,
) -> ReportResult:
    """Tables, plots and recommendations from experiment output directories (written to
    `out`, default the one run directory); `options` as `peftbench report`'s flags
    (reference, resamples, level, alpha)."""
    from peftbench.report import build_report

    return build_report(
        [Path(d) for d in run_dirs], Path(out) if out else None, tuple(formats), **options
    )


@dataclass
class Plan:
    """What an experiment would run: one row per method with its parameter counts, the
    resources the largest run needs (MiB), and the plan as `peftbench plan` prints it."""

    methods: list[dict[str, Any]]
    resources: dict[str, float]
    text: str


def plan(config: ExperimentConfig) -> Plan:
    """The experiment's plan, built offline from the model's architecture (no weights)."""
    from peftbench.plan import count_method_parameters, describe_plan, estimate_resources

    rows = count_method_parameters(config)
    return Plan(rows, estimate_resources(config, rows), describe_plan(config))
