"""The ingest API when SQS or DynamoDB stalls: every AWS call it makes is bounded by the
invocation's remaining time, so the client gets the documented 503 before the function's
timeout, never API Gateway's 500 for a killed function.

A stalled dependency is a local socket that accepts connections and never answers. The
function runs in the embedded runtime's own Lambda sandbox with its deployed timeout: the
sandbox kills an invocation that exceeds it, so an answered 503 proves the answer came
before the timeout (no clock is read by these tests)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ReadTimeoutError

from components.config import FUNCTION_DEFAULTS
from handlers.dal import aws
from handlers.logic.ingest.keys import generate_api_key, new_key_item
from handlers.models import tables
from headrace.local.emulator import Emulator, free_port
from headrace.local.executor import sandbox_environment
from headrace.local.sandbox import FunctionSpec, Invocation, Sandbox

from .ingest_support import api_event

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
INGEST_TIMEOUT_SECONDS = int(FUNCTION_DEFAULTS["ingest"]["timeout_seconds"])  # as deployed


class StalledEndpoint:
    """Accepts TCP connections, reads nothing, answers nothing; counts the connections."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._held.append(conn)

    @property
    def connections(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def stalled() -> Iterator[StalledEndpoint]:
    endpoint = StalledEndpoint()
    yield endpoint
    endpoint.close()


# ------------------------------------------------------------------ Deadline.call
@pytest.fixture
def stalled_sqs(stalled, monkeypatch) -> Iterator[StalledEndpoint]:
    """The ingest API's SQS client, pointed at a stalled endpoint."""
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL_SQS": stalled.url,
    }.items():
        monkeypatch.setenv(name, value)
    aws.api_client.cache_clear()
    yield stalled
    aws.api_client.cache_clear()


def send_one(endpoint: StalledEndpoint) -> Callable[[], Any]:
    entries = [{"Id": "0", "MessageBody": "{}"}]
    url = f"{endpoint.url}/123456789012/ingest"
    return lambda: aws.api_client("sqs").send_message_batch(QueueUrl=url, Entries=entries)


def remaining(*values_ms: int) -> Callable[[], int]:
    """A context's remaining time, as it reads before each attempt."""
    return iter(values_ms).__next__


def test_a_stalled_call_is_attempted_twice_when_time_allows(stalled_sqs):
    deadline = aws.Deadline(remaining(60_000, 60_000))
    with pytest.raises(ReadTimeoutError):
        deadline.call("SendMessageBatch", send_one(stalled_sqs))
    assert stalled_sqs.connections == 2  # the client's own retries are off: two in all


def test_no_attempt_starts_that_could_outlast_the_invocation(stalled_sqs):
    # Given a first attempt that times out, after which the time left (3 s) is less than an
    # attempt may take (1 s to connect + 2 s to read) plus the reserve to answer
    needed = aws.API_ATTEMPT_MS + aws.ANSWER_RESERVE_MS
    deadline = aws.Deadline(remaining(needed, needed - 500))
    # Then the first attempt's error is raised without a second attempt
    with pytest.raises(ReadTimeoutError):
        deadline.call("SendMessageBatch", send_one(stalled_sqs))
    assert stalled_sqs.connections == 1
    # and with too little time from the start, nothing is attempted at all
    with pytest.raises(aws.OutOfTime, match="SendMessageBatch not attempted: 3499 ms"):
        aws.Deadline(remaining(needed - 1)).call("SendMessageBatch", send_one(stalled_sqs))
    assert stalled_sqs.connections == 1


def test_only_transient_failures_are_attempted_again():
    calls: list[str] = []

    def refused() -> None:
        calls.append("call")
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetItem")

    with pytest.raises(ClientError):
        aws.Deadline(remaining(60_000, 60_000)).call("GetItem", refused)
    assert calls == ["call"]
    throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem")
    assert aws.transient(throttled)
    assert aws.transient(ClientError({"ResponseMetadata": {"HTTPStatusCode": 500}}, "GetItem"))


# ------------------------------------------------------------------ the function, in its sandbox
@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = Emulator(port=free_port())
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def tenant_key(emulator) -> tuple[str, str, str]:
    """A key table (holding a key of tenant acme) and a logs table, in the emulator."""
    ddb = boto3.resource(
        "dynamodb",
        endpoint_url=emulator.endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    suffix = uuid.uuid4().hex[:8]
    keys_table, logs_table = f"keys-{suffix}", f"logs-{suffix}"
    ddb.meta.client.create_table(**tables.TENANT_KEYS.boto3_create_args(keys_table))
    ddb.meta.client.create_table(**tables.TENANT_LOGS.boto3_create_args(logs_table))
    key = generate_api_key()
    ddb.Table(keys_table).put_item(Item=new_key_item("acme", key, datetime.now(UTC)))
    return key, keys_table, logs_table


def invoke_ingest_api(
    tmp_path: Path, emulator: Emulator, environment: dict[str, str], event: dict[str, Any], **endpoints: str
) -> Invocation:
    """One invocation of the ingest API in a Lambda sandbox with the deployed timeout;
    ``endpoints`` (``AWS_ENDPOINT_URL_SQS=...``) send a service's calls elsewhere."""
    spec = FunctionSpec(
        name="ingest",
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:ingest",
        handler="handlers.ingest_api.lambda_handler",
        environment=environment,
        timeout_seconds=INGEST_TIMEOUT_SECONDS,
        memory_mb=256,
    )
    env = sandbox_environment(spec, emulator.endpoint, REGION, Credentials("test", "test"), tmp_path)
    sandbox = Sandbox(spec, {**env, **endpoints}, ROOT, tmp_path / "ingest.log")
    try:
        return sandbox.invoke(event)
    finally:
        sandbox.kill()


def post(key: str) -> dict[str, Any]:
    records = [{"tenant_id": "acme", "text": f"r{i}", "log_id": f"r-{i}"} for i in range(3)]
    headers = {"content-type": "application/json", "x-api-key": key}
    return api_event("POST", "/ingest", body=json.dumps(records), headers=headers)


def test_a_stalled_queue_is_a_503_before_the_functions_timeout(tmp_path, emulator, stalled, tenant_key):
    # Given a valid key (its table answers) and an ingest queue that never answers
    key, keys_table, logs_table = tenant_key
    environment = {
        "INGEST_QUEUE_URL": f"{stalled.url}/123456789012/ingest",
        "TENANT_KEYS_TABLE": keys_table,
        "TENANT_LOGS_TABLE": logs_table,
    }
    # When records are posted
    result = invoke_ingest_api(tmp_path, emulator, environment, post(key), AWS_ENDPOINT_URL_SQS=stalled.url)
    # Then the function answered (it was not killed at its timeout) with the documented 503,
    # naming every record as not confirmed, so the client retries them with their log ids
    assert result.ok, (result.error_type, result.error)
    assert result.response["statusCode"] == 503
    body = json.loads(result.response["body"])
    assert (body["enqueued_log_ids"], body["failed_log_ids"]) == ([], ["r-0", "r-1", "r-2"])
    assert stalled.connections >= 1  # the queue was tried


def test_a_stalled_key_table_is_a_503_before_the_functions_timeout(tmp_path, emulator, stalled, tenant_key):
    key, keys_table, logs_table = tenant_key
    environment = {
        "INGEST_QUEUE_URL": f"{emulator.endpoint}/123456789012/ingest",
        "TENANT_KEYS_TABLE": keys_table,
        "TENANT_LOGS_TABLE": logs_table,
    }
    result = invoke_ingest_api(
        tmp_path, emulator, environment, post(key), AWS_ENDPOINT_URL_DYNAMODB=stalled.url
    )
    assert result.ok, (result.error_type, result.error)
    assert result.response["statusCode"] == 503
    assert "authentication is temporarily unavailable" in json.loads(result.response["body"])["error"]
    assert stalled.connections >= 1
