"""The command line: peftbench run | plan | report | methods."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from peftbench.errors import PeftbenchError

EXIT_RUN_FAILED = 1  # some run failed or was interrupted; the others are recorded
EXIT_BAD_INPUT = 2  # nothing was run
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: the current run is recorded as canceled


def _load(args: argparse.Namespace):
    from peftbench.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "seeds", None):
        overrides.append(f"seeds=[{args.seeds}]")
    if getattr(args, "parallel", None) is not None:
        overrides += ["execution.backend=ray", f"execution.max_concurrent={args.parallel}"]
    return load_config(args.config, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from peftbench.execution import run_experiment
    from peftbench.results import RECORD_FILE, RUNS_DIR

    config = _load(args)
    outcome = run_experiment(config, force=args.force)
    for message in outcome.skipped_records:
        print(f"skipped record: {message}", file=sys.stderr)
    print(f"results: {config.output_path}/summary.md, summary.csv, {RUNS_DIR}/*/{RECORD_FILE}")
    failed = [r["run_id"] for r in outcome.records if r["status"] != "success"]
    if failed:
        print(
            f"runs not successful: {', '.join(failed)} (see their {RECORD_FILE})", file=sys.stderr
        )
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return 0 if outcome.all_succeeded else EXIT_RUN_FAILED


def cmd_plan(args: argparse.Namespace) -> int:
    from peftbench.devices import gpu_memory, parse_memory
    from peftbench.plan import describe_plan
    from peftbench.plan_memory import describe_memory

    budget = None
    if args.gpu and args.memory:
        raise PeftbenchError("plan: give --gpu or --memory, not both")
    if args.gpu:
        budget = gpu_memory(args.gpu)
    elif args.memory:
        budget = (args.memory, parse_memory(args.memory))
    config = _load(args)
    print(describe_plan(config), flush=True)
    if not args.no_memory:
        print(describe_memory(config, budget))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from peftbench.methods import get_method, method_names

    for name in method_names():
        method = get_method(name)
        print(f"{name}: {method.description}")
        for field in dataclasses.fields(method.params_class):
            default = (
                field.default_factory()
                if field.default_factory is not dataclasses.MISSING
                else field.default
            )
            print(f"    {field.name} = {default!r}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from peftbench.report import build_report

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    result = build_report(
        [Path(d) for d in args.run_dirs],
        Path(args.out) if args.out else None,
        formats,
        reference=args.reference,
        resamples=args.resamples,
        level=args.level,
        alpha=args.alpha,
    )
    for message in result.skipped:
        print(f"skipped: {message}", file=sys.stderr)
    for path in result.files:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peftbench",
        description="Compare fine-tuning methods side by side under identical conditions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("config", help="experiment YAML file (see configs/)")
        sub.add_argument("overrides", nargs="*", help="overrides such as training.epochs=1")
        sub.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (overrides seeds)")
        return sub

    run = with_config("run", "run every method of an experiment and record the results")
    run.add_argument("--force", action="store_true", help="redo runs that already finished")
    run.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="N runs at once on an embedded Ray (sets execution.backend=ray, max_concurrent=N)",
    )
    run.set_defaults(handler=cmd_run)
    plan = with_config("plan", "show what would run: trainable parameters, predicted memory")
    plan.add_argument("--memory", help="a device memory to fit, e.g. 24GiB or 16GB")
    plan.add_argument("--gpu", help='a GPU to fit, e.g. "NVIDIA A10G" (unknown names list all)')
    plan.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the memory prediction (its fake training "
        "step takes seconds to a minute per method)",
    )
    plan.set_defaults(handler=cmd_plan)
    commands.add_parser("methods", help="list the registered methods and defaults").set_defaults(
        handler=cmd_methods
    )
    report = commands.add_parser("report", help="tables, plots and recommendations from runs")
    report.add_argument("run_dirs", nargs="+", help="experiment output directories")
    report.add_argument("--out", help="where to write the report (default: the run directory)")
    report.add_argument("--format", default="md,html,csv", help="any of md,html,csv")
    report.add_argument(
        "--reference", action="store_true", help="show the reference study's published numbers"
    )
    report.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    report.add_argument(
        "--level", type=float, default=0.95, help="confidence level of intervals (default 0.95)"
    )
    report.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="family-wise level of the Holm-corrected pairwise tests (default 0.05)",
    )
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from peftbench.train import quiet_libraries

    quiet_libraries()
    try:
        return args.handler(args)
    except PeftbenchError as exc:
        print(f"peftbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("peftbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
