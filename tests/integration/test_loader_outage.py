"""The database goes away and comes back: messages are retried, dead-lettered, and loaded
once it is back; processing carries on meanwhile. Runs its own PostgreSQL server, which it
stops and restarts, next to moto's SQS with the load queue's redrive policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from handlers.dal.queues import message_counts
from headrace.local.postgres import EmbeddedPostgres, free_port
from tests.integration.conftest import STACK, emitted_metrics
from tests.integration.conftest_pg import REGION, Loader

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def outage(pipeline, own_postgres, monkeypatch, tmp_path) -> Iterator[Loader]:
    own_postgres.start()  # a previous test may have left it stopped
    helper = Loader(pipeline, own_postgres, monkeypatch, tmp_path)
    try:
        yield helper
    finally:
        helper.close()
        own_postgres.start()


class LoadQueue:
    """The load queue and its DLQ (maxReceiveCount 3), fed by the processor's events as the
    Pulumi rule feeds it, and polled the way Lambda's event source mapping does: failed
    messages become visible again, successful ones are deleted."""

    def __init__(self, pipeline: Any, max_receive_count: int = 3):
        self.sqs = pipeline.sqs
        self.dlq = self.sqs.create_queue(QueueName="load-dlq")["QueueUrl"]
        self.url = self.sqs.create_queue(
            QueueName="load",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": self._arn(self.dlq), "maxReceiveCount": str(max_receive_count)}
                )
            },
        )["QueueUrl"]
        boto3.client("events", region_name=REGION).put_targets(
            Rule="processed", EventBusName="headrace", Targets=[{"Id": "load", "Arn": self._arn(self.url)}]
        )

    def _arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def poll(self, loader: Loader) -> dict[str, Any] | None:
        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return None
        records = []
        for m in messages:
            record = loader.record(
                body=m["Body"], receive_count=int(m["Attributes"]["ApproximateReceiveCount"])
            )
            record["messageId"] = m["MessageId"]
            records.append(record)
        response = loader.invoke(*records)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return response

    def depth(self, url: str) -> int:
        return sum(message_counts(url, self.sqs))

    def redrive(self) -> int:
        """Move the DLQ's messages back to the queue (what StartMessageMoveTask does)."""
        moved = 0
        while batch := self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10).get("Messages"):
            for m in batch:
                self.sqs.send_message(QueueUrl=self.url, MessageBody=m["Body"])
                self.sqs.delete_message(QueueUrl=self.dlq, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        return moved


def test_database_down_messages_are_retried_dead_lettered_and_loaded_once_it_is_back(outage, capsys):
    queue = LoadQueue(outage.pipeline)
    # Given the database is down
    outage.server.stop()
    # When a file is uploaded
    a = outage.process("incoming/sales/a.csv", SALES)["detail"]
    # Then processing is unaffected: the file is completed and its event waits in the load queue
    assert outage.pipeline.item({"key": a["object_key"], "version": a["version"]})["status"] == "completed"
    assert queue.depth(queue.url) == 1
    # When the loader receives it three times (maxReceiveCount) and fails each time
    capsys.readouterr()
    for _ in range(3):
        response = queue.poll(outage)
        assert response is not None and len(response["batchItemFailures"]) == 1
    # (each invocation returned normally, so Lambda's Errors stay 0: every failed attempt is
    # counted as LoadFailures, with this stack's name, which the loader-failures alarm reads)
    out = capsys.readouterr().out
    assert emitted_metrics(out)["LoadFailures"] == 3
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert {(m["service"], m["stack"]) for m in emf} == {("loader", STACK)}
    # Then the next receive moves it to the load DLQ, and its item says why it failed
    assert queue.poll(outage) is None
    assert (queue.depth(queue.url), queue.depth(queue.dlq)) == (0, 1)
    item = outage.pipeline.item({"key": a["object_key"], "version": a["version"]})
    assert item["load_status"] == "failed"
    assert item["load_error"].startswith(
        "gave up after 3 attempts: DatabaseUnavailable: database unavailable"
    )
    # When another file arrives while the database is still down
    b = outage.process("incoming/sales/b.csv", SALES + "2025-01-03,Gizmo,1,9.99\n")["detail"]
    assert outage.pipeline.item({"key": b["object_key"], "version": b["version"]})["status"] == "completed"
    assert queue.poll(outage) is not None  # fails; stays in the queue
    # When the database is back and the operator redrives the DLQ
    outage.server.start()
    assert queue.redrive() == 1
    while queue.depth(queue.url):
        assert queue.poll(outage) is not None
    # Then nothing was lost: both files are loaded, once, and the DLQ is empty
    assert outage.count("sales", a["object_key"]) == 2
    assert outage.count("sales", b["object_key"]) == 3
    assert outage.query(sql.SQL("SELECT count(*) FROM {}").format(outage.table("_files"))) == [(2,)]
    assert queue.depth(queue.dlq) == 0
    for detail in (a, b):
        item = outage.pipeline.item({"key": detail["object_key"], "version": detail["version"]})
        assert item["load_status"] == "loaded"
        assert "load_error" not in item


def test_a_connection_broken_by_a_restart_is_replaced_transparently(outage):
    # Given a loader that has loaded a file (its connection stays open between invocations)
    first = outage.process("incoming/sales/a.csv", SALES)
    assert outage.load(first) == {"batchItemFailures": []}
    # When the database restarts between two invocations (failover, maintenance)
    outage.server.stop()
    outage.server.start()
    # Then the next load reconnects and succeeds on its first attempt
    second = outage.process("incoming/sales/b.csv", SALES)
    assert outage.load(second) == {"batchItemFailures": []}
    assert outage.count("sales", second["detail"]["object_key"]) == 2


def test_a_rotated_password_is_picked_up(outage):
    # Given a loader that has read (and cached) the database secret
    first = outage.process("incoming/sales/a.csv", SALES)
    assert outage.load(first) == {"batchItemFailures": []}
    # When the password is rotated: changed in the database and in the secret
    rotated = dict(outage.server.secret(), password="rotated-" + outage.server.password)
    with psycopg.connect(outage.server.conninfo(superuser=True), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(rotated["username"]), sql.Literal(rotated["password"])
            )
        )
        # and the loader's open session ends (as when the database restarts)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [rotated["username"]]
        )
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=outage.env["DB_SECRET_ARN"], SecretString=json.dumps(rotated)
    )
    second = outage.process("incoming/sales/b.csv", SALES)
    try:
        # Then the next load fails to log in with the cached password, reads the secret
        # again and succeeds
        assert outage.load(second) == {"batchItemFailures": []}
    finally:
        with psycopg.connect(outage.server.conninfo(superuser=True), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(rotated["username"]), sql.Literal(outage.server.password)
                )
            )
    assert outage.count("sales", second["detail"]["object_key"]) == 2


@pytest.mark.parametrize("mistake", ["wrong port", "missing field"])
def test_a_corrected_secret_is_picked_up_at_once(outage, mistake):
    # Given a loader that read (and cached, for an hour) a wrong database secret: a port
    # nothing listens on, or a field missing; so its load failed
    secrets = boto3.client("secretsmanager", region_name=REGION)
    right = outage.server.secret()
    wrong = dict(right, port=free_port()) if mistake == "wrong port" else dict(right, dbname="")
    secrets.put_secret_value(SecretId=outage.env["DB_SECRET_ARN"], SecretString=json.dumps(wrong))
    event = outage.process("incoming/sales/a.csv", SALES)
    assert outage.load(event)["batchItemFailures"]
    # When the operator corrects the secret
    secrets.put_secret_value(SecretId=outage.env["DB_SECRET_ARN"], SecretString=json.dumps(right))
    # Then the next attempt, in the same execution environment, reads it again and loads
    assert outage.load(event) == {"batchItemFailures": []}
    assert outage.count("sales", event["detail"]["object_key"]) == 2
