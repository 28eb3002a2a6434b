"""The report function's configuration, what it is asked to do, and the report it writes."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# A presigned S3 URL lives at most 7 days (SigV4).
MAX_LINK_TTL_SECONDS = 604_800


class ReportSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    metadata_table: str = Field(alias="METADATA_TABLE", min_length=1)
    reports_bucket: str = Field(alias="REPORTS_BUCKET", min_length=1)
    alerts_topic_arn: str = Field(alias="ALERTS_TOPIC_ARN", min_length=1)
    processing_queue_url: str = Field(alias="PROCESSING_QUEUE_URL", min_length=1)
    # The dead-letter queues the verdict reads (uploads that never became a metadata item
    # end in the processing DLQ: a crash at start-up, a failed EventBridge delivery).
    processing_dlq_url: str = Field(alias="PROCESSING_DLQ_URL", min_length=1)
    load_dlq_url: str = Field(alias="LOAD_DLQ_URL", min_length=1)
    report_link_ttl_seconds: int = Field(
        MAX_LINK_TTL_SECONDS, ge=60, le=MAX_LINK_TTL_SECONDS, alias="REPORT_LINK_TTL_SECONDS"
    )
    # The data-staleness alarm's threshold (alarms.staleness_minutes): how far back the
    # signal looks for the last completed file.
    staleness_minutes: int = Field(1440, ge=1, alias="STALENESS_MINUTES")
    # Metadata items expire this many days after their last update (metadata.ttl_days): a
    # report of an older day would be empty, and would overwrite the one written then.
    metadata_ttl_days: int = Field(90, ge=1, alias="METADATA_TTL_DAYS")
    # The stack's name (HEADRACE_STACK): every metric's "stack" dimension, which the
    # stack's alarms and dashboard select by (docs/contracts.md, Metrics).
    stack: str = Field(alias="HEADRACE_STACK", min_length=1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ReportSettings:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class BadRequest(ValueError):
    """The invocation event asks for something the function cannot do."""


class Request(BaseModel):
    """What one invocation does: the daily report for ``day``, or the signals."""

    task: Literal["report", "signals"]
    day: date | None = None

    @classmethod
    def from_event(cls, event: Any, now: datetime, retention_days: int | None = None) -> Request:
        """``{"task": "signals"}``: emit the signals. ``{"date": "YYYY-MM-DD"}`` (or
        ``"today"``, ``"yesterday"``): the report for that day, refused when it is
        ``retention_days`` or more ago (its metadata has expired). Anything else (the daily
        schedule's EventBridge event, ``{}``): the report for the day before the event's
        ``time`` (the invocation time when absent), in UTC: the last complete day."""
        if not isinstance(event, dict):
            raise BadRequest("the event must be a JSON object")
        task = event.get("task", "report")
        if task == "signals":
            return cls(task="signals")
        if task != "report":
            raise BadRequest(f"unknown task {task!r}: expected 'report' or 'signals'")
        today = now.astimezone(UTC).date()
        wanted = event.get("date")
        if wanted is None:
            return cls(task="report", day=_event_time(event, now).date() - timedelta(days=1))
        if wanted == "today":
            return cls(task="report", day=today)
        if wanted == "yesterday":
            return cls(task="report", day=today - timedelta(days=1))
        try:
            if not _DAY.fullmatch(str(wanted)):  # fromisoformat also takes 20250314, 2025-W11-5
                raise ValueError
            day = date.fromisoformat(str(wanted))
        except ValueError:
            raise BadRequest(f"date {wanted!r} is not YYYY-MM-DD, 'today' or 'yesterday'") from None
        if day > today:
            raise BadRequest(f"date {wanted} is in the future")
        if retention_days is not None and (today - day).days >= retention_days:
            raise BadRequest(
                f"date {wanted} is {(today - day).days} days ago: metadata items expire after "
                f"{retention_days} days (metadata.ttl_days), so its report would be empty and would "
                "overwrite the one written then"
            )
        return cls(task="report", day=day)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _event_time(event: dict[str, Any], now: datetime) -> datetime:
    value = event.get("time")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:  # a time with an offset is another UTC day near midnight; a future one is now
            return min(
                moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC), now.astimezone(UTC)
            )
    return now.astimezone(UTC)


# ---------------------------------------------------------------------- the report
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusCounts(_Model):
    # files uploaded that day that the pipeline has started on (the processor recorded them),
    # whatever their state; not the uploads still in the processing queue, nor those whose
    # messages reached the processing DLQ before the processor could record them
    received: int = 0
    waiting: int = 0  # status still "received"
    processing: int = 0
    completed: int = 0
    failed: int = 0  # processing failures (not fixed in place)
    # processing failures fixed in place: a newer upload of the key completed since (the
    # version's superseded_by); listed with the failures, out of the verdict
    fixed: int = 0
    skipped: int = 0  # status "failed" with a skip_reason: superseded or deleted before processing
    stuck: int = 0  # of waiting + processing: unchanged for STUCK_AFTER (cut off on a last attempt)


class Latency(_Model):
    """Upload to completed, in milliseconds, over the day's completed files."""

    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class FormatTotals(_Model):
    format: str
    files: int
    completed: int
    failed: int
    rows: int
    bytes: int


class QualityIssue(_Model):
    kind: str  # "missing values", "type mismatches", "malformed rows", "duplicate rows"
    dataset: str
    column: str | None
    files: int
    count: int  # affected rows (values for missing values / mismatches)


class SlowFile(_Model):
    object_key: str
    version: str
    format: str | None
    rows: int | None
    bytes: int | None
    total_ms: float
    timings_ms: dict[str, float]


class Failure(_Model):
    object_key: str
    version: str
    stage: Literal["processing", "load"]
    error: str
    at: str | None
    # a newer version of the key completed since (superseded_by): fixed in place, nothing to do
    replaced: bool = False
    # for good: a load PostgreSQL rejected (``load_status`` rejected: not retried, no DLQ
    # message), or a file that cannot be processed (``failure_kind`` permanent: its retries
    # fail at once); only fixing the cause helps, not a retry or a redrive
    permanent: bool = False


class HourBucket(_Model):
    hour: int
    received: int
    completed: int
    failed: int
    skipped: int
    fixed: int = 0


class Warehouse(_Model):
    loaded: int = 0  # files whose rows are in the warehouse (their versions not superseded)
    rows: int = 0
    failed: int = 0  # given up on after their retries, or rejected (below)
    rejected: int = 0  # of ``failed``: refused for good by PostgreSQL, not retried
    superseded: int = 0  # versions a newer version of the key replaced (whatever their load status)
    # completed files (their versions not superseded) with no load outcome yet: waiting in the
    # load queue, being retried, or lost (a load message expires unreceived, with no dead letter)
    pending: int = 0


class DailyReport(_Model):
    date: str
    generated_at: str
    # Generated before the day ended (UTC): a report of "today", whose figures leave out
    # every upload after ``generated_at``.
    partial: bool = Field(False, description="generated before the day ended (UTC): a part of the day")
    files: StatusCounts
    rows: int
    bytes: int
    latency_ms: Latency
    warehouse: Warehouse
    formats: list[FormatTotals]
    quality_issues: list[QualityIssue]
    # every (kind, dataset, column) found, of which ``quality_issues`` lists the top ones
    quality_issues_total: int = 0
    # completed files whose quality issues were cut from their metadata item (summary_truncated)
    quality_issues_left_out: int
    slowest_files: list[SlowFile]
    failures: list[Failure]
    failures_total: int
    hourly: list[HourBucket]
    # The queues when the report was made (whatever day their messages are from); None: unread.
    processing_backlog: int | None = Field(
        None, description="messages waiting in the processing queue (not in flight) when generated"
    )
    processing_dlq_depth: int | None = Field(
        None, description="messages in the processing DLQ when generated"
    )
    load_dlq_depth: int | None = Field(None, description="messages in the load DLQ when generated")
