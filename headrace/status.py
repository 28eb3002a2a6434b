"""``headrace status``: how a stack is doing, from its outputs file.

Prints the depth of every queue and dead-letter queue (waiting / in flight), the file that
completed last (in the last week), and the processing and load failures recorded in the last
hour, or in the last ``--minutes`` (at most 10080, a week), newest first, at most ``--limit``
of them (100 by default; it says when there are more). A failure counts by when it
happened, whatever day its file was uploaded: a file uploaded weeks ago that fails now (a
redelivery, a replay, a redrive from a DLQ) is listed. Both come from the metadata table's
indexes: ``by_failure`` (the versions that failed, by the day of their latest failure) and
``by_completion`` (the completed versions, by the day they completed). A stack deployed
before ``by_failure`` existed is read by upload day instead, as older versions did (and as
``--by-upload-day`` asks): the uploads of every day the window covers and of the day before
it, which misses late failures of older uploads.

Exit status: 0 when every DLQ is empty and no load was rejected in the window, 1 when a
DLQ holds messages (they need an operator: inspect, fix, redrive) or the window lists a
load PostgreSQL rejected for good (it leaves no DLQ message, and needs an operator too:
fix the cause, then ``headrace replay --force``), 2 when the stack cannot be read (no
outputs file, no credentials, endpoint down).
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal.metadata import iso
from handlers.dal.metadata_queries import files_on_day, iter_failed_on_day, last_completed_on
from handlers.dal.queues import message_counts
from handlers.logic.printable import printable
from handlers.logic.report.build import failures_since, last_completed, parse_time
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
# The longest --minutes: a week, the longest a by-upload-day read (--by-upload-day, a stack
# without the by_failure index) may take: each upload day is one query of the by_day index
# reading all of that day's items (nine queries at most).
MAX_MINUTES = 7 * 24 * 60
# Failures listed by default, and at most (--limit): each is two lines of text.
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# How far back the last completed file is looked for: one query of the by_completion index
# per day (a few hundred bytes each), today first, stopping at the first day with one.
LAST_COMPLETED_DAYS = 8
# Failures recorded a little after ``now`` (the operator's clock behind the functions') are
# in the window too: the day they fall on is read as well.
CLOCK_SKEW = timedelta(minutes=15)
# What a by-upload-day read takes of an item (last_completed, failures_since): a whole item,
# with its schema, statistics and quality issues, is 8 KB to 300 KB, and a week of a busy
# stack is a hundred thousand of them.
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
    p.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        help=f"list at most this many failures, the newest (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
    )
    p.add_argument(
        "--by-upload-day",
        action="store_true",
        help="read the uploads of the window's days instead of the failure index (as versions "
        "before it did): also lists failures recorded before the index existed, misses late "
        "failures of older uploads, and reads every item of those days",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=run)


def _window_minutes(value: str) -> int:
    """``--minutes``: a whole number from 1 to :data:`MAX_MINUTES` (argparse reports the error)."""
    return _whole(value, MAX_MINUTES, f"{MAX_MINUTES} (a week)")


def _limit(value: str) -> int:
    """``--limit``: a whole number from 1 to :data:`MAX_LIMIT`."""
    return _whole(value, MAX_LIMIT, str(MAX_LIMIT))


def _whole(value: str, most: int, named: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= most:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {named}, not {value}")
    return number


def run(args: argparse.Namespace, now: datetime | None = None) -> int:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        outputs = StackOutputs.load(args.outputs)
        status = collect(
            outputs,
            now,
            timedelta(minutes=args.minutes),
            limit=args.limit,
            by_upload_day=args.by_upload_day,
        )
    except OutputsError as exc:
        return _fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return _fail(f"cannot read the stack in {args.outputs}: {exc}")
    if args.json:
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(status, args.outputs, now))
    return 1 if status["dead_letters"] or status["rejected_loads"] else 0


def collect(
    outputs: StackOutputs,
    now: datetime,
    window: timedelta,
    limit: int = DEFAULT_LIMIT,
    by_upload_day: bool = False,
) -> dict[str, Any]:
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
    since = now - window
    note = None
    with naming(f"the metadata table {outputs.metadata_table}"):
        read: dict[str, Any] | None = None
        if not by_upload_day:
            try:
                read = _by_index(table, now, since, limit)
            except ClientError as exc:
                if not (missing := _missing_index(exc)):
                    raise
                note = (
                    f"the metadata table has no {missing} index (a stack deployed before "
                    "it existed): failures were read by upload day, and a late failure of a file "
                    "uploaded before the window is missing. `pulumi up` adds the index (then "
                    "`headrace backfill-failures --execute` indexes the failures recorded before it)."
                )
        if read is None:
            read = _by_upload_day(table, now, since, limit)
    failures = read.pop("failures")
    listed = failures[:limit]
    return {
        "queues": [asdict(q) for q in queues],
        "dead_letters": sum(q.waiting + q.in_flight for q in queues if q.dead_letter),
        **read,
        "failures": listed,
        "failures_truncated": len(failures) > limit,
        # loads PostgreSQL rejected for good among those listed: no DLQ message says so
        "rejected_loads": sum(1 for f in listed if f["stage"] == "load" and f.get("permanent")),
        "window_minutes": int(window.total_seconds() // 60),
        "since": iso(since),
        "note": note,
    }


def _missing_index(exc: ClientError) -> str | None:
    """The index a Query named that the table does not have, or None: DynamoDB answers
    ValidationException "The table does not have the specified index: by_failure", moto
    (the embedded runtime) ResourceNotFoundException "Invalid index: by_failure for table: ..."."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code"), str(error.get("Message", ""))
    if code == "ValidationException" and "does not have the specified index:" in message:
        return message.rsplit(":", 1)[-1].strip()
    if code == "ResourceNotFoundException" and message.startswith("Invalid index: "):
        return message.removeprefix("Invalid index: ").split(" ", 1)[0]
    return None


def _by_index(table: Any, now: datetime, since: datetime, limit: int) -> dict[str, Any]:
    """The last completed file from ``by_completion``, the failures from ``by_failure``:
    each failure day of the window, newest first, only its entries at or after ``since``;
    reading stops once more than ``limit`` failures newer than any entry left are found."""
    today = now.date()
    last = None
    for back in range(LAST_COMPLETED_DAYS):
        entry = last_completed_on(table, (today - timedelta(days=back)).isoformat())
        if entry:
            item = (
                table.get_item(
                    Key={"object_key": entry["object_key"], "version": entry["version"]},
                    # its row count: what the keys-only by_completion index does not hold
                    ProjectionExpression="row_count",
                ).get("Item")
                or {}
            )
            last = _last_completed({**entry, "row_count": item.get("row_count")})
            break
    failed: list[dict[str, Any]] = []
    # The newest limit + 1 failure times read so far (a min-heap). An entry's failure_at is
    # its latest failure, so every failure not read yet is at or before the next entry's
    # failure_at; but an entry can list an older failure alone (its latest was fixed since,
    # its earlier load failure stands), which must not fill the list in place of a newer
    # one further down the index. Reading stops once more than ``limit`` failures read are
    # at or after the next entry's failure_at: nothing unread can be among the newest.
    newest: list[str] = []
    day = (now + CLOCK_SKEW).date()
    done = False
    while day >= since.date() and not done:
        for item in iter_failed_on_day(table, day.isoformat(), iso(since)):
            if len(newest) > limit and newest[0] >= str(item.get("failure_at", "")):
                done = True
                break
            failed.append(item)
            for failure in failures_since([item], since):
                heapq.heappush(newest, failure.at or "")
                if len(newest) > limit + 1:
                    heapq.heappop(newest)
        day -= timedelta(days=1)
    return {
        "last_completed": last,
        "completed_since": (today - timedelta(days=LAST_COMPLETED_DAYS - 1)).isoformat(),
        "uploads_since": None,
        "failures": _listed(failed, since),
    }


def _by_upload_day(table: Any, now: datetime, since: datetime, limit: int) -> dict[str, Any]:
    """What versions before the ``by_failure`` index read: the uploads of every day the
    window covers, and of the day before it (a file uploaded before midnight can fail after
    it); a failure of an older upload is not among them."""
    today = now.date()
    days = (today - since.date()).days + 2
    items = [
        item
        for back in range(days)
        for item in files_on_day(table, (today - timedelta(days=back)).isoformat(), STATUS_ATTRIBUTES)
    ]
    last = last_completed(items)
    uploads_since = (today - timedelta(days=days - 1)).isoformat()
    return {
        "last_completed": _last_completed(last) if last else None,
        "completed_since": uploads_since,
        "uploads_since": uploads_since,
        "failures": _listed(items, since),
    }


def _last_completed(item: dict[str, Any]) -> dict[str, Any]:
    """What status shows of the last completed file."""
    row_count = item.get("row_count")
    return {
        "object_key": item.get("object_key"),
        "version": item.get("version"),
        "completed_at": item.get("completed_at"),
        "row_count": int(row_count) if row_count is not None else None,
    }


def _listed(items: Iterable[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    """The failures of ``items`` recorded since ``since``, newest first, each with when its
    version was uploaded (a late failure of an old upload shows as one)."""
    items = list(items)
    uploaded = {(str(i.get("object_key")), str(i.get("version"))): i.get("uploaded_at") for i in items}
    return [
        {**f.model_dump(), "uploaded_at": uploaded.get((f.object_key, f.version))}
        for f in failures_since(items, since)
    ]


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
        count = last.get("row_count")
        rows = f", {count:,} row{'' if count == 1 else 's'}" if isinstance(count, int) else ""
        lines.append(f"Last completed file: {printable(last['object_key'])}{rows}")
        lines.append(f"  at {last['completed_at']}{ago}, version {last['version']}")
    elif status.get("uploads_since"):
        lines.append(f"Last completed file: none uploaded since {status['uploads_since']}")
    else:
        lines.append(f"Last completed file: none completed since {status.get('completed_since')}")
    failures = status["failures"]
    lines.append("")
    window = _minutes(status["window_minutes"])
    if status.get("failures_truncated"):
        lines.append(f"Failures in the last {window}: more than {len(failures)}; the newest {len(failures)}:")
    else:
        lines.append(f"Failures in the last {window}: {len(failures) or 'none'}")
    for f in failures:
        error = printable(" ".join(str(f["error"]).split())[:300])  # cut before escaping: no half escape
        replaced = "  (a newer version completed since)" if f.get("replaced") else ""
        uploaded = str(f.get("uploaded_at") or "")
        late = f"  (uploaded {uploaded[:10]})" if uploaded[:10] and uploaded[:10] != str(f["at"])[:10] else ""
        lines.append(
            f"  {str(f['at'])[:19].replace('T', ' ')}  {f['stage']:<10}  {printable(f['object_key'])}{replaced}{late}"
        )
        if f.get("permanent") and f["stage"] == "load":  # rejected: no retry, no dead letter
            error = f"rejected for good, not retried (no DLQ message): {error}"
        lines.append(f"      {error}")
    if status.get("failures_truncated"):
        lines.append(f"  ... and older ones, not listed: --limit (at most {MAX_LIMIT}) lists more")
    if status.get("note"):
        lines.append("")
        lines.append(f"Note: {status['note']}")
    lines.append("")
    if status["dead_letters"]:
        lines.append(
            f"Attention: {status['dead_letters']} message(s) in dead-letter queues; inspect them "
            f"(headrace dlq inspect --outputs {outputs_path} --queue processing|load|ingest), fix the "
            "cause, then redrive (headrace dlq redrive ... --execute). See docs/operations.md."
        )
    else:
        lines.append("All dead-letter queues are empty.")
    if rejected := status.get("rejected_loads"):
        lines.append(
            f"Attention: {rejected}{'+' if status.get('failures_truncated') else ''} load(s) rejected "
            "for good in the window (listed above; no DLQ message): fix the cause the reason names, "
            "then headrace replay --force KEY. See docs/operations.md (load-rejected)."
        )
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
