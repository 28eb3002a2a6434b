"""End-to-end tests: a running stack, found through its outputs file.

    pytest tests/e2e                                   # starts the embedded runtime
    pytest tests/e2e --outputs stack.json              # any stack: pulumi stack output --json

Everything goes through AWS APIs (and the HTTP API), so the same tests run against the
embedded runtime, LocalStack and AWS. Keys carry a run id, so runs never collide on a
long-lived stack, and uploaded objects are removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import duckdb
import psycopg
import pytest
from boto3.dynamodb.types import TypeDeserializer

from handlers.dal.queues import message_counts
from headrace.cli import main
from headrace.outputs import INVOKE_CLIENT, StackOutputs

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "failed")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--outputs",
        default=None,
        help="stack outputs file (pulumi stack output --json); without it the embedded runtime is started",
    )


class Stack:
    """A deployed pipeline, seen only through its outputs."""

    def __init__(
        self,
        outputs: StackOutputs,
        outputs_path: Path,
        invoke: Callable[[str, Any], Any],
        runtime: Any = None,
    ):
        self.outputs = outputs
        self.outputs_path = outputs_path
        self.runtime = runtime  # the embedded runtime when the tests started it
        self._invoke = invoke
        self.run_id = uuid.uuid4().hex[:8]
        self.s3 = outputs.client("s3")
        self.sqs = outputs.client("sqs")
        self.ddb = outputs.client("dynamodb")
        self.lam = outputs.client("lambda")
        self._uploaded: list[tuple[str, str]] = []

    @property
    def embedded(self) -> bool:
        return self.runtime is not None

    def key(self, dataset: str, name: str) -> str:
        return f"{self.outputs.raw_prefix}{dataset}/{self.run_id}-{name}"

    def upload(self, key: str, body: bytes | str) -> str:
        """Put ``body`` at ``key`` in the raw bucket; return the version id."""
        data = body.encode() if isinstance(body, str) else body
        response = self.s3.put_object(Bucket=self.outputs.raw_bucket, Key=key, Body=data)
        self._uploaded.append((key, response.get("VersionId", "")))
        return str(response.get("VersionId") or response["ETag"].strip('"'))

    def item(self, key: str, version: str) -> dict[str, Any]:
        response = self.ddb.get_item(
            TableName=self.outputs.metadata_table, Key={"object_key": {"S": key}, "version": {"S": version}}
        )
        deserialize = TypeDeserializer().deserialize
        return {k: deserialize(v) for k, v in response.get("Item", {}).items()}

    def wait_for(
        self,
        key: str,
        version: str,
        done: Callable[[dict[str, Any]], bool] = lambda item: item.get("status") in TERMINAL,
        timeout: float = 120,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        item: dict[str, Any] = {}
        while time.monotonic() < deadline:
            item = self.item(key, version)
            if item and done(item):
                return item
            time.sleep(0.5)
        raise AssertionError(f"{key} ({version}) did not get there within {timeout:.0f} s; last seen: {item}")

    def parquet_rows(self, item: dict[str, Any], columns: str = "*") -> list[tuple[Any, ...]]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "file.parquet"
            self.s3.download_file(self.outputs.processed_bucket, item["parquet_key"], str(path))
            return duckdb.sql(f"SELECT {columns} FROM read_parquet('{path}')").fetchall()

    def queue_depth(self, url: str) -> int:
        return sum(message_counts(url, self.sqs))

    def peek(self, url: str) -> list[dict[str, Any]]:
        """Messages visible in ``url``, made visible again straight away."""
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1).get(
            "Messages", []
        )
        for m in messages:
            self.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return messages

    def api(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A request to the ingest HTTP API (POST with a body, else GET): (status, JSON answer)."""
        request = urllib.request.Request(
            self.outputs.ingest_api_url.rstrip("/") + path,
            data=body,
            headers=headers or {},
            method="POST" if body is not None else "GET",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def invoke(self, function: str, payload: Any) -> Any:
        """Invoke a deployed function by its logical name (``report``, ...)."""
        return self._invoke(self.outputs.get("function_names")[function], payload)

    def database(self) -> Any:
        """A connection to the warehouse with the pipeline's own secret (network access to the
        database needed: embedded runtime and LocalStack yes; RDS only from inside its VPC,
        so on an AWS stack an unreachable database skips the test, saying why)."""
        try:
            return self.outputs.connect_warehouse(connect_timeout=5)
        except psycopg.OperationalError as exc:
            if self.outputs.aws_endpoint_url is not None:  # embedded runtime, LocalStack: a failure
                raise
            pytest.skip(
                f"the warehouse is not reachable from here (RDS is private to its VPC; run from "
                f"inside it to check the rows): {str(exc).splitlines()[0]}"
            )

    def cleanup(self) -> None:
        for key, version in self._uploaded:
            extra = {"VersionId": version} if version else {}
            self.s3.delete_object(Bucket=self.outputs.raw_bucket, Key=key, **extra)


def _aws_invoke(outputs: StackOutputs) -> Callable[[str, Any], Any]:
    lam = outputs.client("lambda", **INVOKE_CLIENT)  # one attempt: a retry runs the function again

    def invoke(function: str, payload: Any) -> Any:
        response = lam.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise AssertionError(f"{function} failed: {body}")
        return body

    return invoke


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    path = request.config.getoption("--outputs")
    if path:
        outputs = StackOutputs.load(path)
        deployed = Stack(outputs, Path(path), _aws_invoke(outputs))
        yield deployed
        deployed.cleanup()
        return
    from headrace.local.emulator import free_port
    from headrace.local.runtime import LocalRuntime

    runtime = LocalRuntime(
        ROOT, state_dir=tmp_path_factory.mktemp("local"), port=free_port(), api_port=free_port()
    )
    with runtime:
        outputs = StackOutputs.model_validate(runtime.outputs)
        # through the Lambda API, as on a deployed stack: the emulator hands it to the executor
        yield Stack(outputs, runtime.outputs_path, _aws_invoke(outputs), runtime)


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> dict[str, str]:
    """Two tenants, created with `headrace tenants add` on the stack; name -> API key."""
    keys = {}
    for name in (f"acme{stack.run_id}", f"beta{stack.run_id}"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["tenants", "add", name, "--outputs", str(stack.outputs_path)]) == 0
        keys[name] = out.getvalue().strip().splitlines()[-1]
    return keys


@pytest.fixture
def admin_session(stack: Stack) -> boto3.Session:
    return stack.outputs.session()
