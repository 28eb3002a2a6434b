"""The processor Lambda with moto S3/DynamoDB/EventBridge/SQS, called with SQS batches."""

from __future__ import annotations

import errno
import importlib
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime

import boto3
import duckdb
import pytest

from handlers.logic import process_object
from handlers.logic.faults import SimulatedCrash
from handlers.logic.layout import processed_keys
from handlers.logic.processing import OutOfMemory

from .conftest import REGION, STACK, Invocation, LambdaContext, Pipeline, emitted_metrics
from .ingest_support import capture_logs

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"


def test_good_file_is_completed_with_outputs_and_event(pipeline, tmp_path):
    # Given a CSV uploaded to the raw bucket
    obj = pipeline.upload("incoming/sales/jan.csv", SALES)
    pipeline.announce(obj)
    # When the processor receives its event
    _, response = pipeline.poll()
    # Then the batch succeeds and the metadata item holds the summary
    assert response == {"batchItemFailures": []}
    item = pipeline.item(obj)
    assert item["status"] == "completed"
    assert item["row_count"] == 3
    assert item["schema"] == {"date": "date", "product": "string", "quantity": "int", "price": "float"}
    assert float(item["quality_issues"]["missing_values"]["quantity"]["percentage"]) == 33.33
    assert item["dataset"] == "sales"
    assert {"queue_wait", "download", "process", "write", "total"} <= set(item["timings_ms"])
    assert 10 < float(item["max_rss_mb"]) < 100_000  # the process's peak RSS, in MB
    assert item["ttl"] > 0 and item["day"] == item["uploaded_at"][:10]
    # and the Parquet is where the layout says, with the rows
    parquet = tmp_path / "out.parquet"
    pipeline.s3.download_file(pipeline.processed, item["parquet_key"], str(parquet))
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{parquet}')").fetchall() == [(3,)]
    assert item["parquet_key"].startswith("parquet/dataset=sales/ingest_date=")
    summary = json.loads(
        pipeline.s3.get_object(Bucket=pipeline.processed, Key=item["summary_key"])["Body"].read()
    )
    assert (summary["row_count"], summary["object_key"]) == (3, obj["key"])
    # and exactly one "File Processed" event was published
    [event] = pipeline.published()
    assert (event["object_key"], event["row_count"], event["parquet_key"]) == (
        obj["key"],
        3,
        item["parquet_key"],
    )


def test_the_raw_object_is_read_with_one_get(pipeline):
    from handlers.dal.aws import client, download_client, table

    obj = pipeline.upload("incoming/sales/feb.csv", SALES)
    pipeline.announce(obj)
    calls: list[str] = []

    def on_call(params, model, **_):
        if params.get("Bucket") == pipeline.raw:
            calls.append(model.name)
        elif model.name == "UpdateItem":  # a metadata transition: name it by its status
            values = json.dumps(params["ExpressionAttributeValues"], default=str)
            calls.append(next(s for s in ("received", "processing", "completed") if f'"{s}"' in values))

    clients = [client("s3"), download_client(), table("metadata").meta.client]
    for c in clients:
        c.meta.events.register("provide-client-params", on_call)
    try:
        _, response = pipeline.poll()
    finally:
        for c in clients:
            c.meta.events.unregister("provide-client-params", on_call)

    assert response == {"batchItemFailures": []}
    # The GET tells deleted/superseded and carries the body, which is read once the item
    # says processing; the HEAD, once the outputs are written, checks that no newer
    # version arrived meanwhile.
    assert calls == ["received", "GetObject", "processing", "HeadObject", "completed"]


def test_poison_files_never_block_the_batch_and_reach_the_dlq(pipeline, capsys):
    # Given one batch holding a good file, a binary file, an empty object, an object whose
    # version was deleted, an object deleted by a delete marker, and a key with spaces and
    # unicode
    good = pipeline.upload("incoming/a.csv", SALES)
    binary = pipeline.upload("incoming/b.csv", bytes(range(256)) * 8)
    empty = pipeline.upload("incoming/empty.csv", b"")
    gone = pipeline.upload("incoming/gone.csv", SALES)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=gone["key"], VersionId=gone["version"])
    marked = pipeline.upload("incoming/marked.csv", SALES)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=marked["key"])
    unicode_key = pipeline.upload("incoming/données été/Q1 report ü.csv", SALES)
    pipeline.announce(good, binary, empty, gone, marked, unicode_key)
    # When they are processed together
    records, response = pipeline.poll()
    # Then only the two poison files are reported back
    by_id = {r["messageId"]: json.loads(r["body"])["detail"]["object"]["key"] for r in records}
    assert sorted(by_id[f["itemIdentifier"]] for f in response["batchItemFailures"]) == [
        binary["key"],
        empty["key"],
    ]
    # and every file has a clear recorded outcome
    assert pipeline.item(good)["status"] == "completed"
    assert pipeline.item(unicode_key)["status"] == "completed"
    assert pipeline.item(unicode_key)["dataset"] == "donnees_ete"
    assert pipeline.item(binary)["status"] == "failed"
    assert "binary content" in pipeline.item(binary)["error"]
    assert pipeline.item(empty)["error"] == "the file is empty (0 bytes)"
    for deleted in (gone, marked):
        assert pipeline.item(deleted)["status"] == "failed"
        assert pipeline.item(deleted)["error"] == "the object was deleted before it could be processed"
        assert pipeline.item(deleted)["skip_reason"] == "deleted"  # not a failure of the file
    assert "skip_reason" not in pipeline.item(binary)
    # When the poison messages are retried (they come back at once, not after the
    # visibility timeout) up to maxReceiveCount
    for _ in range(3):
        pipeline.poll()
    # Then they are in the DLQ, and nothing else is
    in_dlq = sorted(json.loads(body)["detail"]["object"]["key"] for body in pipeline.queue.dlq_bodies())
    assert in_dlq == [binary["key"], empty["key"]]
    assert pipeline.item(binary)["attempts"] == 3
    assert pipeline.queue.receive() == []
    # and each file was counted once, though the poison files were attempted three times
    # (deleted objects are neither processed nor failed files)
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["FilesProcessed"], metrics["FilesFailed"]) == (2, 2)


def test_a_poison_file_is_not_processed_again_on_each_receive_of_its_message(pipeline, monkeypatch, capsys):
    # Given a binary file, and the processing the processor runs on every file, counted
    binary = pipeline.upload("incoming/junk.csv", bytes(range(256)) * 8)
    real = process_object.process_file
    runs: list[str] = []

    def counted(path, **kwargs):
        runs.append(kwargs["file_name"])
        return real(path, **kwargs)

    monkeypatch.setattr(process_object, "process_file", counted)
    # When its message is received until the DLQ (it comes back at once each time)
    pipeline.announce(binary)
    for _ in range(4):
        pipeline.poll()
    # Then it reached the DLQ after every receive, processed only on the first: the later
    # receives fail at once, keeping the recorded reason, the attempt and a single count
    assert [json.loads(b)["detail"]["object"]["key"] for b in pipeline.queue.dlq_bodies()] == [binary["key"]]
    assert runs == ["junk.csv"]
    item = pipeline.item(binary)
    assert (item["status"], item["failure_kind"], item["attempts"]) == ("failed", "permanent", 3)
    assert "binary content" in item["error"]
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 1
    # When the dead letter is redriven (a new message) after the file was, say, restored
    pipeline.announce(binary)
    pipeline.poll()
    # Then that message's first receive processes the file again
    assert runs == ["junk.csv", "junk.csv"]


def test_a_poison_files_redelivery_reads_only_the_failure_of_its_item_consistently(pipeline, monkeypatch):
    # Given a binary file recorded failed for good by its message's first receive
    binary = pipeline.upload("incoming/junk.csv", bytes(range(256)) * 8)
    pipeline.announce(binary)
    pipeline.poll()
    assert pipeline.item(binary)["failure_kind"] == "permanent"
    # and the processor's reads of the metadata table, recorded
    metadata = sys.modules[type(pipeline.handler.store).__module__]
    real_table = metadata.table
    reads: list[dict] = []

    class Spy:
        def __init__(self, table):
            self._table = table

        def __getattr__(self, name):
            return getattr(self._table, name)

        def get_item(self, **request):
            reads.append(request)
            return self._table.get_item(**request)

    monkeypatch.setattr(metadata, "table", lambda name: Spy(real_table(name)))
    # When the message is received again
    pipeline.poll()
    # Then the one read of its item is strongly consistent (the failure was recorded just
    # before) and asks for the failure's attributes only, not the whole (up to 300 KB) item
    assert len(reads) == 1
    (read,) = reads
    assert read["Key"] == {"object_key": binary["key"], "version": pipeline.item(binary)["version"]}
    assert read["ConsistentRead"] is True
    names = read["ExpressionAttributeNames"]
    assert sorted(names[p.strip()] for p in read["ProjectionExpression"].split(",")) == sorted(
        ("status", "failure_kind", "failed_message", "superseded_by", "skip_reason", "error")
    )
    # and it still fails at once, keeping the recorded reason
    item = pipeline.item(binary)
    assert (item["status"], item["failure_kind"], item["attempts"]) == ("failed", "permanent", 2)
    assert "binary content" in item["error"]


def test_a_version_failed_for_good_then_processed_by_another_message_is_no_longer_marked_so(
    pipeline, monkeypatch
):
    # Given a version found unreadable for good (as an archived object is until restored)
    from handlers.logic.processing.errors import UnprocessableFile

    obj = pipeline.upload("incoming/restored.csv", SALES)
    real = process_object.process_file

    def unreadable(path, **kwargs):
        raise UnprocessableFile("the object is archived")

    monkeypatch.setattr(process_object, "process_file", unreadable)
    pipeline.announce(obj)
    for _ in range(3):  # on to the DLQ
        pipeline.poll()
    assert pipeline.item(obj)["failure_kind"] == "permanent"
    # When it becomes readable and another message (headrace replay) processes it
    monkeypatch.setattr(process_object, "process_file", real)
    pipeline.announce(obj)
    pipeline.poll()
    # Then it is completed, and nothing on its item still says it cannot be processed
    item = pipeline.item(obj)
    assert item["status"] == "completed"
    assert ("failure_kind" in item, "failed_message" in item) == (False, False)


def test_url_encoded_key_in_the_event_is_found(pipeline):
    obj = pipeline.upload("incoming/my file.csv", SALES)
    encoded = dict(obj, key="incoming/my%20file.csv")
    pipeline.announce(encoded)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    assert pipeline.item(obj)["status"] == "completed"
    assert pipeline.item(encoded) == {}


def test_a_key_encoded_as_s3_notifications_encode_it_is_found(pipeline):
    # Given keys with a space and a plus, announced as S3's notifications spell them
    # (form encoding: a space is '+', a plus is %2B)
    spaced = pipeline.upload("incoming/my file.csv", SALES)
    plus = pipeline.upload("incoming/c++ report.csv", SALES)
    encoded = [dict(spaced, key="incoming/my+file.csv"), dict(plus, key="incoming/c%2B%2B+report.csv")]
    pipeline.announce(*encoded)
    # When they are processed: each object is read and recorded under its real key
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    for obj, spelled in zip((spaced, plus), encoded, strict=True):
        assert pipeline.item(obj)["status"] == "completed"
        assert pipeline.item(spelled) == {}


def test_an_encoded_key_is_not_mistaken_for_another_object_spelled_like_it(pipeline):
    # Given "a b.csv", announced as "a+b.csv", while another object really is "a+b.csv"
    spaced = pipeline.upload("incoming/a b.csv", SALES)
    literal = pipeline.upload("incoming/a+b.csv", SALES)
    pipeline.announce(dict(spaced, key="incoming/a+b.csv"))
    # When the event is processed: the event's object (by its version) is the one read
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    assert pipeline.item(spaced)["status"] == "completed"
    # and the literal "a+b.csv" is not marked superseded by a version that is not its own
    assert pipeline.item(literal) == {}


def test_a_deleted_key_is_not_mistaken_for_the_key_it_decodes_to(pipeline):
    # Given a key that really contains "%20", deleted, and one with a space that exists
    other = pipeline.upload("incoming/report v2.csv", SALES)
    literal = pipeline.upload("incoming/report%20v2.csv", SALES)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=literal["key"])
    # When the deleted key's event is processed
    pipeline.announce(literal)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then it is skipped as deleted; the other object is not processed in its place
    assert pipeline.item(literal)["error"] == "the object was deleted before it could be processed"
    assert pipeline.item(other) == {}


def test_redelivered_object_is_processed_once(pipeline):
    # Given the same object version announced four times (S3 retries, SQS redeliveries),
    # twice within one batch
    obj = pipeline.upload("incoming/sales.csv", SALES)
    pipeline.announce(obj)
    pipeline.poll()
    pipeline.announce(obj, obj, obj)
    # When all are processed
    _, response = pipeline.poll()
    # Then every message succeeds but the work (and its event) happened once
    assert response == {"batchItemFailures": []}
    assert len(pipeline.published()) == 1
    assert pipeline.item(obj)["status"] == "completed"
    assert pipeline.item(obj)["attempts"] == 1


def test_a_new_version_replaces_the_previous_one(pipeline):
    # Given a file that was processed, then re-uploaded corrected under the same key
    v1 = pipeline.upload("incoming/sales.csv", SALES)
    pipeline.announce(v1)
    pipeline.poll()
    v1_parquet = pipeline.item(v1)["parquet_key"]
    v2 = pipeline.upload("incoming/sales.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    pipeline.announce(v2)
    # When the new version is processed
    pipeline.poll()
    # Then only its outputs remain and the old version points to it
    assert pipeline.item(v2)["row_count"] == 4
    assert v1_parquet not in pipeline.processed_keys()
    assert pipeline.item(v2)["parquet_key"] in pipeline.processed_keys()
    assert pipeline.item(v1)["superseded_by"] == v2["version"]
    # And a late (or redriven) event for the old version changes nothing
    pipeline.announce(v1)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    assert pipeline.processed_keys() == sorted(
        [pipeline.item(v2)["parquet_key"], pipeline.item(v2)["summary_key"]]
    )


def forget_processed_versions() -> None:
    """The idempotency window (a day by default) has passed."""
    records = boto3.resource("dynamodb", region_name=REGION).Table("idempotency")
    for record in records.scan()["Items"]:
        records.delete_item(Key={"id": record["id"]})


def test_an_event_arriving_after_the_idempotency_window_leaves_a_completed_version_completed(pipeline):
    # Given a version that completed, then was replaced; and a file that completed, then was deleted
    v1 = pipeline.upload("incoming/late/l.csv", SALES)
    gone = pipeline.upload("incoming/late/d.csv", SALES)
    pipeline.announce(v1, gone)
    pipeline.poll()
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=gone["key"])
    v2 = pipeline.upload("incoming/late/l.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    pipeline.announce(v2)
    pipeline.poll()
    # When their events come again a day later (a DLQ redrive, an EventBridge replay)
    forget_processed_versions()
    pipeline.announce(v1, gone)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then both keep the outcome they had: a stale event is skipped, not a failure
    assert pipeline.item(v1)["status"] == "completed" and pipeline.item(v1)["superseded_by"] == v2["version"]
    assert pipeline.item(gone)["status"] == "completed" and "error" not in pipeline.item(gone)
    assert "skip_reason" not in pipeline.item(v1) and "skip_reason" not in pipeline.item(gone)
    # and stay in the completion index (the staleness signal)
    assert all(pipeline.item(o)["completed_day"] == pipeline.item(o)["completed_at"][:10] for o in (v1, gone))


def test_a_version_skipped_as_deleted_and_restored_is_processed_and_no_longer_skipped(pipeline):
    # Given a file deleted (a delete marker) before it was processed: skipped as deleted
    obj = pipeline.upload("incoming/back/b.csv", SALES)
    marker = pipeline.s3.delete_object(Bucket=pipeline.raw, Key=obj["key"])["VersionId"]
    pipeline.announce(obj)
    pipeline.poll()
    assert pipeline.item(obj)["skip_reason"] == "deleted"
    # When it is restored (the marker removed) and its event comes again a day later
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=obj["key"], VersionId=marker)
    forget_processed_versions()
    pipeline.announce(obj)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then it is completed, and no longer counted as skipped
    item = pipeline.item(obj)
    assert item["status"] == "completed" and "skip_reason" not in item


def test_numbers_dynamodb_cannot_hold_do_not_fail_the_file(pipeline):
    # DynamoDB numbers reach 1e126 and 1e-130: a sensor's 1.5e200 failed every attempt
    obj = pipeline.upload("incoming/sensors/a.csv", "id,reading,tiny\n1,1.5e200,1e-200\n2,2.0,1e-300\n")
    pipeline.announce(obj)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    item = pipeline.item(obj)
    assert item["status"] == "completed"
    # kept as text where DynamoDB has no number for them; the summary in S3 has the number
    assert item["statistics"]["reading"]["max"] == "1.5e+200"
    assert item["statistics"]["reading"]["min"] == 2


def test_a_summary_too_large_for_dynamodb_is_cut_down_to_fit(pipeline):
    # a thousand columns of 300-character names: even the schema alone is 300 KB (and the
    # header line is longer than the 64 KiB the CSV dialect was sniffed from)
    columns = [f"{'c' * 296}{i:04d}" for i in range(1000)]
    obj = pipeline.upload("incoming/wide.csv", ",".join(columns) + "\n" + ",".join("1" * 1000) + "\n")
    pipeline.announce(obj)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    item = pipeline.item(obj)
    assert item["status"] == "completed" and item["summary_truncated"] is True
    assert "schema" not in item and item["summary_key"] in pipeline.processed_keys()
    # and the "File Processed" event leaves the schema to the summary, within EventBridge's 256 KB
    [event] = pipeline.published()
    assert event["columns"] == {} and event["columns_omitted"] is True
    assert len(json.dumps(event)) < 256 * 1024


def _ref_of(pipeline, obj, at=None):
    """The processor's ObjectRef of ``obj``, as its SQS record would give it (``at``: the
    event's time)."""
    from handlers.models.events import ObjectCreatedRecord, ObjectRef

    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "s"}
    record = {
        "messageId": "m",
        "receiptHandle": "r",
        "body": pipeline.event(obj, at),
        "attributes": {**attributes, "ApproximateFirstReceiveTimestamp": "1"},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": pipeline.queue.arn,
        "awsRegion": REGION,
    }
    return ObjectRef.from_event(ObjectCreatedRecord.model_validate(record).body)


def test_a_newer_version_that_completes_while_the_older_one_finishes_wins(pipeline, monkeypatch):
    # Given v1 past its "replaced meanwhile" check, and v2 uploaded and processed just then
    v1 = pipeline.upload("incoming/race/r.csv", SALES)
    real = process_object._replaced_meanwhile
    newer: dict = {}

    def newer_version_arrives(ref):
        answer = real(ref)
        if not newer:
            newer.update(pipeline.upload("incoming/race/r.csv", SALES + "2025-01-04,Gizmo,1,9.99\n"))
            process_object.process_object(
                _ref_of(pipeline, newer), pipeline.handler.settings, pipeline.handler.store
            )
        return answer

    monkeypatch.setattr(process_object, "_replaced_meanwhile", newer_version_arrives)
    pipeline.announce(v1)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then only v2's outputs remain and only v2 is announced to the loader
    assert pipeline.item(newer)["status"] == "completed"
    assert pipeline.item(v1)["superseded_by"] == newer["version"] and pipeline.item(v1)["status"] == "failed"
    assert pipeline.processed_keys() == sorted(
        [pipeline.item(newer)["parquet_key"], pipeline.item(newer)["summary_key"]]
    )
    assert [e["version"] for e in pipeline.published()] == [newer["version"]]


def test_every_earlier_version_is_found_however_large_their_summaries(pipeline):
    # Given five versions of a key whose metadata items hold 250 KB each: a query reads at
    # most 1 MB per page, however little of each item it returns
    from handlers.dal.metadata import VERSION_FIELDS, MetadataStore

    table = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
    for n in range(5):
        table.put_item(
            Item={
                "object_key": "incoming/big.csv",
                "version": f"v{n}",
                "uploaded_at": f"2025-01-0{n + 1}T00:00:00.000Z",
                "parquet_key": f"p/{n}.parquet",
                "statistics": "x" * 250_000,
            }
        )
    # When the processor lists the key's versions
    found = MetadataStore("metadata", 30).versions("incoming/big.csv")
    # Then it gets all five, each without its summary
    assert sorted(item["version"] for item in found) == [f"v{n}" for n in range(5)]
    assert all(set(item) <= set(VERSION_FIELDS) for item in found)


def test_stale_version_is_skipped_before_any_work(pipeline):
    v1 = pipeline.upload("incoming/x.csv", SALES)
    v2 = pipeline.upload("incoming/x.csv", SALES)
    pipeline.announce(v1)
    pipeline.poll()
    assert pipeline.item(v1)["status"] == "failed"
    assert pipeline.item(v1)["error"] == "superseded by a newer version of the object"
    assert pipeline.item(v1)["skip_reason"] == "superseded"  # not a failure of the file
    assert pipeline.published() == []
    assert pipeline.item(v2) == {}


def test_a_version_that_failed_keeps_its_failure_when_a_later_delivery_finds_it_replaced(pipeline):
    # Given a binary upload that failed, then the fixed file under the same key
    bad = pipeline.upload("incoming/z.csv", b"\x00\x01binary")
    pipeline.announce(bad)
    pipeline.poll()
    assert pipeline.item(bad)["error"].startswith("binary content")
    pipeline.upload("incoming/z.csv", SALES)
    # When the bad version's event is delivered again (a retry still queued, a redrive)
    pipeline.announce(bad)
    pipeline.poll()
    # Then it is still a failure with its reason: "skipped" means a version never processed
    item = pipeline.item(bad)
    assert item["status"] == "failed" and item["error"].startswith("binary content")
    assert "skip_reason" not in item


def test_an_object_written_while_versioning_was_suspended_supersedes_the_version(pipeline):
    v1 = pipeline.upload("incoming/y.csv", SALES)
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.raw, VersioningConfiguration={"Status": "Suspended"})
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=v1["key"], Body=b"a,b\n1,2\n")  # the "null" version
    pipeline.announce(v1)
    pipeline.poll()
    # the current bytes are not v1's: v1 is not processed from them
    assert pipeline.item(v1)["error"] == "superseded by a newer version of the object"
    assert pipeline.published() == []


def test_a_null_version_overwritten_while_versioning_is_suspended_is_not_read_from_the_newer_bytes(
    pipeline,
):
    # Given versioning suspended: each write of the key replaces its "null" version in place,
    # and S3's events give no version id, only the ETag
    pipeline.s3.put_bucket_versioning(Bucket=pipeline.raw, VersioningConfiguration={"Status": "Suspended"})

    def put(body: str) -> dict:
        answer = pipeline.s3.put_object(Bucket=pipeline.raw, Key="incoming/null/n.csv", Body=body.encode())
        return {"key": "incoming/null/n.csv", "version": "null", "etag": answer["ETag"].strip('"'), "size": 1}

    first = put(SALES)
    second = put("a,b\n1,2\n")
    # When the first write's event arrives after the second write
    pipeline.announce(first)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then it is skipped as superseded: the current bytes are the second write's, which were
    # announced (and counted) as the first's, next to the second's own outputs
    assert pipeline.item({"key": first["key"], "version": first["etag"]})["skip_reason"] == "superseded"
    assert pipeline.published() == [] and pipeline.processed_keys() == []
    # And the second write's event processes the bytes it announced
    pipeline.announce(second)
    pipeline.poll()
    assert [e["row_count"] for e in pipeline.published()] == [1]


def test_transient_failure_is_retried_then_recorded_as_failed(pipeline, monkeypatch, capsys):
    # Given the processed bucket is unavailable (a transient failure)
    obj = pipeline.upload("incoming/sales.csv", SALES)
    healthy = pipeline.handler.settings
    monkeypatch.setattr(
        pipeline.handler, "settings", healthy.model_copy(update={"processed_bucket": "missing"})
    )
    pipeline.announce(obj)
    # When the first receive fails
    records, response = pipeline.poll()
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    # Then the file is not failed yet (the reason is kept for operators), and the message
    # waits for the queue's visibility timeout before it is retried
    item = pipeline.item(obj)
    assert (item["status"], "NoSuchBucket" in item["last_error"]) == ("processing", True)
    assert pipeline.queue.receive() == []
    # When the remaining receives fail too (the visibility timeout elapses each time)
    for _ in range(2):
        _expire_visibility(pipeline, records[0])
        records, _ = pipeline.poll()
    # Then the last one records the failure with its reason, and the message is in the DLQ
    item = pipeline.item(obj)
    assert item["status"] == "failed"
    assert item["error"].startswith("gave up after 3 attempts: ")
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 1
    _expire_visibility(pipeline, records[0])
    pipeline.poll()
    assert len(pipeline.queue.dlq_bodies()) == 1
    # And once the cause is fixed, a redriven message completes the file
    monkeypatch.setattr(pipeline.handler, "settings", healthy)
    pipeline.announce(obj)
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    assert pipeline.item(obj)["status"] == "completed"
    assert "error" not in pipeline.item(obj) and "last_error" not in pipeline.item(obj)


def test_a_transient_failure_is_counted_for_this_stacks_alarm_and_a_poison_file_is_not(
    pipeline, monkeypatch, capsys
):
    # Given a batch of a good file, a poison file and a file whose output S3 throttles
    from botocore.exceptions import ClientError

    from handlers.dal import s3

    good = pipeline.upload("incoming/good.csv", SALES)
    poison = pipeline.upload("incoming/binary.csv", bytes(range(256)) * 8)
    throttled = pipeline.upload("incoming/throttled.csv", SALES)
    real = s3.upload

    def upload(path, bucket, key, *args, **kwargs):
        if "throttled" in key:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject"
            )
        return real(path, bucket, key, *args, **kwargs)

    monkeypatch.setattr(s3, "upload", upload)
    pipeline.announce(good, poison, throttled)
    capsys.readouterr()
    # When it is processed: the invocation succeeds (failures are per record, so the
    # function's Errors metric does not count them)
    records, response = pipeline.poll()
    keys = {r["messageId"]: json.loads(r["body"])["detail"]["object"]["key"] for r in records}
    assert sorted(keys[f["itemIdentifier"]] for f in response["batchItemFailures"]) == [
        poison["key"],
        throttled["key"],
    ]
    # and the throttled file is retried, not failed
    assert pipeline.item(throttled)["status"] == "processing"
    assert "SlowDown" in pipeline.item(throttled)["last_error"]
    # Then its attempt is counted once as retried (what the processor-failures alarm reads);
    # the poison file is a failed file, not a retry
    out = capsys.readouterr().out
    metrics = emitted_metrics(out)
    assert (metrics["FilesRetried"], metrics["FilesFailed"], metrics["FilesProcessed"]) == (1, 1, 1)
    # under the service and this stack's name, the dimensions the alarm selects by
    documents = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert documents
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert [set(d) for d in directive["Dimensions"]] == [{"service", "stack"}]
        assert (document["service"], document["stack"]) == ("processor", STACK)
    # When the poison file is received again (at once) and fails again
    records, response = pipeline.poll()
    assert [keys[f["itemIdentifier"]] for f in response["batchItemFailures"]] == [poison["key"]]
    # Then it is counted neither as a retry nor as a second failed file
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["FilesRetried"], metrics["FilesFailed"]) == (0, 0)


def test_a_duplicate_delivered_while_the_version_is_in_progress_is_not_a_failure(
    pipeline, monkeypatch, capsys
):
    # Given another invocation is processing this version right now (Powertools' record)
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    def in_progress(**_: object) -> None:
        raise IdempotencyAlreadyInProgressError("in progress")

    obj = pipeline.upload("incoming/sales.csv", SALES)
    monkeypatch.setattr(pipeline.handler, "process", in_progress)
    pipeline.announce(obj)
    # When the duplicate is received for the last time
    records, response = pipeline.poll()
    for _ in range(2):
        _expire_visibility(pipeline, records[0])
        records, response = pipeline.poll()
    # Then it is handed back each time, and nothing about the file is recorded
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item.get("status") != "failed" and "last_error" not in item
    assert emitted_metrics(capsys.readouterr().out)["FilesRetried"] == 0


def test_a_file_found_bad_on_a_later_attempt_is_counted_failed_once(pipeline, monkeypatch, capsys):
    # Given a binary file whose first attempt meets a transient error before its content
    # is read
    obj = pipeline.upload("incoming/b.csv", bytes(range(256)) * 8)
    real = process_object.process_file
    calls = []

    def flaky_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("scratch storage unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(process_object, "process_file", flaky_once)
    pipeline.announce(obj)
    records, _ = pipeline.poll()
    assert "last_error" in pipeline.item(obj)
    # When the retries find it cannot be processed, until it reaches the DLQ
    for _ in range(2):
        _expire_visibility(pipeline, records[0])
        records, _ = pipeline.poll()
    # Then it is failed for its content, and counted failed once
    item = pipeline.item(obj)
    assert (item["status"], "binary content" in item["error"], item["attempts"]) == ("failed", True, 3)
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 1


def test_files_there_is_no_time_left_to_start_are_handed_back_untouched(pipeline, monkeypatch, capsys):
    # Given a batch of three files, in an invocation whose time the first file uses up
    # (60 s at the start: 10 s are kept back, and a file needs 10 s more to be started)
    objs = [pipeline.upload(f"incoming/{name}.csv", SALES) for name in ("first", "second", "third")]
    pipeline.announce(*objs)
    context = Invocation(60_000)
    real = pipeline.handler.process_object

    def slow_file(*args, **kwargs):
        outcome = real(*args, **kwargs)
        context.remaining_ms = 19_000
        return outcome

    monkeypatch.setattr(pipeline.handler, "process_object", slow_file)
    # When the batch is processed
    records, response = pipeline.poll(context)
    # Then the first file completes and the others are reported back without an attempt
    keys = {r["messageId"]: json.loads(r["body"])["detail"]["object"]["key"] for r in records}
    assert sorted(keys[f["itemIdentifier"]] for f in response["batchItemFailures"]) == [
        objs[1]["key"],
        objs[2]["key"],
    ]
    assert pipeline.item(objs[0])["status"] == "completed"
    for obj in objs[1:]:
        item = pipeline.item(obj)
        assert (item["status"], "attempts" in item, "last_error" in item) == ("received", False, False)
    # nor counted as retried: nothing failed (the processor-failures alarm stays quiet while
    # a batch of slow files outlasts one invocation)
    assert emitted_metrics(capsys.readouterr().out)["FilesRetried"] == 0
    # and they are visible again at once, for the next invocation, which completes them
    monkeypatch.setattr(pipeline.handler, "process_object", real)
    context.remaining_ms = 60_000
    assert pipeline.poll(context)[1] == {"batchItemFailures": []}
    assert [pipeline.item(o)["status"] for o in objs] == ["completed"] * 3


class TimeUsedUp(LambdaContext):
    """An invocation that starts with 60 s (10 s kept back) and finds 15 s left afterwards:
    too little to start a file."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return 60_000 if self.calls == 1 else 15_000


def test_a_file_never_started_is_recorded_failed_on_its_last_receive(pipeline, capsys):
    obj = pipeline.upload("incoming/late.csv", SALES)
    pipeline.announce(obj)
    # When no invocation has time to start it, receive after receive
    pipeline.poll(TimeUsedUp())
    assert pipeline.item(obj)["status"] == "received"  # not an attempt: nothing recorded
    for _ in range(2):
        pipeline.poll(TimeUsedUp())
    # Then its last receive records why, before the message goes to the DLQ
    item = pipeline.item(obj)
    assert item["status"] == "failed"
    assert item["error"].startswith("gave up after 3 receives: not started: less than 20 s left")
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 1
    assert pipeline.queue.receive() == []  # the next receive moves it to the DLQ
    assert len(pipeline.queue.dlq_bodies()) == 1


def test_a_poison_files_last_receive_without_time_keeps_the_files_own_reason(pipeline, capsys):
    # Given a binary file, found bad on its message's first receive
    binary = pipeline.upload("incoming/junk.csv", bytes(range(256)) * 8)
    pipeline.announce(binary)
    pipeline.poll()
    pipeline.poll()
    # When its last receive comes in an invocation with too little time left to start a file
    pipeline.poll(TimeUsedUp())
    # Then the message is on its way to the DLQ still saying the file itself is bad (dlq
    # inspect's "the file itself" note reads failure_kind), not that time ran out
    item = pipeline.item(binary)
    assert (item["status"], item.get("failure_kind"), item["attempts"]) == ("failed", "permanent", 3)
    assert "binary content" in item["error"]
    assert "not started" not in item["error"]
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 1
    assert pipeline.queue.receive() == []
    assert len(pipeline.queue.dlq_bodies()) == 1


def test_a_download_slower_than_the_invocation_is_stopped_at_the_deadline(pipeline, monkeypatch):
    # Given a download that would take longer than the 300 ms the invocation has left
    from handlers.dal import s3

    class Slow:
        def __init__(self, body):
            self.body = body

        def iter_chunks(self, size):
            for chunk in self.body.iter_chunks(1):  # one byte at a time, 20 ms each
                time.sleep(0.02)
                yield chunk

    real = s3.save_body
    monkeypatch.setattr(s3, "save_body", lambda body, *a, **k: real(Slow(body), *a, **k))
    obj = pipeline.upload("incoming/slow.csv", SALES)
    pipeline.announce(obj)
    # When it is processed: it stops before the function's timeout, for a retry
    records, response = pipeline.poll(Invocation(300))
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    assert pipeline.item(obj)["last_error"].startswith("OutOfTime: the download was stopped at its deadline")


def test_a_file_that_runs_out_of_time_is_stopped_retried_and_then_failed(pipeline, capsys):
    # Given a file that takes far longer than an invocation with 250 ms left allows
    # (50 ms are kept back: processing must stop 200 ms from the start)
    rows = "".join(f"2025-01-01,item {i},{i},{i / 2}\n" for i in range(300_000))
    obj = pipeline.upload("incoming/large.csv", "date,product,quantity,price\n" + rows)
    pipeline.announce(obj)
    # When it is processed: it is stopped before the function's timeout, reported back
    # for a retry with the queue's backoff, and the reason names the setting to raise
    records, response = pipeline.poll(Invocation(250))
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["status"] == "processing"
    # (on a loaded host the download can use the whole budget: stopped before processing)
    assert item["last_error"].startswith(
        (
            "OutOfTime: processing was stopped at its deadline",
            "OutOfTime: no time was left to start processing",
        )
    )
    assert "functions.processor.timeout_seconds" in item["last_error"]
    assert pipeline.queue.receive() == []
    # When every attempt runs out of time
    for _ in range(2):
        _expire_visibility(pipeline, records[0])
        records, _ = pipeline.poll(Invocation(250))
    # Then the last one records the failure, and no output was written
    item = pipeline.item(obj)
    assert (item["status"], item["attempts"]) == ("failed", 3)
    assert item["error"].startswith("gave up after 3 attempts: OutOfTime: ")
    assert pipeline.processed_keys() == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["FilesOutOfTime"], metrics["FilesFailed"]) == (3, 1)
    # And with time enough, the redriven message completes the file
    pipeline.announce(obj)
    assert pipeline.poll(Invocation(60_000))[1] == {"batchItemFailures": []}
    assert pipeline.item(obj)["row_count"] == 300_000


@pytest.mark.parametrize("slow", ["writing the outputs", "the query catalog's update"])
def test_a_file_not_marked_completed_in_time_is_not_marked_at_all(aws, monkeypatch, tmp_path, slow):
    # Given an invocation with 3 s left (600 ms kept back: processing must stop by 2.4 s, and
    # the file be marked completed by 2.7 s), and the step before the mark taking 2.8 s
    from handlers.dal import s3

    if slow == "writing the outputs":
        real = s3.put_json

        def slow_put_json(*args, **kwargs):
            time.sleep(2.8)
            return real(*args, **kwargs)

        monkeypatch.setattr(s3, "put_json", slow_put_json)
    else:  # the Glue table is brought in step just before the mark
        monkeypatch.setenv("GLUE_DATABASE", "headrace")

        def slow_sync_table(*args, **kwargs):
            time.sleep(2.8)

        monkeypatch.setattr(process_object, "sync_table", slow_sync_table)
    pipeline = Pipeline(monkeypatch, tmp_path)
    obj = pipeline.upload("incoming/slow-write.csv", SALES)
    pipeline.announce(obj)
    # When it is processed
    records, response = pipeline.poll(Invocation(3_000))
    # Then it is not marked completed with too little time left to send its event (an
    # invocation cut off there leaves it completed and never loaded): it is retried, with
    # the setting to raise, and its outputs are removed
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["status"] == "processing"
    assert item["last_error"].startswith("OutOfTime: too little of the invocation was left to mark")
    assert "functions.processor.timeout_seconds" in item["last_error"]
    assert pipeline.processed_keys() == [] and pipeline.published() == []


@pytest.mark.parametrize(
    ("where", "error", "reason", "setting", "metric"),
    [
        # DuckDB's memory limit is too small for the file
        (
            "process_file",
            OutOfMemory("processing needed more memory than DuckDB's limit (128MB)"),
            "OutOfMemory: processing needed more memory than DuckDB's limit",
            "memory_mb",
            "FilesOutOfMemory",
        ),
        # the scratch space fills up while the raw file is downloaded
        (
            "s3.save_body",
            OSError(errno.ENOSPC, "No space left on device"),
            f"OutOfScratchSpace: the file ({len(SALES)} bytes) did not fit in the scratch space",
            "ephemeral_storage_mb",
            "FilesOutOfScratchSpace",
        ),
    ],
)
def test_a_file_too_large_for_a_limit_of_the_function_is_retried_with_the_setting_to_raise(
    pipeline, monkeypatch, capsys, where, error, reason, setting, metric
):
    def at_the_limit(*args, **kwargs):
        raise error

    monkeypatch.setattr(f"handlers.logic.process_object.{where}", at_the_limit)
    obj = pipeline.upload("incoming/large.csv", SALES)
    pipeline.announce(obj)
    # When it is processed: it is not failed as bad content, but retried, and the reason
    # names the setting that fixes it (then the DLQ can be redriven)
    records, response = pipeline.poll()
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["status"] == "processing"
    assert item["last_error"].startswith(reason)
    assert f"raise functions.processor.{setting}" in item["last_error"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics[metric], metrics["FilesFailed"]) == (1, 0)


def test_a_file_larger_than_the_free_scratch_space_is_not_downloaded(pipeline, monkeypatch):
    # Given a scratch space with less room than the file (the download failed only once it
    # had filled the space: gigabytes later, on every attempt)
    usage = shutil.disk_usage(tempfile.gettempdir())
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=len(SALES) - 1))
    downloads = []
    monkeypatch.setattr(process_object.s3, "save_body", lambda *args, **kwargs: downloads.append(args))
    obj = pipeline.upload("incoming/large.csv", SALES)
    pipeline.announce(obj)
    # When it is processed: retried with the setting to raise, and never downloaded
    records, response = pipeline.poll()
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["last_error"].startswith(
        f"OutOfScratchSpace: the file ({len(SALES):,} bytes) is larger than the scratch space has "
        f"free ({len(SALES) - 1:,} bytes of "
    )
    assert "raise functions.processor.ephemeral_storage_mb" in item["last_error"]
    assert downloads == []


def test_an_archived_object_fails_at_once_saying_to_restore_it(pipeline):
    # Given an object in an archive storage class, which S3 refuses to GET until restored
    body = SALES.encode()
    response = pipeline.s3.put_object(
        Bucket=pipeline.raw, Key="incoming/old.csv", Body=body, StorageClass="GLACIER"
    )
    obj = {"key": "incoming/old.csv", "version": response["VersionId"], "etag": response["ETag"].strip('"')}
    obj["size"] = len(body)
    pipeline.announce(obj)
    # When it is processed: failed on the first attempt (retries cannot help), with what to do
    records, response = pipeline.poll()
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["status"] == "failed"
    assert item["error"].startswith(
        "the object is archived (GLACIER) and cannot be read until it is restored"
    )
    assert "headrace replay" in item["error"]


def test_an_object_encrypted_with_a_customer_key_fails_at_once_saying_why(pipeline, capsys):
    from botocore.exceptions import ClientError

    from handlers.dal.aws import download_client

    # Given an object uploaded with SSE-C, which S3 refuses to GET without the customer's
    # key (400 InvalidRequest; moto serves it all the same, so S3's answer is stood in for)
    obj = pipeline.upload("incoming/secret.csv", SALES)
    message = (
        "The object was stored using a form of Server Side Encryption. "
        "The correct parameters must be provided to retrieve the object."
    )

    def refuse(params, **_):
        if params.get("Key") == obj["key"]:
            raise ClientError({"Error": {"Code": "InvalidRequest", "Message": message}}, "GetObject")

    download_client().meta.events.register("before-parameter-build.s3.GetObject", refuse)
    try:
        pipeline.announce(obj)
        # When it is processed: failed on the first attempt, not retried as transient
        records, response = pipeline.poll()
    finally:
        download_client().meta.events.unregister("before-parameter-build.s3.GetObject", refuse)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = pipeline.item(obj)
    assert item["status"] == "failed"
    assert f"S3 refuses to read the object (InvalidRequest: {message})" in item["error"]
    assert "customer-provided key (SSE-C)" in item["error"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics.get("FilesFailed"), metrics.get("FilesRetried")) == (1, None)


def test_a_folder_marker_is_ignored_not_failed(pipeline, capsys):
    # Given the S3 console's "Create folder" (an empty key ending in '/'), routed when
    # raw_suffixes is empty
    folder = pipeline.upload("incoming/sales/", b"")
    pipeline.announce(folder)
    # When it is processed: acknowledged, and nothing is recorded or counted for it
    _, response = pipeline.poll()
    assert response == {"batchItemFailures": []}
    assert pipeline.item(folder) == {}
    assert "FilesIgnored" not in emitted_metrics(capsys.readouterr().out)


def test_a_key_without_one_of_the_raw_suffixes_is_ignored_not_failed(pipeline, monkeypatch, capsys, caplog):
    # Given the processor's suffixes (the rule routes every key under the prefix)
    settings = pipeline.handler.settings.model_copy(update={"raw_suffixes": (".csv", ".log.*")})
    monkeypatch.setattr(pipeline.handler, "settings", settings)
    readme = pipeline.upload("incoming/sales/readme.md", "# notes")
    rotated = pipeline.upload("incoming/app.log.1", "2024-01-15T10:00:00Z ERROR x\n")
    blank = pipeline.upload("incoming/sales/2026-01.csv ", "a,b\n1,2\n")  # a name pasted with a blank
    pipeline.announce(readme, rotated, blank)
    # When they are processed: the readme and the blank-ended name are acknowledged with
    # nothing recorded for them, but counted, and the log says why, naming the file
    _, response = pipeline.poll()
    assert response == {"batchItemFailures": []}
    assert pipeline.item(readme) == {} and pipeline.item(blank) == {}
    assert emitted_metrics(capsys.readouterr().out)["FilesIgnored"] == 2
    assert "'readme.md' ends in none of the raw suffixes (.csv, .log.*)" in caplog.text
    assert (
        "'2026-01.csv ' ends in none of the raw suffixes (.csv, .log.*): it ends in whitespace" in caplog.text
    )
    # and the rotated log, which a suffix's '*' matches, is processed
    assert pipeline.item(rotated)["status"] == "completed"


def test_hidden_files_are_ignored_not_failed(pipeline, capsys, caplog):
    # Given a folder zipped on a Mac and extracted elsewhere, then uploaded: each file's
    # AppleDouble resource fork (binary) beside it, under __MACOSX/ and as ._name
    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    data = pipeline.upload("incoming/sales/2026-01.csv", "a,b\n1,2\n")
    forks = [
        pipeline.upload("incoming/__MACOSX/sales/._2026-01.csv", fork),
        pipeline.upload("incoming/sales/._2026-01.csv", fork),
    ]
    pipeline.announce(data, *forks)
    # When they are processed: the forks are skipped with nothing recorded, not failed (each
    # would have reached the DLQ and paged), counted and named; the data file completes
    _, response = pipeline.poll()
    assert response == {"batchItemFailures": []}
    assert [pipeline.item(f) for f in forks] == [{}, {}]
    assert pipeline.item(data)["status"] == "completed"
    assert emitted_metrics(capsys.readouterr().out)["FilesIgnored"] == 2
    assert "a hidden file ('__MACOSX')" in caplog.text


def test_a_raw_prefix_in_a_dot_folder_does_not_hide_its_files(pipeline, monkeypatch, capsys):
    # Given a stack whose raw_prefix is a dot folder (the config accepts it)
    monkeypatch.setenv("RAW_PREFIX", "landing/.raw/")
    pipeline.handler = importlib.reload(pipeline.handler)
    data = pipeline.upload("landing/.raw/sales/2026-01.csv", "a,b\n1,2\n")
    pipeline.announce(data)
    # When it is processed, then the file completes: only names below the prefix hide one
    _, response = pipeline.poll()
    assert response == {"batchItemFailures": []}
    assert pipeline.item(data)["status"] == "completed"
    assert "FilesIgnored" not in emitted_metrics(capsys.readouterr().out)


def _expire_visibility(pipeline, record):
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queue.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
    )


def test_processed_keys_are_stable_per_version():
    at = datetime(2025, 1, 2, tzinfo=UTC)
    a = processed_keys("incoming/sales/x.csv", "v1", "incoming/", at)
    assert a == processed_keys("incoming/sales/x.csv", "v1", "incoming/", at)
    assert a.parquet != processed_keys("incoming/sales/x.csv", "v2", "incoming/", at).parquet
    assert a.parquet.startswith("parquet/dataset=sales/ingest_date=2025-01-02/x--")


def test_crash_switch_fails_the_first_delivery_and_the_file_recovers(pipeline, monkeypatch):
    # Given the crash switch at 100% and two files in one batch
    monkeypatch.setattr(
        pipeline.handler, "settings", pipeline.handler.settings.model_copy(update={"crash_rate": 1.0})
    )
    a, b = pipeline.upload("incoming/a.csv", SALES), pipeline.upload("incoming/b.csv", SALES)
    pipeline.announce(a, b)
    records = pipeline.queue.receive()
    # When the invocation crashes mid-batch, nothing is acknowledged
    with pytest.raises(SimulatedCrash):
        pipeline.invoke(*records)
    assert {pipeline.item(a)["status"], pipeline.item(b)["status"]} == {"received"}
    # When the messages come back after their visibility timeout
    for record in records:
        _expire_visibility(pipeline, record)
    _, response = pipeline.poll()
    # Then both files complete, once each
    assert response == {"batchItemFailures": []}
    assert (pipeline.item(a)["status"], pipeline.item(b)["status"]) == ("completed", "completed")
    assert len(pipeline.published()) == 2


def test_an_invocation_killed_after_the_completed_mark_is_finished_by_the_redelivery_once(
    pipeline, monkeypatch
):
    # Given an invocation killed between marking the file completed and sending its "File
    # Processed" event: the item says completed, nothing will load it, and Powertools'
    # record of the version is left INPROGRESS (a kill runs no cleanup)
    real_publish = process_object.events.publish_file_processed
    kills = []

    def killed_once(*args, **kwargs):
        if not kills:
            kills.append(1)
            raise SimulatedCrash("killed before the event was sent")
        real_publish(*args, **kwargs)

    monkeypatch.setattr(process_object.events, "publish_file_processed", killed_once)
    obj = pipeline.upload("incoming/sales/jan.csv", SALES)
    pipeline.announce(obj)
    records = pipeline.queue.receive()
    context = LambdaContext()
    with pytest.raises(SimulatedCrash):
        pipeline.invoke(*records, context=context)
    assert pipeline.item(obj)["status"] == "completed" and pipeline.published() == []
    # Then the record in progress expires with the killed invocation's time, not with the
    # idempotency window (a day): else every redelivery would be refused as "in progress"
    # until the message reached the DLQ, the file never loaded
    idempotency = boto3.resource("dynamodb", region_name=REGION).Table("idempotency")
    [record] = idempotency.scan()["Items"]
    ends_ms = (time.time() * 1000) + context.get_remaining_time_in_millis()
    assert record["status"] == "INPROGRESS" and ends_ms - 60_000 < record["in_progress_expiration"] <= ends_ms
    # When it is redelivered within that time, it is handed back, not failed nor redone
    _expire_visibility(pipeline, records[0])
    records, response = pipeline.poll()
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    assert "last_error" not in pipeline.item(obj) and kills == [1]
    # When it is redelivered once the killed invocation's time is over (moved back by it)
    idempotency.update_item(
        Key={"id": record["id"]},
        UpdateExpression="SET in_progress_expiration = in_progress_expiration - :ran",
        ExpressionAttributeValues={":ran": context.get_remaining_time_in_millis() + 1_000},
    )
    _expire_visibility(pipeline, records[0])
    _, response = pipeline.poll()
    # Then the file is completed with one set of outputs and one event for the loader
    assert response == {"batchItemFailures": []}
    item = pipeline.item(obj)
    assert item["status"] == "completed"
    assert sorted(pipeline.processed_keys()) == sorted([item["parquet_key"], item["summary_key"]])
    [event] = pipeline.published()
    assert (event["object_key"], event["parquet_key"], event["row_count"]) == (
        obj["key"],
        item["parquet_key"],
        3,
    )
    # and a later duplicate is acknowledged without another event
    pipeline.announce(obj)
    assert pipeline.poll()[1] == {"batchItemFailures": []} and pipeline.published() == []


def test_a_version_uploaded_in_the_same_second_after_the_older_one_was_checked_still_wins(
    pipeline, monkeypatch
):
    # Given v1 past its "replaced meanwhile" check, and v2 uploaded in the same second just
    # then (S3 event times have second precision: both versions carry the same uploaded_at),
    # its batch already recording it received
    second = datetime.now(UTC).replace(microsecond=0)

    v1 = pipeline.upload("incoming/tie/t.csv", SALES)
    real = process_object._replaced_meanwhile
    newer: dict = {}

    def newer_version_arrives(ref):
        answer = real(ref)
        if not newer:
            newer.update(pipeline.upload("incoming/tie/t.csv", SALES + "2025-01-04,Gizmo,1,9.99\n"))
            pipeline.handler.store.mark_received(_ref_of(pipeline, newer, second), datetime.now(UTC))
        return answer

    monkeypatch.setattr(process_object, "_replaced_meanwhile", newer_version_arrives)
    pipeline.queue.send(pipeline.event(v1, second))
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    assert pipeline.item(v1)["uploaded_at"] == pipeline.item(newer)["uploaded_at"]  # a tie
    # When v2 (the key's current version, the newest by S3's order) is processed
    monkeypatch.setattr(process_object, "_replaced_meanwhile", real)
    pipeline.queue.send(pipeline.event(newer, second))
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    # Then v2 completes and replaces v1, not the other way round
    assert pipeline.item(newer)["status"] == "completed"
    assert "superseded_by" not in pipeline.item(newer)
    assert pipeline.item(v1)["superseded_by"] == newer["version"]
    assert pipeline.processed_keys() == sorted(
        [pipeline.item(newer)["parquet_key"], pipeline.item(newer)["summary_key"]]
    )


def test_versions_of_one_second_are_ordered_by_the_s3_sequencer_when_a_newer_one_is_pending(
    pipeline, monkeypatch
):
    # Given three uploads of a key within one second (X, A, N: S3's sequencers rise in that
    # order, the event times tie): X completed, then A completes while N, uploaded just
    # after A's "replaced meanwhile" check, waits (A is no longer current when it retires
    # the versions before it)
    second = datetime.now(UTC).replace(microsecond=0)

    def event(obj, sequencer):
        body = json.loads(pipeline.event(obj, second))
        body["detail"]["object"]["sequencer"] = sequencer
        return json.dumps(body)

    key = "incoming/seq/s.csv"
    x = pipeline.upload(key, SALES)
    pipeline.queue.send(event(x, "0062A1F4B03C5E1A00"))
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    a = pipeline.upload(key, SALES + "2025-01-04,Gizmo,1,9.99\n")
    real = process_object._replaced_meanwhile
    newest: dict = {}

    def n_arrives(ref):
        answer = real(ref)
        if not newest:
            newest.update(pipeline.upload(key, b"\x00\x01\x02 not records \xff"))
        return answer

    monkeypatch.setattr(process_object, "_replaced_meanwhile", n_arrives)
    pipeline.queue.send(event(a, "0062A1F4B03C5E1B00"))
    assert pipeline.poll()[1] == {"batchItemFailures": []}
    monkeypatch.setattr(process_object, "_replaced_meanwhile", real)
    # When N, the newest, cannot be processed (it fails: A stays the key's data)
    pipeline.queue.send(event(newest, "0062A1F4B03C5E1C00"))
    pipeline.poll()
    assert pipeline.item(newest)["status"] == "failed"
    # Then X, older than A by S3's sequencer, was replaced by A: only A's outputs remain
    assert pipeline.item(a)["status"] == "completed" and "superseded_by" not in pipeline.item(a)
    assert pipeline.item(x)["superseded_by"] == a["version"]
    assert pipeline.processed_keys() == sorted(
        [pipeline.item(a)["parquet_key"], pipeline.item(a)["summary_key"]]
    )


def _log_lines(out: str) -> list[dict]:
    """The JSON log lines of ``capture_logs`` (each twice: the logger's and the root's)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]


def test_a_table_refusing_the_received_mark_fails_no_file_and_names_them(pipeline, monkeypatch):
    # Given an earlier invocation (its record's keys and correlation id on its log lines)
    from botocore.exceptions import ClientError

    with capture_logs(pipeline.handler) as logs:
        pipeline.process(pipeline.upload("incoming/earlier.csv", SALES))
    earlier = _log_lines(logs.getvalue())[-1]
    # and a batch of two files whose "received" mark DynamoDB throttles
    first = pipeline.upload("incoming/first.csv", SALES)
    second = pipeline.upload("incoming/second.csv", SALES)
    calls = []

    def throttled(ref, at):
        calls.append(ref.key)
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
            "UpdateItem",
        )

    monkeypatch.setattr(pipeline.handler.store, "mark_received", throttled)
    # When the batch is processed
    with capture_logs(pipeline.handler) as logs:
        response = pipeline.process(first, second)
    # Then the invocation does not fail (it failed whole: both files back after the
    # visibility timeout, no reason recorded on either) and both files complete
    assert response == {"batchItemFailures": []}
    assert (pipeline.item(first)["status"], pipeline.item(second)["status"]) == ("completed", "completed")
    # and the table is asked once, not once per file of a throttled batch
    assert calls == [first["key"]]
    # And one warning says so, naming the file and the error, with none of the earlier
    # invocation's keys: a search by its correlation id or key finds only its own lines
    lines = _log_lines(logs.getvalue())
    [warning] = {line["message"]: line for line in lines if line["level"] == "WARNING"}.values()
    assert "ProvisionedThroughputExceededException" in warning["exception"]
    assert (warning["object_key"], warning["version"]) == (first["key"], first["version"])
    assert "correlation_id" not in warning and "attempt" not in warning
    assert earlier["correlation_id"] not in {line.get("correlation_id") for line in lines}


def test_a_message_that_is_no_s3_event_is_logged_without_its_content(pipeline):
    # Given messages in the processing queue that are not S3 "Object Created" events (a
    # rule routing the wrong events, a message sent by hand), on their last receive
    pipeline.queue.send('{"detail-type": "Object Created", "detail": {"secret": "s3cr3t"}}', "not json")
    records = pipeline.queue.receive()
    for record in records:
        record["attributes"]["ApproximateReceiveCount"] = "3"
    # When the processor is given them
    with capture_logs(pipeline.handler) as logs:
        response = pipeline.invoke(*records)
    # Then both fail, and each has an error line saying why, its message id and its fate
    # (the batch processor refused them before the handler saw them: nothing logged them,
    # and the DLQ they reach holds no metadata item to say why)
    ids = {r["messageId"] for r in records}
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == ids
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith('{"level"')]
    assert {
        (line["message"], line["message_id"], line["attempt"], line["fate"])
        for line in lines
        if line["level"] == "ERROR"
    } == {("malformed message: not an S3 Object Created event", i, 3, "moves to the DLQ") for i in ids}
    # without their content
    assert "s3cr3t" not in logs.getvalue() and "not json" not in logs.getvalue()
