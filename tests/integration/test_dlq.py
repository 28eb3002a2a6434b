"""``headrace dlq inspect|redrive`` against moto: real queues, receive counts and receipt
handles; the metadata table built from the program's own definition."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from handlers.dal.queues import message_counts
from handlers.logic.time_budget import TimeBudget
from handlers.models import tables
from headrace import dlq
from headrace.cli import main
from headrace.outputs import StackOutputs

from .conftest import REGION, queue_arn

RAW = "raw-bucket"


def s3_event(key: str, version: str, etag: str = "abc") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "e-1",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-01-02T03:04:05Z",
            "region": REGION,
            "resources": [f"arn:aws:s3:::{RAW}"],
            "detail": {
                "version": "0",
                "bucket": {"name": RAW},
                "object": {"key": key, "size": 10, "etag": etag, "version-id": version, "sequencer": "00"},
                "request-id": "R",
                "requester": "123456789012",
                "reason": "PutObject",
            },
        }
    )


def file_processed(key: str, version: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "e-2",
            "detail-type": "File Processed",
            "source": "headrace.processor",
            "account": "123456789012",
            "time": "2026-01-02T03:04:05Z",
            "region": REGION,
            "resources": [],
            "detail": {
                "bucket": RAW,
                "object_key": key,
                "version": version,
                "uploaded_at": "2026-01-02T03:04:05Z",
                "dataset": "sales",
                "ingest_date": "2026-01-02",
                "format": "csv",
                "row_count": 3,
                "columns": {"a": "int"},
                "processed_bucket": "processed",
                "parquet_key": "parquet/x.parquet",
                "summary_key": "summaries/x.json",
                "processed_at": "2026-01-02T03:04:06Z",
            },
        }
    )


class Stack:
    """The queues and the metadata table of a stack, and its outputs file."""

    def __init__(self, tmp_path: Path):
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.urls: dict[str, str] = {}
        for stage in ("processing", "load", "ingest"):
            dead = self.sqs.create_queue(QueueName=f"{stage}-dlq")["QueueUrl"]
            redrive = {"deadLetterTargetArn": queue_arn(self.sqs, dead), "maxReceiveCount": "5"}
            self.urls[stage] = self.sqs.create_queue(
                QueueName=stage, Attributes={"RedrivePolicy": json.dumps(redrive)}
            )["QueueUrl"]
            self.urls[f"{stage}-dlq"] = dead
        boto3.client("dynamodb", region_name=REGION).create_table(
            **tables.METADATA.boto3_create_args("metadata")
        )
        self.table = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
        self.outputs = tmp_path / "outputs.json"
        self.outputs.write_text(
            json.dumps(
                {
                    "raw_bucket": RAW,
                    "processed_bucket": "processed",
                    "reports_bucket": "reports",
                    "processing_queue_url": self.urls["processing"],
                    "processing_dlq_url": self.urls["processing-dlq"],
                    "load_queue_url": self.urls["load"],
                    "load_dlq_url": self.urls["load-dlq"],
                    "ingest_queue_url": self.urls["ingest"],
                    "ingest_dlq_url": self.urls["ingest-dlq"],
                    "metadata_table": "metadata",
                    "db_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
                    "alerts_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
                    "ingest_api_url": "http://localhost",
                    "region": REGION,
                }
            )
        )

    def dead_letter(self, stage: str, body: str, **attributes: str) -> None:
        extra = {
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
        }
        self.sqs.send_message(
            QueueUrl=self.urls[f"{stage}-dlq"], MessageBody=body, **(extra if attributes else {})
        )

    def bodies(self, name: str) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.urls[name], MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [m["Body"] for m in messages]

    def depth(self, name: str) -> int:
        return sum(message_counts(self.urls[name], self.sqs))

    def visible(self, name: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.urls[name], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        code = main(["dlq", *args, "--outputs", str(self.outputs)])
        out = capsys.readouterr().out
        try:
            return code, json.loads(out)
        except ValueError:
            return code, out


@pytest.fixture
def stack(aws, tmp_path) -> Stack:
    return Stack(tmp_path)


def test_inspect_shows_the_recorded_failure_and_consumes_nothing(stack, capsys):
    # Given a poison file's event in the processing DLQ and its failed metadata item
    key = "incoming/junk/poison.csv"
    stack.table.put_item(
        Item={
            "object_key": key,
            "version": "v1",
            "status": "failed",
            "attempts": 5,
            "error": "binary content (not a text file)",
            "failure_kind": "permanent",
        }
    )
    stack.dead_letter("processing", s3_event(key, "v1"))
    # When the DLQ is inspected
    code, letters = stack.cli(capsys, "inspect", "--queue", "processing", "--json")
    # Then the message is listed with its key, version and the metadata error
    assert code == 0
    assert [(x["subject"], x["version"], x["status"], x["attempts"]) for x in letters] == [
        (key, "v1", "failed", 5)
    ]
    assert letters[0]["reason"] == "binary content (not a text file)"
    # and it says the failure is the file's, for good: a redrive alone fails again
    assert letters[0]["note"].startswith("the file itself cannot be processed (a permanent failure")
    # And it is still there, visible again at once
    assert stack.visible("processing-dlq") == 1


def test_inspect_text_names_superseded_versions_and_transient_errors(stack, capsys):
    # Given two processing dead letters: one superseded, one that failed transiently
    stack.table.put_item(
        Item={
            "object_key": "incoming/a.csv",
            "version": "v1",
            "status": "failed",
            "error": "bad",
            "superseded_by": "v2",
        }
    )
    stack.table.put_item(
        Item={
            "object_key": "incoming/b.csv",
            "version": "v1",
            "status": "processing",
            "last_error": "Timeout: S3",
        }
    )
    stack.dead_letter("processing", s3_event("incoming/a.csv", "v1"))
    stack.dead_letter("processing", s3_event("incoming/b.csv", "v1"))
    # When inspected as text
    code, text = stack.cli(capsys, "inspect", "--queue", "processing")
    # Then the superseded one says a redrive only acknowledges it, the other shows last_error
    assert code == 0
    assert "2 message(s)" in text
    assert "superseded by version v2" in text
    assert "an earlier attempt failed with: Timeout: S3" in text


def test_a_file_whose_last_receive_had_no_time_to_start_shows_what_failed_before(stack, capsys):
    # Given a file too slow for the processor's timeout, whose last receive came in an
    # invocation with no time left to start it
    stack.table.put_item(
        Item={
            "object_key": "incoming/big.csv",
            "version": "v1",
            "status": "failed",
            # as the processor words it (handlers/processor.py)
            "error": f"gave up after 5 receives: {TimeBudget(None, 10_000).not_started()}",
            "last_error": "OutOfTime: processing stopped at the deadline; raise functions.processor.timeout_seconds",
        }
    )
    stack.dead_letter("processing", s3_event("incoming/big.csv", "v1"))
    # When the DLQ is inspected
    _, letters = stack.cli(capsys, "inspect", "--queue", "processing", "--json")
    # Then the reason gives the earlier attempts' failure too, and the setting it names
    assert letters[0]["reason"].startswith("gave up after 5 receives: not started")
    assert "an earlier attempt failed with: OutOfTime" in letters[0]["reason"]
    assert "functions.processor.timeout_seconds" in letters[0]["reason"]


@pytest.mark.parametrize(("queue", "item"), [("processing", {"status": "processing"}), ("load", {})])
def test_a_dead_letter_whose_last_attempt_was_cut_off_says_so_and_what_to_raise(stack, capsys, queue, item):
    # Given a version whose last attempt's invocation ran into the function's timeout (or
    # memory size): nothing recorded its end, the item still says it is being processed,
    # or has no load status
    key = "incoming/big/huge.csv"
    stack.table.put_item(Item={"object_key": key, "version": "v1", "attempts": 5, **item})
    body = s3_event(key, "v1") if queue == "processing" else file_processed(key, "v1")
    stack.dead_letter(queue, body)
    # When the DLQ is inspected
    _, letters = stack.cli(capsys, "inspect", "--queue", queue, "--json")
    # Then the reason is not empty: it says the invocation was cut off, and what to raise
    function = "processor" if queue == "processing" else "loader"
    assert letters[0]["reason"].startswith(
        f"the {function}'s last attempt ended without recording an outcome"
    )
    assert f"functions.{function}.timeout_seconds or memory_mb" in letters[0]["reason"]


def test_a_load_event_eventbridge_could_not_deliver_is_not_said_to_be_cut_off(stack, capsys):
    # Given a completed version whose File Processed event EventBridge could not deliver to
    # the load queue: the loader never saw it, so it has no load status
    key = "incoming/sales/y.csv"
    stack.table.put_item(Item={"object_key": key, "version": "v1", "status": "completed"})
    stack.dead_letter("load", file_processed(key, "v1"), ERROR_CODE="SQS.AccessDeniedException")
    # When inspected
    _, letters = stack.cli(capsys, "inspect", "--queue", "load", "--json")
    # Then the reason is EventBridge's alone
    assert letters[0]["reason"] == "EventBridge could not deliver it to the queue: SQS.AccessDeniedException"


def test_load_dead_letters_show_the_load_error(stack, capsys):
    # Given a "File Processed" event in the load DLQ after a database outage
    stack.table.put_item(
        Item={
            "object_key": "incoming/sales/x.csv",
            "version": "v7",
            "status": "completed",
            "load_status": "failed",
            "load_attempts": 5,
            "load_error": "gave up after 5 attempts: OperationalError: connection refused",
        }
    )
    stack.dead_letter("load", file_processed("incoming/sales/x.csv", "v7"))
    # When the load DLQ is inspected
    code, letters = stack.cli(capsys, "inspect", "--queue", "load", "--json")
    # Then the reason is the loader's load_error
    assert code == 0
    assert letters[0]["subject"] == "incoming/sales/x.csv"
    assert letters[0]["status"] == "failed"
    assert "connection refused" in letters[0]["reason"]


def test_a_load_dead_letter_since_rejected_for_good_says_a_redrive_cannot_help(stack, capsys):
    # Given a "File Processed" event in the load DLQ whose load PostgreSQL has rejected for
    # good since (a duplicate event's load, or one of a loader before loads were classified)
    stack.table.put_item(
        Item={
            "object_key": "incoming/wide/x.csv",
            "version": "v7",
            "status": "completed",
            "load_status": "rejected",
            "load_attempts": 1,
            "load_error": "LoadRejected: PostgreSQL cannot hold this file: too many columns",
        }
    )
    stack.dead_letter("load", file_processed("incoming/wide/x.csv", "v7"))
    # When the load DLQ is inspected
    code, text = stack.cli(capsys, "inspect", "--queue", "load")
    # Then it says the load was rejected for good, and that only fixing the cause helps
    assert code == 0
    assert "status rejected" in text
    assert "reason: LoadRejected: PostgreSQL cannot hold this file: too many columns" in text
    assert "note: PostgreSQL rejected this load for good" in text
    assert "fix the cause first" in text


def test_ingest_dead_letters_show_ids_never_the_text(stack, capsys):
    # Given an ingest message carrying personal data in the ingest DLQ
    secret = "call me at 555-0100, jane@example.com"
    stack.dead_letter(
        "ingest",
        json.dumps(
            {
                "tenant_id": "acme",
                "log_id": "l-1",
                "source": "json",
                "text": secret,
                "received_at": "2026-01-02T03:04:05.000Z",
            }
        ),
    )
    # When it is inspected, as text and as JSON
    _, text = stack.cli(capsys, "inspect", "--queue", "ingest")
    _, letters = stack.cli(capsys, "inspect", "--queue", "ingest", "--json")
    # Then tenant and log id are shown and the text never is
    assert letters[0]["subject"] == "acme/l-1"
    assert "555-0100" not in text and "555-0100" not in json.dumps(letters)


def test_eventbridge_delivery_failures_show_eventbridge_s_reason(stack, capsys):
    # Given an event EventBridge could not deliver to the queue (it adds ERROR_* attributes)
    stack.dead_letter(
        "processing",
        s3_event("incoming/c.csv", "v1"),
        ERROR_CODE="SQS.AccessDeniedException",
        ERROR_MESSAGE="Access to the resource is denied",
    )
    # When inspected
    _, letters = stack.cli(capsys, "inspect", "--queue", "processing", "--json")
    # Then the reason is EventBridge's
    assert letters[0]["reason"].startswith("EventBridge could not deliver it to the queue: SQS.AccessDenied")


def test_redrive_is_a_dry_run_unless_executed(stack, capsys):
    # Given one dead letter
    stack.dead_letter("processing", s3_event("incoming/a.csv", "v1"))
    # When redrive runs without --execute
    code, text = stack.cli(capsys, "redrive", "--queue", "processing")
    # Then it says what would move and moves nothing
    assert code == 0
    assert "Dry run: 1 message(s) would move" in text
    assert stack.depth("processing") == 0
    assert stack.visible("processing-dlq") == 1


def test_redrive_falls_back_to_receive_send_delete_where_there_is_no_move_task(stack, capsys):
    # Given three dead letters, one with a message attribute, on an emulator without move tasks
    for name in ("a", "b"):
        stack.dead_letter("processing", s3_event(f"incoming/{name}.csv", "v1"))
    stack.dead_letter("processing", s3_event("incoming/c.csv", "v1"), ERROR_CODE="X")
    # When redrive --execute runs
    code, result = stack.cli(capsys, "redrive", "--queue", "processing", "--execute", "--json")
    # Then all three are back in the processing queue, bodies unchanged, and the DLQ is empty
    assert code == 0
    assert result["method"] == "receive-send-delete" and result["moved"] == 3
    assert stack.depth("processing-dlq") == 0
    assert sorted(json.loads(b)["detail"]["object"]["key"] for b in stack.bodies("processing")) == [
        "incoming/a.csv",
        "incoming/b.csv",
        "incoming/c.csv",
    ]


@pytest.mark.parametrize(
    ("others_before", "others_after"),
    [
        (0, 1),
        # the first receives bring nothing the prefix selects: the scan goes on past them
        (24, 0),
    ],
)
def test_redrive_with_a_prefix_moves_only_matching_messages(stack, capsys, others_before, others_after):
    # Given dead letters of two datasets
    for i in range(others_before):
        stack.dead_letter("processing", s3_event(f"incoming/orders/{i}.csv", "v1"))
    stack.dead_letter("processing", s3_event("incoming/sales/1.csv", "v1"))
    for i in range(others_after):
        stack.dead_letter("processing", s3_event(f"incoming/orders/late-{i}.csv", "v1"))
    # When only the sales ones are redriven
    code, result = stack.cli(
        capsys, "redrive", "--queue", "processing", "--prefix", "incoming/sales/", "--execute", "--json"
    )
    # Then the sales file moved and the orders files are still in the DLQ, visible
    assert code == 0 and result["moved"] == 1
    assert [json.loads(b)["detail"]["object"]["key"] for b in stack.bodies("processing")] == [
        "incoming/sales/1.csv"
    ]
    assert stack.visible("processing-dlq") == others_before + others_after


def test_listing_and_dry_run_say_how_many_wait_beyond_what_is_listed(stack, capsys, monkeypatch):
    # Given five dead letters, and listings cut at two (1,000 in use)
    for i in range(5):
        stack.dead_letter("load", file_processed(f"incoming/s/{i}.csv", "v1"))
    monkeypatch.setattr(dlq, "LISTING_LIMIT", 2)
    # Then a listing says how many it left out
    code, text = stack.cli(capsys, "inspect", "--queue", "load")
    assert code == 0 and "2 message(s) listed, of about 5 in the DLQ" in text
    # and the dry run counts the five a redrive without --limit moves
    code, text = stack.cli(capsys, "redrive", "--queue", "load")
    assert code == 0 and "Dry run: 5 message(s) would move" in text
    # while with --limit it counts what that redrive would move
    code, text = stack.cli(capsys, "redrive", "--queue", "load", "--limit", "3")
    assert code == 0 and "Dry run: 3 message(s) would move" in text
    # and so does the JSON: a listing cut short says so on stderr (the list alone would
    # pass for all), the dry run counts the five --execute moves, not the two listed
    for action in ("inspect", "redrive"):
        code = main(["dlq", action, "--queue", "load", "--json", "--outputs", str(stack.outputs)])
        out, err = capsys.readouterr()
        assert code == 0 and len(json.loads(out) if action == "inspect" else json.loads(out)["messages"]) == 2
        assert err == "headrace: note: listed 2 of about 5 message(s) in the DLQ (--limit N lists up to N)\n"
    assert json.loads(out)["would_move"] == 5


def test_redrive_with_a_limit_moves_at_most_that_many(stack, capsys):
    # Given four dead letters
    for i in range(4):
        stack.dead_letter("load", file_processed(f"incoming/s/{i}.csv", "v1"))
    # When two are redriven
    code, result = stack.cli(capsys, "redrive", "--queue", "load", "--limit", "2", "--execute", "--json")
    # Then two moved and two wait, visible, in the DLQ
    assert code == 0 and result["moved"] == 2
    assert stack.depth("load") == 2
    assert stack.visible("load-dlq") == 2


def test_the_dry_run_applies_the_prefix_before_the_limit_as_the_redrive_does(stack, capsys):
    # Given a dead letter that does not match the prefix ahead of two that do
    stack.dead_letter("processing", s3_event("incoming/aaa/1.csv", "v1"))
    stack.dead_letter("processing", s3_event("incoming/bbb/1.csv", "v1"))
    stack.dead_letter("processing", s3_event("incoming/bbb/2.csv", "v1"))
    selection = ("redrive", "--queue", "processing", "--prefix", "incoming/bbb", "--limit", "1")
    # When the dry run and then the redrive run with the same prefix and limit
    _, text = stack.cli(capsys, *selection)
    code, result = stack.cli(capsys, *selection, "--execute", "--json")
    # Then both count the same one message
    assert "Dry run: 1 message(s) would move" in text
    assert code == 0 and result["moved"] == 1


def test_the_dry_run_json_says_it_is_a_dry_run(stack, capsys):
    # Given one dead letter
    stack.dead_letter("processing", s3_event("incoming/a.csv", "v1"))
    # When redrive --json runs without --execute, and then with it
    code, dry = stack.cli(capsys, "redrive", "--queue", "processing", "--json")
    assert stack.visible("processing-dlq") == 1
    _, done = stack.cli(capsys, "redrive", "--queue", "processing", "--json", "--execute")
    # Then the first says it moved nothing and lists what would move; the second says it moved
    assert code == 0 and dry["dry_run"] is True
    assert [m["subject"] for m in dry["messages"]] == ["incoming/a.csv"]
    assert done["dry_run"] is False and done["moved"] == 1


def test_a_missing_outputs_file_is_a_clear_error(tmp_path, capsys):
    # When the command points at no outputs file
    code = main(["dlq", "inspect", "--queue", "load", "--outputs", str(tmp_path / "nope.json")])
    # Then it exits 2 and says how to make one
    assert code == 2
    assert "pulumi stack output --json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "gone", "named"),
    [
        (("inspect",), "load-dlq", "the load DLQ (load_dlq_url: {url}) does not exist"),
        (("inspect",), "metadata", "the metadata table metadata does not exist"),
        # found before a message leaves the DLQ
        (("redrive", "--execute"), "load", "the load queue (load_queue_url: {url}) does not exist"),
    ],
)
def test_a_queue_or_table_deleted_under_the_outputs_is_named(stack, capsys, command, gone, named):
    # Given a dead letter, and a queue or the table of the outputs file deleted since
    stack.dead_letter("load", file_processed("incoming/s/1.csv", "v1"))
    if gone == "metadata":
        boto3.client("dynamodb", region_name=REGION).delete_table(TableName="metadata")
    else:
        stack.sqs.delete_queue(QueueUrl=stack.urls[gone])
    # When the DLQ is inspected or redriven
    code = main(["dlq", *command, "--queue", "load", "--outputs", str(stack.outputs)])
    # Then one line names the missing resource, exit 2
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert named.format(url=stack.urls.get(gone)) in err
    # and the dead letter is where it was, visible
    if gone != "load-dlq":
        assert stack.visible("load-dlq") == 1


# ------------------------------------------------------------------ the move task (AWS)
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:processing-dlq"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:processing"


def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_on_aws_the_move_task_moves_everything_back_to_the_work_queue():
    # Given a service with message move tasks (stubbed as AWS answers)
    sqs, stub = stubbed()
    stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    stub.add_response(
        "start_message_move_task", {"TaskHandle": "h-1"}, {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
    )
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 1}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 3}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )
    # When the DLQ is redriven
    with stub:
        result = dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN, poll_seconds=0)
    # Then the task was started with the work queue as its destination, and it reports 3 moved
    assert result is not None and (result.method, result.moved) == ("move-task", 3)
    stub.assert_no_pending_responses()


def test_a_running_move_task_is_not_started_twice():
    # Given a move task already running on the DLQ
    sqs, stub = stubbed()
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "RUNNING", "TaskHandle": "h-0"}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 10},
    )
    # When another redrive starts, then it refuses, naming the running task
    with stub, pytest.raises(dlq.DlqError, match=r"already running.*h-0"):
        dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN)


@pytest.mark.parametrize(
    ("code", "status", "unsupported"),
    [
        ("500", 500, True),  # moto's server: an HTML 500 for an unknown action
        ("InvalidAction", 400, True),
        ("UnsupportedOperation", 400, True),
        ("AccessDenied", 403, False),  # a real refusal must surface, not fall back
        ("ResourceNotFoundException", 400, False),
    ],
)
def test_only_a_missing_move_task_falls_back(code, status, unsupported):
    # Given a service answering ListMessageMoveTasks with an error
    sqs, stub = stubbed()
    stub.add_client_error("list_message_move_tasks", service_error_code=code, http_status_code=status)
    with stub:
        if unsupported:
            # Then "no such action" means: move the messages one batch at a time
            assert dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN) is None
        else:
            # and anything else is an error the operator must see
            with pytest.raises(ClientError):
                dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN)


def test_a_prefix_finds_its_messages_behind_more_than_a_listing_of_others(stack, capsys, monkeypatch):
    # Given more unrelated dead letters than a listing shows (1,000 in use), then two wanted
    monkeypatch.setattr(dlq, "LISTING_LIMIT", 3)
    for i in range(6):
        stack.dead_letter("processing", s3_event(f"incoming/bulk/{i}.csv", "v1"))
    for i in range(2):
        stack.dead_letter("processing", s3_event(f"incoming/late/{i}.csv", "v1"))
    selection = ("--queue", "processing", "--prefix", "incoming/late/")
    # When they are listed, dry-run redriven and redriven
    _, listed = stack.cli(capsys, "inspect", *selection, "--json")
    _, text = stack.cli(capsys, "inspect", *selection)
    _, dry = stack.cli(capsys, "redrive", *selection)
    code, done = stack.cli(capsys, "redrive", *selection, "--execute", "--json")
    # Then the listing and the dry run show the two that the redrive moves
    assert sorted(x["subject"] for x in listed) == ["incoming/late/0.csv", "incoming/late/1.csv"]
    assert "2 message(s) match --prefix incoming/late/ (8 examined)" in text
    assert "Dry run: 2 message(s) would move" in dry
    assert code == 0 and done["moved"] == 2


def test_the_dry_run_of_a_prefix_counts_every_match_not_only_those_listed(stack, capsys, monkeypatch):
    # Given five dead letters the prefix selects, and listings cut at two
    monkeypatch.setattr(dlq, "LISTING_LIMIT", 2)
    stack.dead_letter("processing", s3_event("incoming/other/x.csv", "v1"))
    for i in range(5):
        stack.dead_letter("processing", s3_event(f"incoming/sales/{i}.csv", "v1"))
    # When the redrive with that prefix (and no limit) is dry-run
    code, text = stack.cli(capsys, "redrive", "--queue", "processing", "--prefix", "incoming/sales/")
    # Then it lists two and counts the five --execute would move
    assert code == 0
    assert "5 message(s) match --prefix incoming/sales/ (6 examined); the first 2 listed" in text
    assert "Dry run: 5 message(s) would move" in text


# ------------------------------------------------------------------ scans that outlast the visibility timeout
class SlowReceives:
    """An SQS client whose receives take ``delay`` seconds: a scan of a large DLQ on AWS."""

    def __init__(self, sqs: Any, delay: float):
        self.sqs, self.delay = sqs, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)

    def receive_message(self, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self.sqs.receive_message(**kwargs)


def fill(stack: Stack, others: int, wanted: int) -> None:
    """``others`` dead letters under incoming/a/, then ``wanted`` under incoming/b/."""
    keys = [f"incoming/a/{i}.csv" for i in range(others)] + [f"incoming/b/{i}.csv" for i in range(wanted)]
    for start in range(0, len(keys), 10):
        stack.sqs.send_message_batch(
            QueueUrl=stack.urls["processing-dlq"],
            Entries=[
                {"Id": str(i), "MessageBody": s3_event(k, "v1")}
                for i, k in enumerate(keys[start : start + 10])
            ],
        )


def wanted(message: dict[str, Any]) -> bool:
    return "incoming/b/" in message["Body"]


def test_a_redrive_whose_scan_outlasts_the_visibility_timeout_still_reaches_every_message(stack):
    # Given 100 other dead letters ahead of 5 wanted ones, and a scan (11 receives of 0.5 s)
    # slower than the four seconds the messages it passes over stay hidden (120 s in use);
    # renewed with two seconds to spare, a stall of the host below 1.5 s does not matter
    fill(stack, 100, 5)
    sqs = SlowReceives(stack.sqs, 0.5)
    # When the wanted ones are redriven
    result = dlq.move_manually(
        sqs, stack.urls["processing-dlq"], stack.urls["processing"], select=wanted, visibility=4
    )
    # Then all five moved (the messages passed over were kept hidden until the end), and the
    # scan says it saw everything
    assert (result.moved, result.left) == (5, 0)
    assert (result.examined, result.complete) == (105, True)
    assert stack.depth("processing-dlq") == 100


def test_a_listing_whose_scan_outlasts_the_visibility_timeout_still_reaches_every_message(stack):
    # Given the same DLQ, listed with a prefix by a slow scan
    fill(stack, 100, 5)
    describe = dlq.Describer("processing", stack.table)
    listing = dlq.inspect_dlq(
        SlowReceives(stack.sqs, 0.5),
        stack.urls["processing-dlq"],
        describe,
        1000,
        select=wanted,
        count_all=True,
        visibility=4,
    )
    # Then the five are listed, out of all 105, and every message is visible again
    assert sorted(x.subject for x in listing.letters) == [f"incoming/b/{i}.csv" for i in range(5)]
    assert (listing.examined, listing.complete) == (105, True)
    assert stack.visible("processing-dlq") == 105


def wrap_stack_sqs(monkeypatch: pytest.MonkeyPatch, wrap: Callable[[Any], Any]) -> None:
    """The SQS clients the commands build from the outputs file, wrapped by ``wrap``."""
    client = StackOutputs.client
    monkeypatch.setattr(
        StackOutputs,
        "client",
        lambda self, service, **config: (
            wrap(client(self, service, **config)) if service == "sqs" else client(self, service, **config)
        ),
    )


class RefusedRenewals(SlowReceives):
    """A slow client whose visibility renewals SQS refuses (the handles expired meanwhile)."""

    def change_message_visibility_batch(self, **kwargs: Any) -> Any:
        if any(entry["VisibilityTimeout"] == 0 for entry in kwargs["Entries"]):  # a release
            return self.sqs.change_message_visibility_batch(**kwargs)
        failed = [
            {"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid"} for e in kwargs["Entries"]
        ]
        return {"Successful": [], "Failed": failed}


def test_a_scan_that_meets_a_message_it_hid_again_stops_and_says_so(stack, capsys, monkeypatch):
    # Given a scan slower than the second the messages it passes over stay hidden, whose
    # renewals do not keep them hidden
    fill(stack, 60, 2)
    monkeypatch.setattr(dlq, "MOVE_VISIBILITY_SECONDS", 1)
    wrap_stack_sqs(monkeypatch, lambda sqs: RefusedRenewals(sqs, 0.25))
    # When a prefix redrive runs
    selection = ("--queue", "processing", "--prefix", "incoming/b/")
    code = main(["dlq", "redrive", *selection, "--execute", "--outputs", str(stack.outputs)])
    # Then, having met the messages it passed over again, it does not claim to be done:
    # a warning, and exit status 1
    captured = capsys.readouterr()
    assert "headrace: warning: looked at" in captured.err and "run it again" in captured.err
    assert code == 1


# ------------------------------------------------------------------ a message that comes back during the redrive
def fail_again(stack: Stack) -> str:
    """What the pipeline does with a redriven poison file: its message fails every receive
    in the work queue and SQS moves it to the DLQ again. The key it was about."""
    body = ""
    for _ in range(10):
        messages = stack.sqs.receive_message(
            QueueUrl=stack.urls["processing"], MaxNumberOfMessages=1, VisibilityTimeout=0
        ).get("Messages", [])
        body = body or (messages[0]["Body"] if messages else "")
    return str(json.loads(body)["detail"]["object"]["key"])


def test_a_message_that_fails_again_during_the_redrive_is_not_moved_twice(stack, capsys):
    # Given twelve dead letters, one of them a poison file that fails again as soon as it is
    # back in the work queue
    for i in range(12):
        stack.dead_letter("processing", s3_event(f"incoming/s/{i}.csv", "v1"))
    came_back: list[str] = []

    def progress(_: str) -> None:
        if not came_back:
            came_back.append(fail_again(stack))

    # When the DLQ is redriven
    result = dlq.move_manually(
        stack.sqs, stack.urls["processing-dlq"], stack.urls["processing"], progress=progress
    )
    # Then the twelve moved once each; the poison file, back in the DLQ, was left there
    assert result.moved == 12
    assert [json.loads(b)["detail"]["object"]["key"] for b in stack.bodies("processing-dlq")] == came_back
    assert result.repeated == 1


class ReversedReceives(SlowReceives):
    """Receives answer the newest messages first (SQS promises no order)."""

    def receive_message(self, **kwargs: Any) -> Any:
        answer = self.sqs.receive_message(**kwargs)
        return {**answer, "Messages": answer.get("Messages", [])[::-1]}


def test_a_message_that_comes_back_takes_no_slot_of_the_limit(stack):
    # Given eleven dead letters, redriven with --limit 11, and the first message moved back
    # in the DLQ (a new message, same body) before the eleventh is received
    for i in range(11):
        stack.dead_letter("processing", s3_event(f"incoming/s/{i}.csv", "v1"))
    repeat: list[str] = []

    def progress(_: str) -> None:
        if not repeat:
            back = stack.sqs.receive_message(QueueUrl=stack.urls["processing"], MaxNumberOfMessages=1)
            repeat.append(back["Messages"][0]["Body"])
            stack.sqs.send_message(QueueUrl=stack.urls["processing-dlq"], MessageBody=repeat[0])

    result = dlq.move_manually(
        ReversedReceives(stack.sqs, 0),
        stack.urls["processing-dlq"],
        stack.urls["processing"],
        limit=11,
        progress=progress,
    )
    # Then the eleven distinct dead letters moved, and the repeat is what is left
    assert stack.bodies("processing-dlq") == repeat
    assert (result.moved, result.repeated) == (11, 1)


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ({}, "its File Processed event may not have been sent, and it is not loaded"),
        ({"load_status": "loaded", "load_rows": 2}, "completed and loaded (2 rows)"),
        ({"load_status": "failed", "load_error": "OperationalError"}, "loading it failed (see the load DLQ)"),
        (
            {"load_status": "rejected", "load_error": "LoadRejected: too wide"},
            "PostgreSQL rejected its load for good (not retried, not in the load DLQ): LoadRejected: too wide",
        ),
    ],
)
def test_a_completed_version_in_the_processing_dlq_says_what_its_load_status_means(
    stack, capsys, load, expected
):
    # Given a version its invocation marked completed and then timed out on, before the
    # message was acknowledged (marking completed clears the recorded errors)
    key = "incoming/wide/w.csv"
    stack.table.put_item(
        Item={
            "object_key": key,
            "version": "v1",
            "status": "completed",
            "attempts": 5,
            "row_count": 2,
            **load,
        }
    )
    stack.dead_letter("processing", s3_event(key, "v1"))
    # When the DLQ is inspected
    _, letters = stack.cli(capsys, "inspect", "--queue", "processing", "--json")
    # Then the reason is not "no failure recorded": it says whether the file still needs loading
    assert letters[0]["status"] == "completed"
    assert expected in letters[0]["reason"]


def test_the_receive_count_leaves_out_the_listing_s_own_receive(stack, capsys):
    # Given a message EventBridge put in the DLQ itself: never received by anyone
    stack.dead_letter("processing", s3_event("incoming/a.csv", "v1"))
    # When it is listed
    _, letters = stack.cli(capsys, "inspect", "--queue", "processing", "--json")
    _, text = stack.cli(capsys, "inspect", "--queue", "processing")
    # Then its count is not the listing's own receive, and the text says what it counts
    assert letters[0]["receives"] == 0
    assert "received 1 time(s) before this listing (work queue and DLQ; earlier listings" in text


# ------------------------------------------------------------------ a redrive that stops partway
class SendsStopAt(SlowReceives):
    """An SQS client whose ``stop_at``-th SendMessageBatch raises ``error`` (a refusal, Ctrl-C)."""

    def __init__(self, sqs: Any, stop_at: int, error: BaseException):
        super().__init__(sqs, 0)
        self.stop_at, self.error, self.sends = stop_at, error, 0

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == self.stop_at:
            raise self.error
        return self.sqs.send_message_batch(**kwargs)


REFUSED = ClientError(
    {"Error": {"Code": "AccessDenied", "Message": "no sqs:SendMessage"}}, "SendMessageBatch"
)


@pytest.mark.parametrize(("error", "status"), [(REFUSED, 2), (KeyboardInterrupt(), 130)])
def test_a_redrive_stopped_partway_says_what_moved_and_what_stays(stack, capsys, monkeypatch, error, status):
    # Given 15 dead letters, and a redrive whose second batch is refused or interrupted
    fill(stack, 15, 0)
    client = StackOutputs.client
    monkeypatch.setattr(
        StackOutputs,
        "client",
        lambda self, service, **config: (
            SendsStopAt(client(self, service, **config), 2, error)
            if service == "sqs"
            else client(self, service, **config)
        ),
    )
    # When it runs, with --json (no progress lines on stdout)
    code = main(
        ["dlq", "redrive", "--queue", "processing", "--execute", "--json", "--outputs", str(stack.outputs)]
    )
    captured = capsys.readouterr()
    # Then it fails with one line that says how many moved and that the rest stay
    assert code == status
    assert captured.out == ""
    said = captured.err.splitlines()[0]
    assert said.startswith("headrace: ") and "10 message(s) had moved back to" in said
    assert "the rest stay in the DLQ" in said and "run the redrive again" in said
    if status == 2:
        assert len(captured.err.splitlines()) == 1 and "AccessDenied" in said
    # and so they are: ten in the work queue, five visible in the DLQ again at once, for
    # the redrive run again to move
    assert (stack.visible("processing"), stack.visible("processing-dlq")) == (10, 5)


def move_task_started() -> tuple[Any, Stubber]:
    """A service with move tasks, where one has just been started (h-1)."""
    sqs, stub = stubbed()
    stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    stub.add_response(
        "start_message_move_task", {"TaskHandle": "h-1"}, {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
    )
    return sqs, stub


def test_a_move_task_that_cannot_be_followed_says_it_goes_on():
    # Given a started move task whose progress the service then refuses to show
    sqs, stub = move_task_started()
    stub.add_client_error("list_message_move_tasks", service_error_code="ThrottlingException")
    # When the redrive waits for it, then the error names the task, which runs on
    with (
        stub,
        pytest.raises(dlq.DlqError, match=r"ThrottlingException.*task h-1 goes on without this command"),
    ):
        dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN, poll_seconds=0)


def test_a_move_task_interrupted_says_it_goes_on(capsys, monkeypatch):
    # Given a started move task, and Ctrl-C while the redrive waits for it
    sqs, stub = move_task_started()
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "RUNNING"}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dlq.time, "sleep", interrupt)
    # Then the interruption goes on to the command line (exit 130), saying the task runs on
    with stub, pytest.raises(KeyboardInterrupt):
        dlq.move_with_task(sqs, DLQ_ARN, QUEUE_ARN)
    assert "the message move task h-1 goes on without this command" in capsys.readouterr().err


class RefusedDeletes(SlowReceives):
    """A client whose DLQ deletes SQS refuses for the first message of each batch (its
    receipt handle expired while the redrive ran)."""

    def delete_message_batch(self, **kwargs: Any) -> Any:
        first, *rest = kwargs["Entries"]
        answer = self.sqs.delete_message_batch(**{**kwargs, "Entries": rest}) if rest else {}
        refusal = {
            "Id": first["Id"],
            "SenderFault": True,
            "Code": "ReceiptHandleIsInvalid",
            "Message": "expired",
        }
        return {"Successful": answer.get("Successful", []), "Failed": [refusal]}


def refuse_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's SQS clients refuse DLQ deletes as :class:`RefusedDeletes` does."""
    wrap_stack_sqs(monkeypatch, lambda sqs: RefusedDeletes(sqs, 0))


def test_a_message_whose_delete_is_refused_is_not_counted_as_moved(stack, capsys, monkeypatch):
    # Given three dead letters, and an SQS that refuses to delete one of them from the DLQ
    for i in range(3):
        stack.dead_letter("processing", s3_event(f"incoming/d/{i}.csv", "v1"))
    refuse_deletes(monkeypatch)
    # When they are redriven (with --prefix: moved by hand, not by a move task)
    selection = ("--queue", "processing", "--prefix", "incoming/d/")
    code = main(["dlq", "redrive", *selection, "--execute", "--json", "--outputs", str(stack.outputs)])
    # Then all three went back to the work queue, two left the DLQ, and the third is reported
    # as in both queues, with SQS's reason, and the command does not claim success
    result = json.loads(capsys.readouterr().out)
    assert (result["moved"], result["undeleted"]) == (2, 1)
    assert result["undeleted_reason"] == "ReceiptHandleIsInvalid: expired"
    assert stack.depth("processing") == 3
    assert code == 1


def test_a_refused_delete_still_takes_its_limit_slot(stack, capsys, monkeypatch):
    # Given twelve dead letters (two receives), and an SQS that refuses to delete the first
    # of each batch
    for i in range(12):
        stack.dead_letter("processing", s3_event(f"incoming/d/{i}.csv", "v1"))
    refuse_deletes(monkeypatch)
    # When at most ten are redriven
    selection = ("--queue", "processing", "--prefix", "incoming/d/", "--limit", "10")
    main(["dlq", "redrive", *selection, "--execute", "--json", "--outputs", str(stack.outputs)])
    # Then ten went back to the work queue, not eleven: one left in both queues was sent too
    result = json.loads(capsys.readouterr().out)
    assert result["moved"] + result["undeleted"] == 10
    assert stack.depth("processing") == 10
