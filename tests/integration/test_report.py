"""The report Lambda against moto: metadata written by the real processor (and loader),
the report written to S3, and the message on the alerts topic."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from handlers.dal.load_status import LoadStatusStore
from tests.integration.conftest import REGION, STACK, LambdaContext

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"


class Reporter:
    def __init__(self, pipeline: Any, monkeypatch: pytest.MonkeyPatch):
        self.pipeline = pipeline
        self.s3 = pipeline.s3
        self.bucket = "reports-bucket"
        self.s3.create_bucket(Bucket=self.bucket)
        sns = boto3.client("sns", region_name=REGION)
        self.topic = sns.create_topic(Name="alerts")["TopicArn"]
        self.inbox = pipeline.sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        inbox_arn = pipeline.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn)
        self.processing_queue = pipeline.sqs.create_queue(QueueName="backlog")["QueueUrl"]
        self.processing_dlq = pipeline.sqs.create_queue(QueueName="backlog-dlq")["QueueUrl"]
        self.load_dlq = pipeline.sqs.create_queue(QueueName="load-dlq")["QueueUrl"]
        for name, value in {
            "METADATA_TABLE": "metadata",
            "REPORTS_BUCKET": self.bucket,
            "ALERTS_TOPIC_ARN": self.topic,
            "PROCESSING_QUEUE_URL": self.processing_queue,
            "PROCESSING_DLQ_URL": self.processing_dlq,
            "LOAD_DLQ_URL": self.load_dlq,
            "REPORT_LINK_TTL_SECONDS": "86400",
        }.items():
            monkeypatch.setenv(name, value)
        self.handler = importlib.reload(importlib.import_module("handlers.report"))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.handler.lambda_handler(event, LambdaContext())

    def messages(self) -> list[dict[str, Any]]:
        found = []
        while batch := self.pipeline.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for m in batch:
                found.append(json.loads(m["Body"]))
                self.pipeline.sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=m["ReceiptHandle"])
        return found

    def object(self, key: str) -> tuple[bytes, str]:
        response = self.s3.get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read(), response["ContentType"]


@pytest.fixture
def reporter(pipeline, monkeypatch) -> Reporter:
    return Reporter(pipeline, monkeypatch)


def test_the_report_for_a_day_holds_its_figures_and_is_announced(pipeline, reporter):
    # Given a day with three good files (two formats), a binary file and an empty one
    objects = [
        pipeline.upload("incoming/sales/a.csv", SALES),
        pipeline.upload("incoming/sales/b.csv", SALES + "2025-01-04,Gizmo,1,9.99\n"),
        pipeline.upload(
            "incoming/events/c.ndjson", '{"level": "INFO", "n": 1}\n{"level": "ERROR", "n": 2}\n'
        ),
        pipeline.upload("incoming/junk/d.csv", bytes(range(256)) * 8),
        pipeline.upload("incoming/junk/<script>alert(1)</script>.csv", b""),
    ]
    response = pipeline.process(*objects)
    assert len(response["batchItemFailures"]) == 2  # the two junk files fail (and head for the DLQ)
    # and a message waiting in the processing queue
    pipeline.sqs.send_message(QueueUrl=reporter.processing_queue, MessageBody="{}")
    today = datetime.now(UTC).date().isoformat()
    # When the report is asked for that day
    result = reporter.invoke({"date": today})
    # Then report.json holds the day's figures
    body, content_type = reporter.object(f"reports/{today}/report.json")
    report = json.loads(body)
    assert content_type == "application/json"
    assert report["date"] == today
    assert report["partial"] is True  # the day is not over: the page and the message say so too
    assert report["files"] == {
        "received": 5,
        "waiting": 0,
        "processing": 0,
        "completed": 3,
        "failed": 2,
        "fixed": 0,
        "skipped": 0,
        "stuck": 0,
    }
    assert report["rows"] == 3 + 4 + 2
    assert {f["format"]: (f["files"], f["rows"]) for f in report["formats"]} == {
        "csv": (2, 7),
        "ndjson": (1, 2),
        "unknown": (2, 0),
    }
    assert report["quality_issues"][0] == {
        "kind": "missing values",
        "dataset": "sales",
        "column": "quantity",
        "files": 2,
        "count": 2,
    }
    assert len(report["slowest_files"]) == 3
    assert report["slowest_files"][0]["total_ms"] >= report["slowest_files"][-1]["total_ms"]
    assert {f["error"] for f in report["failures"]} >= {"the file is empty (0 bytes)"}
    assert report["failures_total"] == 2
    assert (
        report["latency_ms"]["p50"] is not None and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]
    )
    assert sum(h["received"] for h in report["hourly"]) == 5
    assert (report["processing_backlog"], report["processing_dlq_depth"], report["load_dlq_depth"]) == (
        1,
        0,
        0,
    )
    # and report.html is a page with the same figures, the chart, and every key escaped
    html, content_type = reporter.object(f"reports/{today}/report.html")
    page = html.decode()
    assert content_type.startswith("text/html")
    assert "<svg" in page and "<table>" in page and "2 files failed processing" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # and its report.json link is presigned too (a relative link would not be signed)
    json_link = unescape(page.split('<a href="')[1].split('"')[0])
    assert urlparse(json_link).path.endswith(f"/reports/{today}/report.json")
    assert parse_qs(urlparse(json_link).query)["X-Amz-Expires"] == ["86400"]
    # and one message announces it, with a link to the page valid as configured
    [message] = reporter.messages()
    assert message["Subject"] == f"headrace report {today} (partial): 5 files, 2 failed, 1 queued"
    assert "Files: 5 received, 3 completed, 2 failed" in message["Message"]
    lines = message["Message"].splitlines()
    link = lines[lines.index("Report (link valid for up to 1 day):") + 1]
    assert link == result["link"]
    query = parse_qs(urlparse(link).query)
    assert urlparse(link).path.endswith(f"/reports/{today}/report.html")
    assert query["X-Amz-Expires"] == ["86400"]


def test_uploads_the_processor_never_recorded_make_the_report_red(pipeline, reporter):
    # Given a day whose one processed file completed, while two uploads wait in the
    # processing queue and one ended in the processing DLQ without a metadata item (the
    # processor crashed at start-up), and a load waits in the load DLQ
    good = pipeline.upload("incoming/sales/a.csv", SALES)
    pipeline.process(good)
    LoadStatusStore("metadata").mark_loaded(good["key"], good["version"], datetime.now(UTC), "sales", 3)
    for queue, count in (
        (reporter.processing_queue, 2),
        (reporter.processing_dlq, 1),
        (reporter.load_dlq, 1),
    ):
        for _ in range(count):
            pipeline.sqs.send_message(QueueUrl=queue, MessageBody="{}")
    # and a third upload in flight: a processor holds it (a busy pipeline always has some)
    pipeline.sqs.send_message(QueueUrl=reporter.processing_queue, MessageBody="{}")
    held = pipeline.sqs.receive_message(QueueUrl=reporter.processing_queue, MaxNumberOfMessages=1)
    assert len(held["Messages"]) == 1
    today = datetime.now(UTC).date().isoformat()
    # When the day's report is made
    reporter.invoke({"date": today})
    # Then it counts the one file it saw, and its verdict, subject and message name the rest
    # (the backlog is what waits, not what is in flight)
    report = json.loads(reporter.object(f"reports/{today}/report.json")[0])
    assert report["files"]["received"] == 1 and report["files"]["failed"] == 0
    assert (report["processing_backlog"], report["processing_dlq_depth"], report["load_dlq_depth"]) == (
        2,
        1,
        1,
    )
    page = reporter.object(f"reports/{today}/report.html")[0].decode()
    said = "1 message in the processing DLQ, 1 message in the load DLQ, 2 messages in the processing queue"
    assert f'<span class="verdict bad">{said}</span>' in page
    [message] = reporter.messages()
    assert (
        message["Subject"]
        == f"headrace report {today} (partial): 1 files, no failures, 2 dead letters, 2 queued"
    )
    assert message["Message"].splitlines()[1] == said


def test_the_report_reads_only_what_it_shows_from_the_metadata_table(pipeline, reporter, monkeypatch):
    # Given a completed file, whose metadata item holds its schema and statistics
    pipeline.process(pipeline.upload("incoming/sales/a.csv", SALES))
    from handlers.logic.report import run

    seen: list[dict[str, Any]] = []
    build = run.build_report

    def recording(day: str, items: Any, *rest: Any) -> Any:
        items = list(items)
        seen.extend(items)
        return build(day, items, *rest)

    monkeypatch.setattr(run, "build_report", recording)
    # When the day's report is made
    reporter.invoke({"date": datetime.now(UTC).date().isoformat()})
    # Then the items it got hold only the attributes the report reads (a whole item is up to 300 KB)
    [item] = seen
    assert item["row_count"] == 3 and set(item) <= set(run.REPORT_ATTRIBUTES)
    assert "schema" not in item and "statistics" not in item


def test_a_day_of_many_pages_is_counted_whole_and_read_a_page_at_a_time(pipeline, reporter, monkeypatch):
    # Given a day of 120 files, a third of them failed, whose items span many Query pages
    # (DynamoDB returns at most 1 MB a page; moto's limit is lowered to a few items)
    monkeypatch.setattr("moto.dynamodb.models.table.RESULT_SIZE_LIMIT", 4000)
    day = datetime.now(UTC).date().isoformat()
    metadata = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
    with metadata.batch_writer() as batch:
        for n in range(120):
            at = f"{day}T{n % 24:02d}:{n // 24:02d}:00.000Z"
            item: dict[str, Any] = {"object_key": f"incoming/sales/{n}.csv", "version": f"v{n}", "day": day}
            item |= {"uploaded_at": at, "updated_at": at, "size": 100, "dataset": "sales"}
            if n % 3:
                item |= {"status": "completed", "completed_at": at, "format": "csv", "row_count": 10}
            else:
                item |= {"status": "failed", "failed_at": at, "error": f"bad file {n}"}
            batch.put_item(Item=item)
    from handlers.logic.report import run

    queries: list[dict[str, Any]] = []
    index = run.table("metadata")

    class Counting:
        def query(self, **kwargs: Any) -> Any:
            queries.append(kwargs)
            return index.query(**kwargs)

    monkeypatch.setattr(run, "table", lambda name: Counting())
    read_before_first: list[int] = []
    build = run.build_report

    def watching(day: str, items: Any, *rest: Any) -> Any:
        def watched() -> Any:
            for item in items:
                read_before_first.append(len(queries))
                yield item

        return build(day, watched(), *rest)

    monkeypatch.setattr(run, "build_report", watching)
    # When the day's report is made
    result = reporter.invoke({"date": day})
    # Then every file counts, every failure is listed: all pages were read, from the by_day
    # index (a Query, no Scan of the table)
    assert (result["files"]["received"], result["files"]["completed"], result["files"]["failed"]) == (
        120,
        80,
        40,
    )
    assert result["rows"] == 800
    report = json.loads(reporter.object(f"reports/{day}/report.json")[0])
    assert report["failures_total"] == 40 and len(report["failures"]) == 40
    assert len(queries) > 5 and {q["IndexName"] for q in queries} == {"by_day"}
    # and the report counted the first page's items before it read the second: it holds a
    # page of the day at a time, not the whole day (tens of thousands of items)
    assert read_before_first[0] == 1


def test_running_the_report_again_overwrites_it(pipeline, reporter):
    # Given a report for today with one file
    today = datetime.now(UTC).date().isoformat()
    pipeline.process(pipeline.upload("incoming/sales/a.csv", SALES))
    reporter.invoke({"date": today})
    # When another file completes and the report runs again
    pipeline.process(pipeline.upload("incoming/sales/b.csv", SALES))
    reporter.invoke({"date": today})
    # Then the same keys hold the new figures (one report per day)
    keys = [o["Key"] for o in reporter.s3.list_objects_v2(Bucket=reporter.bucket)["Contents"]]
    assert sorted(keys) == [f"reports/{today}/report.html", f"reports/{today}/report.json"]
    assert json.loads(reporter.object(f"reports/{today}/report.json")[0])["files"]["completed"] == 2


def test_the_presigned_link_is_kept_out_of_the_trace(reporter, monkeypatch):
    # Given the report function's tracer (disabled in tests: what it is handed is recorded)
    handed: list[dict[str, Any]] = []
    tracer = reporter.handler.tracer
    monkeypatch.setattr(tracer, "_add_response_as_metadata", lambda **kwargs: handed.append(kwargs))
    # When a report is published
    response = reporter.invoke({"date": datetime.now(UTC).date().isoformat()})
    assert "X-Amz-Signature" in response["link"]
    # Then the trace records no response: the presigned link, a key to the report for days,
    # would be readable by whoever may read traces
    assert [call["capture_response"] for call in handed] == [False]


def test_the_scheduled_run_reports_the_previous_day_even_when_empty(reporter):
    # Given the daily schedule's EventBridge event, and no file uploaded the day before
    event = {
        "version": "0",
        "id": "x",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-03-02T06:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {},
    }
    # When it runs
    result = reporter.invoke(event)
    # Then it reports the last complete day, saying nothing happened
    assert result["date"] == "2025-03-01"
    report = json.loads(reporter.object("reports/2025-03-01/report.json")[0])
    assert (report["files"]["received"], report["partial"]) == (0, False)
    page = reporter.object("reports/2025-03-01/report.html")[0].decode()
    assert '<span class="verdict quiet">No file reached the processor on this day</span>' in page
    [message] = reporter.messages()
    assert message["Subject"] == "headrace report 2025-03-01: 0 files, no failures"


@pytest.mark.parametrize("bad", [{"date": "yesterday-ish"}, {"date": "2025-13-01"}, {"task": "dance"}])
def test_a_bad_request_gets_a_clear_error(reporter, bad):
    from handlers.models.report import BadRequest

    with pytest.raises(BadRequest):
        reporter.invoke(bad)


def test_signals_measure_the_time_since_the_last_completed_file(pipeline, reporter, capsys):
    # Given a completed file and a failed one (which does not count)
    pipeline.process(pipeline.upload("incoming/sales/a.csv", SALES))
    pipeline.process(pipeline.upload("incoming/junk/e.csv", b""))
    completed_at = pipeline.item(
        {"key": "incoming/sales/a.csv", "version": _version(pipeline, "incoming/sales/a.csv")}
    )["completed_at"]
    capsys.readouterr()
    # When the signals task runs a minute and a half later
    later = datetime.fromisoformat(completed_at.replace("Z", "+00:00")) + timedelta(seconds=90)
    reporter.handler.utcnow = lambda: later
    result = reporter.invoke({"task": "signals"})
    # Then the metric is the time since that file completed, from the report service
    assert result["last_completed"] == "incoming/sales/a.csv" and result["exact"] is True
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [metric] = [m for m in emf if "SecondsSinceLastCompletedFile" in m]
    assert metric["SecondsSinceLastCompletedFile"] == [90.0]
    assert metric["service"] == "report"
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "headrace"
    # and this stack's (HEADRACE_STACK): the stack's staleness alarm selects by both
    # dimensions, so an idle stack's alarm is never fed by another stack's signal
    assert metric["stack"] == STACK
    assert [set(d) for d in metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] == [{"service", "stack"}]


def test_signals_look_at_yesterday_after_midnight_and_bound_an_empty_history(pipeline, reporter):
    # Given a file completed today
    pipeline.process(pipeline.upload("incoming/sales/a.csv", SALES))
    # When the signals run early tomorrow (nothing completed yet that day)
    tomorrow = datetime.now(UTC).replace(hour=0, minute=5, second=0, microsecond=0) + timedelta(days=1)
    reporter.handler.utcnow = lambda: tomorrow
    result = reporter.invoke({"task": "signals"})
    # Then yesterday's file counts
    assert result["last_completed"] == "incoming/sales/a.csv" and result["exact"] is True
    # When nothing completed today or yesterday
    reporter.handler.utcnow = lambda: tomorrow + timedelta(days=3)
    result = reporter.invoke({"task": "signals"})
    # Then the value is a lower bound: the time since the start of the day before
    # yesterday (more than the alarm's 1440 minutes, even at midnight)
    assert result["exact"] is False and result["last_completed"] is None
    assert result["seconds_since_last_completed_file"] == 2 * 86400 + 5 * 60


def test_signals_look_back_as_far_as_the_alarm_threshold(pipeline, reporter, monkeypatch):
    # Given a file completed today, and a staleness alarm at 3 days
    pipeline.process(pipeline.upload("incoming/sales/a.csv", SALES))
    monkeypatch.setenv("STALENESS_MINUTES", "4320")
    reporter.handler = importlib.reload(reporter.handler)
    # When the signals run two and a half days later
    later = datetime.now(UTC) + timedelta(days=2, hours=12)
    reporter.handler.utcnow = lambda: later
    result = reporter.invoke({"task": "signals"})
    # Then the file is still found: the value is exact
    assert result["last_completed"] == "incoming/sales/a.csv" and result["exact"] is True
    # When nothing completed for a week
    reporter.handler.utcnow = lambda: later + timedelta(days=5)
    result = reporter.invoke({"task": "signals"})
    # Then the lower bound is above the threshold: the alarm fires
    assert result["exact"] is False and result["seconds_since_last_completed_file"] > 4320 * 60


def forget_processed_versions() -> None:
    """The idempotency window (a day by default) has passed."""
    records = boto3.resource("dynamodb", region_name=REGION).Table("idempotency")
    for record in records.scan()["Items"]:
        records.delete_item(Key={"id": record["id"]})


def _completed_on(day: str) -> list[dict[str, Any]]:
    """Everything the by_completion index holds for ``day``, as a Query of it returns it."""
    table = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
    return table.query(IndexName="by_completion", KeyConditionExpression=Key("completed_day").eq(day))[
        "Items"
    ]


def test_the_completion_index_holds_the_completed_versions_and_only_while_they_are(
    pipeline, reporter, monkeypatch
):
    from handlers.logic import process_object
    from handlers.logic.processing import UnprocessableFile

    # Given a completed file, a failed one, and a key whose first version was replaced
    a = pipeline.upload("incoming/sales/a.csv", SALES)
    pipeline.process(a, pipeline.upload("incoming/junk/e.csv", b""))
    b1 = pipeline.upload("incoming/sales/b.csv", SALES)
    pipeline.process(b1)
    b2 = pipeline.upload("incoming/sales/b.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    pipeline.process(b2)
    items = {(o["key"], o["version"]): pipeline.item(o) for o in (a, b1, b2)}
    assert all(item["completed_day"] == item["completed_at"][:10] for item in items.values())
    # Then the index holds the three completed versions (a replaced version stays
    # completed), by their completion day, with their keys only
    held = [i for day in {i["completed_day"] for i in items.values()} for i in _completed_on(day)]
    assert {(i["object_key"], i["version"]) for i in held} == set(items)
    assert all(set(i) == {"object_key", "version", "completed_day", "completed_at"} for i in held)
    # When a's event comes again a day later and this time the file fails
    forget_processed_versions()

    def unprocessable(*args: Any, **kwargs: Any) -> Any:
        raise UnprocessableFile("unreadable this time")

    monkeypatch.setattr(process_object, "process_file", unprocessable)
    pipeline.process(a)
    assert pipeline.item(a)["status"] == "failed"
    # Then a leaves the index, and the signal no longer counts it
    day = items[(a["key"], a["version"])]["completed_day"]
    assert (a["key"], a["version"]) not in {(i["object_key"], i["version"]) for i in _completed_on(day)}
    last = max(items[(k, v)]["completed_at"] for k, v in items if k != a["key"])
    reporter.handler.utcnow = lambda: (
        datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(seconds=90)
    )
    result = reporter.invoke({"task": "signals"})
    assert (result["last_completed"], result["exact"]) == ("incoming/sales/b.csv", True)
    assert result["seconds_since_last_completed_file"] == 90.0


def test_versions_replaced_before_processing_are_skipped_not_failed(pipeline, reporter):
    # Given a key uploaded twice before the processor got to the first version
    v1 = pipeline.upload("incoming/sales/a.csv", SALES)
    v2 = pipeline.upload("incoming/sales/a.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    pipeline.process(v1, v2)
    today = datetime.now(UTC).date().isoformat()
    # When the day's report is made
    reporter.invoke({"date": today})
    # Then the first version is skipped, not a failure: no failure listed, a green verdict
    report = json.loads(reporter.object(f"reports/{today}/report.json")[0])
    files = report["files"]
    assert (files["received"], files["completed"], files["failed"], files["skipped"]) == (2, 1, 0, 1)
    assert report["failures"] == [] and report["rows"] == 4
    page = reporter.object(f"reports/{today}/report.html")[0].decode()
    assert "Every finished file was processed successfully" in page
    [message] = reporter.messages()
    assert message["Subject"] == f"headrace report {today} (partial): 2 files, no failures"


def test_a_failure_fixed_in_place_is_not_counted_failed(pipeline, reporter):
    # Given a poison file, fixed in place: the same key uploaded again, good, and processed
    v1 = pipeline.upload("incoming/sales/a.csv", bytes(range(256)) * 8)
    pipeline.process(v1)
    assert pipeline.item(v1)["status"] == "failed"
    v2 = pipeline.upload("incoming/sales/a.csv", SALES)
    pipeline.process(v2)
    LoadStatusStore("metadata").mark_loaded(v2["key"], v2["version"], datetime.now(UTC), "sales", 3)
    today = datetime.now(UTC).date().isoformat()
    # When the day's report is made
    reporter.invoke({"date": today})
    # Then the poison version is listed, fixed, and not counted failed: a green verdict
    report = json.loads(reporter.object(f"reports/{today}/report.json")[0])
    files = report["files"]
    assert (files["received"], files["completed"], files["failed"], files["fixed"]) == (2, 1, 0, 1)
    assert [(f["version"], f["replaced"]) for f in report["failures"]] == [(v1["version"], True)]
    page = reporter.object(f"reports/{today}/report.html")[0].decode()
    assert "verdict ok" in page and "fixed in place: a newer version completed" in page
    [message] = reporter.messages()
    assert (
        message["Subject"]
        == f"headrace report {today} (partial): 2 files, no open failures, 1 fixed in place"
    )


def test_a_key_uploaded_again_counts_its_rows_once(pipeline, reporter):
    # Given a key processed, uploaded again and processed again; both versions loaded
    v1 = pipeline.upload("incoming/sales/a.csv", SALES)
    pipeline.process(v1)
    v2 = pipeline.upload("incoming/sales/a.csv", SALES)
    pipeline.process(v2)
    loads = LoadStatusStore("metadata")
    for version in (v1, v2):
        loads.mark_loaded(version["key"], version["version"], datetime.now(UTC), "sales", 3)
    today = datetime.now(UTC).date().isoformat()
    # When the day's report is made
    reporter.invoke({"date": today})
    # Then both versions were processed, but only the current one's rows count
    report = json.loads(reporter.object(f"reports/{today}/report.json")[0])
    assert report["files"]["completed"] == 2
    assert report["rows"] == 3
    assert report["warehouse"] == {
        "loaded": 1,
        "rows": 3,
        "failed": 0,
        "rejected": 0,
        "superseded": 1,
        "pending": 0,
    }


def _version(pipeline, key: str) -> str:
    return pipeline.s3.list_object_versions(Bucket=pipeline.raw, Prefix=key)["Versions"][0]["VersionId"]
