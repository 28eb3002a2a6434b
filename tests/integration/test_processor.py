"""The processor Lambda with moto S3/DynamoDB/EventBridge, called with SQS batches."""

from __future__ import annotations

import duckdb

from handlers.logic.layout import processed_keys

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"


def test_good_file_is_completed_with_outputs_and_event(pipeline, tmp_path):
    # Given a CSV uploaded to the raw bucket
    obj = pipeline.upload("incoming/sales/jan.csv", SALES)
    # When the processor receives its event
    response = pipeline.invoke(pipeline.sqs_record(obj))
    # Then the batch succeeds and the metadata item holds the summary
    assert response == {"batchItemFailures": []}
    item = pipeline.item(obj)
    assert item["status"] == "completed"
    assert item["row_count"] == 3
    assert item["schema"] == {"date": "date", "product": "string", "quantity": "int", "price": "float"}
    assert float(item["quality_issues"]["missing_values"]["quantity"]["percentage"]) == 33.33
    assert item["dataset"] == "sales"
    assert {"queue_wait", "download", "process", "write", "total"} <= set(item["timings_ms"])
    assert item["ttl"] > 0 and item["day"] == item["uploaded_at"][:10]
    # and the Parquet is where the layout says, with the rows
    parquet = tmp_path / "out.parquet"
    pipeline.s3.download_file(pipeline.processed, item["parquet_key"], str(parquet))
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{parquet}')").fetchall()
    assert rows == [(3,)]
    assert item["parquet_key"].startswith("parquet/dataset=sales/ingest_date=")
    summary = pipeline.s3.get_object(Bucket=pipeline.processed, Key=item["summary_key"])["Body"].read()
    assert b'"row_count": 3' in summary
    # and exactly one "File Processed" event was published
    [event] = pipeline.published()
    assert (event["object_key"], event["row_count"], event["parquet_key"]) == (
        obj["key"],
        3,
        item["parquet_key"],
    )


def test_poison_files_never_block_the_batch(pipeline):
    # Given a batch with a good file, a binary file, an empty object, a deleted object,
    # a key with spaces and unicode, and a message that is not an S3 event
    good = pipeline.upload("incoming/a.csv", SALES)
    binary = pipeline.upload("incoming/b.csv", bytes(range(256)) * 8)
    empty = pipeline.upload("incoming/empty.csv", b"")
    gone = pipeline.upload("incoming/gone.csv", SALES)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=gone["key"], VersionId=gone["version"])
    unicode_key = pipeline.upload("incoming/données été/Q1 report ü.csv", SALES)
    garbage = pipeline.sqs_record(good, body="not json at all")
    records = [pipeline.sqs_record(o) for o in (good, binary, empty, gone, unicode_key)] + [garbage]
    # When they are processed together
    response = pipeline.invoke(*records)
    # Then only the unparseable message is reported back for retry (it will reach the DLQ)
    assert response == {"batchItemFailures": [{"itemIdentifier": garbage["messageId"]}]}
    # and each file has a clear recorded outcome
    assert pipeline.item(good)["status"] == "completed"
    assert pipeline.item(unicode_key)["status"] == "completed"
    assert pipeline.item(unicode_key)["dataset"] == "donn_es_t"
    assert pipeline.item(binary)["status"] == "failed"
    assert "binary content" in pipeline.item(binary)["error"]
    assert pipeline.item(empty)["error"] == "the file is empty (0 bytes)"
    assert pipeline.item(gone)["error"] == "the object was deleted before it could be processed"


def test_url_encoded_key_in_the_event_is_found(pipeline):
    obj = pipeline.upload("incoming/my file.csv", SALES)
    encoded = dict(obj, key="incoming/my%20file.csv")
    assert pipeline.invoke(pipeline.sqs_record(encoded)) == {"batchItemFailures": []}
    assert pipeline.item(encoded)["status"] == "completed"


def test_redelivered_object_is_processed_once(pipeline):
    # Given the same object version announced twice (S3 retry, SQS redelivery)
    obj = pipeline.upload("incoming/sales.csv", SALES)
    first, second = pipeline.sqs_record(obj), pipeline.sqs_record(obj, receive_count=2)
    # When both are processed, in separate invocations and within one batch
    pipeline.invoke(first)
    pipeline.invoke(second)
    pipeline.invoke(pipeline.sqs_record(obj), pipeline.sqs_record(obj))
    # Then the work (and its event) happened once
    assert len(pipeline.published()) == 1
    assert pipeline.item(obj)["status"] == "completed"
    assert pipeline.item(obj)["attempts"] == 1


def test_a_new_version_of_the_same_key_is_processed_again(pipeline):
    v1 = pipeline.upload("incoming/sales.csv", SALES)
    v2 = pipeline.upload("incoming/sales.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    pipeline.invoke(pipeline.sqs_record(v1), pipeline.sqs_record(v2))
    assert pipeline.item(v1)["row_count"] == 3
    assert pipeline.item(v2)["row_count"] == 4
    assert pipeline.item(v1)["parquet_key"] != pipeline.item(v2)["parquet_key"]


def test_transient_failure_is_retried_then_recorded_as_failed(pipeline, monkeypatch):
    # Given the processed bucket is unavailable (a transient failure)
    obj = pipeline.upload("incoming/sales.csv", SALES)
    healthy = pipeline.handler.settings
    monkeypatch.setattr(
        pipeline.handler, "settings", healthy.model_copy(update={"processed_bucket": "missing-bucket"})
    )
    # When the first receive fails
    record = pipeline.sqs_record(obj, receive_count=1)
    assert pipeline.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # Then the file is not failed yet: the reason is noted for operators
    item = pipeline.item(obj)
    assert item["status"] == "processing"
    assert "NoSuchBucket" in item["last_error"]
    # When the last allowed receive (MAX_RECEIVE_COUNT=3) fails too
    last = pipeline.sqs_record(obj, receive_count=3)
    assert pipeline.invoke(last) == {"batchItemFailures": [{"itemIdentifier": last["messageId"]}]}
    # Then it is recorded as failed with the reason, and will sit in the DLQ
    item = pipeline.item(obj)
    assert item["status"] == "failed"
    assert item["error"].startswith("gave up after 3 attempts: ")
    # And once the cause is fixed, a retry (redrive) completes it
    monkeypatch.setattr(pipeline.handler, "settings", healthy)
    assert pipeline.invoke(pipeline.sqs_record(obj, receive_count=1)) == {"batchItemFailures": []}
    assert pipeline.item(obj)["status"] == "completed"
    assert "error" not in pipeline.item(obj)


def test_processed_keys_are_stable_per_version():
    from datetime import UTC, datetime

    at = datetime(2025, 1, 2, tzinfo=UTC)
    a = processed_keys("incoming/sales/x.csv", "v1", "incoming/", at)
    assert a == processed_keys("incoming/sales/x.csv", "v1", "incoming/", at)
    assert a.parquet != processed_keys("incoming/sales/x.csv", "v2", "incoming/", at).parquet
    assert a.parquet.startswith("parquet/dataset=sales/ingest_date=2025-01-02/x--")
