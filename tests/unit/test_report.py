"""The daily report's figures, its page and message, and what an invocation asks for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from handlers.logic.report.build import build_report, failures_since, last_completed, percentile
from handlers.logic.report.render import _nice_ceiling, hourly_chart, render_html, sns_message, sns_subject
from handlers.models.report import BadRequest, HourBucket, Request

NOW = datetime(2025, 3, 15, 6, 0, tzinfo=UTC)


def item(n: int, status: str, **extra) -> dict:
    base = {
        "object_key": f"incoming/sales/{n}.csv",
        "version": f"v{n}",
        "status": status,
        "uploaded_at": f"2025-03-14T{n:02d}:00:00.000Z",
        "size": 100,
    }
    if status == "completed":
        base |= {
            "format": "csv",
            "row_count": 10,
            "file_size_bytes": 100,
            "dataset": "sales",
            "completed_at": f"2025-03-14T{n:02d}:00:0{n % 10}.000Z",
            "timings_ms": {"queue_wait": 5.0, "total": 1000.0 * n},
            "quality_issues": {"missing_values": {"price": {"count": n, "percentage": 1.0}}},
        }
    return base | extra


def test_the_days_figures():
    # Given a day: three completed files, a failed one, one still processing, one loaded,
    # one that failed to load
    items = [
        item(1, "completed", load_status="loaded", load_rows=10),
        item(
            2, "completed", load_status="failed", load_error="db down", load_failed_at="2025-03-14T03:00:00Z"
        ),
        item(3, "completed", quality_issues={"malformed_rows": {"count": 4}, "duplicate_rows": {"count": 1}}),
        item(4, "failed", error="binary content", failed_at="2025-03-14T04:00:01Z"),
        item(5, "processing"),
    ]
    # When the report is built
    report = build_report("2025-03-14", items, NOW, backlog=7)
    # Then the counts, rows, bytes, latency, warehouse and failures add up
    assert report.files.model_dump() == {
        "received": 5,
        "waiting": 0,
        "processing": 1,
        "completed": 3,
        "failed": 1,
    }
    assert (report.rows, report.bytes, report.processing_backlog) == (30, 500, 7)
    assert (report.latency_ms.p50, report.latency_ms.p95, report.latency_ms.max) == (2000.0, 3000.0, 3000.0)
    assert report.warehouse.model_dump() == {"loaded": 1, "rows": 10, "failed": 1, "superseded": 0}
    assert [(f.stage, f.object_key) for f in report.failures] == [
        ("processing", "incoming/sales/4.csv"),
        ("load", "incoming/sales/2.csv"),
    ]
    # and the slowest file comes first, the biggest quality issue first
    assert [s.object_key for s in report.slowest_files] == [f"incoming/sales/{n}.csv" for n in (3, 2, 1)]
    assert (report.quality_issues[0].kind, report.quality_issues[0].count) == ("malformed rows", 4)
    assert {(q.kind, q.column, q.files, q.count) for q in report.quality_issues} >= {
        ("missing values", "price", 2, 3)
    }
    # and per format: the failed file's format is unknown
    assert {(f.format, f.files, f.completed, f.failed, f.rows) for f in report.formats} == {
        ("csv", 3, 3, 0, 30),
        ("unknown", 2, 0, 1, 0),
    }
    assert [h.received for h in report.hourly][:6] == [0, 1, 1, 1, 1, 1]


def test_an_empty_day_renders():
    report = build_report("2025-03-14", [], NOW)
    page = render_html(report)
    assert "No files were uploaded on this day" in page
    assert report.latency_ms.p50 is None and report.failures_total == 0
    assert sns_subject(report) == "headrace report 2025-03-14: 0 files, no failures"


def test_user_controlled_text_is_escaped_in_the_page():
    nasty = '<img src=x onerror="alert(1)">'
    items = [
        item(1, "failed", object_key=f"incoming/{nasty}.csv", error=nasty, failed_at="2025-03-14T01:00:00Z")
    ]
    page = render_html(build_report("2025-03-14", items, NOW))
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<script" not in page  # no script at all: the page is static


def test_the_message_has_the_headline_figures_and_the_link():
    report = build_report("2025-03-14", [item(1, "completed"), item(4, "failed", error="boom")], NOW)
    message = sns_message(report, "https://example.invalid/r", 604800)
    assert "Files: 2 received, 1 completed, 1 failed, 0 in progress" in message
    assert "Latest failure (processing): incoming/sales/4.csv: boom" in message
    assert message.endswith("Report (link valid for up to 7 days):\nhttps://example.invalid/r")
    assert sns_subject(report) == "headrace report 2025-03-14: 2 files, 1 failed"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(604800, "7 days"), (86400, "1 day"), (90000, "25 hours"), (3600, "1 hour"), (5400, "90 minutes")],
)
def test_the_link_lifetime_reads_naturally(seconds, said):
    report = build_report("2025-03-14", [item(1, "completed")], NOW)
    assert f"(link valid for up to {said}):" in sns_message(report, "https://example.invalid/r", seconds)


def test_percentiles_and_axis():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert [_nice_ceiling(n) for n in (0, 3, 7, 31, 40, 41, 99, 150, 999)] == [
        4,
        4,
        8,
        40,
        40,
        80,
        100,
        200,
        1000,
    ]
    svg = hourly_chart([HourBucket(hour=h, received=h, completed=h, failed=0) for h in range(24)])
    assert svg.startswith("<svg") and svg.count("<rect") == 23


def test_recent_failures_and_last_completed():
    items = [
        item(1, "completed"),
        item(3, "completed"),
        item(2, "failed", error="old", failed_at="2025-03-14T02:00:00Z"),
        item(4, "failed", error="new", failed_at="2025-03-14T05:30:00Z"),
        item(5, "completed", load_status="failed", load_error="db", load_failed_at="2025-03-14T05:45:00Z"),
    ]
    assert last_completed(items)["object_key"] == "incoming/sales/5.csv"
    recent = failures_since(items, datetime(2025, 3, 14, 5, 0, tzinfo=UTC))
    assert [(f.stage, f.error) for f in recent] == [("load", "db"), ("processing", "new")]
    assert last_completed([item(4, "failed")]) is None


@pytest.mark.parametrize(
    ("event", "task", "day"),
    [
        ({"task": "signals"}, "signals", None),
        ({"date": "2025-03-01"}, "report", date(2025, 3, 1)),
        ({"date": "today"}, "report", date(2025, 3, 15)),
        ({"date": "yesterday"}, "report", date(2025, 3, 14)),
        ({}, "report", date(2025, 3, 14)),
        ({"source": "aws.events", "time": "2025-02-01T06:00:00Z", "detail": {}}, "report", date(2025, 1, 31)),
    ],
)
def test_what_an_invocation_asks_for(event, task, day):
    request = Request.from_event(event, NOW)
    assert (request.task, request.day) == (task, day)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"date": "14/03/2025"}, "is not YYYY-MM-DD"),
        ({"date": "2025-3-1"}, "is not YYYY-MM-DD"),
        ({"date": "2025-03-16"}, "in the future"),
        ({"task": "explode"}, "unknown task"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_requests_are_refused_clearly(event, message):
    with pytest.raises(BadRequest, match=message):
        Request.from_event(event, NOW)
