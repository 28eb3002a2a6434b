"""``headrace replay`` against moto and the real processor handler: what a replay sends is
what S3 sends, and the idempotency record it forgets is the one the processor wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers.logic.idempotency import processor_idempotency_key
from handlers.models.events import ObjectCreatedRecord, ObjectRef
from headrace.cli import main
from headrace.replay import Replayer

from .conftest import REGION, Pipeline

GOOD = "date,product,quantity\n2025-01-01,Widget,10\n2025-01-02,Gadget,5\n"
PROCESSOR = "headrace-test-processor"


@pytest.fixture
def pipeline(aws, monkeypatch, tmp_path) -> Pipeline:
    # The deployed processor's name: part of every idempotency record id.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", PROCESSOR)
    return Pipeline(monkeypatch, tmp_path)


@pytest.fixture
def outputs(pipeline, tmp_path) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "raw_bucket": pipeline.raw,
                "processed_bucket": pipeline.processed,
                "reports_bucket": "reports",
                "processing_queue_url": pipeline.queue.url,
                "processing_dlq_url": pipeline.queue.dlq,
                "load_queue_url": pipeline.events_queue,
                "load_dlq_url": pipeline.events_queue,
                "metadata_table": "metadata",
                "idempotency_table": "idempotency",
                "function_names": {"processor": PROCESSOR},
                "db_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
                "alerts_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
                "ingest_api_url": "http://localhost",
                "region": REGION,
                "raw_prefix": "incoming/",
            }
        )
    )
    return str(path)


def replay(outputs: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args, "--outputs", outputs])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ref_of(pipeline: Pipeline, obj: dict[str, Any]) -> ObjectRef:
    return ObjectRef(
        bucket=pipeline.raw,
        key=obj["key"],
        version_id=obj["version"],
        etag=obj["etag"],
        uploaded_at="2026-01-01T00:00:00Z",
    )


def idempotency_ids() -> set[str]:
    items = boto3.resource("dynamodb", region_name=REGION).Table("idempotency").scan()["Items"]
    return {item["id"] for item in items}


def test_the_record_id_replay_derives_is_the_one_the_processor_writes(pipeline):
    # Given a file the real processor handler completed
    obj = pipeline.upload("incoming/sales/a.csv", GOOD)
    response = pipeline.process(obj)
    assert response["batchItemFailures"] == []
    # Then the idempotency table holds exactly the id handlers.logic.idempotency derives
    assert idempotency_ids() == {processor_idempotency_key(PROCESSOR, ref_of(pipeline, obj))}


def test_a_never_processed_version_is_announced_as_s3_would_and_completes(pipeline, outputs, capsys):
    # Given an object whose event was lost (uploaded, never announced)
    obj = pipeline.upload("incoming/sales/lost.csv", GOOD)
    # When it is replayed
    code, out, _ = replay(outputs, capsys, obj["key"])
    # Then the processing queue holds one S3 "Object Created" event for its current version
    assert code == 0
    assert f"replayed {obj['key']} version {obj['version']} (never processed): processed" in out
    records = pipeline.queue.receive()
    assert len(records) == 1
    event = ObjectCreatedRecord.model_validate(records[0]).body
    assert (event.source, event.detail_type, event.replay_name) == (
        "aws.s3",
        "Object Created",
        "headrace-replay",
    )
    ref = ObjectRef.from_event(event)
    assert (ref.key, ref.version_id, ref.etag, ref.size) == (
        obj["key"],
        obj["version"],
        obj["etag"],
        obj["size"],
    )
    # And the processor completes it from that event
    response = pipeline.invoke(*records)
    pipeline.queue.delete_succeeded(records, response)
    assert pipeline.item(obj)["status"] == "completed"


def test_replaying_a_completed_version_is_a_no_op_unless_forced(pipeline, outputs, capsys):
    # Given a completed file
    obj = pipeline.upload("incoming/sales/done.csv", GOOD)
    pipeline.process(obj)
    first = pipeline.item(obj)["completed_at"]
    # When it is replayed without --force
    code, out, _ = replay(outputs, capsys, obj["key"])
    assert code == 0 and "acknowledged without work" in out
    _, response = pipeline.poll()
    # Then the processor acknowledges it and does no work
    assert response["batchItemFailures"] == []
    assert pipeline.item(obj)["completed_at"] == first
    # When it is replayed with --force
    code, out, _ = replay(outputs, capsys, obj["key"], "--force")
    assert code == 0 and "processed again" in out
    _, response = pipeline.poll()
    # Then it is processed again
    assert response["batchItemFailures"] == []
    assert pipeline.item(obj)["completed_at"] > first


def test_a_completed_version_past_the_idempotency_window_is_processed_again(pipeline, outputs, capsys):
    # Given a completed file whose idempotency record has expired but not yet been deleted
    obj = pipeline.upload("incoming/sales/old.csv", GOOD)
    pipeline.process(obj)
    first = pipeline.item(obj)["completed_at"]
    table = boto3.resource("dynamodb", region_name=REGION).Table("idempotency")
    (record,) = table.scan()["Items"]
    table.update_item(
        Key={"id": record["id"]},
        UpdateExpression="SET expiration = :past",
        ExpressionAttributeValues={":past": 1},
    )
    # When it is replayed: the preview says what the processor will do, and it does it
    code, out, _ = replay(outputs, capsys, obj["key"])
    assert code == 0 and "processed again" in out
    _, response = pipeline.poll()
    assert response["batchItemFailures"] == []
    assert pipeline.item(obj)["completed_at"] > first


@pytest.mark.parametrize(
    ("in_progress_ends_in_ms", "said"),
    [
        # an invocation processing it now: the replay waits for it
        (600_000, "retried until the delivery now in progress ends"),
        # one killed mid-file (timeout, out of memory) left its record behind: Powertools
        # takes an in-progress record over once its invocation's time is over
        (-1_000, "(never processed): processed"),
    ],
)
def test_a_version_in_progress_is_said_to_wait_only_while_its_invocation_can_still_run(
    pipeline, outputs, capsys, in_progress_ends_in_ms, said
):
    # Given a version whose idempotency record says INPROGRESS
    obj = pipeline.upload("incoming/sales/busy.csv", GOOD)
    now = time.time()
    boto3.resource("dynamodb", region_name=REGION).Table("idempotency").put_item(
        Item={
            "id": processor_idempotency_key(PROCESSOR, ref_of(pipeline, obj)),
            "status": "INPROGRESS",
            "expiration": int(now) + 86_400,
            "in_progress_expiration": int(now * 1000) + in_progress_ends_in_ms,
        }
    )
    # When it is replayed, then the output says what the processor does with it
    code, out, _ = replay(outputs, capsys, obj["key"])
    assert code == 0 and said in out
    records, response = pipeline.poll()
    if in_progress_ends_in_ms > 0:
        assert response["batchItemFailures"] == [{"itemIdentifier": records[0]["messageId"]}]
    else:
        assert response["batchItemFailures"] == []
        assert pipeline.item(obj)["status"] == "completed"


def test_dry_run_sends_nothing(pipeline, outputs, capsys):
    obj = pipeline.upload("incoming/sales/dry.csv", GOOD)
    code, out, _ = replay(outputs, capsys, obj["key"], "--dry-run")
    assert code == 0 and out.startswith("would replay")
    assert pipeline.queue.receive() == []


def test_a_version_that_is_no_longer_current_is_refused(pipeline, outputs, capsys):
    # Given a key uploaded twice
    old = pipeline.upload("incoming/sales/twice.csv", GOOD)
    new = pipeline.upload("incoming/sales/twice.csv", GOOD + "2025-01-03,Thing,1\n")
    # When the old version is asked for, then nothing is sent and the error says why
    code, _, err = replay(outputs, capsys, old["key"], "--version", old["version"])
    assert code == 2
    assert f"not the current version ({new['version']})" in err
    assert pipeline.queue.receive() == []


def test_a_superseded_version_made_current_again_is_refused(pipeline, outputs, capsys):
    # Given a key uploaded twice, both processed (the second retires the first), then the
    # newer version deleted by its version id: S3 makes the first current again
    old = pipeline.upload("incoming/sales/back.csv", GOOD)
    pipeline.process(old)
    new = pipeline.upload("incoming/sales/back.csv", GOOD + "2025-01-03,Thing,1\n")
    pipeline.process(new)
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=pipeline.raw, Key=new["key"], VersionId=new["version"]
    )
    records = idempotency_ids()
    # When it is replayed, even with --force
    code, out, err = replay(outputs, capsys, old["key"], "--force")
    # Then it is refused, saying why and what brings its data back, and nothing is sent:
    # the processor would skip it as superseded, and --force turned its completed record
    # into a skipped one while the command said "processed again"
    assert code == 2 and "replayed" not in out
    assert f"superseded by version {new['version']}" in err and "copy it over the key" in err
    assert pipeline.queue.receive() == []
    assert idempotency_ids() == records
    assert pipeline.item(old)["status"] == "completed"


def test_a_version_skipped_while_a_newer_one_was_current_is_not_said_to_have_completed(
    pipeline, outputs, capsys
):
    # Given a version skipped as superseded because a newer one was current when its event
    # came, and that newer one (which never completed) deleted by its version id since
    old = pipeline.upload("incoming/sales/skip.csv", GOOD)
    new = pipeline.upload("incoming/sales/skip.csv", b"BZh91AY&SY not csv")
    pipeline.process(old)
    assert pipeline.item(old)["skip_reason"] == "superseded"
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=pipeline.raw, Key=new["key"], VersionId=new["version"]
    )
    # When it is replayed, then the output says the processor skipped it, not that it completed
    code, out, _ = replay(outputs, capsys, old["key"])
    assert code == 0
    assert "skipped this version recently (superseded)" in out and "completed recently" not in out
    _, response = pipeline.poll()
    assert response["batchItemFailures"] == [] and pipeline.item(old)["status"] == "failed"
    # and with --force it is processed
    code, out, _ = replay(outputs, capsys, old["key"], "--force")
    assert code == 0 and "(was failed): processed" in out
    _, response = pipeline.poll()
    assert response["batchItemFailures"] == [] and pipeline.item(old)["status"] == "completed"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("elsewhere/a.csv", "not under the raw prefix"),
        ("incoming/missing.csv", "no such object"),
        # routing ignores it; announced, it would fail five times and reach the DLQ
        ("incoming/sales/readme.md", "not a file type headrace reads ('.md')"),
        ("incoming/__MACOSX/sales/._a.csv", "'__MACOSX' makes it a hidden file"),
    ],
)
def test_keys_that_cannot_be_replayed_are_errors(pipeline, outputs, capsys, key, message):
    pipeline.upload("incoming/sales/readme.md", "# notes\n")
    code, _, err = replay(outputs, capsys, key)
    assert code == 2 and message in err
    assert pipeline.queue.receive() == []


def test_a_key_refused_by_aws_does_not_stop_the_keys_after_it(pipeline, outputs, capsys, monkeypatch):
    # Given one key whose request AWS refuses (here the idempotency record's GetItem)
    denied, good = (pipeline.upload(f"incoming/sales/{n}.csv", GOOD) for n in ("denied", "after"))
    idempotency_record = Replayer.idempotency_record

    def refuse_one(self, ref):
        if ref.key == denied["key"]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetItem")
        return idempotency_record(self, ref)

    monkeypatch.setattr(Replayer, "idempotency_record", refuse_one)
    # When both are replayed: the refused one is an error, the next is still announced
    code, out, err = replay(outputs, capsys, denied["key"], good["key"])
    assert code == 2
    assert f"{denied['key']}: An error occurred (AccessDeniedException)" in err
    assert f"replayed {good['key']}" in out
    assert len(pipeline.queue.receive()) == 1


def test_a_queue_deleted_under_the_outputs_is_named(pipeline, outputs, capsys):
    # Given a stored object, and the processing queue deleted since (a table deleted is
    # named alike)
    key = pipeline.upload("incoming/sales/a.csv", GOOD)["key"]
    pipeline.sqs.delete_queue(QueueUrl=pipeline.queue.url)
    # When the key is replayed, then one line names the missing queue (the service's own
    # message does not)
    code, _, err = replay(outputs, capsys, key)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"the processing queue (processing_queue_url: {pipeline.queue.url}) does not exist" in err


def test_a_key_the_processor_ignores_is_refused_by_the_stacks_suffixes(pipeline, outputs, capsys, tmp_path):
    # Given a stack whose outputs name its raw_suffixes, and a key the processor would
    # acknowledge with nothing recorded
    with_suffixes = tmp_path / "with-suffixes.json"
    with_suffixes.write_text(json.dumps({**json.loads(Path(outputs).read_text()), "raw_suffixes": [".csv"]}))
    notes = pipeline.upload("incoming/sales/notes.md", GOOD)
    # When it is replayed, then nothing is sent and the error says the processor ignores it
    code, _, err = replay(str(with_suffixes), capsys, notes["key"])
    assert code == 2 and "the processor ignores it" in err and "(.csv)" in err
    assert pipeline.queue.receive() == []
    # while a key with one of them is replayed as before
    code, out, _ = replay(str(with_suffixes), capsys, pipeline.upload("incoming/sales/ok.csv", GOOD)["key"])
    assert code == 0 and "replayed incoming/sales/ok.csv" in out
    # in any case, as the processor matches them
    code, out, _ = replay(str(with_suffixes), capsys, pipeline.upload("incoming/sales/OK.CSV", GOOD)["key"])
    assert code == 0 and "replayed incoming/sales/OK.CSV" in out


def test_an_error_about_a_key_shows_the_key_escaped(pipeline, outputs, capsys):
    # Given a key holding a terminal escape sequence and a newline (keys are the uploader's)
    forged = "incoming/poison/ctl\x1b[2J\nFAKE.csv"
    # When its replay fails (no such object)
    code, _, err = replay(outputs, capsys, forged)
    # Then the error is one line, with the control characters written as escapes
    assert code == 2
    assert err == (
        f"headrace: error: incoming/poison/ctl\\x1b[2J\\nFAKE.csv: no such object in {pipeline.raw} (deleted?)\n"
    )
