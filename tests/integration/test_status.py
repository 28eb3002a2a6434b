"""``headrace status`` against a moto stack described by an outputs file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from handlers.dal.load_status import LoadStatusStore
from handlers.dal.metadata import MetadataStore
from handlers.models import tables
from handlers.models.events import ObjectRef
from handlers.models.tables import FAILURE_ATTRIBUTES
from headrace import status
from headrace.cli import main
from headrace.outputs import StackOutputs
from tests.integration.conftest import REGION
from tests.integration.test_dlq import Stack

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"


def write_outputs(pipeline: Any, path: Path, ingest: bool = True) -> dict[str, str]:
    queues = {
        name: pipeline.sqs.create_queue(QueueName=name.replace("_url", ""))["QueueUrl"]
        for name in ("processing_queue_url", "processing_dlq_url", "load_queue_url", "load_dlq_url")
        + (("ingest_queue_url", "ingest_dlq_url") if ingest else ())
    }
    outputs = {
        "raw_bucket": pipeline.raw,
        "processed_bucket": pipeline.processed,
        "reports_bucket": "reports",
        "metadata_table": "metadata",
        "db_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        "alerts_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
        "ingest_api_url": "http://localhost/ingest",
        "region": REGION,
        **queues,
    }
    path.write_text(json.dumps(outputs))
    return queues


def test_a_healthy_stack(pipeline, tmp_path, capsys, monkeypatch):
    # Given a stack with a completed file, a failed one, and work waiting
    outputs = tmp_path / "outputs.json"
    queues = write_outputs(pipeline, outputs)
    good = pipeline.upload("incoming/sales/jan.csv", SALES)
    pipeline.process(good, pipeline.upload("incoming/empty.csv", b""))
    assert "schema" in pipeline.item(good) and "statistics" in pipeline.item(good)
    pipeline.sqs.send_message(QueueUrl=queues["processing_queue_url"], MessageBody="{}")
    read: list[dict[str, Any]] = []
    failed_on_day = status.iter_failed_on_day

    def recording(*args: Any) -> Iterator[dict[str, Any]]:
        for item in failed_on_day(*args):
            read.append(item)
            yield item

    monkeypatch.setattr(status, "iter_failed_on_day", recording)
    monkeypatch.setattr(status, "files_on_day", lambda *args: pytest.fail("read a whole upload day"))
    # When the operator asks for its status
    code = main(["status", "--outputs", str(outputs)])
    out = capsys.readouterr().out
    # Then it exits 0 (no DLQ holds anything) and shows queues, the last file, the failure
    assert code == 0
    lines = out.splitlines()
    assert any(line.split() == ["processing", "1", "0"] for line in lines)
    assert any(line.split() == ["ingest", "DLQ", "0", "0"] for line in lines)
    assert "Last completed file: incoming/sales/jan.csv, 2 rows" in out
    assert "Failures in the last hour: 1" in out
    assert "incoming/empty.csv" in out and "the file is empty (0 bytes)" in out
    assert "All dead-letter queues are empty." in out
    # and it read only the failed version, and of it only what it shows (not its schema
    # and statistics: a completed item that failed to load is up to 300 KB), never every
    # item uploaded on the window's days
    assert [i["object_key"] for i in read] == ["incoming/empty.csv"]
    assert set(read[0]) <= {"object_key", "version", "failure_day", "failure_at", *FAILURE_ATTRIBUTES}


def test_a_message_in_a_dlq_needs_attention(pipeline, tmp_path, capsys):
    # Given a message in the load DLQ
    outputs = tmp_path / "outputs.json"
    queues = write_outputs(pipeline, outputs, ingest=False)
    pipeline.sqs.send_message(QueueUrl=queues["load_dlq_url"], MessageBody="{}")
    # When the status is asked for as JSON
    code = main(["status", "--outputs", str(outputs), "--json"])
    status = json.loads(capsys.readouterr().out)
    # Then it exits 1 and says which queue
    assert code == 1
    assert status["dead_letters"] == 1
    assert {q["name"]: q["waiting"] for q in status["queues"]} == {
        "processing": 0,
        "processing DLQ": 0,
        "load": 0,
        "load DLQ": 1,
    }
    assert status["last_completed"] is None and status["failures"] == []
    # and the text form points at it
    assert main(["status", "--outputs", str(outputs)]) == 1
    out = capsys.readouterr().out
    assert "load DLQ" in out and "<- needs attention" in out and "1 message(s) in dead-letter queues" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such outputs file"),
        ("not json", "not JSON"),
        ('{"raw_bucket": "x"}', "not a headrace stack outputs file"),
    ],
)
def test_an_unusable_outputs_file_is_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    assert main(["status", "--outputs", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("gone", "named"),
    [
        ("load-dlq", "the load DLQ (load_dlq_url: {url}) does not exist"),
        ("metadata", "the metadata table metadata does not exist"),
    ],
)
def test_a_resource_deleted_under_the_outputs_is_named(aws, tmp_path, capsys, gone, named):
    # Given an outputs file whose queue or table no longer exists (destroyed, another stack's)
    stack = Stack(tmp_path)
    if gone == "metadata":
        boto3.client("dynamodb", region_name=REGION).delete_table(TableName="metadata")
    else:
        stack.sqs.delete_queue(QueueUrl=stack.urls[gone])
    # When the operator asks for the stack's status
    code = main(["status", "--outputs", str(stack.outputs)])
    # Then one line names which of the stack's resources is missing (SQS's and DynamoDB's
    # own errors name none), and the status is 2: the stack cannot be read
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert named.format(url=stack.urls.get(gone)) in err


def test_a_longer_window_lists_the_failures_of_every_day_it_covers(pipeline, tmp_path, capsys):
    # Given a file uploaded three days ago that failed then
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    then = datetime.now(UTC) - timedelta(days=3)
    fail(object_ref("incoming/old.csv", then), then)
    # When the failures of the last four days are asked for, and of the last two
    main(["status", "--outputs", str(outputs), "--json", "--minutes", str(4 * 24 * 60)])
    four_days = json.loads(capsys.readouterr().out)
    main(["status", "--outputs", str(outputs), "--json", "--minutes", str(2 * 24 * 60)])
    two_days = json.loads(capsys.readouterr().out)
    # Then the first lists that failure and the second does not
    assert [f["object_key"] for f in four_days["failures"]] == ["incoming/old.csv"]
    assert two_days["failures"] == []
    # and, nothing having completed, each says how far back it looked for a completed file
    today = datetime.now(UTC).date()
    assert four_days["last_completed"] is None and four_days["uploads_since"] is None
    assert four_days["completed_since"] == (today - timedelta(days=7)).isoformat()
    main(["status", "--outputs", str(outputs), "--minutes", str(4 * 24 * 60)])
    assert f"none completed since {four_days['completed_since']}" in capsys.readouterr().out


@pytest.mark.parametrize("minutes", ["0", "-5", "ten", "10081", "10000000000000"])
def test_minutes_beyond_what_status_reads_are_refused(tmp_path, capsys, minutes):
    # When --minutes is not a whole number from 1 to the maximum
    with pytest.raises(SystemExit) as exit:
        main(["status", "--outputs", str(tmp_path / "outputs.json"), "--minutes", minutes])
    # Then argparse refuses it (exit 2), naming the maximum (a week)
    assert exit.value.code == 2
    assert "from 1 to 10080" in capsys.readouterr().err


def test_a_failure_fixed_in_place_says_a_newer_version_completed(pipeline, tmp_path, capsys):
    # Given a poison file, then the same key uploaded again, corrected, and completed
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    pipeline.process(pipeline.upload("incoming/sales/feb.csv", b""))
    other = pipeline.upload("incoming/other.csv", b"")
    pipeline.process(other)
    pipeline.process(pipeline.upload("incoming/sales/feb.csv", SALES))
    capsys.readouterr()
    # When the operator asks for its status
    assert main(["status", "--outputs", str(outputs), "--json"]) == 0
    failures = {f["object_key"]: f["replaced"] for f in json.loads(capsys.readouterr().out)["failures"]}
    # Then both failures are listed, and the fixed one says it needs no action
    assert failures == {"incoming/sales/feb.csv": True, "incoming/other.csv": False}
    main(["status", "--outputs", str(outputs)])
    out = capsys.readouterr().out
    assert "incoming/sales/feb.csv  (a newer version completed since)" in out
    assert "incoming/other.csv  (a newer" not in out


def object_ref(key: str, uploaded_at: datetime, version: str = "v1") -> ObjectRef:
    return ObjectRef(bucket="raw-bucket", key=key, version_id=version, uploaded_at=uploaded_at)


def fail(ref: ObjectRef, at: datetime, error: str = "binary content (not a text file)") -> None:
    """A processing failure of ``ref`` recorded at ``at``, as the processor writes it."""
    store = MetadataStore("metadata")
    store.mark_received(ref, ref.uploaded_at)
    store.mark_failed(ref, at, error)


def listed(outputs: Path, now: datetime, minutes: int = 60, **options: Any) -> dict[str, Any]:
    """What status collects at ``now`` (a fixed clock: the window's edges are exact)."""
    return status.collect(StackOutputs.load(outputs), now, timedelta(minutes=minutes), **options)


def test_a_late_failure_of_an_old_upload_is_listed(pipeline, tmp_path, capsys):
    # Given a file uploaded three weeks ago that fails now (a redrive, a replay, a redelivery
    # after a long retry chain), through the processor
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    weeks_ago = datetime.now(UTC) - timedelta(days=21)
    pipeline.process(pipeline.upload("incoming/old/poison.csv", b""), at=weeks_ago)
    # and another uploaded ten days ago that completed then and fails to load now
    good = pipeline.upload("incoming/old/sales.csv", SALES)
    pipeline.process(good, at=weeks_ago + timedelta(days=11))
    LoadStatusStore("metadata").mark_failed(
        good["key"], good["version"], datetime.now(UTC), "connection refused", 5
    )
    capsys.readouterr()
    # When the operator asks for the last hour's failures
    main(["status", "--outputs", str(outputs), "--json"])
    failures = {f["object_key"]: f for f in json.loads(capsys.readouterr().out)["failures"]}
    # Then both are listed, by when they failed, and each says when it was uploaded
    assert {key: f["stage"] for key, f in failures.items()} == {
        "incoming/old/poison.csv": "processing",
        "incoming/old/sales.csv": "load",
    }
    assert failures["incoming/old/poison.csv"]["uploaded_at"][:10] == weeks_ago.date().isoformat()
    assert failures["incoming/old/poison.csv"]["error"] == "the file is empty (0 bytes)"
    main(["status", "--outputs", str(outputs)])
    out = capsys.readouterr().out
    assert "Failures in the last hour: 2" in out
    assert f"incoming/old/poison.csv  (uploaded {weeks_ago.date().isoformat()})" in out
    # and the file completed last is the one that completed last, whatever its upload day
    # (it was "none uploaded since" yesterday)
    assert "Last completed file: incoming/old/sales.csv, 2 rows" in out


def test_a_load_rejected_for_good_is_listed_as_such(pipeline, tmp_path, capsys):
    # Given a completed file whose load PostgreSQL rejected for good (not retried, no DLQ
    # message), and another whose load was given up on after its retries
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    wide, down = pipeline.upload("incoming/w/wide.csv", SALES), pipeline.upload("incoming/w/down.csv", SALES)
    pipeline.process(wide)
    pipeline.process(down)
    now = datetime.now(UTC)
    loads = LoadStatusStore("metadata")
    loads.mark_rejected(wide["key"], wide["version"], now, "LoadRejected: too many columns", 1)
    loads.mark_failed(down["key"], down["version"], now, "gave up after 5 attempts: connection refused", 5)
    capsys.readouterr()
    # When the operator asks for the last hour's failures
    code = main(["status", "--outputs", str(outputs), "--json"])
    found = json.loads(capsys.readouterr().out)
    failures = {f["object_key"]: f for f in found["failures"]}
    # Then both are load failures, and only the rejected one is said to be for good
    assert {key: (f["stage"], f["permanent"]) for key, f in failures.items()} == {
        "incoming/w/wide.csv": ("load", True),
        "incoming/w/down.csv": ("load", False),
    }
    # and, though no DLQ holds a message, it needs an operator: exit 1, as for a dead letter
    assert (found["dead_letters"], found["rejected_loads"], code) == (0, 1, 1)
    assert main(["status", "--outputs", str(outputs)]) == 1
    out = capsys.readouterr().out
    assert "rejected for good, not retried (no DLQ message): LoadRejected: too many columns" in out
    assert "      gave up after 5 attempts: connection refused" in out
    assert "Attention: 1 load(s) rejected for good in the window" in out


def test_only_failures_inside_the_window_are_listed(pipeline, tmp_path):
    # Given failures recorded just before, at and after the start of the last hour, of files
    # uploaded today and a month ago
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    start = now - timedelta(minutes=60)
    month_ago = now - timedelta(days=30)
    fail(object_ref("incoming/before.csv", month_ago), start - timedelta(milliseconds=1))
    fail(object_ref("incoming/at.csv", month_ago), start)
    fail(object_ref("incoming/after.csv", now - timedelta(minutes=1)), now - timedelta(seconds=1))
    fail(object_ref("incoming/yesterday.csv", month_ago), now - timedelta(hours=3))
    # When status lists the failures of the last hour (across midnight: two failure days)
    found = listed(outputs, now)
    # Then the window includes its start and not a millisecond before it, newest first
    assert [f["object_key"] for f in found["failures"]] == ["incoming/after.csv", "incoming/at.csv"]
    assert found["since"] == "2026-12-06T23:30:00.000Z" and found["failures_truncated"] is False
    # and a longer window reaches the older ones, whatever their upload day
    assert len(listed(outputs, now, minutes=4 * 60)["failures"]) == 4


def test_a_failure_fixed_since_is_not_listed_and_a_new_one_of_an_old_item_is(pipeline, tmp_path):
    # Given a version that failed ten minutes ago and completed since (a redrive that worked)
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    ref = object_ref("incoming/fixed.csv", now - timedelta(days=2))
    fail(ref, now - timedelta(minutes=10))
    MetadataStore("metadata").mark_completed(ref, now - timedelta(minutes=5), {"row_count": 3})
    # Then it is not a failure of the last hour: the index keeps it, the item says it completed
    assert listed(outputs, now)["failures"] == []
    # Given an item written before the by_failure index existed: failed, without its keys
    table = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
    stamp = (now - timedelta(minutes=20)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    table.put_item(
        Item={
            "object_key": "incoming/legacy.csv",
            "version": "v1",
            "day": (now - timedelta(days=30)).date().isoformat(),
            "uploaded_at": "2026-01-01T00:00:00.000Z",
            "status": "failed",
            "failed_at": stamp,
            "error": "binary content (not a text file)",
        }
    )
    # Then status does not see that failure (it happened before the upgrade: docs say so)
    assert listed(outputs, now)["failures"] == []
    # and when it fails again (a redrive after the upgrade), the writer gives it the keys
    legacy = object_ref("incoming/legacy.csv", datetime(2026, 1, 1, tzinfo=UTC))
    MetadataStore("metadata").mark_failed(legacy, now - timedelta(minutes=1), "still binary")
    assert [(f["object_key"], f["error"]) for f in listed(outputs, now)["failures"]] == [
        ("incoming/legacy.csv", "still binary")
    ]
    # and a skip (superseded, deleted) is no failure: it gets no keys
    skipped = object_ref("incoming/skipped.csv", now)
    MetadataStore("metadata").mark_failed(skipped, now, "superseded", skip_reason="superseded")
    assert "failure_day" not in (table.get_item(Key={"object_key": skipped.key, "version": "v1"})["Item"])


def test_by_upload_day_lists_failures_recorded_before_the_index(pipeline, tmp_path, capsys):
    # Given a failure of a file uploaded today, recorded without the index's keys (an older
    # processor, before the upgrade)
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    boto3.resource("dynamodb", region_name=REGION).Table("metadata").put_item(
        Item={
            "object_key": "incoming/legacy.csv",
            "version": "v1",
            "day": now.date().isoformat(),
            "uploaded_at": stamp,
            "status": "failed",
            "failed_at": stamp,
            "error": "binary content (not a text file)",
        }
    )
    # When status reads by upload day, as before
    found = listed(outputs, now, by_upload_day=True)
    # Then the failure is listed, and it says which uploads it read
    assert [f["object_key"] for f in found["failures"]] == ["incoming/legacy.csv"]
    # (the day before the window's first day: in the first hour of a day, the day before
    # yesterday)
    window_start = now - timedelta(minutes=60)
    assert found["uploads_since"] == (window_start.date() - timedelta(days=1)).isoformat()
    assert main(["status", "--outputs", str(outputs), "--by-upload-day"]) == 0
    assert "incoming/legacy.csv" in capsys.readouterr().out


def test_a_stack_without_the_failure_index_is_read_by_upload_day(aws, tmp_path, capsys):
    # Given a stack deployed before the by_failure index (its metadata table lacks it)
    old = tables.METADATA.boto3_create_args("metadata")
    old["GlobalSecondaryIndexes"] = [
        i for i in old["GlobalSecondaryIndexes"] if i["IndexName"] != "by_failure"
    ]
    old["AttributeDefinitions"] = [
        a for a in old["AttributeDefinitions"] if a["AttributeName"] not in ("failure_day", "failure_at")
    ]
    boto3.client("dynamodb", region_name=REGION).create_table(**old)
    sqs = boto3.client("sqs", region_name=REGION)

    class Queues:
        raw, processed = "raw-bucket", "processed-bucket"

    Queues.sqs = sqs  # type: ignore[attr-defined]
    outputs = tmp_path / "outputs.json"
    write_outputs(Queues, outputs)
    now = datetime.now(UTC)
    fail(object_ref("incoming/today.csv", now - timedelta(minutes=5)), now - timedelta(minutes=1))
    # When the operator asks for its status
    code = main(["status", "--outputs", str(outputs)])
    out = capsys.readouterr().out
    # Then it works as before (by upload day), lists the failure, and says what it misses
    assert code == 0
    assert "Failures in the last hour: 1" in out and "incoming/today.csv" in out
    assert "Note: the metadata table has no by_failure index" in out and "`pulumi up` adds" in out


def test_many_failures_are_bounded_and_it_says_so(pipeline, tmp_path, capsys):
    # Given 30 failures in the last hour
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    for n in range(30):
        fail(object_ref(f"incoming/bad-{n:02}.csv", now - timedelta(days=1)), now - timedelta(seconds=60 - n))
    # When status lists at most 10
    found = listed(outputs, now, limit=10)
    # Then it lists the 10 newest and says there are more
    assert [f["object_key"] for f in found["failures"]] == [
        f"incoming/bad-{n:02}.csv" for n in range(29, 19, -1)
    ]
    assert found["failures_truncated"] is True
    assert listed(outputs, now, limit=30)["failures_truncated"] is False
    main(["status", "--outputs", str(outputs), "--limit", "10"])
    out = capsys.readouterr().out
    assert "Failures in the last hour: more than 10; the newest 10:" in out
    assert "--limit (at most 10000) lists more" in out
    assert out.count("incoming/bad-") == 10


def test_the_newest_failures_are_listed_when_an_entry_holds_only_an_older_one(pipeline, tmp_path):
    # Given two files whose load failed 50 minutes ago, then failed processing again a minute
    # ago (a replay) and are being processed again now: their index entries sort by that
    # newest failure, but what stands of them is the older load failure
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    store = MetadataStore("metadata")
    for n in (1, 2):
        ref = object_ref(f"incoming/reloaded-{n}.csv", now - timedelta(days=1))
        store.mark_completed(ref, now - timedelta(minutes=55), {"row_count": 3})
        LoadStatusStore("metadata").mark_failed(ref.key, "v1", now - timedelta(minutes=50), "refused", 5)
        store.mark_failed(ref, now - timedelta(minutes=n), "timeout")
        store.mark_processing(ref, now - timedelta(seconds=10), 2)
    # and two files that failed 5 and 6 minutes ago
    fail(object_ref("incoming/bad-5.csv", now - timedelta(days=1)), now - timedelta(minutes=5))
    fail(object_ref("incoming/bad-6.csv", now - timedelta(days=1)), now - timedelta(minutes=6))
    # When status lists the newest two
    found = listed(outputs, now, limit=2)
    # Then those are the failures of 5 and 6 minutes ago, not the 50-minute-old load failures
    assert [(f["object_key"], f["stage"]) for f in found["failures"]] == [
        ("incoming/bad-5.csv", "processing"),
        ("incoming/bad-6.csv", "processing"),
    ]
    assert found["failures_truncated"] is True
    assert len(listed(outputs, now, limit=4)["failures"]) == 4


@pytest.mark.parametrize("limit", ["0", "10001", "many"])
def test_a_limit_out_of_range_is_refused(tmp_path, capsys, limit):
    with pytest.raises(SystemExit) as exit:
        main(["status", "--outputs", str(tmp_path / "outputs.json"), "--limit", limit])
    assert exit.value.code == 2 and "from 1 to 10000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "message", "index"),
    [
        # DynamoDB's answer
        ("ValidationException", "The table does not have the specified index: by_failure", "by_failure"),
        # moto's (the embedded runtime)
        (
            "ResourceNotFoundException",
            "Invalid index: by_failure for table: metadata. Available indexes are: by_day",
            "by_failure",
        ),
        ("ResourceNotFoundException", "Requested resource not found", None),
        ("ValidationException", "Query condition missed key schema element", None),
    ],
)
def test_a_missing_index_is_told_from_other_errors(code, message, index):
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": code, "Message": message}}, "Query")
    assert status._missing_index(error) == index


@pytest.mark.parametrize(
    ("count", "shown"), [(1, ", 1 row\n"), (0, ", 0 rows\n"), (12345, ", 12,345 rows\n")]
)
def test_the_last_completed_files_rows_are_counted_in_words(count, shown):
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    last = {"object_key": "incoming/a.csv", "version": "v1", "completed_at": "2026-12-07T11:59:00Z"}
    report = {
        "queues": [],
        "dead_letters": 0,
        "last_completed": {**last, "row_count": count},
        "failures": [],
        "window_minutes": 60,
    }
    assert f"Last completed file: incoming/a.csv{shown}" in status.render(report, Path("o.json"), now)


def test_only_a_load_is_said_to_leave_no_dlq_message():
    # Given a failure list holding a file that cannot be processed (permanent, as the report's
    # Failure model marks it) and a load rejected for good
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    failure = {"version": "v1", "at": "2026-12-07T11:59:00Z", "replaced": False, "permanent": True}
    report = {
        "queues": [],
        "dead_letters": 1,
        "last_completed": None,
        "completed_since": "2026-12-07T11:00:00Z",
        "failures": [
            {**failure, "object_key": "incoming/junk.csv", "stage": "processing", "error": "binary content"},
            {**failure, "object_key": "incoming/wide.csv", "stage": "load", "error": "LoadRejected: x"},
        ],
        "window_minutes": 60,
    }
    out = status.render(report, Path("o.json"), now)
    # Then the poison file, whose message does reach the processing DLQ, is not said to leave none
    assert "      binary content\n" in out
    assert "rejected for good, not retried (no DLQ message): LoadRejected: x" in out
