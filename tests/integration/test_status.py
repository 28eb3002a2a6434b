"""``headrace status`` against a moto stack described by an outputs file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from headrace.cli import main
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
    from headrace import status

    read: list[dict[str, Any]] = []
    files_on_day = status.files_on_day

    def recording(*args: Any) -> list[dict[str, Any]]:
        read.extend(items := files_on_day(*args))
        return items

    monkeypatch.setattr(status, "files_on_day", recording)
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
    # and it read only what it shows of the items, not their schema and statistics (a
    # week of a busy stack is a hundred thousand items of up to 300 KB)
    assert len(read) == 2 and set().union(*read) <= set(status.STATUS_ATTRIBUTES)


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


def test_a_longer_window_reads_the_uploads_of_every_day_it_covers(pipeline, tmp_path, capsys):
    # Given a file uploaded three days ago that failed then
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    then = datetime.now(UTC) - timedelta(days=3)
    stamp = then.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    boto3.resource("dynamodb", region_name=REGION).Table("metadata").put_item(
        Item={
            "object_key": "incoming/old.csv",
            "version": "v1",
            "day": then.date().isoformat(),
            "uploaded_at": stamp,
            "status": "failed",
            "failed_at": stamp,
            "error": "binary content (not a text file)",
        }
    )
    # When the failures of the last four days are asked for, and of the last two
    main(["status", "--outputs", str(outputs), "--json", "--minutes", str(4 * 24 * 60)])
    four_days = json.loads(capsys.readouterr().out)
    main(["status", "--outputs", str(outputs), "--json", "--minutes", str(2 * 24 * 60)])
    two_days = json.loads(capsys.readouterr().out)
    # Then the first lists that failure and the second does not
    assert [f["object_key"] for f in four_days["failures"]] == ["incoming/old.csv"]
    assert two_days["failures"] == []
    # and each says which uploads it read (the text said "none today or yesterday" for both)
    today = datetime.now(UTC).date()
    assert four_days["uploads_since"] == (today - timedelta(days=5)).isoformat()
    assert two_days["uploads_since"] == (today - timedelta(days=3)).isoformat()
    main(["status", "--outputs", str(outputs), "--minutes", str(4 * 24 * 60)])
    assert f"none uploaded since {four_days['uploads_since']}" in capsys.readouterr().out


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


def test_an_older_version_completing_late_does_not_replace_a_newer_failure():
    # by upload time, the pipeline's order: a late retry of the old version fixes nothing
    from handlers.models.report import Failure
    from headrace.status import _fixed_in_place

    items = [
        {"object_key": "k", "version": "old", "status": "completed", "uploaded_at": "2025-01-01T10:00:00Z"},
        {"object_key": "k", "version": "new", "status": "failed", "uploaded_at": "2025-01-01T11:00:00Z"},
        {"object_key": "k", "version": "newer", "status": "failed", "uploaded_at": "2025-01-01T12:00:00Z"},
    ]
    replaced = _fixed_in_place(items)
    failure = Failure(object_key="k", version="new", stage="processing", error="x", at="2025-01-01T11:00:01Z")
    assert replaced(failure) is False
    items.append(
        {"object_key": "k", "version": "fixed", "status": "completed", "uploaded_at": "2025-01-01T13:00:00Z"}
    )
    assert _fixed_in_place(items)(failure) is True
