"""The emulator's adjustments to moto: SQS attributes computed per key, with moto's own
values, and message operations atomic per queue (``patch_sqs``); DynamoDB key queries and
update expressions (``patch_dynamodb``) and EventBridge input paths (``patch_events``)
answering exactly as moto does."""

from __future__ import annotations

import base64
import contextlib
import json
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sqs.models import Queue, SQSBackend

from headrace.local import motoserver
from headrace.local.executor import InvokeBridge
from headrace.local.motoserver import (
    QUEUE_MESSAGE_OPERATIONS,
    _LazyQueueAttributes,
    patch_dynamodb,
    patch_events,
    patch_lambda,
    patch_models,
    patch_s3,
    patch_sqs,
)
from headrace.local.sandbox import Invocation

ACCOUNT = "123456789012"
REDRIVE = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq", "maxReceiveCount": 5})
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"}],
    }
)
QUEUES = {
    "plain": ("plain", {}),
    "kms, policy and redrive": (
        "encrypted",
        {"KmsMasterKeyId": "alias/headrace", "Policy": POLICY, "RedrivePolicy": REDRIVE},
    ),
    "fifo": ("ordered.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
}


def _queue(name: str, attributes: dict[str, str]) -> Queue:
    return Queue(name, region="us-east-1", account_id=ACCOUNT, **attributes)


@pytest.mark.parametrize("kind", QUEUES)
def test_same_keys_and_values_as_moto(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sqs import models

    # moto resolves a redrive policy's target queue in its backend
    dlq = Queue("dlq", region="us-east-1", account_id=ACCOUNT)
    monkeypatch.setattr(models.sqs_backends[ACCOUNT]["us-east-1"], "queues", {"dlq": dlq})
    name, attributes = QUEUES[kind]
    queue = _queue(name, attributes)
    lazy = _LazyQueueAttributes(queue)

    assert dict(lazy) == queue.attributes
    assert list(lazy) == list(queue.attributes)
    assert lazy.get("NotAnAttribute") is None
    assert "NotAnAttribute" not in lazy
    if kind != "plain":
        assert lazy["Policy" if "Policy" in attributes else "ContentBasedDeduplication"] is not None


def test_reading_one_attribute_does_not_count_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue("busy", {})

    def counted(_: Queue) -> int:
        raise AssertionError("counted every message to read one attribute")

    monkeypatch.setattr(Queue, "approximate_number_of_messages", property(counted))
    lazy = _LazyQueueAttributes(queue)

    assert lazy["MessageRetentionPeriod"] == 345600
    assert "ApproximateNumberOfMessages" in lazy  # membership does not compute the value
    assert lazy.get("ContentBasedDeduplication") is None  # not a FIFO queue: no such key
    with pytest.raises(AssertionError, match="counted"):
        lazy["ApproximateNumberOfMessages"]


@pytest.fixture
def patched_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``patch_sqs`` as the emulator applies it, undone after the test."""
    from moto.sqs import models

    for name in ("unix_time", "unix_time_millis"):
        monkeypatch.setattr(models, name, getattr(models, name))
    monkeypatch.setattr(Queue, "attributes", Queue.attributes)
    monkeypatch.setattr(Queue, "delete_message", Queue.delete_message)
    for name in QUEUE_MESSAGE_OPERATIONS:
        monkeypatch.setattr(SQSBackend, name, getattr(SQSBackend, name))
    patch_sqs()


def _backend() -> SQSBackend:
    backend = SQSBackend("us-east-1", ACCOUNT)
    backend.create_queue("work", VisibilityTimeout="60")
    return backend


@pytest.mark.usefixtures("patched_sqs")
def test_a_delete_waits_for_the_queue_lock() -> None:
    backend = _backend()
    backend.send_message("work", "a")
    [message] = backend.receive_message("work", 1, 0, 60)
    queue = backend.get_queue("work")
    deleted = threading.Event()

    def delete() -> None:
        backend.delete_message("work", message.receipt_handle)
        deleted.set()

    with queue._messages_lock:  # a send in progress on another thread
        worker = threading.Thread(target=delete)
        worker.start()
        assert not deleted.wait(0.3)
    assert deleted.wait(5)
    worker.join()
    assert queue._messages == []


@pytest.mark.usefixtures("patched_sqs")
def test_overlapping_deletes_and_sends_keep_every_message_once() -> None:
    """Two consumers deleting while a producer sends, as the ingest worker and API do.
    Without the lock moto's deletes overwrite each other's message lists: about 900 of the
    1,000 deleted messages come back, and a message sent in between can vanish."""
    backend = _backend()
    for i in range(1000):
        backend.send_message("work", f"old-{i}")
    in_flight = list(backend.get_queue("work")._messages)
    for message in in_flight:  # received, as a consumer's receive marks them
        message.mark_received(visibility_timeout=60)

    def send() -> None:
        for i in range(500):
            backend.send_message("work", f"new-{i}")

    def delete(messages: list) -> None:
        for message in messages:
            backend.delete_message("work", message.receipt_handle)

    threads = [
        threading.Thread(target=send),
        threading.Thread(target=delete, args=(in_flight[0::2],)),
        threading.Thread(target=delete, args=(in_flight[1::2],)),
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often, as a busy server does
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    bodies = sorted(m.body for m in backend.get_queue("work")._messages)
    assert bodies == sorted(f"new-{i}" for i in range(500))


def _deletions(backend: SQSBackend) -> list[Any]:
    """Deletes by a current handle, an earlier handle, the same again and an unknown
    one: what each answers and what the queue holds after it."""
    for body in ("a", "b", "c"):
        backend.send_message("work", body)
    first = backend.receive_message("work", 3, 0, 0)  # visible again at once
    again = {m.body: m for m in backend.receive_message("work", 3, 0, 60)}
    queue = backend.get_queue("work")
    outcomes: list[Any] = []
    for handle in (
        again["a"].receipt_handle,  # current
        next(m for m in first if m.body == "b").receipt_handle,  # from an earlier receive
        again["a"].receipt_handle,  # already deleted
        "not-a-handle",
    ):
        try:
            backend.delete_message("work", handle)
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        outcomes.append((sorted(m.body for m in queue._messages), len(queue.pending_messages)))
    return outcomes


def test_deleting_messages_answers_as_moto_does(request: pytest.FixtureRequest) -> None:
    expected = _deletions(_backend())
    request.getfixturevalue("patched_sqs")
    actual = _deletions(_backend())

    assert actual == expected
    assert actual[-2:] == ["ReceiptHandleIsInvalid", (["c"], 1)]


# ---------------------------------------------------------------- DynamoDB and EventBridge


@pytest.fixture
def patched_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """``patch_dynamodb`` as the emulator applies it, undone after the test."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.responses import DynamoHandler

    monkeypatch.setattr(Table, "query", Table.query)
    monkeypatch.setattr(Table, "all_items", Table.all_items)
    monkeypatch.setattr(UpdateExpressionParser, "make", UpdateExpressionParser.__dict__["make"])
    monkeypatch.setattr(validators, "deepcopy", validators.deepcopy)
    for name in ("__init__", "validate"):
        monkeypatch.setattr(
            validators.UpdateExpressionValidator, name, getattr(validators.UpdateExpressionValidator, name)
        )
    monkeypatch.setattr(
        DepthFirstTraverser, "nodes_to_be_processed", DepthFirstTraverser.nodes_to_be_processed
    )
    monkeypatch.setattr(DynamoHandler, "call_action", DynamoHandler.call_action)
    monkeypatch.setattr(Item, "project", Item.project)
    monkeypatch.setattr(ConditionExpressionParser, "parse", ConditionExpressionParser.parse)
    patch_dynamodb()


def _versions_table() -> Any:
    """A table keyed like the metadata table (object key + version), with a GSI by day."""
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    table = dynamodb.create_table(
        TableName="versions",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}, {"AttributeName": "v", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "k", "AttributeType": "S"},
            {"AttributeName": "v", "AttributeType": "S"},
            {"AttributeName": "day", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-day",
                "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with table.batch_writer() as batch:
        for k in range(30):
            for v in range(k % 4):
                nested = {"a": v, "b": [k, {"c": f"c{k}"}], "tags": {"x", "y"}}
                batch.put_item(
                    Item={
                        "k": f"key-{k}",
                        "v": f"{v:03d}",
                        "day": f"d{v}",
                        "n": k * 10 + v,
                        "m": nested,
                        "l": [k, v],
                    }
                )
    return table


QUERIES: dict[str, dict[str, Any]] = {
    "one key": {"KeyConditionExpression": Key("k").eq("key-7")},
    "one key, newest first, one page": {
        "KeyConditionExpression": Key("k").eq("key-11"),
        "ScanIndexForward": False,
        "Limit": 1,
    },
    "next page": {
        "KeyConditionExpression": Key("k").eq("key-11"),
        "ExclusiveStartKey": {"k": "key-11", "v": "001"},
    },
    "range condition": {"KeyConditionExpression": Key("k").eq("key-3") & Key("v").gte("001")},
    "filter": {"KeyConditionExpression": Key("k").eq("key-7"), "FilterExpression": Attr("n").gt(71)},
    "missing key": {"KeyConditionExpression": Key("k").eq("key-404")},
    "key without items": {"KeyConditionExpression": Key("k").eq("key-0")},
    "index": {"IndexName": "by-day", "KeyConditionExpression": Key("day").eq("d1")},
    "projection": {"KeyConditionExpression": Key("k").eq("key-7"), "ProjectionExpression": "v, n, absent"},
    "nested projection": {
        "KeyConditionExpression": Key("k").eq("key-11"),
        "ProjectionExpression": "#m.a, #m.b[1].c, #m.tags, #m.b[5], k, l[1]",
        "ExpressionAttributeNames": {"#m": "m"},
    },
    "projected index": {
        "IndexName": "by-day",
        "KeyConditionExpression": Key("day").eq("d2"),
        "ProjectionExpression": "k, m.b[0]",
    },
}


def _answers(queries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    with mock_aws():
        table = _versions_table()
        answers = {name: table.query(**query) for name, query in queries.items()}
        # a table with a hash key only (the tenant-keys shape), numeric keys
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        keys = dynamodb.create_table(
            TableName="keys",
            KeySchema=[{"AttributeName": "n", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "n", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for n in range(5):
            keys.put_item(Item={"n": n, "label": f"#{n}"})
        answers["hash key only"] = keys.query(KeyConditionExpression=Key("n").eq(3))
        answers["hash key only, missing"] = keys.query(KeyConditionExpression=Key("n").eq(9))
        return answers


def _comparable(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def test_key_queries_answer_as_moto_does(request: pytest.FixtureRequest) -> None:
    expected = _answers(QUERIES)
    request.getfixturevalue("patched_dynamodb")
    actual = _answers(QUERIES)

    assert actual.keys() == expected.keys()
    for name in actual:
        assert _comparable(actual[name]) == _comparable(expected[name]), name
    assert [i["v"] for i in actual["one key, newest first, one page"]["Items"]] == ["002"]
    assert actual["index"]["Count"] == 14  # the GSI still sees every partition
    assert actual["hash key only"]["Items"] == [{"n": 3, "label": "#3"}]
    assert actual["nested projection"]["Items"][0] == {
        "k": "key-11",
        "m": {"a": 0, "b": [{"c": "c11"}], "tags": {"x", "y"}},
        "l": [0],
    }


@contextlib.contextmanager
def _calls_of(owner: Any, method: str) -> Iterator[list[None]]:
    """Count the calls of ``owner.method`` inside the block: one entry each."""
    calls: list[None] = []
    real = getattr(owner, method)

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return real(self, *args, **kwargs)

    setattr(owner, method, counting)
    try:
        yield calls
    finally:
        setattr(owner, method, real)


def _converted_attributes(table: Any, **query: Any) -> int:
    """How many attribute values moto converts to plain JSON to answer ``query``."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    with _calls_of(DynamoType, "to_regular_json") as conversions:
        table.query(**query)
    return len(conversions)


def test_a_projection_converts_only_what_it_names(request: pytest.FixtureRequest) -> None:
    # An item like a metadata item: a few small attributes and large statistics
    def conversions() -> int:
        with mock_aws():
            table = _versions_table()
            table.put_item(
                Item={"k": "big", "v": "1", "stats": {f"c{i}": {"min": i, "max": i} for i in range(200)}}
            )
            return _converted_attributes(
                table, KeyConditionExpression=Key("k").eq("big"), ProjectionExpression="v, k, n, labels"
            )

    unpatched = conversions()
    request.getfixturevalue("patched_dynamodb")
    # moto: the whole item (200 maps of two numbers, and more) once per path; now the 2 found
    assert (unpatched > 4 * 600, conversions()) == (True, 2)


def test_a_key_query_reads_only_its_partition(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from moto.dynamodb.models.table import Table

    whole_table_reads: list[str] = []
    every_item = Table.all_items

    def counted(self: Table) -> Any:
        whole_table_reads.append(self.name)
        return every_item(self)

    monkeypatch.setattr(Table, "all_items", counted)  # before patch_dynamodb wraps it
    request.getfixturevalue("patched_dynamodb")
    with mock_aws():
        table = _versions_table()
        whole_table_reads.clear()

        assert table.query(KeyConditionExpression=Key("k").eq("key-5"))["Count"] == 1
        assert whole_table_reads == []
        table.query(IndexName="by-day", KeyConditionExpression=Key("day").eq("d0"))
        assert whole_table_reads == ["versions"]


def test_items_read_are_not_kept(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto kept every Item object it made, in a class-wide list it never empties: each
    # query's copies of the items it read too, so the emulator of a `local up` grew by
    # some 25 MB per daily report over 1,500 metadata items, for as long as it ran
    import gc

    from moto.core.common_models import BaseModel
    from moto.dynamodb.models.dynamo_type import Item

    request.getfixturevalue("patched_dynamodb")
    monkeypatch.setattr(BaseModel, "__new__", BaseModel.__dict__["__new__"])
    patch_models()
    with mock_aws():
        table = _versions_table()
        gc.collect()
        stored = sum(isinstance(o, Item) for o in gc.get_objects())
        for _ in range(3):
            assert table.query(IndexName="by-day", KeyConditionExpression=Key("day").eq("d1"))["Count"] > 0
            assert table.scan()["Count"] == stored
            assert table.get_item(Key={"k": "key-5", "v": "000"})["Item"]["day"] == "d0"
        gc.collect()
        assert sum(isinstance(o, Item) for o in gc.get_objects()) == stored


def _alive(kind: type) -> int:
    import gc

    gc.collect()
    return sum(isinstance(o, kind) for o in gc.get_objects())


def test_messages_and_object_versions_let_go_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto listed every model instance it made, for its debugging dump, and never let go:
    # every SQS message sent and the copy each receive makes, every S3 version overwritten
    # or deleted: 300 files and 100 ingest records left some 1,500 messages in the emulator
    from moto.core.common_models import BaseModel
    from moto.s3.models import FakeKey
    from moto.sqs.models import Message

    monkeypatch.setattr(BaseModel, "__new__", BaseModel.__dict__["__new__"])
    patch_models()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="work")["QueueUrl"]
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="reports")
        for round_ in range(3):
            # Given messages sent, received (moto answers with copies) and deleted
            for i in range(10):
                sqs.send_message(QueueUrl=url, MessageBody=f"file {round_}-{i}")
            received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
            assert len(received) == 10
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
            )
            # and an object overwritten, another written and deleted
            for _ in range(5):
                s3.put_object(Bucket="reports", Key="daily.json", Body=b"{}")
            s3.put_object(Bucket="reports", Key=f"scratch-{round_}", Body=b"x")
            s3.delete_object(Bucket="reports", Key=f"scratch-{round_}")
        # Then only what the services still hold is alive: no message, the object's last version
        assert _alive(Message) == 0
        assert _alive(FakeKey) == 1
        assert s3.get_object(Bucket="reports", Key="daily.json")["Body"].read() == b"{}"
        assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


# (update expression, names, values, condition): the processor's kinds of update and some
# moto must refuse; the same expression recurs with other values, as across files
UPDATES: list[tuple[str, dict[str, str], dict[str, Any], str | None]] = [
    (
        "SET #a0 = :v0, #m0 = if_not_exists(#m0, :m0)",
        {"#a0": "status", "#m0": "received_at"},
        {":v0": "received", ":m0": "t1"},
        None,
    ),
    (
        "SET #a0 = :v0, #m0 = if_not_exists(#m0, :m0)",
        {"#a0": "status", "#m0": "received_at"},
        {":v0": "processing", ":m0": "t2"},
        None,
    ),
    (
        "SET #a0 = :v0, #a1 = :v1 REMOVE #r0",
        {"#a0": "status", "#a1": "rows", "#r0": "received_at"},
        {":v0": "completed", ":v1": 20},
        None,
    ),
    ("ADD #c :one", {"#c": "count"}, {":one": 1}, None),
    ("ADD #c :one", {"#c": "count"}, {":one": 1}, None),
    ("SET #l = list_append(if_not_exists(#l, :empty), :x)", {"#l": "log"}, {":empty": [], ":x": ["a"]}, None),
    ("SET #l = list_append(if_not_exists(#l, :empty), :x)", {"#l": "log"}, {":empty": [], ":x": ["b"]}, None),
    ("SET #a0 = :v0", {"#a0": "status"}, {":v0": "received"}, "#a0 = :other"),  # condition fails
    ("SET #a0 = :v0", {"#a0": "v"}, {":v0": "999"}, None),  # a key attribute
    # an expression and names that passed, then the same expression with names that overlap
    ("SET #a0 = :v0, #a1 = :v1", {"#a0": "x", "#a1": "y"}, {":v0": "1", ":v1": "2"}, None),
    ("SET #a0 = :v0, #a1 = :v1", {"#a0": "x", "#a1": "x"}, {":v0": "1", ":v1": "2"}, None),
    ("SET #a0 = :v0, #a0 = :v1", {"#a0": "x"}, {":v0": "1", ":v1": "2"}, None),  # twice
    ("SET #a0 = :v0, #a0 = :v1", {"#a0": "x"}, {":v0": "1", ":v1": "2"}, None),
    ("SET #a0 = :v0 SET #a1 = :v1", {"#a0": "x", "#a1": "y"}, {":v0": "1", ":v1": "2"}, None),
    ("SET #c = :v0", {"#c": "count"}, {":v0": "1"}, None),  # passed shape checks before...
    ("ADD #c :one", {"#c": "count"}, {":one": 1}, None),  # ...now a number added to a string
    ("SET #a0 = = :v0", {"#a0": "status"}, {":v0": "x"}, None),  # syntax error
    ("SET #a0 = :missing", {"#a0": "status"}, {":v0": "x"}, None),  # undefined value
]


def _apply_updates() -> list[Any]:
    outcomes: list[Any] = []
    with mock_aws():
        table = _versions_table()
        for expression, names, values, condition in UPDATES:
            kwargs: dict[str, Any] = {
                "Key": {"k": "key-new", "v": "000"},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
            if condition:
                kwargs["ExpressionAttributeValues"] = values | {":other": "nope"}
                kwargs["ConditionExpression"] = condition
            try:
                table.update_item(**kwargs)
                outcomes.append(table.get_item(Key={"k": "key-new", "v": "000"})["Item"])
            except table.meta.client.exceptions.ClientError as exc:
                outcomes.append(exc.response["Error"])
    return outcomes


def test_update_expressions_give_moto_s_items_and_errors(request: pytest.FixtureRequest) -> None:
    expected = _apply_updates()
    request.getfixturevalue("patched_dynamodb")
    actual = _apply_updates()

    assert actual == expected
    assert actual[1]["received_at"] == "t1"  # if_not_exists kept the first value
    assert actual[4]["count"] == 2
    assert actual[6]["log"] == ["a", "b"]
    assert actual[7]["Code"] == "ConditionalCheckFailedException"
    assert actual[8]["Code"] == "ValidationException"  # a key attribute
    assert actual[9]["x"] == "1" and actual[9]["y"] == "2"
    # overlapping names, a path set twice (both times), two SET clauses: refused
    assert [o.get("Code") for o in actual[10:14]] == ["ValidationException"] * 4
    assert actual[14]["count"] == "1"
    # refused although the same expression and names passed the shape checks before
    assert {o.get("Code") for o in actual[15:]} == {"ValidationException"}


# (operation, condition, names, values): conditional writes and filters as the handlers
# send them (the ingest worker's, Powertools' idempotency-like ones) and some moto refuses;
# each is sent twice, the second time answered from the parsed condition kept
CONDITIONS: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
    ("put", "attribute_not_exists(k) AND attribute_not_exists(v)", {}, {}),
    ("put", "attribute_not_exists(#k) OR #e < :now", {"#k": "k", "#e": "expiry"}, {":now": 5}),
    ("put", "attribute_not_exists(#k) OR #e < :now", {"#k": "k", "#e": "expiry"}, {":now": 500}),
    ("update", "#s IN (:a, :b)", {"#s": "status"}, {":a": "received", ":b": "processing"}),
    ("update", "#s = :a", {"#s": "status"}, {":a": "completed"}),
    ("delete", "size(#l) > :n", {"#l": "l"}, {":n": 5}),  # fails: the item stays
    ("query", "#n > :low AND begins_with(#d, :p)", {"#n": "n", "#d": "day"}, {":low": 10, ":p": "d"}),
    ("put", "attribute_not_exists(#k)", {"#k": "k", "#unused": "x"}, {}),  # a name not used
    ("put", "attribute_not_exists(k)", {}, {":unused": 1}),  # a value not used
    ("put", "attribute_not_exists(", {}, {}),  # syntax error (moto: a server error)
    ("put", "#missing = :v", {}, {":v": 1}),  # undefined name (moto: a server error)
]


def _conditional_writes() -> list[Any]:
    outcomes: list[Any] = []
    with mock_aws():
        table = _versions_table()
        for i, (operation, condition, names, values) in enumerate(CONDITIONS):
            for _ in range(2):
                kwargs: dict[str, Any] = {"ConditionExpression": condition}
                if names:
                    kwargs["ExpressionAttributeNames"] = names
                if values:
                    kwargs["ExpressionAttributeValues"] = values
                # a put writes a new item, so its second time finds the first;
                # an update changes the first put's item
                key = {"k": f"cond-{i if operation == 'put' else 0}", "v": "0"}
                try:
                    if operation == "put":
                        table.put_item(Item={**key, "expiry": 10, "status": "received"}, **kwargs)
                    elif operation == "update":
                        kwargs.setdefault("ExpressionAttributeNames", {})["#x"] = "x"
                        kwargs.setdefault("ExpressionAttributeValues", {})[":one"] = 1
                        table.update_item(Key=key, UpdateExpression="ADD #x :one", **kwargs)
                    elif operation == "delete":
                        table.delete_item(Key={"k": "key-3", "v": "000"}, **kwargs)
                    else:
                        kwargs["FilterExpression"] = kwargs.pop("ConditionExpression")
                        outcomes.append(
                            table.query(KeyConditionExpression=Key("k").eq("key-7"), **kwargs)["Items"]
                        )
                        continue
                    outcomes.append(table.get_item(Key=key).get("Item"))
                except table.meta.client.exceptions.ClientError as exc:
                    outcomes.append(exc.response["Error"])
                except (KeyError, ValueError) as exc:  # how moto fails on bad syntax, undefined names
                    outcomes.append((type(exc).__name__, str(exc)))
    return outcomes


def test_conditions_give_moto_s_answers_and_errors(request: pytest.FixtureRequest) -> None:
    expected = _conditional_writes()
    request.getfixturevalue("patched_dynamodb")
    actual = _conditional_writes()

    assert actual == expected
    refused = "ConditionalCheckFailedException"
    assert [actual[0].get("Code"), actual[1]["Code"]] == [None, refused]  # new, then it exists
    assert actual[5]["k"] == "cond-2"  # the same expression with other values: passes
    assert [actual[6]["x"], actual[7]["x"]] == [1, 2]
    # an unused name is refused the second time too: the names the parse found are kept
    assert [actual[14]["Code"], actual[15]["Code"]] == ["ValidationException"] * 2


@pytest.mark.usefixtures("patched_dynamodb")
def test_a_condition_is_parsed_once() -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    with _calls_of(ConditionExpressionParser, "_lex_condition_expression") as lexed, mock_aws():
        table = _versions_table()
        for n in range(5):
            table.put_item(
                Item={"k": f"new-{n}", "v": "0"},
                ConditionExpression="attribute_not_exists(#k) AND attribute_not_exists(#v)",
                ExpressionAttributeNames={"#k": "k", "#v": "v"},
            )
    assert len(lexed) == 1


def _dump(node: Any) -> Any:
    """An expression tree as plain data, every level (parents left out: they point up)."""
    if isinstance(node, list):
        return [_dump(child) for child in node]
    if hasattr(node, "children"):
        fields = {k: v for k, v in vars(node).items() if k not in ("parent", "children")}
        return (type(node).__name__, repr(fields), _dump(node.children))
    return repr(node)


@pytest.mark.usefixtures("patched_dynamodb")
def test_an_update_expression_is_parsed_once_and_never_changed() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    expression = "SET #a0 = :v0 REMOVE #r0"
    tree = UpdateExpressionParser.make(expression)
    before = _dump(tree)
    _apply_updates()  # validates and executes copies of the shared tree
    with mock_aws():
        table = _versions_table()
        for value in ("x", "y"):
            table.update_item(
                Key={"k": "key-1", "v": "000"},
                UpdateExpression=expression,
                ExpressionAttributeNames={"#a0": "status", "#r0": "n"},
                ExpressionAttributeValues={":v0": value},
            )
            assert table.get_item(Key={"k": "key-1", "v": "000"})["Item"] == {
                "k": "key-1",
                "v": "000",
                "day": "d0",
                "m": {"a": 0, "b": [1, {"c": "c1"}], "tags": {"x", "y"}},
                "l": [1, 0],
                "status": value,
            }
    assert UpdateExpressionParser.make(expression) is tree
    assert _dump(tree) == before


def _torn_reads() -> int:
    """Reads of an item that one thread keeps rewriting (40 attributes, all set to the same
    value by each update) which saw attributes of two different updates."""
    torn = 0
    with mock_aws():
        table = _versions_table()
        names = {f"#a{i}": f"attr{i}" for i in range(40)}
        expression = "SET " + ", ".join(f"#a{i} = :v" for i in range(40))
        key = {"k": "key-1", "v": "000"}
        done = threading.Event()

        def write() -> None:
            for n in range(150):
                table.update_item(
                    Key=key,
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":v": n},
                )
            done.set()

        writer = threading.Thread(target=write)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often, as a busy server does
        try:
            writer.start()
            while not done.is_set():
                item = table.get_item(Key=key)["Item"]
                torn += len({item.get(f"attr{i}") for i in range(40)}) > 1
        finally:
            sys.setswitchinterval(interval)
            writer.join()
    return torn


@pytest.mark.usefixtures("patched_dynamodb")
def test_a_read_never_sees_an_update_half_applied() -> None:
    assert _torn_reads() == 0


def test_event_input_paths_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import jsonpath_ng.ext
    from moto.events.utils import EventTemplateParser

    event = {
        "id": "1",
        "time": 1795392000.0,
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": "us-east-1",
        "account": ACCOUNT,
        "resources": ["arn:aws:s3:::raw"],
        "detail": {"a": [1, 2]},
        "ingestion-time": 1795392001.0,
    }
    expected = EventTemplateParser.parse("", {}, event)
    from moto.events.models import Rule

    monkeypatch.setattr(jsonpath_ng.ext, "parse", jsonpath_ng.ext.parse)
    monkeypatch.setattr(Rule, "send_to_targets", Rule.send_to_targets)
    from moto.s3 import notifications

    monkeypatch.setattr(notifications, "_send_event_bridge_message", notifications._send_event_bridge_message)
    patch_events()

    assert EventTemplateParser.parse("", {}, event) == expected
    assert jsonpath_ng.ext.parse("$.detail") is jsonpath_ng.ext.parse("$.detail")


# ---------------------------------------------------------------- Lambda event source mappings


@pytest.fixture
def patched_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """``patch_lambda`` as the emulator applies it, undone after the test."""
    from moto.awslambda.models import LambdaBackend

    monkeypatch.setattr(LambdaBackend, "list_event_source_mappings", LambdaBackend.list_event_source_mappings)
    from moto.awslambda.responses import LambdaResponse

    monkeypatch.setattr(LambdaBackend, "invoke", LambdaBackend.invoke)
    monkeypatch.setattr(LambdaResponse, "invoke", LambdaResponse.invoke)
    monkeypatch.setattr(LambdaBackend, "create_function", LambdaBackend.create_function)
    monkeypatch.setattr(
        LambdaBackend, "update_function_configuration", LambdaBackend.update_function_configuration
    )
    patch_lambda()


FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:processor"
# how `aws lambda list-event-source-mappings --function-name X` may name the function
FUNCTION_NAMES = {
    "name": "processor",
    "full ARN": FUNCTION_ARN,
    "partial ARN": f"{ACCOUNT}:function:processor",
    "$LATEST": "processor:$LATEST",
    "ARN with $LATEST": f"{FUNCTION_ARN}:$LATEST",
    "alias": "processor:live",
    "alias ARN": f"{FUNCTION_ARN}:live",
    "other function": "loader",
    "unknown function": "nothing",
    "other account": "arn:aws:lambda:us-east-1:210987654321:function:processor",
}


def _create_functions(*names: str) -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="fn",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    awslambda = boto3.client("lambda", region_name="us-east-1")
    for name in names:
        awslambda.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.main",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # an empty zip archive
            Publish=True,
        )


def _listed_mappings() -> dict[str, list[str]]:
    """Which mappings (by queue) each way of naming the function lists. Mappings: the
    processor's on queue "a" (created with its ARN, as the deploy step does) and "b"
    (created with its name), its alias "live"'s on queue "c", the loader's on queue "d"."""
    with mock_aws():
        _create_functions("processor", "loader")
        awslambda = boto3.client("lambda", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        awslambda.create_alias(FunctionName="processor", Name="live", FunctionVersion="1")
        queues = {}
        for queue in "abcd":
            url = sqs.create_queue(QueueName=queue)["QueueUrl"]
            queues[queue] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
        for queue, function in (
            ("a", FUNCTION_ARN),
            ("b", "processor"),
            ("c", f"{FUNCTION_ARN}:live"),
            ("d", "loader"),
        ):
            awslambda.create_event_source_mapping(EventSourceArn=queues[queue], FunctionName=function)
        by_arn = {arn: queue for queue, arn in queues.items()}
        listed = {
            kind: sorted(
                by_arn[m["EventSourceArn"]]
                for m in awslambda.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
            )
            for kind, name in FUNCTION_NAMES.items()
        }
        listed["no filter"] = sorted(
            by_arn[m["EventSourceArn"]] for m in awslambda.list_event_source_mappings()["EventSourceMappings"]
        )
        listed["queue filter"] = sorted(
            by_arn[m["EventSourceArn"]]
            for m in awslambda.list_event_source_mappings(
                EventSourceArn=queues["a"], FunctionName="processor"
            )["EventSourceMappings"]
        )
        return listed


def test_a_function_s_mappings_are_listed_by_any_of_its_names(request: pytest.FixtureRequest) -> None:
    unpatched = _listed_mappings()
    # moto compares the string given with the one each mapping was created with
    assert (unpatched["name"], unpatched["partial ARN"], unpatched["full ARN"]) == (["b"], [], ["a"])
    request.getfixturevalue("patched_lambda")

    assert _listed_mappings() == {  # what AWS lists
        "name": ["a", "b"],
        "full ARN": ["a", "b"],
        "partial ARN": ["a", "b"],
        "$LATEST": ["a", "b"],
        "ARN with $LATEST": ["a", "b"],
        "alias": ["c"],
        "alias ARN": ["c"],
        "other function": ["d"],
        "unknown function": [],
        "other account": [],
        "no filter": ["a", "b", "c", "d"],
        "queue filter": ["a"],
    }


@pytest.fixture
def executor(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """The runtime's invoke bridge, in front of a stand-in for the executor's pools that
    records each event and answers as the report function would (failing for a bad date);
    named in the invocations file as the runtime names it."""
    calls: list[tuple[str, Any]] = []

    def run(function: str, event: Any) -> Invocation:
        calls.append((function, event))
        if event.get("date") == "2026-13-01":
            return Invocation(
                ok=False,
                error_type="BadRequest",
                error="date '2026-13-01' is not YYYY-MM-DD",
                stack_trace=[
                    '  File "/repo/handlers/report.py", line 9, in handler\n    raise BadRequest(...)\n'
                ],
                request_id="5f0e6a1c-0000-4000-8000-000000000001",
            )
        return Invocation(ok=True, response={"task": "report", "date": event.get("date")})

    def run_async(function: str, event: Any, label: str) -> None:
        threading.Thread(target=run, args=(function, event), daemon=True).start()

    bridge = InvokeBridge(run, run_async, ["headrace-local-report"])
    bridge.start()
    (tmp_path / "invocations").write_text(f"{bridge.url} {bridge.token}\n")
    monkeypatch.setattr(motoserver, "INVOCATIONS_FILE", tmp_path / "invocations")
    try:
        yield calls
    finally:
        bridge.stop()


@pytest.mark.parametrize(
    "name", ["headrace-local-report", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:headrace-local-report"]
)
def test_invoking_a_function_through_the_api_runs_it_in_the_executor(
    name: str, request: pytest.FixtureRequest, executor: list[tuple[str, Any]]
) -> None:
    # Given the emulator and the runtime's executor (moto alone would need Docker)
    request.getfixturevalue("patched_lambda")
    with mock_aws():
        _create_functions("headrace-local-report")
        awslambda = boto3.client("lambda", region_name="us-east-1")
        # When a user invokes a function as with LocalStack (aws lambda invoke)
        answer = awslambda.invoke(FunctionName=name, Payload=b'{"date": "2026-12-01"}')
        # Then the executor ran it with that event, and its response is the payload
        assert executor == [("headrace-local-report", {"date": "2026-12-01"})]
        assert (answer["StatusCode"], answer.get("FunctionError")) == (200, None)
        assert json.loads(answer["Payload"].read()) == {"task": "report", "date": "2026-12-01"}
        # A function that raised answers as Lambda does: 200, FunctionError, its error
        failed = awslambda.invoke(FunctionName=name, Payload=b'{"date": "2026-13-01"}')
        assert (failed["StatusCode"], failed["FunctionError"]) == (200, "Unhandled")
        assert json.loads(failed["Payload"].read()) == {
            "errorMessage": "date '2026-13-01' is not YYYY-MM-DD",
            "errorType": "BadRequest",
            "requestId": "5f0e6a1c-0000-4000-8000-000000000001",
            "stackTrace": [
                '  File "/repo/handlers/report.py", line 9, in handler\n    raise BadRequest(...)\n'
            ],
        }
        # DryRun runs nothing; Event answers 202 and runs
        assert awslambda.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
        assert len(executor) == 2
        assert awslambda.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
        for _ in range(100):  # it runs after its answer
            if len(executor) == 3:
                break
            time.sleep(0.05)
        assert executor[2] == ("headrace-local-report", {})
        # A payload that is not JSON is refused before anything runs, as Lambda refuses it
        with pytest.raises(awslambda.exceptions.InvalidRequestContentException):
            awslambda.invoke(FunctionName=name, Payload=b"{not json")
        # So is a payload over Lambda's 6 MB
        with pytest.raises(ClientError) as too_large:
            awslambda.invoke(FunctionName=name, Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
        assert too_large.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
        # and an asynchronous one over its 1 MB, which nothing runs
        with pytest.raises(ClientError) as too_large:
            awslambda.invoke(
                FunctionName=name, InvocationType="Event", Payload=b'"' + b"x" * 1024 * 1024 + b'"'
            )
        assert too_large.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
        assert "smaller than 1048576 bytes" in too_large.value.response["Error"]["Message"]
        assert len(executor) == 3
        # A function the executor has no pool for (made after the runtime started) says so
        awslambda.create_function(
            FunctionName="made-later",
            Runtime="python3.12",
            Role=awslambda.get_function(FunctionName="headrace-local-report")["Configuration"]["Role"],
            Handler="handler.main",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )
        with pytest.raises(ClientError) as unknown:
            awslambda.invoke(FunctionName="made-later", Payload=b"{}")
        assert unknown.value.response["Error"]["Code"] == "NotImplemented"
        assert "the executor runs no function 'made-later'" in unknown.value.response["Error"]["Message"]
        # A function that does not exist is moto's ResourceNotFound, never the executor's
        with pytest.raises(awslambda.exceptions.ResourceNotFoundException):
            awslambda.invoke(FunctionName="nope", Payload=b"{}")


@pytest.mark.usefixtures("patched_lambda")
def test_a_function_configuration_setting_a_reserved_variable_is_refused_as_lambda_refuses_it() -> None:
    # A program setting AWS_REGION in a function's variables deployed locally (the sandbox
    # quietly used its own) and failed to deploy on AWS
    with mock_aws():
        _create_functions("fn")
        awslambda = boto3.client("lambda", region_name="us-east-1")
        role = awslambda.get_function(FunctionName="fn")["Configuration"]["Role"]
        with pytest.raises(awslambda.exceptions.InvalidParameterValueException) as refused:
            awslambda.create_function(
                FunctionName="other",
                Runtime="python3.12",
                Role=role,
                Handler="handler.main",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                Environment={"Variables": {"STAGE": "dev", "AWS_REGION": "eu-west-1", "_HANDLER": "x.y"}},
            )
        assert refused.value.response["Error"]["Message"].endswith(
            "contains reserved keys that are currently not supported for modification. "
            "Reserved keys used in this request: AWS_REGION, _HANDLER"
        )
        assert [f["FunctionName"] for f in awslambda.list_functions()["Functions"]] == ["fn"]
        with pytest.raises(awslambda.exceptions.InvalidParameterValueException, match="AWS_SESSION_TOKEN"):
            awslambda.update_function_configuration(
                FunctionName="fn", Environment={"Variables": {"AWS_SESSION_TOKEN": "t"}}
            )
        # while a function's own variables are taken, as before
        awslambda.update_function_configuration(
            FunctionName="fn", Environment={"Variables": {"STAGE": "dev"}}
        )
        configuration = awslambda.get_function(FunctionName="fn")["Configuration"]
        assert configuration["Environment"]["Variables"] == {"STAGE": "dev"}


def test_an_invoke_qualifier_is_the_query_string_s_never_the_payload_s(
    request: pytest.FixtureRequest, executor: list[tuple[str, Any]]
) -> None:
    # Given the emulator and the runtime's executor, and a function with no version 7
    request.getfixturevalue("patched_lambda")
    with mock_aws():
        _create_functions("headrace-local-report")
        awslambda = boto3.client("lambda", region_name="us-east-1")
        # When a version that does not exist is invoked (boto3 and the AWS CLI send
        # ?Qualifier=7), then it is not found, as on Lambda, and nothing runs
        with pytest.raises(awslambda.exceptions.ResourceNotFoundException) as missing:
            awslambda.invoke(FunctionName="headrace-local-report", Qualifier="7", Payload=b"{}")
        assert missing.value.response["Error"]["Message"].endswith("function:headrace-local-report:7")
        # When the event has a field named qualifier, then it is the function's to read
        answer = awslambda.invoke(FunctionName="headrace-local-report", Payload=b'{"qualifier": "x"}')
        # And $LATEST is a qualifier like any other
        latest = awslambda.invoke(FunctionName="headrace-local-report", Qualifier="$LATEST", Payload=b"{}")
    assert (answer["StatusCode"], latest["StatusCode"]) == (200, 200)
    assert executor == [("headrace-local-report", {"qualifier": "x"}), ("headrace-local-report", {})]


def test_the_invoke_bridge_answers_the_emulator_only_and_never_drops_a_request(
    executor: list[tuple[str, Any]],
) -> None:
    # Given the runtime's invoke bridge, named in the invocations file
    url, token = motoserver.executor_address() or ("", "")

    def post(body: bytes, **headers: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"{url}/headrace-local-report", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())

    # When it is called without the token, or with a body that is not JSON
    # Then it refuses, with a reason, and runs nothing
    assert post(b"{}") == (403, {"error": "not the emulator"})
    status, answer = post(b"{not json", **{"X-Bridge-Token": token})
    assert status == 400 and answer["error"].startswith("the event is not JSON")
    assert executor == []


def test_invoking_before_the_executor_runs_says_so(
    request: pytest.FixtureRequest, monkeypatch, tmp_path
) -> None:
    # Given the emulator while the runtime deploys (no executor named yet)
    request.getfixturevalue("patched_lambda")
    monkeypatch.setattr(motoserver, "INVOCATIONS_FILE", tmp_path / "invocations")
    with mock_aws():
        _create_functions("headrace-local-report")
        awslambda = boto3.client("lambda", region_name="us-east-1")
        with pytest.raises(ClientError) as refused:
            awslambda.invoke(FunctionName="headrace-local-report", Payload=b"{}")
    # Then the call is refused (not retried), saying why, rather than a 200 for a function
    # that never ran
    error = refused.value.response["Error"]
    assert error["Code"] == "NotImplemented"
    assert "executor runs functions once `headrace local up` has deployed" in error["Message"]


@pytest.mark.usefixtures("patched_s3")
def test_s3_events_carry_a_sequencer_that_rises_with_every_write() -> None:
    # Given the emulator's EventBridge, and a bucket whose events reach a queue through two
    # rules (one event goes to every rule)
    with _s3_events(rules=("first", "second")) as (s3, events_received):
        # When one key is written three times within a second
        for body in (b"1", b"2", b"3"):
            s3.put_object(Bucket="raw", Key="incoming/a.csv", Body=body)
        received = [e["detail"]["object"]["sequencer"] for e in events_received()]
    # Then, as on AWS, each write has its own sequencer (the same for every rule), later
    # writes greater ones
    assert len(received) == 6
    distinct = sorted(set(received))
    assert len(distinct) == 3 and all(received.count(s) == 2 for s in distinct)
    assert all(len(s) == 18 and int(s, 16) for s in distinct)
    # (the queue hands them out in the order sent: the writes' order)
    assert received == sorted(received, key=lambda s: int(s, 16))


# ---------------------------------------------------------------- S3 events


@pytest.fixture
def patched_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """``patch_s3`` and ``patch_events`` as the emulator applies them, undone after the test."""
    from moto.events.models import Rule
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    monkeypatch.setattr(Rule, "send_to_targets", Rule.send_to_targets)
    monkeypatch.setattr(notifications, "send_event", notifications.send_event)
    monkeypatch.setattr(notifications, "_send_event_bridge_message", notifications._send_event_bridge_message)
    monkeypatch.setattr(S3Response, "put_object", S3Response.put_object)
    monkeypatch.setattr(S3Response, "copy_object", S3Response.copy_object)
    monkeypatch.setattr(S3Backend, "complete_multipart_upload", S3Backend.complete_multipart_upload)
    monkeypatch.setattr(S3Backend, "copy_object", S3Backend.copy_object)
    patch_s3()
    patch_events()


@contextlib.contextmanager
def _s3_events(rules: tuple[str, ...] = ("s3",)) -> Iterator[tuple[Any, Callable[[], list[dict[str, Any]]]]]:
    """A versioned bucket ``raw`` sending its events to EventBridge, where ``rules`` take every
    S3 event (not only "Object Created") to a queue; and what has reached the queue."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events = boto3.client("events", region_name="us-east-1")
        s3.create_bucket(Bucket="raw")
        s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        url = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for rule in rules:
            events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"]}))
            events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])

        def received() -> list[dict[str, Any]]:
            bodies = []
            while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                bodies += [json.loads(m["Body"]) for m in batch]
                for m in batch:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return bodies

        yield s3, received


def _summary(event: dict[str, Any]) -> tuple[str, str, str, int, str, str]:
    detail = event["detail"]
    obj = detail["object"]
    return (event["detail-type"], detail["reason"], obj["key"], obj["size"], obj["etag"], obj["version-id"])


def _as_stored(s3: Any, key: str, detail_type: str, reason: str) -> tuple[str, str, str, int, str, str]:
    """The event S3 sends for ``key``'s current version: its size, ETag and version."""
    head = s3.head_object(Bucket="raw", Key=key)
    return (detail_type, reason, key, head["ContentLength"], head["ETag"].strip('"'), head["VersionId"])


def _upload_in_parts(s3: Any, key: str, bodies: tuple[bytes, ...], **create: Any) -> None:
    """Upload ``bodies`` as the parts of one object of the raw bucket (``create``: the
    CreateMultipartUpload arguments; a ChecksumAlgorithm is sent with each part too)."""
    upload = s3.create_multipart_upload(Bucket="raw", Key=key, **create)
    algorithm = create.get("ChecksumAlgorithm")
    checksum = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    parts = []
    for number, body in enumerate(bodies, start=1):
        part = s3.upload_part(
            Bucket="raw", Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body, **checksum
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
        if algorithm:
            parts[-1][f"Checksum{algorithm}"] = part[f"Checksum{algorithm}"]
    s3.complete_multipart_upload(
        Bucket="raw", Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


@pytest.mark.usefixtures("patched_s3")
def test_a_multipart_upload_sends_one_object_created_event() -> None:
    with _s3_events() as (s3, received):
        # Given a file above the 8 MB from which the AWS CLI and boto3 upload in parts
        # When it is uploaded in two parts, with a tag
        _upload_in_parts(s3, "incoming/big.csv", (b"a" * 5 * 1024 * 1024, b"b" * 1024), Tagging="team=data")
        # Then, as on AWS, the upload sends exactly one event, the object's, for the
        # completion: its size, and its multipart ETag ("<md5 of the parts' md5s>-2")
        events = received()
        assert [_summary(e) for e in events] == [
            _as_stored(s3, "incoming/big.csv", "Object Created", "CompleteMultipartUpload")
        ]
        assert events[0]["detail"]["object"]["etag"].endswith("-2")


@pytest.mark.usefixtures("patched_s3")
def test_a_copy_of_an_object_uploaded_in_parts_can_be_read() -> None:
    with _s3_events() as (s3, _):
        # Given a file uploaded in two parts with CRC32 checksums (as boto3 and the AWS CLI
        # upload one above 8 MB): its checksum is composite, a checksum of the parts'
        parts_data = (b"a,b\n" + b"1,2\n" * (5 * 1024 * 1024 // 4), b"3,4\n")
        _upload_in_parts(s3, "incoming/big.csv", parts_data, ChecksumAlgorithm="CRC32")
        # When it is copied onto itself (a metadata change) and to another key (CopyObject)
        s3.copy_object(
            Bucket="raw",
            Key="incoming/big.csv",
            CopySource={"Bucket": "raw", "Key": "incoming/big.csv"},
            MetadataDirective="REPLACE",
            Metadata={"owner": "data"},
        )
        s3.copy_object(
            Bucket="raw", Key="incoming/copy.csv", CopySource={"Bucket": "raw", "Key": "incoming/big.csv"}
        )
        # Then each copy reads back whole, its checksum checked by boto3 (which refused it)
        expected = base64.b64encode(zlib.crc32(b"".join(parts_data)).to_bytes(4, "big")).decode()
        for key in ("incoming/big.csv", "incoming/copy.csv"):
            got = s3.get_object(Bucket="raw", Key=key, ChecksumMode="ENABLED")
            assert got["Body"].read() == b"".join(parts_data)
            assert got["ChecksumCRC32"] == expected


@pytest.mark.usefixtures("patched_s3")
def test_a_put_or_a_copy_sends_one_object_created_event_naming_its_api() -> None:
    with _s3_events() as (s3, received):
        # When an object is put with tags, and copied with tags replaced
        s3.put_object(Bucket="raw", Key="incoming/a.csv", Body=b"a,b\n1,2\n", Tagging="team=data")
        s3.copy_object(
            Bucket="raw",
            Key="incoming/b.csv",
            CopySource={"Bucket": "raw", "Key": "incoming/a.csv"},
            TaggingDirective="REPLACE",
            Tagging="team=ops",
        )
        # Then each write sends its own "Object Created" only, naming the API that wrote the
        # object, with the stored object's size and ETag
        assert [_summary(e) for e in received()] == [
            _as_stored(s3, "incoming/a.csv", "Object Created", "PutObject"),
            _as_stored(s3, "incoming/b.csv", "Object Created", "CopyObject"),
        ]
        # And tagging an object (PutObjectTagging) still sends its "Object Tags Added"
        s3.put_object_tagging(
            Bucket="raw", Key="incoming/a.csv", Tagging={"TagSet": [{"Key": "team", "Value": "ops"}]}
        )
        [tagged] = received()
        assert (tagged["detail-type"], tagged["detail"]["object"]["key"]) == (
            "Object Tags Added",
            "incoming/a.csv",
        )
        # And a deletion (of the key's only version: moto sends no event for a delete
        # marker) names DeleteObject
        version = s3.head_object(Bucket="raw", Key="incoming/b.csv")["VersionId"]
        s3.delete_object(Bucket="raw", Key="incoming/b.csv", VersionId=version)
        assert [(e["detail-type"], e["detail"]["reason"]) for e in received()] == [
            ("Object Deleted", "DeleteObject")
        ]


@pytest.mark.usefixtures("patched_s3")
def test_a_disabled_rule_delivers_no_event() -> None:
    with _s3_events() as (s3, received):
        events = boto3.client("events", region_name="us-east-1")
        # Given the rule taking S3's events, disabled (processing paused)
        events.disable_rule(Name="s3")
        # When an object is written and an event is put on the bus, then nothing arrives
        s3.put_object(Bucket="raw", Key="incoming/a.csv", Body=b"a\n1\n")
        events.put_events(Entries=[{"Source": "aws.s3", "DetailType": "Object Created", "Detail": "{}"}])
        assert received() == []
        # And once it is enabled again, the next write's event does
        events.enable_rule(Name="s3")
        s3.put_object(Bucket="raw", Key="incoming/b.csv", Body=b"a\n1\n")
        assert [e["detail"]["object"]["key"] for e in received()] == ["incoming/b.csv"]


def test_the_emulator_raises_its_open_file_limit_to_the_hard_limit():
    # Given a process whose soft limit on open files is a shell's usual 256, below its hard
    # limit (moto holds an open file per object version over 5 MB)
    script = (
        "import resource\n"
        "from headrace.local.motoserver import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    # When the emulator raises it
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    returned, in_force, hard = (int(n) for n in out.split())
    # Then the soft limit is the hard one (or macOS's ceiling when that is unlimited)
    assert in_force == returned == (10_240 if hard == resource.RLIM_INFINITY else hard)
    assert in_force > 256
