"""The ingest API and worker against moto: tables from ``handlers.models.tables``, an
ingest queue with its DLQ and redrive policy, a KMS key, and real HTTP API payload 2.0
events. Test modules use it through their own fixtures (``stack``)."""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3

from handlers.dal.queues import message_counts
from handlers.logic.ingest.keys import generate_api_key, new_key_item
from handlers.models import tables

from .conftest import REGION, LambdaContext

KEYS_TABLE, LOGS_TABLE = "tenant-keys", "tenant-logs"
MAX_RECEIVE_COUNT = 3


class Response:
    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.status: int = raw["statusCode"]
        self.headers: dict[str, str] = raw.get("headers") or {}
        self.json: Any = json.loads(raw["body"]) if raw.get("body") else None

    def __repr__(self) -> str:
        return f"<{self.status} {self.json}>"


@contextmanager
def capture_logs(module: ModuleType) -> Iterator[io.StringIO]:
    """Everything a function's Powertools logger emits meanwhile, formatted exactly as in
    CloudWatch (same formatter), plus whatever other loggers propagate to the root."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(module.logger.registered_formatter)
    targets = [module.logger, logging.getLogger()]
    for target in targets:
        target.addHandler(handler)
    try:
        yield buffer
    finally:
        for target in targets:
            target.removeHandler(handler)


def api_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as the Lambda receives it:
    header names lower-cased, body absent when empty, query string decoded."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}" if path in ("/ingest", "/logs") else "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {
            "accept": "*/*",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-65f0c9a1-0123456789abcdef01234567",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **{k.lower(): v for k, v in (headers or {}).items()},
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "01/Mar/2025:12:00:00 +0000",
            "timeEpoch": 1740830400000,
        },
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None and body != "" and body != b"":
        if base64_body:
            raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
            event["body"] = base64.b64encode(raw).decode()
        else:
            event["body"] = body if isinstance(body, str) else body.decode()
    return event


class IngestStack:
    def __init__(self, monkeypatch: Any, *, env: dict[str, str] | None = None):
        self.monkeypatch = monkeypatch
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.kms = boto3.client("kms", region_name=REGION)
        self.ddb.create_table(**tables.TENANT_KEYS.boto3_create_args(KEYS_TABLE))
        self.ddb.create_table(**tables.TENANT_LOGS.boto3_create_args(LOGS_TABLE))
        self.keys_table = boto3.resource("dynamodb", region_name=REGION).Table(KEYS_TABLE)
        self.logs_table = boto3.resource("dynamodb", region_name=REGION).Table(LOGS_TABLE)
        self.dlq_url = self.sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = self.sqs.create_queue(
            QueueName="ingest",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                )
            },
        )["QueueUrl"]
        self.kms_key_arn = self.kms.create_key(Description="ingest originals")["KeyMetadata"]["Arn"]
        self.env = {
            "INGEST_QUEUE_URL": self.queue_url,
            "TENANT_KEYS_TABLE": KEYS_TABLE,
            "TENANT_LOGS_TABLE": LOGS_TABLE,
            "MAX_BODY_BYTES": "65536",
            "MAX_BATCH_RECORDS": "25",
            "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
            "LOG_TTL_DAYS": "30",
            **(env or {}),
        }
        self.configure()

    def configure(self, **env: str) -> None:
        """(Re)load both functions with the stack's environment plus ``env``."""
        for name, value in {**self.env, **env}.items():
            self.monkeypatch.setenv(name, value)
        self.api: ModuleType = importlib.reload(importlib.import_module("handlers.ingest_api"))
        self.worker: ModuleType = importlib.reload(importlib.import_module("handlers.ingest_worker"))

    # ------------------------------------------------------------------ tenants
    def issue_key(self, tenant: str, **fields: Any) -> str:
        key = generate_api_key()
        self.keys_table.put_item(Item={**new_key_item(tenant, key, datetime.now(UTC)), **fields})
        return key

    # ------------------------------------------------------------------ HTTP API
    def event(self, method: str, path: str, **parts: Any) -> dict[str, Any]:
        return api_event(method, path, **parts)

    def call(self, event: dict[str, Any]) -> Response:
        return Response(self.api.lambda_handler(event, LambdaContext(function_name="ingest")))

    def post(
        self,
        body: Any,
        *,
        key: str | None,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Response:
        if not isinstance(body, str | bytes | None):
            body = json.dumps(body)
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["x-api-key"] = key
        if content_type is not None:
            all_headers["content-type"] = content_type
        return self.call(self.event("POST", "/ingest", body=body, headers=all_headers))

    def logs(self, key: str | None, headers: dict[str, str] | None = None, **query: str) -> Response:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["x-api-key"] = key
        return self.call(self.event("GET", "/logs", headers=all_headers, query=query or None))

    # ------------------------------------------------------------------ queue and worker
    def queue_depth(self, url: str | None = None) -> int:
        return sum(message_counts(url or self.queue_url, self.sqs))

    def queued_bodies(self) -> list[dict[str, Any]]:
        """Every queued message body; the messages stay queued (made visible again)."""
        received: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages"):
            received += batch
        for m in received:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return [json.loads(m["Body"]) for m in received]

    def sqs_record(self, body: str, receive_count: int = 1, message_id: str | None = None) -> dict[str, Any]:
        return {
            "messageId": message_id or str(uuid.uuid4()),
            "receiptHandle": "rh",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": str(receive_count),
                "SentTimestamp": "1740830400000",
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "1740830400000",
            },
            "messageAttributes": {},
            "md5OfBody": "0" * 32,
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:ingest",
            "awsRegion": REGION,
        }

    def invoke_worker(self, *records: dict[str, Any]) -> dict[str, Any]:
        return self.worker.lambda_handler(
            {"Records": list(records)}, LambdaContext(function_name="ingest-worker")
        )

    def deliver(self, max_messages: int = 10) -> dict[str, Any]:
        """One poll of the worker's event source mapping: receive a batch, invoke the
        worker, delete what succeeded, and make the failures visible again at once (as
        the visibility timeout would). Returns the worker's response."""
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return {"batchItemFailures": [], "received": 0}
        records = [
            self.sqs_record(m["Body"], int(m["Attributes"]["ApproximateReceiveCount"]), m["MessageId"])
            for m in received
        ]
        response = self.invoke_worker(*records)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in received:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return {**response, "received": len(received)}

    def drain(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            if self.deliver()["received"] == 0:
                return

    def stored(self, tenant: str, log_id: str) -> dict[str, Any] | None:
        return self.logs_table.get_item(Key={"tenant_id": tenant, "log_id": log_id}).get("Item")

    def all_stored(self) -> list[dict[str, Any]]:
        return self.logs_table.scan()["Items"]
