"""Fixtures for the warehouse: a real PostgreSQL server (the embedded one, started once per
session from the machine's own binaries) and the loader Lambda wired to it through a moto
Secrets Manager secret, next to the moto pipeline of conftest.py."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from headrace.local.postgres import EmbeddedPostgres

REGION = "us-east-1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _reset_secret_cache() -> None:
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    parameters.clear_caches()
    DEFAULT_PROVIDERS.clear()


class Loader:
    """The loader Lambda against ``server``, fed like the load queue feeds it."""

    def __init__(
        self,
        pipeline: Any,
        server: EmbeddedPostgres,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any,
        secret_fields: dict[str, Any] | None = None,
    ):
        self.pipeline = pipeline
        self.server = server
        self.schema = f"wh_{uuid.uuid4().hex[:10]}"
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=f"db-{self.schema}", SecretString=json.dumps({**server.secret(), **(secret_fields or {})})
        )
        self.env = {
            "DB_SECRET_ARN": secret["ARN"],
            "PROCESSED_BUCKET": pipeline.processed,
            "METADATA_TABLE": "metadata",
            "MAX_RECEIVE_COUNT": "3",
            "WAREHOUSE_SCHEMA": self.schema,
            "SCRATCH_DIR": str(tmp_path),
        }
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        _reset_secret_cache()
        self.handler = importlib.reload(importlib.import_module("handlers.loader"))

    # ------------------------------------------------------------------ feeding
    def process(self, key: str, body: bytes | str, uploaded_at: datetime | None = None) -> dict[str, Any]:
        """Upload ``body`` as ``key``, run the processor, return the "File Processed"
        EventBridge event it published (what the load queue would receive). ``uploaded_at``
        sets the S3 event's time (second precision, as S3 sends it)."""
        obj = self.pipeline.upload(key, body)
        assert self.pipeline.process(obj, at=uploaded_at) == {"batchItemFailures": []}
        [event] = self.events()
        return event

    def events(self) -> list[dict[str, Any]]:
        """Drain the processor's published events (full EventBridge envelopes)."""
        sqs, url = self.pipeline.sqs, self.pipeline.events_queue
        found = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return found

    @staticmethod
    def record(
        event: dict[str, Any] | None = None, receive_count: int = 1, body: str | None = None
    ) -> dict[str, Any]:
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
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:load",
            "awsRegion": REGION,
        }

    def invoke(self, *records: dict[str, Any]) -> dict[str, Any]:
        from tests.integration.conftest import LambdaContext

        return self.handler.lambda_handler({"Records": list(records)}, LambdaContext())

    def load(self, *events: dict[str, Any]) -> dict[str, Any]:
        return self.invoke(*(self.record(e) for e in events))

    # ------------------------------------------------------------------ looking
    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server.conninfo(), autocommit=True)

    def query(self, statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def process_and_load(self, key: str, body: str) -> dict[str, Any]:
        """Process ``body`` as ``key`` and load it, which must succeed: its event."""
        event = self.process(key, body)
        assert self.load(event) == {"batchItemFailures": []}
        return event

    def values(self, table: str, column: str) -> list[Any]:
        """``column`` of a dataset table, in file and line order."""
        return [
            v
            for (v,) in self.query(
                sql.SQL("SELECT {} FROM {} ORDER BY object_key, line_number").format(
                    sql.Identifier(column), self.table(table)
                )
            )
        ]

    def table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def columns(self, table: str) -> dict[str, str]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [self.schema, table],
        )
        return {name: kind for name, kind in rows}

    def count(self, table: str, object_key: str) -> int:
        [(n,)] = self.query(
            sql.SQL("SELECT count(*) FROM {} WHERE object_key = %s").format(self.table(table)), [object_key]
        )
        return int(n)

    def close(self) -> None:
        self.handler.warehouse.close()


@pytest.fixture
def loader(pipeline, postgres, monkeypatch, tmp_path) -> Iterator[Loader]:
    helper = Loader(pipeline, postgres, monkeypatch, tmp_path)
    try:
        yield helper
    finally:
        helper.close()
        _reset_secret_cache()


def file_processed_event(detail: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge envelope around a hand-made "File Processed" detail."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "File Processed",
        "source": "headrace.processor",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
