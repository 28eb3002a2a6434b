"""``headrace status``: how a stack is doing, from its outputs file.

Prints the depth of every queue and dead-letter queue (waiting / in flight), the file that
completed last, and the processing and load failures of the last hour, or of the last
``--minutes`` (at most 10080, a week). Both come from the metadata table's ``by_day`` index:
the uploads of every day the window covers, and of the day before it.

Exit status: 0 when every DLQ is empty, 1 when a DLQ holds messages (they need an
operator: inspect, fix, redrive), 2 when the stack cannot be read (no outputs file, no
credentials, endpoint down).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal.metadata_queries import files_on_day
from handlers.dal.queues import message_counts
from handlers.logic.printable import printable
from handlers.logic.report.build import failures_since, last_completed, parse_time
from handlers.models.report import Failure
from headrace.outputs import (
    DocstringHelp,
    OutputsError,
    StackOutputs,
    add_outputs_option,
    naming,
)

# (label, output name, is a DLQ); ingest queues only when the stack exports them
QUEUES = (
    ("processing", "processing_queue_url", False),
    ("processing DLQ", "processing_dlq_url", True),
    ("load", "load_queue_url", False),
    ("load DLQ", "load_dlq_url", True),
    ("ingest", "ingest_queue_url", False),
    ("ingest DLQ", "ingest_dlq_url", True),
)
OPTIONAL_OUTPUTS = {"ingest_queue_url", "ingest_dlq_url"}
# The longest --minutes: each upload day the window covers is one query of the by_day index
# reading all of that day's items, so a week (nine queries at most) bounds the work.
MAX_MINUTES = 7 * 24 * 60
# What status reads of an item (last_completed, failures_since, _fixed_in_place): a whole
# item, with its schema, statistics and quality issues, is 8 KB to 300 KB, and a week of a
# busy stack is a hundred thousand of them.
STATUS_ATTRIBUTES = (
    "object_key",
    "version",
    "status",
    "uploaded_at",
    "completed_at",
    "row_count",
    "skip_reason",
    "superseded_by",
    "error",
    "failed_at",
    "load_status",
    "load_error",
    "load_failed_at",
)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    url: str
    dead_letter: bool
    waiting: int
    in_flight: int


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="queue and DLQ depths, last completed file, recent failures of a stack",
        description=__doc__,
        formatter_class=DocstringHelp,
    )
    add_outputs_option(p)
    p.add_argument(
        "--minutes",
        type=_window_minutes,
        default=60,
        help=f"how far back to list failures (default 60, at most {MAX_MINUTES}: a week)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=run)


def _window_minutes(value: str) -> int:
    """``--minutes``: a whole number from 1 to :data:`MAX_MINUTES` (argparse reports the error)."""
    try:
        minutes = int(value)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_MINUTES} (a week), not {value}"
        )
    return minutes


def run(args: argparse.Namespace, now: datetime | None = None) -> int:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        outputs = StackOutputs.load(args.outputs)
        status = collect(outputs, now, timedelta(minutes=args.minutes))
    except OutputsError as exc:
        return _fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return _fail(f"cannot read the stack in {args.outputs}: {exc}")
    if args.json:
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(status, args.outputs, now))
    return 1 if status["dead_letters"] else 0


def collect(outputs: StackOutputs, now: datetime, window: timedelta) -> dict[str, Any]:
    sqs = outputs.client("sqs")
    queues: list[QueueDepth] = []
    for label, output, dead_letter in QUEUES:
        try:
            url = str(outputs.get(output))
        except OutputsError:
            if output in OPTIONAL_OUTPUTS:
                continue
            raise
        with naming(f"the {label}{'' if dead_letter else ' queue'} ({output}: {url})"):
            counts = message_counts(url, sqs)
        queues.append(QueueDepth(label, url, dead_letter, *counts))
    table = outputs.resource("dynamodb").Table(outputs.metadata_table)
    # Failures are found by upload day: read every day the window covers, and the day before
    # it (a file uploaded before midnight can fail after it).
    today = now.date()
    days = (today - (now - window).date()).days + 2
    with naming(f"the metadata table {outputs.metadata_table}"):
        items = [
            item
            for back in range(days)
            for item in files_on_day(table, (today - timedelta(days=back)).isoformat(), STATUS_ATTRIBUTES)
        ]
    last = last_completed(items)
    failures = failures_since(items, now - window)
    replaced = _fixed_in_place(items)
    return {
        "queues": [asdict(q) for q in queues],
        "dead_letters": sum(q.waiting + q.in_flight for q in queues if q.dead_letter),
        "last_completed": (
            {
                "object_key": last.get("object_key"),
                "version": last.get("version"),
                "completed_at": last.get("completed_at"),
                "row_count": last.get("row_count"),
            }
            if last
            else None
        ),
        "failures": [
            {
                **f.model_dump(),
                "replaced": f.replaced or replaced(f),
            }
            for f in failures
        ],
        "window_minutes": int(window.total_seconds() // 60),
        "uploads_since": (today - timedelta(days=days - 1)).isoformat(),
    }


def _fixed_in_place(items: list[dict[str, Any]]) -> Callable[[Failure], bool]:
    """Whether a failure's key has a version uploaded since (or with it) that completed: a
    file fixed in place and uploaded again needs no action. Said, not hidden: it did fail,
    and its DLQ message may wait. By upload time, the order the pipeline keeps, not by
    completion time (an older version completing late replaces nothing). A failure whose
    version is marked ``superseded_by`` (``Failure.replaced``, as the daily report counts it)
    is one too, whatever day the newer version was uploaded on."""
    uploaded = {
        (str(i.get("object_key")), str(i.get("version"))): parse_time(i.get("uploaded_at")) for i in items
    }
    completed: dict[str, list[tuple[str, datetime]]] = {}
    for item in items:
        at = parse_time(item.get("uploaded_at"))
        if item.get("status") == "completed" and at:
            completed.setdefault(str(item.get("object_key")), []).append((str(item.get("version")), at))

    def replaced(failure: Failure) -> bool:
        failed = uploaded.get((failure.object_key, failure.version))
        return failed is not None and any(
            version != failure.version and at >= failed
            for version, at in completed.get(failure.object_key, [])
        )

    return replaced


def render(status: dict[str, Any], outputs_path: Path, now: datetime) -> str:
    lines = [f"headrace status of {outputs_path} at {now:%Y-%m-%d %H:%M:%S}Z", ""]
    lines.append(f"  {'queue':<16}{'waiting':>9}{'in flight':>11}")
    for q in status["queues"]:
        flag = "   <- needs attention" if q["dead_letter"] and (q["waiting"] or q["in_flight"]) else ""
        lines.append(f"  {q['name']:<16}{q['waiting']:>9}{q['in_flight']:>11}{flag}")
    lines.append("")
    last = status["last_completed"]
    if last:
        when = parse_time(last["completed_at"])
        ago = f" ({_ago(now - when)} ago)" if when else ""
        rows = f", {last['row_count']:,} rows" if isinstance(last.get("row_count"), int) else ""
        lines.append(f"Last completed file: {printable(last['object_key'])}{rows}")
        lines.append(f"  at {last['completed_at']}{ago}, version {last['version']}")
    else:
        lines.append(f"Last completed file: none uploaded since {status['uploads_since']}")
    failures = status["failures"]
    lines.append("")
    lines.append(f"Failures in the last {_minutes(status['window_minutes'])}: {len(failures) or 'none'}")
    for f in failures:
        error = printable(" ".join(str(f["error"]).split())[:300])  # cut before escaping: no half escape
        replaced = "  (a newer version completed since)" if f.get("replaced") else ""
        lines.append(
            f"  {str(f['at'])[:19].replace('T', ' ')}  {f['stage']:<10}  {printable(f['object_key'])}{replaced}"
        )
        lines.append(f"      {error}")
    lines.append("")
    if status["dead_letters"]:
        lines.append(
            f"Attention: {status['dead_letters']} message(s) in dead-letter queues; inspect them "
            f"(headrace dlq inspect --outputs {outputs_path} --queue processing|load|ingest), fix the "
            "cause, then redrive (headrace dlq redrive ... --execute). See docs/operations.md."
        )
    else:
        lines.append("All dead-letter queues are empty.")
    return "\n".join(lines) + "\n"


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _minutes(n: int) -> str:
    return "hour" if n == 60 else f"{n} minutes"


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
