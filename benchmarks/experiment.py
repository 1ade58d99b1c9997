"""Benchmark: run one experiment config offline on this machine and commit its report.

    PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/experiment.py CONFIG \\
        --name NAME [--min-accuracy 0.75] [overrides...]

Runs `peftbench run CONFIG overrides` into results/benchmark-<name>/ (restartable: runs that
finished before are kept, so an interrupted benchmark is resumed by the same command), then
writes benchmarks/results/<name>-<date>.md (date, machine, command, config, wall time, the
per-run table, accuracy per epoch), copies the run records (record.json, predictions.json,
experiment.yaml; machine paths removed) to <name>-<date>-runs/ and builds the full report
(report.md, summary.md, plots) from them in <name>-<date>-report/. With --min-accuracy it
exits 1 unless every final run reaches it. With --reference the report shows the reference
study's published rows and tests its accuracy orderings on these runs (the result file repeats
that section).

Benchmarks longer than a session: a start first copies back the committed runs (from
<name>-<date>-runs/) that results/benchmark-<name>/ lacks, so it goes on where the last one
stopped, in a fresh checkout too (the runner redoes a run whose config changed since). Each run
comes from the newest copy that has it in the precision `precision: auto` computes in here; a
run no copy has in it is redone, so that one experiment never mixes precisions (the runner
refuses to resume beside such a run), and sessions on CPUs with and without AVX-512 BF16 each
add to their own precision's runs. Stop it at any time, then `... --commit-only` writes the
result file and the runs copy of what has finished (partial unless every final run has). It
never replaces a result of the same day that has more finished final runs (exit 2).

Used for issue 2 (configs/imdb-minilm-cpu.yaml, --min-accuracy 0.75), issue 4
(configs/imdb-minilm-cpu-seeds-search.yaml) and issue 7 (configs/imdb-minilm-all-methods.yaml).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml
from peftbench_process import peftbench_run
from provenance import shown_command
from run_copies import (
    auto_precisions,
    copy_runs,
    finished_finals,
    is_final,
    records_in,
    restore_from_copies,
)

from peftbench.cli import EXIT_BAD_INPUT
from peftbench.config import load_config
from peftbench.errors import PeftbenchError
from peftbench.measure import describe_machine
from peftbench.preflight import auto_precision_here
from peftbench.report import build_report
from peftbench.report.paths import scrub
from peftbench.report.runs import EXPERIMENT_FILE
from peftbench.report.study_orderings import TITLE as STUDY_ORDERINGS
from peftbench.results import load_records

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def parse_args() -> argparse.Namespace:
    # No abbreviations: the shown command leaves out --commit-only by its full name.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument(
        "config", type=Path, help="experiment YAML, e.g. configs/imdb-minilm-cpu.yaml"
    )
    parser.add_argument("--name", required=True, help="result file stem, e.g. minilm-cpu")
    parser.add_argument("--min-accuracy", type=float, help="target: every final run at or above it")
    parser.add_argument(
        "--commit-only",
        action="store_true",
        help="run nothing: write the result file and the runs copy of the finished runs",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="the report shows the study's published rows and tests its orderings here",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides such as data.train_size=500")
    return parser.parse_intermixed_args()


def runs_wall_time_s(records: list[dict]) -> float | None:
    """From the first run's start to the last run's end, across resumed invocations."""
    try:
        starts = [datetime.fromisoformat(r["run_info"]["started_at"]) for r in records]
        ends = [datetime.fromisoformat(r["run_info"]["finished_at"]) for r in records]
    except (KeyError, TypeError, ValueError):
        return None
    return (max(ends) - min(starts)).total_seconds() if records else None


def accuracy_per_epoch(record: dict) -> str:
    """'88.1, 89.8, 90.2': the accuracy (%) of each epoch's evaluation, test or validation."""
    return ", ".join(
        f"{100 * e['eval']['accuracy']:.1f}" for e in record["train_info"].get("epochs", [])
    )


def commit_runs(output_dir: Path, stem: str, only_successful: bool) -> Path:
    """Copy what regenerates the report (experiment.yaml, each run's record.json and
    predictions.json; no models, checkpoints or caches), machine paths removed, to
    <stem>-runs/. A partial copy (--commit-only) keeps the successful runs only: the runs a
    stop canceled are not results, and run again. The copy is what the result file describes."""
    runs_copy = RESULTS / f"{stem}-runs"
    shutil.rmtree(runs_copy, ignore_errors=True)
    copy_runs(output_dir, runs_copy, with_config=True, only_successful=only_successful)
    return runs_copy


def commit_report(runs_copy: Path, stem: str, reference: bool, finals: bool) -> Path | None:
    """The report built from the committed runs into <stem>-report/, once a final run has
    finished. A later renderer regenerates it without retraining:
    `peftbench report <stem>-runs --out <stem>-report`."""
    report_copy = RESULTS / f"{stem}-report"
    shutil.rmtree(report_copy, ignore_errors=True)
    if not finals:
        return None
    build_report([runs_copy], report_copy, ("md",), reference)
    return report_copy


def auto_precision_for(config_file: Path, overrides: list[str]) -> str | None:
    """What `precision: auto` resolves to here for this config (None if it names one, or if
    the config is bad: `peftbench run` then says what is wrong)."""
    try:
        training = load_config(config_file, overrides).training
    except PeftbenchError:
        return None
    return auto_precision_here(training)[0] if training.precision == "auto" else None


def planned_finals(runs_copy: Path) -> int | None:
    """How many final runs the experiment has (methods x seeds of its experiment.yaml)."""
    try:
        config = yaml.safe_load((runs_copy / EXPERIMENT_FILE).read_text(encoding="utf-8"))
        return len(config["methods"]) * len(config["seeds"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def restore_committed_runs(output_dir: Path, name: str, auto_precision: str | None) -> None:
    """Copy back the runs output_dir lacks from the committed <name>-<date>-runs/: each from
    the newest copy that has it in `auto_precision`; without one, the newest copy whole."""
    copies = sorted(RESULTS.glob(f"{name}-20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]-runs"), reverse=True)
    left_out = restore_from_copies(copies, output_dir, auto_precision)
    if left_out:
        runs = ", ".join(f"{run_id} ({computed})" for run_id, computed in left_out.items())
        print(
            f"not restored (no committed copy has them in {auto_precision}), to be redone here "
            f"in {auto_precision} (precision: auto): {runs}"
        )


def replaces_a_fuller_result(output_dir: Path, stem: str) -> str | None:
    """Why writing <stem> from output_dir would lose finished runs, or None: a result of the
    same name and day that has more finished final runs than output_dir (a benchmark restarted
    on the day it was committed, with some runs left out to be redone)."""
    existing = RESULTS / f"{stem}-runs"
    committed = finished_finals(records_in(existing))
    here = finished_finals(records_in(output_dir))
    if committed <= here:
        return None
    return (
        f"{existing.name} holds {committed} finished final runs and this would "
        f"replace it with {here}: commit these on another day (the result file is named by "
        "date), or move that result away first if it is meant to go"
    )


def main() -> int:
    args = parse_args()
    output_dir = ROOT / "results" / f"benchmark-{args.name}"
    overrides = [*args.overrides, f"output_dir={output_dir}"]
    if args.commit_only:
        # The precision the runs here computed in; none here yet: the newest copy comes back
        # whole, so that rewriting it keeps it whole.
        kept = auto_precisions(output_dir)
        here = kept.pop() if len(kept) == 1 else None
    else:
        here = auto_precision_for(args.config, overrides)
    restore_committed_runs(output_dir, args.name, here)
    started = datetime.now(UTC)
    code = 1 if args.commit_only else peftbench_run(args.config, overrides)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    if code == EXIT_BAD_INPUT:  # refused before any run started (its message says why)
        print("peftbench run refused the experiment; no result file written", file=sys.stderr)
        return code

    stem = f"{args.name}-{started:%Y-%m-%d}"
    refusal = replaces_a_fuller_result(output_dir, stem)
    if refusal:
        print(f"no result file written: {refusal}", file=sys.stderr)
        return EXIT_BAD_INPUT
    runs_copy = commit_runs(output_dir, stem, only_successful=args.commit_only)
    records, _ = load_records(runs_copy)
    finals = [r for r in records if is_final(r)]
    succeeded = finished_finals(finals)
    complete = succeeded == planned_finals(runs_copy)  # --commit-only of a finished benchmark
    first = (finals or records or [{}])[0]
    runs_wall = runs_wall_time_s(records)
    report_dir = commit_report(runs_copy, stem, args.reference, bool(finals))
    summary = report_dir / "summary.md" if report_dir else None
    if not args.commit_only:
        outcome = f"exit code {code}"
    elif complete:
        outcome = (
            "written with --commit-only from the records of earlier invocations: all "
            f"{succeeded} final runs finished"
        )
    else:
        outcome = (
            "**partial**: written with --commit-only from the runs finished so far; the same "
            "command without it goes on"
        )
    lines = [
        f"# {args.name}: `{args.config}` on this machine — {started:%Y-%m-%d}",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; this invocation {elapsed:.0f} s"
        + (f"; runs from first start to last end {runs_wall:.0f} s" if runs_wall else ""),
        f"- machine: {describe_machine()}; "
        f"{first.get('meta_info', {}).get('torch_threads', '?')} torch "
        "threads per run",
        f"- command: `{shown_command(omit=('--commit-only',))}`",
        f"- config: `{args.config}`, overrides {args.overrides or 'none'}; " + outcome,
        f"- data: {scrub(str(first.get('data_info', {}).get('source', '?')), ROOT)}, label balance "
        f"{first.get('data_info', {}).get('label_balance', '?')}",
        f"- {len(finals)} final runs, {len(records) - len(finals)} search runs; "
        + (
            "the full report (bottom line, intervals, paired tests, recommendations, plots) is "
            f"in `{stem}-report/report.md`, made from the records in `{stem}-runs/`"
            if finals
            else f"no final run yet, so no report; the records are in `{stem}-runs/`"
        ),
        "",
        summary.read_text(encoding="utf-8") if summary and summary.exists() else "",
        "## Accuracy per epoch (%)",
        "",
    ]
    if not finals:
        lines.append("No final run has finished yet.")
    verdicts = []
    for record in finals:
        line = f"- {record['run_id']}: {accuracy_per_epoch(record) or record['status']}"
        if args.min_accuracy is not None:
            accuracy = record["metrics"].get("accuracy")
            ok = accuracy is not None and accuracy >= args.min_accuracy
            verdicts.append(ok)
            line += f" — target ≥ {100 * args.min_accuracy:.0f}%: " + ("met" if ok else "NOT met")
        lines.append(line)

    searches = [r for r in records if r["run_info"].get("role") == "search"]
    if searches:
        lines += ["", "## Search runs: accuracy per epoch on the validation split (%)", ""]
        for record in searches:
            train_s = record["train_info"].get("train_time_s")
            lines.append(
                f"- {record['run_id']}: {accuracy_per_epoch(record) or record['status']}"
                + (f"; train time {train_s:.0f} s" if train_s is not None else "")
            )

    report = report_dir / "report.md" if report_dir else None
    if report is not None and report.exists():
        text = report.read_text(encoding="utf-8")
        for title in ("Bottom line", STUDY_ORDERINGS):
            if f"## {title}\n" in text:
                section = text.split(f"## {title}\n")[1].split("\n## ")[0]
                lines += ["", f"## {title} (from the report)", section.rstrip()]
    out = RESULTS / f"{stem}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}, {stem}-runs/" + (f" and {stem}-report/" if report_dir else ""))
    return 0 if (code == 0 or (args.commit_only and complete)) and all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
