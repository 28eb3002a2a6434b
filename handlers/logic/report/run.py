"""What the report function does: the daily report, and the signals every five minutes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.dal import reports
from handlers.dal.aws import table
from handlers.dal.metadata_queries import iter_files_on_day, last_completed_on
from handlers.logic.report.build import REPORT_ATTRIBUTES, build_report, parse_time
from handlers.logic.report.render import render_html, sns_message, sns_subject
from handlers.models.report import DailyReport, ReportSettings


@dataclass(frozen=True)
class Published:
    report: DailyReport
    html_key: str
    json_key: str
    link: str
    message_id: str


def daily_report(day: str, settings: ReportSettings, now: datetime) -> Published:
    """Build ``day``'s report, write (overwrite) it to the reports bucket, announce it. The
    day's items are counted as they are read, a page at a time: memory does not grow with
    the number of files (tens of thousands a day, each with its quality issues)."""
    items = iter_files_on_day(table(settings.metadata_table), day, REPORT_ATTRIBUTES)
    report = build_report(
        day,
        items,
        now,
        # waiting only: a busy pipeline always has messages in flight, which are no backlog
        _depth(settings.processing_queue_url, in_flight=False),
        _depth(settings.processing_dlq_url),
        _depth(settings.load_dlq_url),
    )
    html_key, json_key = reports.report_keys(day)
    # the page links to report.json: a relative link would leave the presigned page unsigned
    json_link = reports.presigned_link(settings.reports_bucket, json_key, settings.report_link_ttl_seconds)
    reports.put_report(
        settings.reports_bucket, day, render_html(report, json_link), report.model_dump(mode="json")
    )
    link = reports.presigned_link(settings.reports_bucket, html_key, settings.report_link_ttl_seconds)
    message_id = reports.publish(
        settings.alerts_topic_arn,
        sns_subject(report),
        sns_message(report, link, settings.report_link_ttl_seconds),
    )
    return Published(report, html_key, json_key, link, message_id)


def _depth(queue_url: str, in_flight: bool = True) -> int | None:
    """Messages in a queue, or None when it cannot be read: the report then says the depth
    is unknown (and its verdict is not green) rather than being lost over it."""
    try:
        return reports.queue_depth(queue_url, in_flight=in_flight)
    except Exception:
        return None


@dataclass(frozen=True)
class Staleness:
    seconds: float
    exact: bool  # False: nothing completed in the window; ``seconds`` is a lower bound
    last: dict[str, Any] | None


def seconds_since_last_completed(metadata_table: Any, now: datetime, staleness_minutes: int) -> Staleness:
    """From the ``by_completion`` index (completed versions by the UTC day of
    ``completed_at``): the latest completion today or, when there is none, on each earlier
    day of a window long enough to reach further back than ``staleness_minutes`` even at
    midnight, stopping at the first day with one (a later completion day only holds later
    completions, so it is exact). Each day read is one Query returning one keys-only item
    (the day's last), whatever the volume. With none in the window, the time since the
    window's start: a lower bound above the threshold, so the staleness alarm fires (and
    stays firing) whatever its value. ``last`` holds the index item's keys: ``object_key``,
    ``version``, ``completed_at``."""
    now = now.astimezone(UTC)
    today = now.date()
    days = staleness_minutes // 1440 + 2
    for back in range(days):
        item = last_completed_on(metadata_table, (today - timedelta(days=back)).isoformat())
        completed = parse_time(item.get("completed_at")) if item else None
        if item and completed:
            return Staleness(max(0.0, (now - completed).total_seconds()), True, item)
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), tzinfo=UTC)
    return Staleness((now - start).total_seconds(), False, None)
