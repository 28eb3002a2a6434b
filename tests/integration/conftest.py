"""Handlers against moto (in-process AWS): resources are built from the same table
definitions the Pulumi program deploys, and messages travel through real (moto) SQS
queues, so receipt handles, receive counts and redrive behave as they do on AWS."""

from __future__ import annotations

import importlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.models import tables

REGION = "us-east-1"
# The stack name the handlers get (HEADRACE_STACK): their metrics' "stack" dimension.
STACK = "it"


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Invocation(LambdaContext):
    """A context whose remaining time the test sets."""

    def __init__(self, remaining_ms: int, function_name: str = "test"):
        super().__init__(function_name=function_name)
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "headrace",
        "HEADRACE_STACK": STACK,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from handlers.dal import aws as clients
    from handlers.dal import queues

    caches = (clients.client, clients.table, clients.api_client, clients.api_table, queues.queue_url)
    for cached in caches:
        cached.cache_clear()
    with mock_aws():
        yield
    for cached in caches:
        cached.cache_clear()


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


class SqsSource:
    """A queue with a DLQ, polled the way a Lambda event source mapping polls it."""

    def __init__(self, sqs: Any, name: str, max_receive_count: int = 3):
        self.sqs = sqs
        self.dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": queue_arn(sqs, self.dlq), "maxReceiveCount": str(max_receive_count)}
        self.url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)})[
            "QueueUrl"
        ]
        self.arn = queue_arn(sqs, self.url)

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def receive(self, max_messages: int = 10) -> list[dict[str, Any]]:
        """Messages in the shape the event source mapping hands to the function."""
        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=max_messages, AttributeNames=["All"]
        ).get("Messages", [])
        return [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": self.arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]

    def delete_succeeded(self, records: list[dict[str, Any]], response: dict[str, Any]) -> None:
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for r in records:
            if r["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=r["receiptHandle"])

    def dlq_bodies(self) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in messages]


class Pipeline:
    """Raw/processed buckets, tables, the processing queue, and a queue receiving the
    processor's "File Processed" events."""

    def __init__(self, monkeypatch, tmp_path):
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        self.raw, self.processed = "raw-bucket", "processed-bucket"
        for bucket in (self.raw, self.processed):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=self.raw, VersioningConfiguration={"Status": "Enabled"})
        ddb.create_table(**tables.METADATA.boto3_create_args("metadata"))
        ddb.create_table(**tables.IDEMPOTENCY.boto3_create_args("idempotency"))
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name="headrace")
        self.events_queue = self.sqs.create_queue(QueueName="file-processed")["QueueUrl"]
        events.put_rule(
            Name="processed",
            EventBusName="headrace",
            EventPattern=json.dumps({"source": ["headrace.processor"]}),
        )
        events.put_targets(
            Rule="processed",
            EventBusName="headrace",
            Targets=[{"Id": "q", "Arn": queue_arn(self.sqs, self.events_queue)}],
        )
        self.queue = SqsSource(self.sqs, "processing", max_receive_count=3)
        for name, value in {
            "PROCESSED_BUCKET": self.processed,
            "METADATA_TABLE": "metadata",
            "IDEMPOTENCY_TABLE": "idempotency",
            "EVENT_BUS_NAME": "headrace",
            "RAW_PREFIX": "incoming/",
            "MAX_RECEIVE_COUNT": "3",
            "SCRATCH_DIR": str(tmp_path),
        }.items():
            monkeypatch.setenv(name, value)
        self.handler = importlib.reload(importlib.import_module("handlers.processor"))

    def upload(self, key: str, body: bytes | str) -> dict[str, Any]:
        data = body.encode() if isinstance(body, str) else body
        response = self.s3.put_object(Bucket=self.raw, Key=key, Body=data)
        return {
            "key": key,
            "version": response["VersionId"],
            "etag": response["ETag"].strip('"'),
            "size": len(data),
        }

    def event(self, obj: dict[str, Any], at: datetime | None = None) -> str:
        """The EventBridge "Object Created" event S3 emits for ``obj`` (AWS's shape);
        ``at`` sets its time (second precision, as S3 sends it)."""
        return json.dumps(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Object Created",
                "source": "aws.s3",
                "account": "123456789012",
                "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [f"arn:aws:s3:::{self.raw}"],
                "detail": {
                    "version": "0",
                    "bucket": {"name": self.raw},
                    "object": {
                        "key": obj["key"],
                        "size": obj["size"],
                        "etag": obj["etag"],
                        "version-id": obj["version"],
                        "sequencer": "00",
                    },
                    "request-id": "R",
                    "requester": "123456789012",
                    "reason": "PutObject",
                },
            }
        )

    def announce(self, *objs: dict[str, Any]) -> None:
        """S3 -> EventBridge -> the processing queue, for each object."""
        self.queue.send(*(self.event(o) for o in objs))

    def invoke(self, *records: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return self.handler.lambda_handler({"Records": list(records)}, context or LambdaContext())

    def process(self, *objs: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
        """Announce ``objs`` and run the processor once over them (one batch)."""
        self.queue.send(*(self.event(o, at) for o in objs))
        return self.poll()[1]

    def poll(self, context: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One event-source-mapping cycle: receive a batch, invoke (with ``context``: a
        LambdaContext by default), delete what succeeded."""
        records = self.queue.receive()
        response = self.invoke(*records, context=context) if records else {"batchItemFailures": []}
        self.queue.delete_succeeded(records, response)
        return records, response

    def item(self, obj: dict[str, Any]) -> dict[str, Any]:
        table = boto3.resource("dynamodb", region_name=REGION).Table("metadata")
        return table.get_item(Key={"object_key": obj["key"], "version": obj["version"]}).get("Item", {})

    def published(self) -> list[dict[str, Any]]:
        messages = []
        while batch := self.sqs.receive_message(QueueUrl=self.events_queue, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for m in batch:
                messages.append(json.loads(m["Body"])["detail"])
                self.sqs.delete_message(QueueUrl=self.events_queue, ReceiptHandle=m["ReceiptHandle"])
        return messages

    def processed_keys(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.processed).get("Contents", [])]


def emitted_metrics(stdout: str) -> Counter[str]:
    """Totals of the EMF metrics the handlers printed (Powertools writes one JSON document
    per invocation to stdout; a metric added several times holds a list of values)."""
    totals: Counter[str] = Counter()
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


@pytest.fixture
def pipeline(aws, monkeypatch, tmp_path) -> Pipeline:
    return Pipeline(monkeypatch, tmp_path)


# Real PostgreSQL for the warehouse tests (the embedded server) and the loader Lambda.
from tests.integration.conftest_pg import Loader, loader, postgres  # noqa: E402, F401
