"""Handlers against moto (in-process AWS): resources are built from the same table
definitions the Pulumi program deploys."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.models import tables

REGION = "us-east-1"


@dataclass
class LambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "headrace",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from handlers.dal import aws as clients

    clients.client.cache_clear()
    clients.table.cache_clear()
    with mock_aws():
        yield
    clients.client.cache_clear()
    clients.table.cache_clear()


class Pipeline:
    """Raw/processed buckets, tables, and a queue receiving the processor's events."""

    def __init__(self, monkeypatch, tmp_path):
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.raw, self.processed = "raw-bucket", "processed-bucket"
        for bucket in (self.raw, self.processed):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=self.raw, VersioningConfiguration={"Status": "Enabled"})
        self.ddb.create_table(**tables.METADATA.boto3_create_args("metadata"))
        self.ddb.create_table(**tables.IDEMPOTENCY.boto3_create_args("idempotency"))
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name="headrace")
        self.events_queue = self.sqs.create_queue(QueueName="file-processed")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.events_queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="processed",
            EventBusName="headrace",
            EventPattern=json.dumps({"source": ["headrace.processor"]}),
        )
        events.put_targets(Rule="processed", EventBusName="headrace", Targets=[{"Id": "q", "Arn": arn}])
        self.env = {
            "PROCESSED_BUCKET": self.processed,
            "METADATA_TABLE": "metadata",
            "IDEMPOTENCY_TABLE": "idempotency",
            "EVENT_BUS_NAME": "headrace",
            "RAW_PREFIX": "incoming/",
            "MAX_RECEIVE_COUNT": "3",
            "SCRATCH_DIR": str(tmp_path),
        }
        for name, value in self.env.items():
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

    def sqs_record(
        self, obj: dict[str, Any], receive_count: int = 1, body: str | None = None
    ) -> dict[str, Any]:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
        return {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": "rh",
            "body": body if body is not None else json.dumps(event),
            "attributes": {
                "ApproximateReceiveCount": str(receive_count),
                "SentTimestamp": "1700000000000",
                "SenderId": "AIDA",
                "ApproximateFirstReceiveTimestamp": "1700000000000",
            },
            "messageAttributes": {},
            "md5OfBody": "x",
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:processing",
            "awsRegion": REGION,
        }

    def invoke(self, *records: dict[str, Any]) -> dict[str, Any]:
        return self.handler.lambda_handler({"Records": list(records)}, LambdaContext())

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


@pytest.fixture
def pipeline(aws, monkeypatch, tmp_path) -> Pipeline:
    return Pipeline(monkeypatch, tmp_path)


# Real PostgreSQL for the warehouse tests (the embedded server) and the loader Lambda.
from tests.integration.conftest_pg import Loader, loader, postgres  # noqa: E402, F401
