"""The daily report's figures, its page and message, and what an invocation asks for."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from handlers.logic.process_object import DELETED, SUPERSEDED
from handlers.logic.report.build import (
    REPORT_ATTRIBUTES,
    build_report,
    failures_since,
    last_completed,
    percentile,
)
from handlers.logic.report.render import _nice_ceiling, hourly_chart, render_html, sns_message, sns_subject
from handlers.logic.report.run import seconds_since_last_completed
from handlers.models.report import BadRequest, HourBucket, Request

NOW = datetime(2025, 3, 15, 6, 0, tzinfo=UTC)
# The processing queue and both DLQs empty when the report is made.
EMPTY_QUEUES = {"backlog": 0, "processing_dlq": 0, "load_dlq": 0}
JSON_LINK = "https://reports.s3.us-east-1.amazonaws.com/reports/2025-03-14/report.json?X-Amz-Signature=s&a=b"


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
            # loaded, as a completed file is soon after
            "load_status": "loaded",
            "load_rows": 10,
        }
    return base | extra


def test_the_days_figures():
    # Given a day: three completed files, a failed one, one still processing, one loaded,
    # one that failed to load, one not loaded yet
    items = [
        item(1, "completed", load_status="loaded", load_rows=10),
        item(
            2, "completed", load_status="failed", load_error="db down", load_failed_at="2025-03-14T03:00:00Z"
        ),
        item(
            3,
            "completed",
            quality_issues={"malformed_rows": {"count": 4}, "duplicate_rows": {"count": 1}},
            load_status=None,
            load_rows=None,
        ),
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
        "fixed": 0,
        "skipped": 0,
        "stuck": 1,  # processing since 05:00 the day before
    }
    assert (report.rows, report.bytes, report.processing_backlog) == (30, 500, 7)
    assert (report.latency_ms.p50, report.latency_ms.p95, report.latency_ms.max) == (2000.0, 3000.0, 3000.0)
    assert report.warehouse.model_dump() == {
        "loaded": 1,
        "rows": 10,
        "failed": 1,
        "rejected": 0,
        "superseded": 0,
        "pending": 1,
    }
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
    report = build_report("2025-03-14", [], NOW, **EMPTY_QUEUES)
    page = render_html(report, JSON_LINK)
    assert '<span class="verdict quiet">No file reached the processor on this day</span>' in page
    assert report.latency_ms.p50 is None and report.failures_total == 0
    assert sns_subject(report) == "headrace report 2025-03-14: 0 files, no failures"


@pytest.mark.parametrize(
    ("generated_at", "partial"),
    [
        (datetime(2025, 3, 14, 10, 30, 5, tzinfo=UTC), True),  # {"date": "today"}
        (datetime(2025, 3, 14, 23, 59, 59, tzinfo=UTC), True),
        (datetime(2025, 3, 15, 0, 0, tzinfo=UTC), False),  # the day is over at midnight UTC
        (datetime(2025, 3, 14, 20, 0, tzinfo=timezone(timedelta(hours=-5))), False),  # 01:00Z the next day
        (NOW, False),  # the schedule's run
    ],
)
def test_a_report_of_a_day_not_over_yet_says_it_is_partial(generated_at, partial):
    # Given the report of 2025-03-14 made at some time
    report = build_report("2025-03-14", [item(1, "completed")], generated_at, **EMPTY_QUEUES)
    page = render_html(report, JSON_LINK)
    message = sns_message(report, "https://x", 3600)
    # Then report.json, the page, the message and its subject say whether the day was over
    assert report.model_dump(mode="json")["partial"] is partial
    assert ("a partial day, the day is not over" in page) is partial
    assert message.startswith("headrace daily report for 2025-03-14 (UTC)\n") is not partial
    assert sns_subject(report).startswith("headrace report 2025-03-14 (partial): 1 files") is partial
    if partial:
        said = f"until {generated_at:%H:%M:%S}: a partial day, the day is not over"
        assert f"Files uploaded 2025-03-14 (UTC) {said}<br>" in page
        assert message.startswith(f"headrace daily report for 2025-03-14 (UTC) {said}\n")


def test_a_partial_day_with_no_file_yet_is_not_said_to_have_none():
    report = build_report("2025-03-15", [], NOW, **EMPTY_QUEUES)
    assert report.partial
    assert (
        '<span class="verdict quiet">No file reached the processor on this day so far</span>'
        in render_html(report, JSON_LINK)
    )


def test_a_day_the_processor_never_ran_is_not_a_quiet_day():
    # Given a day on which the processor consumed nothing (its mapping disabled, a crash at
    # start-up): no metadata item, 5,000 uploads waiting in the processing queue
    report = build_report("2025-03-12", [], NOW, backlog=5000, processing_dlq=0, load_dlq=0)
    # When the report is rendered
    page = render_html(report, JSON_LINK)
    message = sns_message(report, "https://example.invalid/r", 3600)
    # Then the verdict, the subject and the message say the uploads are waiting
    said = "No file reached the processor on this day: 5,000 messages in the processing queue"
    assert f'<span class="verdict bad">{said}</span>' in page
    assert sns_subject(report) == "headrace report 2025-03-12: 0 files, no failures, 5000 queued"
    assert message.splitlines()[1] == said
    assert "Queues now: 5,000 in the processing queue (uploads not yet in these figures), " in message
    # and the page says what its figures leave out
    assert "Uploads still in the processing queue" in page


def test_dead_letters_are_never_a_good_day():
    # Given a day whose files all completed, while uploads the processor crashed on at
    # start-up (never recorded) sit in the processing DLQ, and a load in the load DLQ
    items = [item(1, "completed"), item(2, "completed")]
    report = build_report("2025-03-14", items, NOW, backlog=0, processing_dlq=2, load_dlq=1)
    # When the report is rendered
    page = render_html(report, JSON_LINK)
    message = sns_message(report, "https://example.invalid/r", 3600)
    # Then the verdict is red and names both DLQs, and the subject and message count them
    said = "2 messages in the processing DLQ, 1 message in the load DLQ"
    assert f'<span class="verdict bad">{said}</span>' in page
    assert sns_subject(report) == "headrace report 2025-03-14: 2 files, no failures, 3 dead letters"
    assert message.splitlines()[1] == said
    assert "2 in the processing DLQ, 1 in the load DLQ (headrace dlq inspect; docs/operations.md)" in message
    # and the same with nothing processed that day: not a quiet day either
    empty = build_report("2025-03-14", [], NOW, backlog=0, processing_dlq=2, load_dlq=0)
    assert "verdict bad" in render_html(empty, JSON_LINK) and "verdict quiet" not in render_html(
        empty, JSON_LINK
    )
    assert sns_subject(empty) == "headrace report 2025-03-14: 0 files, no failures, 2 dead letters"


def test_a_backlog_or_unread_queues_are_not_green():
    items = [item(1, "completed")]
    good = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    assert '<span class="verdict ok">Every finished file was processed successfully</span>' in render_html(
        good, JSON_LINK
    )
    # Given the same day with messages still in the processing queue
    busy = build_report("2025-03-14", items, NOW, backlog=3, processing_dlq=0, load_dlq=0)
    # Then the verdict is a warning that says so, and so does the subject
    assert (
        '<span class="verdict warn">Every finished file was processed successfully; '
        "3 messages in the processing queue</span>" in render_html(busy, JSON_LINK)
    )
    assert sns_subject(busy) == "headrace report 2025-03-14: 1 files, no failures, 3 queued"
    # and when the queues could not be read, it says their depths are unknown
    unread = build_report("2025-03-14", items, NOW)
    assert "verdict warn" in render_html(unread, JSON_LINK)
    message = sns_message(unread, "https://example.invalid/r", 3600)
    assert "Queues now: unknown in the processing queue, unknown in the processing DLQ" in message
    assert "verdict warn" in render_html(build_report("2025-03-14", [], NOW), JSON_LINK)


def test_user_controlled_text_is_escaped_in_the_page():
    nasty = '<img src=x onerror="alert(1)">'
    items = [
        item(1, "failed", object_key=f"incoming/{nasty}.csv", error=nasty, failed_at="2025-03-14T01:00:00Z")
    ]
    page = render_html(build_report("2025-03-14", items, NOW), JSON_LINK)
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<script" not in page  # no script at all: the page is static


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"


def test_bidi_and_format_characters_in_keys_cannot_reorder_the_page():
    # Given a failed file whose key reverses the text after it ("gnp.csv" reads ".csv.png"),
    # a completed one whose key and column carry every bidi override, isolate and mark, and
    # an error with a line break
    hostile = "incoming/poison/<b>bold</b>\u202egnp.csv"
    items = [
        item(1, "failed", object_key=hostile, error=f"bad\n{BIDI}x", failed_at="2025-03-14T01:00:01Z"),
        item(
            2,
            "completed",
            object_key=f"incoming/sales/{BIDI}.csv",
            quality_issues={"missing_values": {f"price{BIDI}": {"count": 1}}},
        ),
    ]
    # When the page is rendered
    page = render_html(build_report("2025-03-14", items, NOW), JSON_LINK)
    # Then none of those characters reaches it raw: they are shown as escapes, as in the message
    assert not set(BIDI) & set(page)
    assert "incoming/poison/&lt;b&gt;bold&lt;/b&gt;\\u202egnp.csv" in page
    assert "\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f" in page
    assert "price\\u202a" in page
    # and an error's line break is a space, as HTML shows it
    assert "bad \\u202a" in page


def test_the_message_has_the_headline_figures_and_the_link():
    report = build_report("2025-03-14", [item(1, "completed"), item(4, "failed", error="boom")], NOW)
    message = sns_message(report, "https://example.invalid/r", 604800)
    assert "Files: 2 received, 1 completed, 1 failed, 0 in progress" in message
    assert "Report (link valid for up to 7 days):\nhttps://example.invalid/r\n" in message
    assert message.endswith("\n\nLatest failure (processing): incoming/sales/4.csv: boom")
    assert sns_subject(report) == "headrace report 2025-03-14: 2 files, 1 failed"


def test_versions_skipped_before_processing_are_no_failures():
    # Given a version superseded by a newer upload and one deleted before processing (both
    # recorded failed, with their skip reason), and a file that really failed
    items = [
        item(1, "failed", error=SUPERSEDED, failed_at="2025-03-14T01:00:01Z", skip_reason="superseded"),
        item(2, "failed", error=DELETED, failed_at="2025-03-14T02:00:01Z", skip_reason="deleted"),
        item(3, "completed"),
    ]
    # When the report is built
    report = build_report("2025-03-14", items, NOW)
    # Then they are counted as skipped: no failure, a green verdict, none in the subject
    assert (report.files.received, report.files.failed, report.files.skipped) == (3, 0, 2)
    assert report.failures == [] and report.failures_total == 0
    assert [(h.skipped, h.failed) for h in report.hourly[1:3]] == [(1, 0), (1, 0)]
    assert "Every finished file was processed successfully" in render_html(report, JSON_LINK)
    assert sns_subject(report) == "headrace report 2025-03-14: 3 files, no failures"
    assert "Files: 3 received, 1 completed, 0 failed, 2 skipped, 0 in progress" in sns_message(
        report, "https://example.invalid/r", 3600
    )
    # and `headrace status` does not list them as recent failures
    since = datetime(2025, 3, 14, 0, 0, tzinfo=UTC)
    assert failures_since(items, since) == []
    # while a real failure still counts
    failed = item(4, "failed", error="binary content", failed_at="2025-03-14T04:00:01Z")
    assert build_report("2025-03-14", [*items, failed], NOW).files.failed == 1
    assert [f.object_key for f in failures_since([*items, failed], since)] == ["incoming/sales/4.csv"]


def test_a_failure_fixed_in_place_is_listed_but_not_counted_failed():
    # Given a poison version of a key, then a good version of it that completed (the processor
    # marked the poison one superseded_by it), and a file that failed and stays failed
    items = [
        item(
            1,
            "failed",
            object_key="incoming/sales/fixme.csv",
            error="binary content",
            failed_at="2025-03-14T01:00:01Z",
            superseded_by="v2",
        ),
        item(2, "completed", object_key="incoming/sales/fixme.csv"),
    ]
    # When the report is built
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then the poison version counts as fixed, not failed, and the verdict stays green
    assert (report.files.received, report.files.failed, report.files.fixed) == (2, 0, 1)
    assert [(h.failed, h.fixed) for h in report.hourly[1:3]] == [(0, 1), (0, 0)]
    assert {(f.format, f.failed) for f in report.formats} == {("csv", 0), ("unknown", 0)}
    page = render_html(report, JSON_LINK)
    assert "verdict ok" in page and "verdict bad" not in page
    assert "No open failures: 1 file failed and was fixed in place" in page
    assert sns_subject(report) == "headrace report 2025-03-14: 2 files, no open failures, 1 fixed in place"
    # and it is still listed, saying it was fixed, as `headrace status` says it
    assert [(f.object_key, f.replaced) for f in report.failures] == [("incoming/sales/fixme.csv", True)]
    assert "fixed in place: a newer version completed" in page
    message = sns_message(report, "https://example.invalid/r", 3600)
    assert "1 failed and fixed in place since" in message
    assert message.endswith(
        "Latest failure (processing, fixed in place since): incoming/sales/fixme.csv: binary content"
    )
    since = datetime(2025, 3, 14, tzinfo=UTC)
    assert [f.replaced for f in failures_since(items, since)] == [True]
    # while a failure that stays open is counted, listed first, and turns the verdict red
    failed = item(4, "failed", error="not valid UTF-8", failed_at="2025-03-14T00:30:00Z")
    report = build_report("2025-03-14", [*items, failed], NOW, **EMPTY_QUEUES)
    assert (report.files.failed, report.files.fixed) == (1, 1)
    assert [f.replaced for f in report.failures] == [False, True]
    assert "verdict bad" in render_html(report, JSON_LINK)
    assert sns_subject(report) == "headrace report 2025-03-14: 3 files, 1 failed, 1 fixed in place"


def test_a_superseded_version_adds_no_rows():
    # Given a key uploaded twice that day: both versions completed and loaded (the second
    # replaced the first's rows), and an older version of another key whose load failed
    # before a newer version replaced it
    items = [
        item(
            1,
            "completed",
            object_key="incoming/sales/a.csv",
            superseded_by="v2",
            load_status="loaded",
            load_rows=10,
        ),
        item(2, "completed", object_key="incoming/sales/a.csv", load_status="loaded", load_rows=10),
        item(
            3,
            "completed",
            superseded_by="v4",
            load_status="failed",
            load_error="Parquet missing",
            load_failed_at="2025-03-14T03:00:00Z",
        ),
        item(4, "completed", object_key="incoming/sales/3.csv", load_status="loaded", load_rows=10),
    ]
    # When the report is built
    report = build_report("2025-03-14", items, NOW)
    # Then every version counts as completed, but only the current ones add rows
    assert report.files.completed == 4
    assert report.rows == 20 and report.formats[0].rows == 20
    assert report.warehouse.model_dump() == {
        "loaded": 2,
        "rows": 20,
        "failed": 0,
        "rejected": 0,
        "superseded": 2,
        "pending": 0,
    }
    # (and `headrace status` agrees: no recent failure either)
    assert failures_since(items, datetime(2025, 3, 14, tzinfo=UTC)) == []
    # and the replaced version's old load failure is not listed
    assert report.failures == [] and report.failures_total == 0
    # and only the current versions' quality issues count (the replaced ones' data is gone)
    assert [(i.files, i.count) for i in report.quality_issues] == [(2, 2 + 4)]


def test_quality_issues_cut_from_the_metadata_item_are_said_to_be_left_out():
    # Given a completed file whose item was cut down to fit DynamoDB (no quality issues),
    # and one cut down that kept them (only its statistics went)
    items = [
        item(1, "completed", summary_truncated=True),
        item(2, "completed", summary_truncated=True),
    ]
    del items[0]["quality_issues"]
    # When the report is built
    report = build_report("2025-03-14", items, NOW)
    # Then the report says one file's issues are not counted
    assert report.quality_issues_left_out == 1
    assert [(q.column, q.files) for q in report.quality_issues] == [("price", 1)]
    assert "Not counted: the quality issues of 1 file whose summary was too large" in render_html(
        report, JSON_LINK
    )
    assert build_report("2025-03-14", [item(1, "completed")], NOW).quality_issues_left_out == 0


class Recording(dict):
    """A metadata item that notes every attribute read from it."""

    read: set[str] = set()

    def get(self, key, default=None):
        Recording.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        Recording.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        Recording.read.add(key)
        return super().__contains__(key)


def test_the_report_reads_only_the_attributes_it_asks_dynamodb_for():
    # Given items of every kind, with every attribute the pipeline writes
    everything = {name: "x" for name in ("schema", "statistics", "log_stats", "pii_redactions", "warnings")}
    items = [
        item(1, "completed", load_status="loaded", load_rows=10, superseded_by="v9", summary_truncated=True),
        item(2, "completed", load_status="failed", load_error="db", load_failed_at="2025-03-14T02:00:00Z"),
        item(3, "completed", load_status="superseded"),
        item(4, "failed", error="binary", failed_at="2025-03-14T04:00:00Z"),
        item(5, "failed", error=DELETED, failed_at="2025-03-14T05:00:00Z", skip_reason="deleted"),
        item(6, "processing"),
        item(7, "received"),
    ]
    Recording.read = set()
    # When the report is built from them
    build_report("2025-03-14", [Recording(i | everything) for i in items], NOW)
    # Then it read nothing outside REPORT_ATTRIBUTES (what run.py asks DynamoDB for)
    assert Recording.read - set(REPORT_ATTRIBUTES) == set()
    assert Recording.read >= {"quality_issues", "superseded_by", "skip_reason", "load_error"}


def test_the_page_links_to_the_presigned_json():
    # Given a report and the presigned URL of its report.json
    report = build_report("2025-03-14", [item(1, "completed")], NOW)
    # When the page is rendered
    page = render_html(report, JSON_LINK)
    # Then its link to the JSON is that URL (a relative one would be unsigned), escaped
    assert (
        '<a href="https://reports.s3.us-east-1.amazonaws.com/reports/2025-03-14/report.json?X-Amz-Signature=s&amp;a=b">'
        in page
    )
    assert 'href="report.json"' not in page


def test_a_hostile_key_cannot_forge_the_link_in_the_message():
    # Given a failed file whose key carries line breaks and a fake report link, and a long error
    key = "incoming/x\n\nReport (link valid for up to 7 days):\nhttps://evil.example/phish\u2028\x1b[2J.csv"
    items = [item(1, "failed", object_key=key, error="boom " * 100, failed_at="2025-03-14T01:00:01Z")]
    # When the message is written
    message = sns_message(build_report("2025-03-14", items, NOW), "https://example.invalid/r", 604800)
    # Then the real link comes first and is the only line that is a link
    lines = message.splitlines()
    assert [line for line in lines if line.startswith("https://")] == ["https://example.invalid/r"]
    assert lines.index("https://example.invalid/r") < len(lines) - 1
    assert [line for line in lines if line.startswith("Report (")] == [
        "Report (link valid for up to 7 days):"
    ]
    # and the key is one line, its control characters visible, the error cut short
    last = lines[-1]
    assert last.startswith(
        "Latest failure (processing): incoming/x\\n\\nReport (link valid for up to 7 days):\\n"
        "https://evil.example/phish\\u2028\\x1b[2J.csv: boom boom"
    )
    assert last.endswith("…") and len(last) < 500
    assert len(message.splitlines()) == message.count("\n") + 1 and "\u2028" not in message


class ByCompletion:
    """The metadata table's by_completion index: the completed versions by the UTC day of
    ``completed_at`` (pk ``completed_day``), in ``completed_at`` order, keys only. Answers
    only what the signal must ask: the one latest item of a day; any other query (the
    by_day index, whole days, oldest first) fails the test."""

    def __init__(self, *completed: str | tuple[str, str]):
        # a completion time, or (upload day, completion time): the upload day is not a key
        self.items = []
        for entry in completed:
            uploaded, at = entry if isinstance(entry, tuple) else (entry[:10], entry)
            self.items.append(
                {
                    "object_key": f"incoming/{uploaded}/{at}.csv",
                    "version": "v1",
                    "completed_day": at[:10],
                    "completed_at": at,
                }
            )
        self.read: list[str] = []

    def query(self, **query):
        assert query.pop("IndexName") == "by_completion"
        assert query.pop("Limit") == 1 and query.pop("ScanIndexForward") is False
        expression = query.pop("KeyConditionExpression").get_expression()
        assert expression["operator"] == "=" and expression["values"][0].name == "completed_day"
        assert not query, f"unexpected query parameters: {sorted(query)}"
        day = expression["values"][1]
        self.read.append(day)
        found = sorted((i for i in self.items if i["completed_day"] == day), key=lambda i: i["completed_at"])
        return {"Items": [dict(i) for i in found[-1:]]}


@pytest.mark.parametrize("minutes", [1440, 2160, 2880, 4320, 10080])
def test_the_staleness_signal_reaches_any_alarm_threshold(minutes):
    # Given nothing completed for weeks
    empty = ByCompletion("2025-01-01T10:00:00Z")
    # When the signal runs, whatever the time of day
    for hour in range(0, 24, 6):
        empty.read.clear()
        staleness = seconds_since_last_completed(empty, NOW.replace(hour=hour), minutes)
        # Then it is a lower bound above the threshold: the alarm fires
        assert staleness.exact is False and staleness.seconds > minutes * 60
        # after one query per day of its window (minutes // 1440 + 2 days), newest first
        window = minutes // 1440 + 2
        assert empty.read == [(NOW.date() - timedelta(days=d)).isoformat() for d in range(window)]


@pytest.mark.parametrize("minutes", [1440, 2160, 2880, 4320])
def test_the_staleness_signal_does_not_drop_at_midnight(minutes):
    # Given one file completed, then nothing
    last = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    table = ByCompletion("2025-03-01T10:00:00Z")
    # When the signal runs every 5 minutes for a week
    values = [
        seconds_since_last_completed(table, last + timedelta(minutes=m), minutes).seconds
        for m in range(0, 7 * 1440, 5)
    ]
    # Then once above the threshold it stays above it (no alarm that clears at midnight)
    first = next(i for i, v in enumerate(values) if v > minutes * 60)
    assert first == minutes // 5 + 1  # the first signal after the threshold: the exact time
    assert all(v > minutes * 60 for v in values[first:])


def test_the_staleness_signal_counts_a_file_completed_after_its_upload_day():
    # Given a file uploaded today that completed at 00:30, and one uploaded yesterday
    # that completed only at 05:45 today (retries, a redrive, a backlog draining)
    table = ByCompletion(
        ("2025-03-15", "2025-03-15T00:30:00.000Z"), ("2025-03-14", "2025-03-15T05:45:00.000Z")
    )
    # When the signal runs at 06:00
    staleness = seconds_since_last_completed(table, NOW, 60)
    # Then it measures from the latest completion, whatever the day of upload
    assert (staleness.seconds, staleness.exact) == (15 * 60, True)
    assert staleness.last["object_key"] == "incoming/2025-03-14/2025-03-15T05:45:00.000Z.csv"
    # from one query of today's completions: one item, no upload day read
    assert table.read == ["2025-03-15"]


def test_the_staleness_signal_stops_at_the_first_day_with_a_completion():
    # Given nothing completed today, the last completion yesterday at 23:00 and earlier ones
    table = ByCompletion("2025-03-13T12:00:00.000Z", "2025-03-14T08:00:00.000Z", "2025-03-14T23:00:00.000Z")
    # When the signal runs at 06:00 with a three-day alarm (a five-day window)
    staleness = seconds_since_last_completed(table, NOW, 4320)
    # Then it is exact, from yesterday's last completion
    assert (staleness.seconds, staleness.exact) == (7 * 3600, True)
    assert staleness.last["completed_at"] == "2025-03-14T23:00:00.000Z"
    # and read today and yesterday only: a later completion day holds only later completions
    assert table.read == ["2025-03-15", "2025-03-14"]


@pytest.fixture
def signing(monkeypatch):
    from handlers.dal import reports

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    reports._signing_client.cache_clear()
    yield reports
    reports._signing_client.cache_clear()


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "af-south-1"])
def test_the_report_link_is_signed_for_the_buckets_regional_host(signing, monkeypatch, region):
    # Given a function on AWS (no endpoint override) in a region
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    # When the report's link is presigned
    link = signing.presigned_link("reports-bucket", "reports/2025-03-14/report.html", 3600)
    # Then it names the regional virtual host, not the global one (which redirects, 307,
    # for opt-in regions and new buckets, and the signature then fails)
    assert link.startswith(
        f"https://reports-bucket.s3.{region}.amazonaws.com/reports/2025-03-14/report.html?"
    )
    assert f"%2F{region}%2Fs3%2Faws4_request" in link and "X-Amz-Expires=3600" in link


def test_the_report_link_uses_the_configured_endpoint_locally(signing, monkeypatch):
    # Given LocalStack or the embedded runtime
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    # When the report's link is presigned
    link = signing.presigned_link("reports-bucket", "reports/2025-03-14/report.html", 3600)
    # Then it points at that endpoint, path-style
    assert link.startswith("http://127.0.0.1:4566/reports-bucket/reports/2025-03-14/report.html?")


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
    svg = hourly_chart([HourBucket(hour=h, received=h, completed=h, failed=0, skipped=0) for h in range(24)])
    assert svg.startswith("<svg") and svg.count("<rect") == 23


def test_files_unchanged_for_hours_in_progress_are_said_to_be_stuck():
    # Given, at 06:00, a file processing since 05:30, and one received at 23:00 the day before
    # that never moved (its function was cut off on its last attempt)
    items = [
        item(5, "processing", updated_at="2025-03-15T05:30:00Z"),
        item(23, "received", updated_at="2025-03-14T23:00:00Z"),
    ]
    # When the report is built
    report = build_report("2025-03-14", items, NOW)
    # Then only the second is stuck, and the page, the verdict and the message say so
    assert (report.files.processing, report.files.waiting, report.files.stuck) == (1, 1, 1)
    page = render_html(report, JSON_LINK)
    assert "1 stuck for over 6 h: see the processing DLQ" in page and "verdict bad" in page
    assert "(1 stuck for over 6 h: see the processing DLQ)" in sns_message(report, "https://x", 3600)


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


def test_a_file_that_cannot_be_processed_is_told_from_one_given_up_on():
    # Given a day with a poison file (recorded permanent) and a file given up on after its
    # transient retries
    items = [
        item(1, "failed", error="binary content", failed_at="2025-03-14T01:00:01Z", failure_kind="permanent"),
        item(2, "failed", error="gave up after 5 attempts: SlowDown", failed_at="2025-03-14T02:00:01Z"),
    ]
    # When the report is built and rendered
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then only the poison file is a failure for good, and the page says what to do
    assert [(f.object_key, f.permanent) for f in report.failures] == [
        ("incoming/sales/2.csv", False),
        ("incoming/sales/1.csv", True),
    ]
    assert render_html(report, JSON_LINK).count("processing, the file itself: fix it in place") == 1


def test_a_load_rejected_for_good_is_told_from_one_given_up_on():
    # Given a day with a load given up on after its retries (in the load DLQ) and a load
    # PostgreSQL rejected for good (not retried: no DLQ message)
    items = [
        item(
            1, "completed", load_status="failed", load_error="db down", load_failed_at="2025-03-14T01:05:00Z"
        ),
        item(
            2,
            "completed",
            load_status="rejected",
            load_error="LoadRejected: PostgreSQL cannot hold this file: too many columns",
            load_failed_at="2025-03-14T02:05:00Z",
        ),
    ]
    # When the report is built and rendered
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then both are failed loads, one of them rejected for good, and each failure says which
    assert (report.warehouse.failed, report.warehouse.rejected) == (2, 1)
    assert [(f.object_key, f.permanent) for f in report.failures] == [
        ("incoming/sales/2.csv", True),
        ("incoming/sales/1.csv", False),
    ]
    page = render_html(report, JSON_LINK)
    assert "2 failed (1 rejected for good: not retried)" in page
    assert page.count("load, rejected for good: not retried") == 1
    message = sns_message(report, "https://x", 3600)
    assert "Loaded into PostgreSQL: 0 files, 2 failed (1 rejected for good: not retried)" in message
    assert "Latest failure (load, rejected for good: not retried): " in message
    # and headrace status lists the rejected one among the recent failures, marked so
    recent = failures_since(items, datetime(2025, 3, 14, 0, 0, tzinfo=UTC))
    assert [(f.object_key, f.permanent) for f in recent] == [
        ("incoming/sales/2.csv", True),
        ("incoming/sales/1.csv", False),
    ]


@pytest.mark.parametrize(
    ("event", "task", "day"),
    [
        ({"task": "signals"}, "signals", None),
        ({"date": "2025-03-01"}, "report", date(2025, 3, 1)),
        ({"date": "today"}, "report", date(2025, 3, 15)),
        ({"date": "yesterday"}, "report", date(2025, 3, 14)),
        ({}, "report", date(2025, 3, 14)),
        ({"source": "aws.events", "time": "2025-02-01T06:00:00Z", "detail": {}}, "report", date(2025, 1, 31)),
        # 22:00 UTC on 03-14, and 03:00 UTC on 03-15: the UTC day decides
        ({"time": "2025-03-15T03:00:00+05:00"}, "report", date(2025, 3, 13)),
        ({"time": "2025-03-14T22:00:00-05:00"}, "report", date(2025, 3, 14)),
        ({"time": "2030-01-01T00:00:00Z"}, "report", date(2025, 3, 14)),  # no report of a future day
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
        ({"date": "2025-W11-5"}, "is not YYYY-MM-DD"),
        ({"date": "20250314"}, "is not YYYY-MM-DD"),
        ({"date": "2025-03-16"}, "in the future"),
        ({"task": "explode"}, "unknown task"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_requests_are_refused_clearly(event, message):
    with pytest.raises(BadRequest, match=message):
        Request.from_event(event, NOW)


def test_a_day_whose_metadata_has_expired_is_refused():
    # Given metadata items that expire after 90 days: a report of 2024-12-15, 90 days before
    # NOW, would be empty and overwrite the report written then
    with pytest.raises(
        BadRequest, match=r"date 2024-12-15 is 90 days ago: metadata items expire after 90 days"
    ):
        Request.from_event({"date": "2024-12-15"}, NOW, 90)
    # while the day after it, and the schedule's day, are still reported
    assert Request.from_event({"date": "2024-12-16"}, NOW, 90).day == date(2024, 12, 16)
    assert Request.from_event({}, NOW, 1).day == date(2025, 3, 14)


def test_a_long_subject_drops_whole_figures_rather_than_cutting_one():
    # Given a day with figures so large the subject cannot hold them all
    report = build_report("2025-03-14", [], NOW, backlog=250000, processing_dlq=12345, load_dlq=6789)
    report.files.received, report.files.failed, report.files.fixed = 120000, 15000, 2500
    # When its subject is made
    subject = sns_subject(report)
    # Then it fits SNS's limit and every figure it shows is whole: the last one is left out
    assert len(subject) <= 100
    assert subject == (
        "headrace report 2025-03-14: 120000 files, 15000 failed, 19134 dead letters, 250000 queued"
    )


def test_failures_the_page_cannot_show_are_in_report_json():
    # Given a day with 300 failed files: more than the page shows
    items = [
        item(i % 24, "failed", object_key=f"incoming/bad/{i}.csv", version=f"v{i}", error=f"boom {i}")
        for i in range(300)
    ]
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then report.json (the report's model) lists every one of them
    assert report.failures_total == 300
    assert {f.object_key for f in report.failures} == {f"incoming/bad/{i}.csv" for i in range(300)}
    # and the page shows 50 and says where the other 250 are
    page = render_html(report, JSON_LINK)
    assert page.count('<td class="err">boom ') == 50
    assert "…and 250 more: listed in report.json." in page
    # while a day beyond what report.json holds says how many it lists
    many = [
        item(i % 24, "failed", object_key=f"incoming/bad/{i}.csv", version=f"v{i}", error="boom")
        for i in range(1200)
    ]
    report = build_report("2025-03-14", many, NOW, **EMPTY_QUEUES)
    assert len(report.failures) == 1000 and report.failures_total == 1200
    assert "…and 1,150 more: report.json lists the first 1,000." in render_html(report, JSON_LINK)


def test_completed_files_not_loaded_yet_are_not_a_good_day():
    # Given a day whose files all completed, one of which the loader has not loaded (its
    # message waits in the load queue, is being retried, or expired unreceived)
    items = [item(1, "completed"), item(2, "completed", load_status=None, load_rows=None)]
    # When the report is made
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then it counts it, and the verdict is a warning that says so, as do the card and message
    assert (report.warehouse.loaded, report.warehouse.pending) == (1, 1)
    page = render_html(report, JSON_LINK)
    assert (
        '<span class="verdict warn">Every finished file was processed successfully; '
        "1 completed file not loaded into PostgreSQL yet</span>" in page
    )
    assert "10 rows, 1 not loaded yet" in page
    message = sns_message(report, "https://example.invalid/r", 3600)
    assert "Loaded into PostgreSQL: 1 files, 1 not loaded yet" in message
    # while a superseded version is not waited for: its newer version's load replaces it
    replaced = item(3, "completed", load_status=None, superseded_by="v9")
    assert build_report("2025-03-14", [items[0], replaced], NOW, **EMPTY_QUEUES).warehouse.pending == 0


@pytest.mark.parametrize(
    "odd",
    [
        {"timings_ms": {"total": "slow", "queue_wait": None}},
        {"timings_ms": [1000.0]},
        {"quality_issues": ["missing values"]},
        {"quality_issues": {"missing_values": {"price": 3}, "type_mismatches": ["x"], "malformed_rows": 2}},
        {"format": 5},
    ],
)
def test_an_item_with_an_odd_attribute_is_counted_and_costs_no_report(odd):
    # Given a day of two completed files, one of whose items holds an attribute of another
    # shape than the processor writes (written by hand, or by another version)
    items = [item(1, "completed"), item(2, "completed") | odd]
    # When the report is made
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then both files count, with what can be read of the odd one, and the page renders
    assert (report.files.received, report.files.completed, report.rows) == (2, 2, 20)
    assert report.quality_issues[0].count >= 1
    assert "2 files" in sns_subject(report) and "<svg" in render_html(report, JSON_LINK)


def test_odd_failures_are_listed_with_bounded_errors():
    # Given failed files whose items hold an error far longer than the processor writes
    # (2,000 characters), and a failure time that is not a time
    items = [
        item(i, "failed", error="x" * 300_000, failed_at=1741910400 if i == 1 else "2025-03-14T02:00:00Z")
        for i in range(1, 4)
    ]
    # When the report is made
    report = build_report("2025-03-14", items, NOW, **EMPTY_QUEUES)
    # Then every failure is listed, its error cut as the writers cut it: report.json and
    # the page stay small whatever an item holds
    assert report.failures_total == 3
    assert {len(f.error) for f in report.failures} == {2000}
    assert [f.at for f in report.failures].count(None) == 1
    assert len(render_html(report, JSON_LINK)) < 20_000


def test_an_upload_time_with_an_offset_is_charted_in_its_utc_hour():
    # Given a file whose upload time was written with an offset: 23:30 at +02:00 is 21:30 UTC
    report = build_report("2025-03-14", [item(1, "completed", uploaded_at="2025-03-14T23:30:00+02:00")], NOW)
    # Then the chart (hours of upload, UTC) puts it at 21:00
    assert [h.hour for h in report.hourly if h.received] == [21]


class Held(dict):
    """An item whose lifetime a test can follow (a dict cannot be weakly referenced)."""


def test_the_report_keeps_no_item_it_has_counted():
    # Given a day's items, handed over one at a time as they are read
    made: list[weakref.ref[Held]] = []
    alive_when_read: list[int] = []

    def read() -> Iterator[Held]:
        for n in range(1, 25):
            alive_when_read.append(sum(ref() is not None for ref in made))
            kept = Held(
                item(
                    n, "completed" if n % 4 else "failed", error="bad", failed_at=f"2025-03-14T{n:02d}:00:00Z"
                )
            )
            made.append(weakref.ref(kept))
            yield kept
            del kept

    # When the report is built from them
    report = build_report("2025-03-14", read(), NOW, **EMPTY_QUEUES)
    # Then it counted them all, holding at most the one it was counting when the next was
    # read: memory does not grow with the number of files
    assert (report.files.received, report.files.failed, report.failures_total) == (24, 6, 6)
    assert max(alive_when_read) <= 1


def test_the_report_holds_only_the_failures_and_slow_files_it_lists():
    # Given a busy day: 2,500 completed files and 2,500 failures (processing and load,
    # some fixed in place since, many at the same second), handed over as they are read
    from handlers.logic.report import build
    from handlers.models.report import Failure, SlowFile

    def live(kind: type) -> int:
        return sum(isinstance(o, kind) for o in gc.get_objects())

    held: dict[str, int] = {}

    def read() -> Iterator[dict]:
        for n in range(5000):
            at = f"2025-03-14T{n % 24:02d}:{n % 7:02d}:00Z"
            if n % 2:
                yield item(
                    n % 24, "completed", object_key=f"k{n}", version=f"v{n}", timings_ms={"total": n % 97}
                )
            elif n % 4:
                fixed = {"superseded_by": "v9"} if n % 3 == 0 else {}
                yield item(
                    n % 24,
                    "failed",
                    object_key=f"k{n}",
                    version=f"v{n}",
                    error=f"e{n}",
                    failed_at=at,
                    **fixed,
                )
            else:
                yield item(
                    n % 24,
                    "completed",
                    object_key=f"k{n}",
                    version=f"v{n}",
                    load_status="failed",
                    load_error=f"e{n}",
                    load_failed_at=at,
                    timings_ms={"total": n % 89},
                )
        held["failures"], held["slow"] = live(Failure), live(SlowFile)

    report = build_report("2025-03-14", read(), NOW, **EMPTY_QUEUES)
    # Then it counted every failure but held no more than twice what it lists, all along
    assert report.failures_total == 2500 and len(report.failures) == build.MAX_FAILURES
    assert held["failures"] <= 2 * build.MAX_FAILURES and held["slow"] <= 2 * build.TOP
    # and lists the same ones, in the same order, as sorting them all would: the open ones
    # first, the latest first, equal ones in upload order
    everything = [
        (n % 4 == 2 and n % 3 == 0, f"2025-03-14T{n % 24:02d}:{n % 7:02d}:00Z", n) for n in range(0, 5000, 2)
    ]
    everything.sort(key=lambda f: f[1], reverse=True)
    everything.sort(key=lambda f: f[0])
    expected = [f"k{n}" for _, _, n in everything[: build.MAX_FAILURES]]
    assert [f.object_key for f in report.failures] == expected
    completed = [n for n in range(5000) if n % 2 or n % 4 == 0]
    slowest = sorted(completed, key=lambda n: n % 97 if n % 2 else n % 89, reverse=True)[: build.TOP]
    assert [s.object_key for s in report.slowest_files] == [f"k{n}" for n in slowest]


def test_a_day_with_more_quality_issues_than_listed_says_how_many_more():
    # Given a completed file of 2,000 columns, each missing some values
    wide = item(
        1,
        "completed",
        quality_issues={
            "missing_values": {f"c{i}": {"count": i + 1, "percentage": 1.0} for i in range(2000)}
        },
    )
    # When the report is made
    report = build_report("2025-03-14", [wide], NOW, **EMPTY_QUEUES)
    # Then report.json lists the top 10 and counts them all
    assert [q.column for q in report.quality_issues] == [f"c{i}" for i in range(1999, 1989, -1)]
    assert report.quality_issues_total == 2000
    assert report.model_dump(mode="json")["quality_issues_total"] == 2000
    # and the page says the other 1,990 exist, and where they are
    page = render_html(report, JSON_LINK)
    assert "…and 1,990 more (an issue of one column of a dataset each)" in page
    # while a day with no more than it lists says nothing of the kind
    few = render_html(build_report("2025-03-14", [item(2, "completed")], NOW, **EMPTY_QUEUES), JSON_LINK)
    assert "more (an issue of one column" not in few
