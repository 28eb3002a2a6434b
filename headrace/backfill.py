"""``headrace backfill-failures``: give the failures recorded before the ``by_failure`` index
existed the index's keys, so ``headrace status`` lists them (run once after upgrading).

A stack upgraded from a version without the metadata table's ``by_failure`` index has failed
items without ``failure_day`` / ``failure_at``: the index does not hold them, so status does
not list them. This reads the items uploaded on each of the last ``--days`` upload days
(``by_day``, one day at a time, a page at a time, newest day first), keeps those that are
failed (processing, not a version skipped as superseded or deleted; or load) and have no
``failure_day``, and sets both from the time the failure was recorded (``failed_at``,
``load_failed_at``: the later of the two that stand). Each write is conditional: an item
that has the keys meanwhile (the processor or the loader recorded a newer failure) keeps
them, and an item that expired is not brought back. Nothing else of an item changes.

A dry run unless ``--execute``: it says how many items each day has to do. Running it again
is harmless (items done have the keys and are no longer read back); a run stopped partway
(Ctrl-C, a refused call) says which upload day it had reached: ``--until`` that day goes on
from there. Throttling is retried (adaptive retries: the client slows down when DynamoDB
throttles). Cost: every item of each day read is read (and charged) whole, as the daily
report reads it, about as much as that day's report; writes are one per item done.

Exit status: 0 when done; 2 when the stack cannot be read or a call was refused (it says
which day to go on from).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal.metadata import set_failure_keys
from handlers.dal.metadata_queries import iter_unindexed_failures_on_day
from handlers.logic.report.build import FAILED_LOADS, parse_time
from headrace.outputs import DocstringHelp, OutputsError, StackOutputs, add_outputs_option, naming

# Upload days read by default: every failure `headrace status` can show (a week's window)
# of a file uploaded in that week or the day before.
DEFAULT_DAYS = 8
# At most a year of upload days (the metadata items expire after metadata.ttl_days, 90).
MAX_DAYS = 366
# Throttled or failed calls are retried this often, the client slowing down between them.
RETRIES = {"mode": "adaptive", "max_attempts": 10}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "backfill-failures",
        help="after upgrading: let status list the failures recorded before the by_failure index",
        description=__doc__,
        formatter_class=DocstringHelp,
    )
    add_outputs_option(p)
    p.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        help=f"upload days to read, back from --until (default {DEFAULT_DAYS}, at most {MAX_DAYS}; "
        "metadata.ttl_days reaches every item kept)",
    )
    p.add_argument(
        "--until",
        type=_day,
        metavar="YYYY-MM-DD",
        help="the newest upload day to read (default today, UTC): where a stopped run goes on",
    )
    p.add_argument("--execute", action="store_true", help="write the keys (without it: a dry run)")
    p.set_defaults(func=run)


def _days(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_DAYS}, not {value}")
    return number


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a day as YYYY-MM-DD, not {value}") from None


@dataclass
class Counts:
    found: int = 0  # failed items without keys, read back
    written: int = 0  # given their keys
    kept: int = 0  # had them by the time of the write (a newer failure), or expired
    no_time: int = 0  # no failure time recorded: nothing to key them on


def failure_time(item: dict[str, Any]) -> datetime | None:
    """When the failures that stand of ``item`` were recorded: the later of ``failed_at`` (a
    processing failure, not a skip) and ``load_failed_at`` (a load failure: given up on, or
    rejected for good, as status and the report count it); None when neither
    is a time."""
    times = []
    if item.get("status") == "failed" and not item.get("skip_reason"):
        times.append(parse_time(item.get("failed_at")))
    if item.get("load_status") in FAILED_LOADS:
        times.append(parse_time(item.get("load_failed_at")))
    return max((t for t in times if t), default=None)


def run(args: argparse.Namespace, today: date | None = None) -> int:
    until: date = args.until or today or datetime.now(UTC).date()
    days = [until - timedelta(days=back) for back in range(args.days)]
    try:
        outputs = StackOutputs.load(args.outputs)
        table = outputs.resource("dynamodb", retries=RETRIES).Table(outputs.metadata_table)
    except OutputsError as exc:
        return _fail(str(exc))
    written = 0  # over every day
    verb = "set" if args.execute else "would set"
    day = until
    try:
        with naming(f"the metadata table {outputs.metadata_table}"):
            for day in days:
                counts = backfill_day(table, day.isoformat(), args.execute)
                written += counts.written
                line = f"{day}: {counts.found} failed item(s) without the keys"
                if counts.found:
                    line += f", {verb} {counts.written}"
                    if counts.kept:
                        line += f", {counts.kept} had them meanwhile (a newer failure) or expired"
                    if counts.no_time:
                        line += f", {counts.no_time} without a failure time (left alone)"
                print(line, flush=True)
    except KeyboardInterrupt:
        print(_resume(day, days), file=sys.stderr)
        raise
    except OutputsError as exc:
        return _fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return _fail(f"{exc}; {_resume(day, days)}")
    print(
        f"{'Done' if args.execute else 'Dry run'}: {verb} the keys of {written} failed item(s) uploaded "
        f"from {days[-1]} to {until}" + ("" if args.execute or not written else "; --execute writes them")
    )
    return 0


def backfill_day(table: Any, day: str, execute: bool) -> Counts:
    """One upload day: its failed items without keys, given them (with ``execute``)."""
    counts = Counts()
    for item in iter_unindexed_failures_on_day(table, day):
        counts.found += 1
        at = failure_time(item)
        if at is None:
            counts.no_time += 1
        elif not execute or set_failure_keys(table, str(item["object_key"]), str(item["version"]), at):
            counts.written += 1
        else:
            counts.kept += 1
    return counts


def _resume(day: date, days: list[date]) -> str:
    left = len(days) - days.index(day)
    return f"stopped at upload day {day} (the days after it are done): go on with --until {day} --days {left}"


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
