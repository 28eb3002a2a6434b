"""The ingest worker Lambda with moto (SQS, DynamoDB, KMS): redaction with the shared PII
rules, idempotent writes under redelivery and replay, partial batch failures, the DLQ, and
encrypted originals."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handlers.dal.tenant_logs import decrypt_original
from handlers.logic.faults import SimulatedCrash
from handlers.logic.processing.pii import PiiOptions

from .conftest import STACK, Invocation
from .ingest_support import MAX_RECEIVE_COUNT, IngestStack, capture_logs


@pytest.fixture
def stack(aws, monkeypatch) -> IngestStack:
    return IngestStack(monkeypatch)


@pytest.fixture
def acme(stack) -> str:
    return stack.issue_key("acme")


def message(
    log_id: str = "m-1", text: str = "User 555-0199 mailed jane@example.com", tenant: str = "acme"
) -> str:
    return json.dumps(
        {
            "tenant_id": tenant,
            "log_id": log_id,
            "source": "json",
            "text": text,
            "received_at": "2025-03-01T12:00:00Z",
        }
    )


def emitted_metrics(output: str) -> dict[str, float]:
    """Sum of every EMF metric printed (Powertools flushes one JSON document per invocation)."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "headrace"
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return totals


def test_api_to_worker_stores_the_redacted_record(stack, acme, capsys):
    # Given a record accepted by the API
    text = "User 555-0199 paid with 4111 1111 1111 1111, mail jane@example.com"
    assert stack.post({"tenant_id": "acme", "text": text, "log_id": "pay-1"}, key=acme).status == 202
    # When the worker consumes the queue
    response = stack.deliver()
    # Then the batch succeeds, the queue is empty, and the item is stored redacted
    assert response["batchItemFailures"] == [] and stack.queue_depth() == 0
    item = stack.stored("acme", "pay-1")
    assert item is not None
    assert item["text"] == PiiOptions().rules.redact(text)[0]
    assert item["text"] == "User [REDACTED:PHONE] paid with [REDACTED:CARD], mail [REDACTED:EMAIL]"
    assert item["redactions"] == {"phone": 1, "card": 1, "email": 1}
    assert (
        item["source"] == "json"
        and item["received_at"].endswith("Z")
        and item["stored_at"] >= item["received_at"]
    )
    assert item["ttl"] > 0
    assert "original_ciphertext" not in item  # KEEP_ORIGINAL is off
    assert emitted_metrics(capsys.readouterr().out) == {"LogsStored": 1}


def test_redelivered_message_is_stored_once_and_counted_as_duplicate(stack, capsys):
    # Given the same message delivered in two invocations and twice within one batch
    first = stack.invoke_worker(stack.sqs_record(message("dup"), receive_count=1))
    stack.logs_table.update_item(
        Key={"tenant_id": "acme", "log_id": "dup"},
        UpdateExpression="SET marker = :m",
        ExpressionAttributeValues={":m": 1},
    )
    again = stack.invoke_worker(stack.sqs_record(message("dup", text="changed"), receive_count=2))
    both = stack.invoke_worker(stack.sqs_record(message("dup")), stack.sqs_record(message("dup")))
    # Then every delivery succeeds, and the first write is never replaced
    assert first == again == both == {"batchItemFailures": []}
    item = stack.stored("acme", "dup")
    assert item["marker"] == 1 and item["text"].startswith("User [REDACTED:PHONE]")
    assert len(stack.all_stored()) == 1
    # (the copy with another text is counted apart: see the next test)
    assert emitted_metrics(capsys.readouterr().out) == {
        "LogsStored": 1,
        "LogsDuplicate": 2,
        "LogsConflict": 1,
    }


def test_a_log_id_reused_for_another_text_is_reported_as_a_conflict(stack, acme, capsys):
    # Given a stored record
    assert stack.post({"tenant_id": "acme", "text": "first", "log_id": "c-1"}, key=acme).status == 202
    stack.drain()
    capsys.readouterr()
    # When the client sends another text with the same log_id, and then the first text again
    assert stack.post({"tenant_id": "acme", "text": "second", "log_id": "c-1"}, key=acme).status == 202
    assert stack.post({"tenant_id": "acme", "text": "first", "log_id": "c-1"}, key=acme).status == 202
    with capture_logs(stack.worker) as logs:
        stack.drain()
    # Then the first record is kept, and the reuse is told apart from the harmless retry
    assert [(i["log_id"], i["text"]) for i in stack.all_stored()] == [("c-1", "first")]
    assert emitted_metrics(capsys.readouterr().out) == {"LogsConflict": 1, "LogsDuplicate": 1}
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    warnings = {
        (line["message"], line["tenant_id"], line["log_id"]) for line in lines if line["level"] == "WARNING"
    }
    assert warnings == {
        ("log_id reused for a different text: the stored record is kept, this one is dropped", "acme", "c-1")
    }
    assert "second" not in logs.getvalue()  # the text itself is never logged


def test_client_replay_with_the_same_log_id_is_stored_once(stack, acme):
    # Given a client that sends the same log_id twice (a retry after a timeout), the second with other text
    assert stack.post({"tenant_id": "acme", "text": "first", "log_id": "r-1"}, key=acme).status == 202
    assert stack.post({"tenant_id": "acme", "text": "second", "log_id": "r-1"}, key=acme).status == 202
    # When both are consumed
    stack.drain()
    # Then one record exists, the first
    assert [(i["log_id"], i["text"]) for i in stack.all_stored()] == [("r-1", "first")]
    assert stack.logs(acme).json["items"][0]["text"] == "first"


def test_a_log_id_whose_record_expired_is_stored_again_not_dropped(stack, acme):
    # Given a record past its ttl that DynamoDB has not deleted yet (it may take days)
    assert stack.post({"tenant_id": "acme", "text": "old", "log_id": "e-1"}, key=acme).status == 202
    stack.drain()
    stack.logs_table.update_item(
        Key={"tenant_id": "acme", "log_id": "e-1"},
        UpdateExpression="SET #ttl = :past",
        ExpressionAttributeNames={"#ttl": "ttl"},
        ExpressionAttributeValues={":past": int(time.time()) - 60},
    )
    # When a record with its log id arrives
    assert stack.post({"tenant_id": "acme", "text": "new", "log_id": "e-1"}, key=acme).status == 202
    stack.drain()
    # Then it replaces the expired one (which would otherwise take it along when deleted)
    item = stack.stored("acme", "e-1")
    assert item["text"] == "new" and item["ttl"] > time.time()


def test_same_log_id_in_two_tenants_are_two_records(stack):
    stack.invoke_worker(
        stack.sqs_record(message("same", "acme text", "acme")),
        stack.sqs_record(message("same", "beta text", "beta")),
    )
    assert stack.stored("acme", "same")["text"] == "acme text"
    assert stack.stored("beta", "same")["text"] == "beta text"


def test_malformed_messages_fail_alone_and_reach_the_dlq(stack):
    # Given a queue with a good message and messages that are not ingest messages
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=message("good"))
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="not json")
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=message("x", tenant="Not A Tenant"))
    # When the worker polls until the queue is empty
    failures_per_poll = []
    for _ in range(MAX_RECEIVE_COUNT + 2):
        response = stack.deliver()
        if response["received"] == 0:
            break
        failures_per_poll.append(len(response["batchItemFailures"]))
    # Then the good one is stored, the bad ones are reported every time, then moved to the DLQ
    assert stack.stored("acme", "good") is not None
    assert failures_per_poll == [2] * MAX_RECEIVE_COUNT
    assert stack.queue_depth() == 0
    dead = stack.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"][:8] for m in dead) == sorted(
        ["not json", message("x", tenant="Not A Tenant")[:8]]
    )


def test_malformed_message_is_logged_without_its_content(stack):
    secret = message("x", text="secret 555-0199", tenant="NOT valid")
    with capture_logs(stack.worker) as logs:
        record = stack.sqs_record(secret, receive_count=MAX_RECEIVE_COUNT)
        assert stack.invoke_worker(record)["batchItemFailures"] == [{"itemIdentifier": record["messageId"]}]
    out = logs.getvalue()
    assert "malformed ingest message" in out and "moves to the DLQ" in out
    assert "secret" not in out and "555-0199" not in out


def test_store_failure_is_retried_then_given_up_to_the_dlq(stack, monkeypatch):
    # Given the logs table is unavailable
    store = stack.worker.store
    monkeypatch.setattr(store, "table_name", "no-such-table")
    good = stack.sqs_record(message("t-1"), receive_count=1)
    # When a record fails before its last allowed receive
    with capture_logs(stack.worker) as logs:
        assert stack.invoke_worker(good) == {"batchItemFailures": [{"itemIdentifier": good["messageId"]}]}
        last = stack.sqs_record(message("t-1"), receive_count=MAX_RECEIVE_COUNT)
        # and on its last one
        assert stack.invoke_worker(last) == {"batchItemFailures": [{"itemIdentifier": last["messageId"]}]}
    # Then both failures are reported (SQS redrives the message to the DLQ), and the log says so
    out = logs.getvalue()
    assert (
        "record failed; it will be retried" in out and "giving up on this record: it moves to the DLQ" in out
    )
    assert "555-0199" not in out
    # And once the table is back, a redriven copy is stored
    monkeypatch.setattr(store, "table_name", "tenant-logs")
    assert stack.invoke_worker(stack.sqs_record(message("t-1"), receive_count=1)) == {"batchItemFailures": []}
    assert stack.stored("acme", "t-1") is not None


def _table_refuses(stack, monkeypatch, log_id: str) -> None:
    """The logs table answers an InternalServerError to the write of ``log_id`` only."""
    real = stack.worker.store.put_once

    def put_once(item: dict[str, Any], original: str | None = None) -> dict[str, Any] | None:
        if item["log_id"] == log_id:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "PutItem")
        return real(item, original)

    monkeypatch.setattr(stack.worker.store, "put_once", put_once)


def test_one_failing_record_does_not_fail_the_batch(stack, monkeypatch):
    _table_refuses(stack, monkeypatch, "bad")
    records = [stack.sqs_record(message(i)) for i in ("a", "bad", "c")]
    assert stack.invoke_worker(*records) == {
        "batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]
    }
    assert {i["log_id"] for i in stack.all_stored()} == {"a", "c"}


def test_failed_records_are_counted_for_this_stacks_alarm(stack, monkeypatch, capsys):
    # Given a batch of a record the logs table refuses, a malformed message and a good record
    _table_refuses(stack, monkeypatch, "bad")
    records = [
        stack.sqs_record(message("bad")),
        stack.sqs_record("not json"),
        stack.sqs_record(message("ok")),
    ]
    capsys.readouterr()
    # When the worker handles it (the invocation succeeds: failures are per record, so the
    # function's Errors metric does not count them)
    response = stack.invoke_worker(*records)
    assert len(response["batchItemFailures"]) == 2
    # Then each failed record is counted (what the ingest-worker-failures alarm reads)
    out = capsys.readouterr().out
    assert emitted_metrics(out) == {"LogsFailed": 2, "LogsStored": 1}
    # under the service and this stack's name, the dimensions the alarm selects by
    documents = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert documents
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert [set(d) for d in directive["Dimensions"]] == [{"service", "stack"}]
        assert (document["service"], document["stack"]) == ("ingest-worker", STACK)


def test_records_there_is_no_time_left_to_start_are_reported_untouched(stack, monkeypatch):
    # Given a batch of three, in an invocation whose time the first record uses up
    # (60 s at the start: 10 s are kept back, and a record needs 10 s more to be started)
    context = Invocation(60_000, function_name="ingest-worker")
    real = stack.worker.store_message

    def slow_record(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        context.remaining_ms = 19_000
        return outcome

    monkeypatch.setattr(stack.worker, "store_message", slow_record)
    records = [stack.sqs_record(message(i)) for i in ("first", "second", "third")]
    # When the batch is handled
    response = stack.worker.lambda_handler({"Records": records}, context)
    # Then the first is stored and the others are handed back to be retried, before the timeout
    assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records[1:]]}
    assert [i["log_id"] for i in stack.all_stored()] == ["first"]


def test_simulated_crash_fails_the_first_delivery_only(stack):
    # Given the crash switch at 100%
    stack.configure(HEADRACE_CRASH_RATE="1")
    record = stack.sqs_record(message("c-1"))
    # When a message is delivered the first time, the invocation crashes and stores nothing
    with pytest.raises(SimulatedCrash):
        stack.invoke_worker(record)
    assert stack.all_stored() == []
    # When it is redelivered, it is stored: the switch tests recovery, not the DLQ
    record["attributes"]["ApproximateReceiveCount"] = "2"
    assert stack.invoke_worker(record) == {"batchItemFailures": []}
    assert [i["log_id"] for i in stack.all_stored()] == ["c-1"]


def test_original_is_kept_encrypted_under_the_tenant_context(stack, acme):
    # Given KEEP_ORIGINAL with a KMS key, and a record whose original exceeds one KMS call (4 KB)
    stack.configure(KEEP_ORIGINAL="true", ORIGINALS_KMS_KEY_ARN=stack.kms_key_arn)
    long_text = "call 555-0199 " + "é" * 3000  # 6014 UTF-8 bytes
    stack.post(
        [
            {"tenant_id": "acme", "text": "call 555-0199", "log_id": "o-1"},
            {"tenant_id": "acme", "text": long_text, "log_id": "o-2"},
            {"tenant_id": "acme", "text": "nothing to hide", "log_id": "o-3"},
        ],
        key=acme,
    )
    stack.drain()
    short, long, plain = (stack.stored("acme", i) for i in ("o-1", "o-2", "o-3"))
    # Then the stored text is redacted and the original decrypts back, piece by piece
    assert short["text"] == "call [REDACTED:PHONE]"
    assert decrypt_original(short) == "call 555-0199"
    assert len(long["original_ciphertext"]) == 2
    assert decrypt_original(long) == long_text
    assert b"555-0199" not in b"".join(bytes(p) for p in short["original_ciphertext"])
    # and nothing is kept when redaction changed nothing
    assert "original_ciphertext" not in plain and decrypt_original(plain) is None
    # and the ciphertext cannot be decrypted as another tenant's
    with pytest.raises(ClientError):
        stack.kms.decrypt(
            CiphertextBlob=bytes(short["original_ciphertext"][0]), EncryptionContext={"tenant_id": "beta"}
        )
    # and GET /logs never returns it
    assert all("original_ciphertext" not in i for i in stack.logs(acme).json["items"])


def test_worker_refuses_to_start_keeping_originals_without_a_key(stack):
    with pytest.raises(ValueError, match="ORIGINALS_KMS_KEY_ARN"):
        stack.configure(KEEP_ORIGINAL="true")
