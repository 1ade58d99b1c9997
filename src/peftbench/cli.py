"""The command line: peftbench run | plan | report | methods | schema."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from peftbench.errors import PeftbenchError

EXIT_RUN_FAILED = 1  # some run failed or was interrupted; the others are recorded
EXIT_BAD_INPUT = 2  # nothing was run
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: the current run is recorded as canceled


def _load(args: argparse.Namespace):
    from peftbench.api import load_config

    seeds = None
    if getattr(args, "seeds", None):
        try:
            seeds = [int(seed) for seed in args.seeds.split(",")]
        except ValueError:
            raise PeftbenchError(
                f"--seeds: expected comma-separated integers such as 0,1,2, got {args.seeds!r}"
            ) from None
    methods = None
    if getattr(args, "methods", None):
        methods = [label.strip() for label in args.methods.split(",") if label.strip()]
    overrides = list(args.overrides)
    if getattr(args, "parallel", None) is not None:
        overrides += ["execution.backend=ray", f"execution.max_concurrent={args.parallel}"]
    return load_config(args.config, overrides, methods=methods, seeds=seeds)


def cmd_run(args: argparse.Namespace) -> int:
    from peftbench.api import run
    from peftbench.results import RECORD_FILE, RUNS_DIR

    config = _load(args)
    outcome = run(config, force=args.force)
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
    from peftbench.interrupts import sigterm_as_interrupt
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
    # The memory prediction runs the tensor memory tracker, whose finalizers can drop a
    # Ctrl-C: inside the block it is noted and raised at the simulation's next step.
    with sigterm_as_interrupt():
        print(describe_plan(config), flush=True)
        if not args.no_memory:
            print(describe_memory(config, budget))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from peftbench.field_help import describe_methods

    methods = describe_methods()
    if args.json:
        print(json.dumps(methods, indent=2))
        return 0
    for method in methods:
        print(f"{method['name']}: {method['description']}")
        for setting in method["settings"]:
            print(f"    {setting['name']} = {setting['default']!r}")
            if args.help_text and setting["help"]:
                print(
                    textwrap.fill(
                        setting["help"], 96, initial_indent=" " * 8, subsequent_indent=" " * 8
                    )
                )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from peftbench.schema import shipped_schema

    print(json.dumps(shipped_schema(), indent=2))
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
    from peftbench import __version__

    verbosity = _verbosity_options()
    parser = argparse.ArgumentParser(
        prog="peftbench",
        description="Compare fine-tuning methods side by side under identical conditions.",
        parents=[verbosity],
    )
    parser.add_argument("--version", action="version", version=f"peftbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_and_plan(commands, verbosity)
    methods = commands.add_parser(
        "methods", help="list the registered methods and their settings", parents=[verbosity]
    )
    methods.add_argument("--json", action="store_true", help="as JSON, with each setting's help")
    methods.add_argument(
        "--help-text", action="store_true", help="with what each setting means and why its default"
    )
    methods.set_defaults(handler=cmd_methods)
    schema = commands.add_parser(
        "schema", help="print the JSON Schema of run records (record.json)", parents=[verbosity]
    )
    schema.set_defaults(handler=cmd_schema)
    _add_report(commands, verbosity)
    return parser


def _verbosity_options() -> argparse.ArgumentParser:
    """-q / -v, which work before or after the command (`peftbench -q run ...`, `run -q`)."""
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=-1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="print only warnings, errors and where the results are",
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="print debug detail as well",
    )
    return verbosity


def _add_run_and_plan(commands: Any, verbosity: argparse.ArgumentParser) -> None:
    """The two commands that read an experiment config."""

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, parents=[verbosity])
        sub.add_argument("config", help="experiment YAML file (see configs/)")
        sub.add_argument("overrides", nargs="*", help="overrides such as training.epochs=1")
        sub.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (overrides seeds)")
        sub.add_argument(
            "--methods", help="comma-separated run labels to keep, e.g. lora,full (default: all)"
        )
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


def _add_report(commands: Any, verbosity: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", help="tables, plots and recommendations from runs", parents=[verbosity]
    )
    report.add_argument("run_dirs", nargs="+", help="experiment output directories")
    report.add_argument("--out", help="where to write the report (default: the run directory)")
    report.add_argument("--format", default="md,html,csv", help="any of md,html,csv")
    report.add_argument(
        "--reference",
        action="store_true",
        help="show the reference study's published numbers and test its orderings here",
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


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `a.b=c` overrides may also come after options such as --force."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    late_overrides = [arg for arg in unknown if "=" in arg and not arg.startswith("-")]
    if len(late_overrides) < len(unknown) or (unknown and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if late_overrides:
        args.overrides = [*args.overrides, *late_overrides]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from peftbench.logs import configure, level_for

    configure(level_for(getattr(args, "verbosity", 0)))
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
