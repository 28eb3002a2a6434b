"""The figures of one day, from that day's metadata items: the files uploaded that day that
the processor has started on (uploads still queued, or dead-lettered before the processor
recorded them, have no item; the report shows them only through the queue depths).

Pure: takes the items as plain dicts (``handlers.dal.metadata_queries``) and returns a
``DailyReport``. Items lacking attributes (still being processed, or written by an older
processor), or holding one of another shape (written by hand, or by another version), are
counted where they can be and skipped where they cannot: one odd item never costs the
day its report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from handlers.models.report import (
    DailyReport,
    Failure,
    FormatTotals,
    HourBucket,
    Latency,
    QualityIssue,
    SlowFile,
    StatusCounts,
    Warehouse,
)

TOP = 10
# Failures report.json lists (the page shows the first 50): errors are cut at 2,000
# characters (as the processor and loader write them), so about 2.5 MB at most.
MAX_FAILURES = 1000
MAX_ERROR_CHARS = 2000
# Every retry of a file is over within maxReceiveCount visibility timeouts (5 x 1,805 s with
# the defaults): a file still received or processing, unchanged for longer, was cut off
# (timeout, out of memory) on its last attempt, and its message is in the processing DLQ.
STUCK_AFTER = timedelta(hours=6)
# The load statuses of a failed load: given up on after its retries, or rejected for good.
FAILED_LOADS = ("failed", "rejected")
# Every attribute build_report reads: the report asks DynamoDB for these alone (a whole item,
# with its schema and statistics, is 8 KB to 300 KB).
REPORT_ATTRIBUTES = (
    "object_key",
    "version",
    "status",
    "skip_reason",
    "superseded_by",
    "format",
    "dataset",
    "size",
    "file_size_bytes",
    "row_count",
    "uploaded_at",
    "completed_at",
    "timings_ms",
    "quality_issues",
    "summary_truncated",
    "error",
    "failed_at",
    "failure_kind",
    "load_status",
    "load_rows",
    "load_error",
    "load_failed_at",
    "updated_at",
)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (no offset: UTC); None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _mapping(value: Any) -> dict[Any, Any]:
    """``value`` when it is a map, else an empty one (an attribute of another shape)."""
    return value if isinstance(value, dict) else {}


def _timings(value: Any) -> dict[str, float]:
    """An item's ``timings_ms``: the stages whose value is a finite number."""
    timings: dict[str, float] = {}
    for stage, ms in _mapping(value).items():
        try:
            number = float(ms)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            timings[str(stage)] = number
    return timings


def build_report(
    day: str,
    items: Iterable[dict[str, Any]],
    generated_at: datetime,
    backlog: int | None = None,
    processing_dlq: int | None = None,
    load_dlq: int | None = None,
) -> DailyReport:
    """``day``'s figures from its metadata items; ``backlog``, ``processing_dlq`` and
    ``load_dlq``: the depths of the processing queue and of the two DLQs now (None: unread).
    One pass over ``items``, keeping none of them: they can be read as they are counted; of
    the failures and slow files, only those the report lists (trimmed as they come)."""
    counts = StatusCounts()
    formats: dict[str, dict[str, int]] = defaultdict(
        lambda: {"files": 0, "completed": 0, "failed": 0, "rows": 0, "bytes": 0}
    )
    hourly = [{"received": 0, "completed": 0, "failed": 0, "skipped": 0, "fixed": 0} for _ in range(24)]
    latencies: list[float] = []
    warehouse = Warehouse()
    # only the ones the report lists are kept (at most twice as many, trimmed in batches):
    # a day of 50,000 failures or completions holds at most 2,000 failures and 20 slow files
    failures: list[Failure] = []
    failures_total = 0
    slow: list[SlowFile] = []
    issues: dict[tuple[str, str, str | None], dict[str, int]] = defaultdict(lambda: {"files": 0, "count": 0})
    rows = size = issues_left_out = 0

    for item in items:
        counts.received += 1
        status = str(item.get("status", "received"))
        key, version = str(item.get("object_key", "")), str(item.get("version", ""))
        file_bytes = _int(item.get("file_size_bytes", item.get("size")))
        size += file_bytes
        fmt = str(item.get("format") or "unknown")
        totals = formats[fmt]
        totals["files"] += 1
        totals["bytes"] += file_bytes
        uploaded = parse_time(item.get("uploaded_at"))
        hour = hourly[uploaded.hour] if uploaded else None
        if hour is not None:
            hour["received"] += 1

        # a version a newer upload of the key replaced: its outputs and rows are gone
        superseded = bool(item.get("superseded_by"))
        if status == "completed":
            counts.completed += 1
            file_rows = _int(item.get("row_count"))
            if not superseded:
                rows += file_rows
                totals["rows"] += file_rows
            totals["completed"] += 1
            if hour is not None:
                hour["completed"] += 1
            completed = parse_time(item.get("completed_at"))
            if uploaded and completed:
                latencies.append(round((completed - uploaded).total_seconds() * 1000, 1))
            timings = _timings(item.get("timings_ms"))
            if "total" in timings:
                if len(slow) >= 2 * TOP:
                    _keep_slowest(slow)
                slow.append(
                    SlowFile(
                        object_key=key,
                        version=version,
                        format=fmt if item.get("format") else None,
                        rows=file_rows,
                        bytes=file_bytes,
                        total_ms=timings["total"],
                        timings_ms=timings,
                    )
                )
            if not superseded:  # a replaced version's issues describe data that is gone
                if item.get("summary_truncated") and item.get("quality_issues") is None:
                    issues_left_out += 1
                _collect_issues(issues, str(item.get("dataset") or "?"), _mapping(item.get("quality_issues")))
        elif status == "failed" and item.get("skip_reason"):
            counts.skipped += 1
            if hour is not None:
                hour["skipped"] += 1
        elif status == "failed":
            # fixed in place (a newer version completed): listed, but no failure to act on
            if superseded:
                counts.fixed += 1
            else:
                counts.failed += 1
                totals["failed"] += 1
            if hour is not None:
                hour["fixed" if superseded else "failed"] += 1
            failures_total += 1
            _add_failure(failures, _failure(item, "processing"))
        else:
            if status == "processing":
                counts.processing += 1
            else:
                counts.waiting += 1
            changed = parse_time(item.get("updated_at")) or uploaded
            if changed and generated_at - changed > STUCK_AFTER:
                counts.stuck += 1

        load_status = item.get("load_status")
        if status == "completed" and not superseded and not load_status:
            warehouse.pending += 1
        elif load_status == "superseded" or (load_status and superseded):
            warehouse.superseded += 1
        elif load_status == "loaded":
            warehouse.loaded += 1
            warehouse.rows += _int(item.get("load_rows"))
        elif load_status in FAILED_LOADS:
            warehouse.failed += 1
            if load_status == "rejected":
                warehouse.rejected += 1
            failures_total += 1
            _add_failure(failures, _failure(item, "load"))

    _keep_listed(failures)
    _keep_slowest(slow)
    day_ends = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time.min, tzinfo=UTC)
    return DailyReport(
        date=day,
        generated_at=generated_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        partial=generated_at < day_ends,
        files=counts,
        rows=rows,
        bytes=size,
        latency_ms=Latency(
            p50=percentile(latencies, 50), p95=percentile(latencies, 95), max=max(latencies, default=None)
        ),
        warehouse=warehouse,
        formats=sorted(
            (FormatTotals(format=f, **t) for f, t in formats.items()), key=lambda t: (-t.files, t.format)
        ),
        quality_issues=sorted(
            (
                QualityIssue(kind=kind, dataset=dataset, column=column, **found)
                for (kind, dataset, column), found in issues.items()
            ),
            key=lambda q: (-q.count, -q.files, q.kind, q.dataset, q.column or ""),
        )[:TOP],
        quality_issues_total=len(issues),
        quality_issues_left_out=issues_left_out,
        slowest_files=slow,
        failures=failures,
        failures_total=failures_total,
        hourly=[HourBucket(hour=h, **b) for h, b in enumerate(hourly)],
        processing_backlog=backlog,
        processing_dlq_depth=processing_dlq,
        load_dlq_depth=load_dlq,
    )


def _add_failure(failures: list[Failure], failure: Failure) -> None:
    """Add ``failure``, first trimming ``failures`` to those listed once it holds twice as many."""
    if len(failures) >= 2 * MAX_FAILURES:
        _keep_listed(failures)
    failures.append(failure)


def _keep_listed(failures: list[Failure]) -> None:
    """``failures`` in the report's order, the open ones first, the latest first, cut to
    ``MAX_FAILURES``. Stable: equal ones stay in upload order, so trimming as they come
    keeps the same ones as one sort of them all."""
    failures.sort(key=lambda f: f.at or "", reverse=True)
    failures.sort(key=lambda f: f.replaced)
    del failures[MAX_FAILURES:]


def _keep_slowest(slow: list[SlowFile]) -> None:
    """``slow`` slowest first (equal ones in upload order), cut to ``TOP``."""
    slow.sort(key=lambda f: f.total_ms, reverse=True)
    del slow[TOP:]


def _collect_issues(
    issues: dict[tuple[str, str, str | None], dict[str, int]], dataset: str, found: dict[str, Any]
) -> None:
    def add(kind: str, column: str | None, count: Any) -> None:
        n = _int(count)
        if n > 0:
            entry = issues[(kind, dataset, column)]
            entry["files"] += 1
            entry["count"] += n

    for column, detail in _mapping(found.get("missing_values")).items():
        add("missing values", str(column), _mapping(detail).get("count"))
    for column, detail in _mapping(found.get("type_mismatches")).items():
        add("type mismatches", str(column), _mapping(detail).get("count"))
    add("malformed rows", None, _mapping(found.get("malformed_rows")).get("count"))
    add("duplicate rows", None, _mapping(found.get("duplicate_rows")).get("count"))


def _failure(item: dict[str, Any], stage: Literal["processing", "load"]) -> Failure:
    """The failure a metadata item records for ``stage`` (the loader's attributes are ``load_*``);
    ``replaced`` when a newer version of the key completed since (the processor then marks
    this one ``superseded_by`` it): fixed in place."""
    prefix = "load_" if stage == "load" else ""
    at = item.get(f"{prefix}failed_at")
    return Failure(
        object_key=str(item.get("object_key", "")),
        version=str(item.get("version", "")),
        stage=stage,
        error=str(item.get(f"{prefix}error") or "unknown error")[:MAX_ERROR_CHARS],
        at=at if isinstance(at, str) else None,
        replaced=bool(item.get("superseded_by")),
        permanent=item.get("load_status") == "rejected"
        if stage == "load"
        else item.get("failure_kind") == "permanent",
    )


def last_completed(items: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The item completed most recently (by ``completed_at``)."""
    best: tuple[datetime, dict[str, Any]] | None = None
    for item in items:
        if item.get("status") != "completed":
            continue
        at = parse_time(item.get("completed_at"))
        if at and (best is None or at > best[0]):
            best = (at, item)
    return best[1] if best else None


def failures_since(items: Iterable[dict[str, Any]], since: datetime) -> list[Failure]:
    """Processing and load failures recorded at or after ``since``, newest first (versions
    skipped as superseded or deleted are no failures; nor is the load failure of a version
    a newer one replaced, as in the report)."""
    found: list[Failure] = []
    for item in items:
        failed_at = parse_time(item.get("failed_at"))
        skipped = item.get("skip_reason")
        if item.get("status") == "failed" and not skipped and failed_at and failed_at >= since:
            found.append(_failure(item, "processing"))
        load_failed_at = parse_time(item.get("load_failed_at"))
        replaced = item.get("superseded_by")
        if (
            item.get("load_status") in FAILED_LOADS
            and not replaced
            and load_failed_at
            and load_failed_at >= since
        ):
            found.append(_failure(item, "load"))
    found.sort(key=lambda f: f.at or "", reverse=True)
    return found
