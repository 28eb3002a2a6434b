"""``headrace local up | demo | invoke``."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from headrace.outputs import DEFAULT_LOCAL_OUTPUTS, INVOKE_CLIENT

from .emulator import DEFAULT_API_PORT, DEFAULT_PORT, EmulatorError

ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: Any) -> None:
    local = subparsers.add_parser("local", help="the embedded runtime: the real pipeline on this machine")
    sub = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the emulator, deploy the program, serve until Ctrl-C")
    _ports(up)
    up.add_argument(
        "--samples",
        action="store_true",
        help="once up, upload the demo's sample files (samples/manifest.json) to their keys",
    )
    up.add_argument(
        "--config",
        dest="config",
        action="append",
        type=config_setting,
        default=[],
        metavar="KEY=VALUE",
        help=(
            "set a headrace: config key over Pulumi.local.yaml and the runtime's own settings "
            "(EMBEDDED_CONFIG), repeatable; KEY as `pulumi config set --path` spells it, with or "
            "without headrace: (functions.processor.timeout_seconds=120); VALUE is JSON when it "
            "parses as JSON (120, true, null, '[\"phone\"]', '\"quoted\"'), else the text as typed"
        ),
    )
    up.set_defaults(func=_up)

    demo = sub.add_parser(
        "demo",
        help="start, push the bundled samples, print the results, stop",
        description=(
            "Start the embedded runtime, push the bundled samples, print the results, stop. It "
            "takes no --config: it checks each sample against the outcome samples/manifest.json "
            "expects with the stock settings; try other settings with `local up --config`."
        ),
    )
    _ports(demo)
    demo.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the files (default 120)"
    )
    demo.set_defaults(func=_demo)

    invoke = sub.add_parser("invoke", help="invoke a deployed function once (needs `headrace local up`)")
    invoke.add_argument("function", help="logical name: processor, loader, report, ingest, ingest-worker")
    invoke.add_argument("--payload", default="{}", help="event JSON (default {})")
    invoke.add_argument(
        "--outputs", type=Path, default=DEFAULT_LOCAL_OUTPUTS, help="outputs file of the running runtime"
    )
    invoke.set_defaults(func=_invoke)


def _ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"emulator port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--api-port", type=_port, default=DEFAULT_API_PORT, help=f"HTTP API port (default {DEFAULT_API_PORT})"
    )


# A key path segment: config keys are snake_case names (`pulumi config set --path` would
# also take list indices, [0], and quoted keys, ["a.b"]; no key of the namespace needs them).
_SEGMENT = re.compile(r"[A-Za-z0-9_]+")
NAMESPACE = "headrace"


def config_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``local up --config``: the key with its namespace
    (``headrace:functions.processor.timeout_seconds``) and the value. VALUE is read as JSON
    when it is JSON (numbers, true/false, null, "strings", lists, objects) and is the text
    as typed otherwise (``DEBUG``); one that starts like a JSON list, object or string but
    is not JSON is refused rather than taken as text."""
    key, equals, raw = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE (e.g. functions.processor.timeout_seconds=120)"
        )
    namespace, colon, path = key.rpartition(":")
    if colon and namespace != NAMESPACE:
        raise argparse.ArgumentTypeError(
            f"{key!r}: only keys of the {NAMESPACE}: namespace can be set (the program's configuration)"
        )
    segments = path.split(".")
    if "[" in path:
        raise argparse.ArgumentTypeError(
            f"{key!r}: list elements cannot be set one by one; set the whole list "
            "(pii.disabled_rules='[\"phone\"]')"
        )
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise argparse.ArgumentTypeError(
            f"{key!r} is not a key path: names of letters, digits and _ joined by dots "
            "(functions.processor.timeout_seconds)"
        )
    return f"{NAMESPACE}:{path}", _config_value(key, raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _config_value(key: str, raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        if raw.strip()[:1] in ("[", "{", '"'):
            raise argparse.ArgumentTypeError(
                f"{key}: {raw!r} is not JSON ({exc}); "
                "quote the strings of a list, and the list for the shell: '[\"phone\"]'"
            ) from None
        return raw


def config_overrides(settings: list[tuple[str, Any]]) -> dict[str, Any]:
    """``--config`` settings, in order (a later one wins), as LocalRuntime's ``overrides``:
    ``{"headrace:functions": {"processor": {"timeout_seconds": 120}}}``."""
    from .deploy import merge_config

    overrides: dict[str, Any] = {}
    for key, value in settings:
        top, *rest = key.split(".")
        for part in reversed(rest):
            value = {part: value}
        overrides = merge_config(overrides, {top: value})
    return overrides


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return port


def _interrupt_on_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) stop the runtime as Ctrl-C does, so
    its cleanup runs: PostgreSQL runs in a session of its own and would outlive it.

    SIGINT too, explicitly: a runtime started in the background by a script (``headrace
    local up &``) inherits SIGINT ignored, and Python then installs no handler of its own,
    so ``kill -INT`` did nothing.

    Once: the cleanup the first one starts must not be cut short by a second (an impatient
    Ctrl-C), which left PostgreSQL running until the next start."""
    from .runtime import STOP_SIGNALS  # (imported when used: the runtime's imports are heavy)

    def interrupt(*_: object) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        raise KeyboardInterrupt

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)


def _one_line_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A runtime that cannot start (a port in use, another runtime on the state directory)
    is one error line and exit status 2, not a traceback; an interrupted one (Ctrl-C or
    SIGINT, SIGTERM, SIGHUP) stops what it started and exits 130."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        if args.port == args.api_port:
            print(f"headrace: error: --port and --api-port are both {args.port}", file=sys.stderr)
            return 2
        _interrupt_on_signals()
        try:
            return command(args)
        except EmulatorError as exc:
            print(f"headrace: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a port taken between the check and the bind
            if exc.errno != errno.EADDRINUSE:
                raise
            print(
                f"headrace: error: a port of the runtime was taken while it started ({exc})", file=sys.stderr
            )
            return 2
        except KeyboardInterrupt:  # everything started was stopped on the way out
            print("interrupted: stopped", file=sys.stderr)
            return 130

    return run


def print_line(console: Console, line: str) -> None:
    """Print a line of the executor's (an invocation, a code change) as it is: it quotes
    what others wrote — an object key, a request path, an error message — where rich's
    markup would take ``[bold]`` for a style and refuse ``[/]`` with an exception (the
    line, and those after it in the batch, were lost; an HTTP API request got no answer)."""
    console.print(line, markup=False, highlight=False)


@_one_line_errors
def _up(args: argparse.Namespace) -> int:
    from .runtime import LocalRuntime

    # Lines are never wrapped (a terminal wraps them; a log file or a pipe keeps one line per
    # line, for grep): rich wraps at 80 columns when the output is not a terminal.
    console = Console(soft_wrap=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for key, value in args.config:
        console.print(
            f"config: {key} = {json.dumps(value, ensure_ascii=False)}  (--config)",
            markup=False,
            highlight=False,
        )
    runtime = LocalRuntime(
        ROOT,
        port=args.port,
        api_port=args.api_port,
        on_invocation=functools.partial(print_line, console),
        overrides=config_overrides(args.config),
        watch_code=True,
    )
    with runtime:
        console.print(f"[bold]headrace local[/] is up: AWS API on {runtime.emulator.endpoint}")
        console.print(f"outputs: {runtime.outputs_path}", markup=False)
        for name in ("raw_bucket", "processed_bucket", "ingest_api_url", "metadata_table"):
            console.print(f"  {name:<18} {runtime.outputs.get(name)}")
        console.print(
            f"try:  aws --endpoint-url {runtime.emulator.endpoint} s3 cp samples/sales.csv "
            f"s3://{runtime.outputs['raw_bucket']}/incoming/sales/sales.csv"
        )
        for line in runtime.relaxed:
            console.print(f"[yellow]relaxed locally:[/] {escape(line)}")
        if args.samples:
            from .demo import load_manifest, upload

            samples = load_manifest(ROOT / "samples")
            upload(runtime, samples)
            console.print(f"uploaded {len(samples)} sample files; their outcomes follow")
        console.print("Ctrl-C stops everything.")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C; SIGTERM and SIGHUP raise it too
            threading.Event().wait()
    console.print("stopped")
    return 0


@_one_line_errors
def _demo(args: argparse.Namespace) -> int:
    from . import demo

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # rich draws for 80 columns when the output is not a terminal (make demo in a CI log):
    # the table cut the sample names and the S3 paths broke mid-word
    console = Console(width=None if sys.stdout.isatty() else DEMO_LOG_WIDTH)
    return demo.run(ROOT, console, port=args.port, api_port=args.api_port, timeout=args.timeout)


DEMO_LOG_WIDTH = 120


def _invoke(args: argparse.Namespace) -> int:
    """Lambda's Invoke on the runtime's emulator, which hands it to the executor: the
    function runs in its warm sandbox, as its execution role, as `aws lambda invoke` runs it."""
    from botocore.exceptions import BotoCoreError, ClientError

    from headrace.outputs import OutputsError, StackOutputs

    from .runtime import not_running

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        print(f"headrace: error: --payload is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        outputs = StackOutputs.load(args.outputs)
    except OutputsError as exc:
        print(f"headrace: error: {exc}", file=sys.stderr)
        return 2
    problem = not_running(args.outputs)
    if problem:
        print(f"headrace: error: {problem}", file=sys.stderr)
        return 2
    names = outputs.model_extra.get("function_names", {}) if outputs.model_extra else {}
    logical = args.function.replace("_", "-")  # ingest_worker, as the config section is spelt
    deployed = names.get(logical, args.function)
    awslambda = outputs.client("lambda", **INVOKE_CLIENT)
    try:
        answer = awslambda.invoke(FunctionName=deployed, Payload=json.dumps(payload).encode())
    except awslambda.exceptions.ResourceNotFoundException:
        print(
            f"headrace: error: no function {args.function!r} (deployed: {', '.join(sorted(names))})",
            file=sys.stderr,
        )
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"headrace: error: cannot reach the embedded runtime of {args.outputs}: {exc}", file=sys.stderr)
        return 2
    result = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        hint = ""
        if result.get("errorType") == "Sandbox.Timedout":  # name the setting that gives it more
            setting = f"functions.{args.function.replace('-', '_')}.timeout_seconds"
            hint = f" ({setting}; `headrace local up --config {setting}=N`, at most 900, gives it more)"
        print(
            f"headrace: error: {result.get('errorType')}: {result.get('errorMessage')}{hint}", file=sys.stderr
        )
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0
