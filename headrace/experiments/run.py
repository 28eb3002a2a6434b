"""``headrace experiments run``: the suite against one stack, from its outputs file.

Writes into ``--out``: ``run.json`` (the environment: stack, endpoint kind, machine, suite,
git commit, the stack's relevant configuration, each experiment's status), and per
experiment ``<name>.jsonl`` (raw records) and ``<name>.summary.json``. Whatever happens —
an experiment failing, Ctrl-C, SIGTERM — every configuration change is undone and the
run's files are removed from the stack before it exits (``--keep`` leaves the files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from headrace.outputs import StackOutputs

from . import failure, filesize, latency, sweep, throughput
from .cleanup import cleanup
from .common import Context
from .stack import ExperimentStack, git_commit, machine, shielded
from .suites import EXPERIMENTS, SUITES

log = logging.getLogger("headrace.experiments")

ROOT = Path(__file__).resolve().parents[2]
RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "latency": latency.run,
    "filesize": filesize.run,
    "throughput": throughput.run,
    "failure": failure.run,
    "sweep": sweep.run,
}
REMOTE_MAX_SIZE_MB = 100.0


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: through the clean-up path."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ResultsError(Exception):
    """The results directory (``--out``) cannot be written."""


def run_suite(
    outputs_path: Path,
    suite_name: str,
    out: Path,
    *,
    only: list[str] | None = None,
    settle_seconds: float | None = None,
    max_size_mb: float | None = None,
    db_outage: bool | None = None,
    keep: bool = False,
    label: str | None = None,
    console: Console | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Run a suite; return 0 when every experiment ran and its checks passed, 1 otherwise,
    130 when interrupted, 2 when the stack cannot be used (:class:`OutputsError` when that
    is known before anything was uploaded); :class:`ResultsError` when ``out`` cannot be
    written (before anything is uploaded)."""
    console = console or Console(stderr=True)
    suite = SUITES[suite_name].with_db_outage(db_outage)
    outputs = StackOutputs.load(outputs_path)
    stack = ExperimentStack(outputs, settle_seconds=settle_seconds)
    stack.check()  # before anything is written or uploaded
    if max_size_mb is None:
        max_size_mb = math.inf if stack.kind == "embedded" else REMOTE_MAX_SIZE_MB
    names = [n for n in suite.experiments() if not only or n in only]
    try:
        out.mkdir(parents=True, exist_ok=True)
        _clear_results(out)
        (out / "run.json").touch()
    except OSError as exc:  # before anything is uploaded
        raise ResultsError(f"{out}: cannot write the results there: {exc.strerror or exc}") from exc
    started = time.time()
    info: dict[str, Any] = {
        "run_id": stack.run_id,
        "label": label
        or f"{stack.kind} ({outputs.model_extra.get('stack', '?') if outputs.model_extra else '?'})",
        "stack": (outputs.model_extra or {}).get("stack"),
        "environment": stack.kind,
        "region": outputs.region,
        "suite": suite.name,
        "experiments": {},
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_commit(ROOT, exclude=out),
        "settle_seconds": stack.settle_seconds,
        "max_size_mb": None if math.isinf(max_size_mb) else max_size_mb,
        **(extra or {}),
    }
    with contextlib.suppress(Exception):
        info["configuration"] = stack.describe()
    run_json = out / "run.json"
    _write(run_json, info)
    console.print(
        f"[bold]headrace experiments[/] run {stack.run_id}: suite {suite.name} on {info['label']} "
        f"({', '.join(names)})"
    )
    scratch = Path(tempfile.mkdtemp(prefix="headrace-experiments-"))
    interrupted = False
    failed = False
    unusable = False
    try:
        with _terminate_as_interrupt(), _progress(console) as progress:

            def advance_factory(description: str, total: int) -> Callable[[int], None]:
                task = progress.add_task(description, total=total)
                return lambda n: progress.advance(task, n)

            ctx = Context(
                stack=stack,
                suite=suite,
                out=out,
                scratch=scratch,
                started=started,
                max_size_mb=max_size_mb,
                advance_factory=advance_factory,
            )
            try:
                warm_up(ctx)
            except Exception as exc:
                unusable = True
                log.debug("%s", traceback.format_exc())
                console.print(f"[red]the stack is not usable:[/] {type(exc).__name__}: {exc}")
                info["warm_up"] = f"failed: {type(exc).__name__}: {exc}"
                names = []
            for name in names:
                begun = time.time()
                try:
                    summary = RUNNERS[name](ctx)
                    status = "ok" if summary.get("complete", True) else "incomplete"
                    if not _checks_pass(summary):
                        status = "checks failed"
                    info["experiments"][name] = {"status": status, "seconds": round(time.time() - begun, 1)}
                    failed |= status != "ok"
                except KeyboardInterrupt:
                    info["experiments"][name] = {
                        "status": "interrupted",
                        "seconds": round(time.time() - begun, 1),
                    }
                    raise
                except Exception as exc:
                    failed = True
                    log.debug("%s", traceback.format_exc())
                    console.print(f"[red]{name} failed:[/] {type(exc).__name__}: {exc}")
                    info["experiments"][name] = {
                        "status": "failed",
                        "error": f"{type(exc).__name__}: {exc}",
                        "seconds": round(time.time() - begun, 1),
                    }
                _write(run_json, info)
            info["notes"] = ctx.notes
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: undoing changes and removing this run's files[/]")
    finally:
        with shielded():
            if keep:
                info["cleanup"] = {"kept": len(stack.uploads)}
            else:
                console.print(f"cleaning up {len(stack.uploads)} uploaded files ...")
                info["cleanup"] = cleanup(stack, drain_seconds=suite.drain_seconds)
            shutil.rmtree(scratch, ignore_errors=True)
            finished = time.time()
            info["finished_at"] = datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds")
            info["duration_seconds"] = round(finished - started, 1)
            info["interrupted"] = interrupted
            if stack.unrestored:
                info["unrestored"] = stack.unrestored
            _write(run_json, info)
    for message in stack.unrestored:
        console.print(f"[red]{message}[/]: the stack is still changed, put it back by hand")
    console.print(f"done in {info['duration_seconds']:.0f} s; results in {out}")
    if interrupted:
        return 130
    if unusable:
        return 2
    return 1 if failed or stack.unrestored else 0


def _clear_results(out: Path) -> None:
    """Remove an earlier run's results from ``out``: the files of the known experiments,
    nothing else (``--out`` may hold other files)."""
    for name in EXPERIMENTS:
        (out / f"{name}.jsonl").unlink(missing_ok=True)
        (out / f"{name}.summary.json").unlink(missing_ok=True)


def warm_up(ctx: Context) -> None:
    """One file through the whole pipeline before measuring (not recorded): proves the
    stack works, and the first experiment does not pay the loader's first cold start."""
    from .common import loaded_or_final
    from .data import csv_bytes

    upload = ctx.stack.upload("warm-up.csv", csv_bytes(100, ctx.scratch))
    items = ctx.stack.wait([upload], time.monotonic() + 120, done=loaded_or_final)
    item = items.get((upload.key, upload.version)) or {}
    if item.get("status") != "completed":
        raise RuntimeError(
            f"the warm-up file did not complete within 120 s (status {item.get('status', 'missing')}): "
            "is the pipeline running?"
        )


def _checks_pass(summary: dict[str, Any]) -> bool:
    """Every ``checks`` entry (at any depth) that is a boolean holds."""

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "checks" and isinstance(value, dict):
                    if any(v is False for v in value.values()):
                        return False
                elif not walk(value):
                    return False
        return True

    return walk(summary)


@contextlib.contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress


def _write(path: Path, info: dict[str, Any]) -> None:
    path.write_text(json.dumps(info, indent=2, default=str, sort_keys=True) + "\n")


def run_local(suite_name: str, out: Path, console: Console | None = None, **options: Any) -> int:
    """Start the embedded runtime on free ports, run the suite against it, stop it. A runtime
    that does not start is one error line (its logs kept) and exit status 2."""
    from headrace.local.deploy import DeployError
    from headrace.local.emulator import EmulatorError, free_port
    from headrace.local.postgres import PostgresError
    from headrace.local.runtime import LocalRuntime

    console = console or Console(stderr=True)
    state = Path(tempfile.mkdtemp(prefix="headrace-experiments-local-"))
    keep_state = False
    begun = time.time()
    console.print("starting the embedded runtime ...")
    runtime = LocalRuntime(
        ROOT, state_dir=state, port=free_port(), api_port=free_port(), on_invocation=log.debug
    )
    try:
        try:
            runtime.start()  # stops what it started when it fails
        except (EmulatorError, PostgresError, DeployError) as exc:
            keep_state = True  # the error points at its logs
            print(f"headrace: error: the embedded runtime did not start: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            console.print("[yellow]interrupted while the embedded runtime started: stopped[/]")
            return 130
        try:
            startup = time.time() - begun
            console.print(f"embedded runtime up in {startup:.1f} s")
            return run_suite(
                runtime.outputs_path,
                suite_name,
                out,
                console=console,
                extra={"runtime_startup_seconds": round(startup, 1)},
                **options,
            )
        finally:
            with shielded():
                runtime.stop()
    finally:
        if not keep_state:
            shutil.rmtree(state, ignore_errors=True)
