"""``headrace experiments run | report``."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from .suites import EXPERIMENTS, SUITES


def register(subparsers: Any) -> None:
    experiments = subparsers.add_parser(
        "experiments",
        help="measure a stack (latency, scaling, throughput, failures, configuration) and chart it",
    )
    sub = experiments.add_subparsers(dest="experiments_command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the experiment suite against a stack, from its outputs file",
        description="Run the experiment suite against a stack (docs/experiments.md). Uploads go under "
        "<raw_prefix>experiments/<run id>-...; every configuration change is undone and every uploaded "
        "file removed at the end, also on Ctrl-C.",
    )
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--outputs", type=Path, metavar="PATH", help="stack outputs file (pulumi stack output --json)"
    )
    target.add_argument(
        "--local",
        action="store_true",
        help="start the embedded runtime on free ports for the run, then stop it",
    )
    run.add_argument(
        "--suite", choices=sorted(SUITES), default="quick", help="how much to measure (default quick)"
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("experiments-results"),
        metavar="DIR",
        help="results directory (default experiments-results, in the current directory)",
    )
    run.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated subset of the suite's experiments ({', '.join(EXPERIMENTS)})",
    )
    run.add_argument("--label", help="environment label in the report (default: <kind> (<stack>))")
    run.add_argument(
        "--max-size-mb",
        type=float,
        help="skip file sizes above this (default: no limit on the embedded runtime, 100 elsewhere)",
    )
    run.add_argument(
        "--db-outage",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include (or skip) the database outage (default: in the full suite only)",
    )
    run.add_argument(
        "--settle-seconds",
        type=float,
        help="wait after each configuration change (default 3 on the embedded runtime, 1 elsewhere)",
    )
    run.add_argument(
        "--keep", action="store_true", help="leave the uploaded files and their outputs in the stack"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log every step")
    run.set_defaults(func=_run)

    report = sub.add_parser("report", help="charts (PNG) and summary.md from a results directory")
    report.add_argument(
        "--in", dest="input", type=Path, required=True, metavar="DIR", help="results of a run"
    )
    report.add_argument(
        "--compare", type=Path, metavar="OTHER_DIR", help="a second run (another environment), side by side"
    )
    report.add_argument("--out", type=Path, help="where to write the report (default: the --in directory)")
    report.add_argument(
        "--monthly-files",
        type=int,
        default=100_000,
        help="volume for the AWS cost estimate (default 100,000)",
    )
    report.set_defaults(func=_report)


def _error(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from headrace.outputs import OutputsError

    from .run import ResultsError, run_local, run_suite

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    only = [n.strip() for n in args.only.split(",")] if args.only is not None else None
    if only is not None and not all(only):
        return _error(f"--only {args.only!r}: an empty experiment name")
    unknown = sorted(set(only or ()) - set(EXPERIMENTS))
    if unknown:
        return _error(f"unknown experiments: {', '.join(unknown)} (known: {', '.join(EXPERIMENTS)})")
    suite = SUITES[args.suite].with_db_outage(args.db_outage)
    outside = [n for n in only or () if n not in suite.experiments()]
    if outside:
        return _error(
            f"not in the {suite.name} suite: {', '.join(outside)} (it runs {', '.join(suite.experiments())})"
        )
    if args.settle_seconds is not None and not 0 <= args.settle_seconds < math.inf:
        return _error(
            f"--settle-seconds must be a number of seconds, 0 or more (got {args.settle_seconds:g})"
        )
    if args.max_size_mb is not None and not args.max_size_mb > 0:  # NaN too: it would lift the limit
        return _error(f"--max-size-mb must be more than 0 (got {args.max_size_mb:g})")
    options: dict[str, Any] = {
        "only": only,
        "settle_seconds": args.settle_seconds,
        "max_size_mb": args.max_size_mb,
        "db_outage": args.db_outage,
        "keep": args.keep,
        "label": args.label,
    }
    console = Console(stderr=True)
    try:
        if args.local:
            return run_local(args.suite, args.out, console=console, **options)
        return run_suite(args.outputs, args.suite, args.out, console=console, **options)
    except (OutputsError, ResultsError) as exc:
        return _error(str(exc))


def _report(args: argparse.Namespace) -> int:
    from .report import ReportError, render

    if args.monthly_files < 1:
        return _error(f"--monthly-files must be at least 1 (got {args.monthly_files})")
    try:
        written = render(
            args.input, args.out or args.input, compare=args.compare, monthly_files=args.monthly_files
        )
    except ReportError as exc:
        return _error(str(exc))
    for path in written:
        print(path)
    return 0
