"""End-to-end tests: a running stack, found through its outputs file.

    pytest tests/e2e                                   # starts the embedded runtime
    pytest tests/e2e --outputs stack.json              # any stack: pulumi stack output --json

Everything goes through AWS APIs (and the HTTP API), so the same tests run against the
embedded runtime, LocalStack and AWS. Keys carry a run id, so runs never collide on a
long-lived stack. At the end, even after a failure, what the run put on the stack is taken
away again, and nothing else: the raw versions it uploaded, the dead letters of its own
files (a DLQ of a shared stack may hold real ones: they stay, untouched), and the API keys
of the tenants it created (revoked, their records purged). What its files produced
(metadata items, Parquet, warehouse rows, Glue tables) stays, under its run id; the
metadata items expire (README "Tests").
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

from components.queues import visibility_timeout
from handlers.dal.queues import message_counts
from headrace.cli import main
from headrace.dlq import BATCH, Describer, Sweep
from headrace.outputs import INVOKE_CLIENT, StackOutputs

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "failed")
# The DLQs the tests' files may end in: --queue name -> the function that consumes its work queue.
CONSUMERS = {"processing": "processor", "load": "loader"}
# One attempt at a file that fails at once (a poison file): an invocation, a cold start of
# the package included, and the message's way back to the function.
ATTEMPT_SECONDS = 30


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
        self._tenants: list[str] = []

    @property
    def embedded(self) -> bool:
        return self.runtime is not None

    def key(self, dataset: str, name: str) -> str:
        return f"{self.outputs.raw_prefix}{dataset}/{self.run_id}-{name}"

    def is_mine(self, key: str) -> bool:
        """Whether ``key`` is one of this run's (see :meth:`key`)."""
        return key.startswith(self.outputs.raw_prefix) and f"/{self.run_id}-" in key

    def upload(self, key: str, body: bytes | str) -> str:
        """Put ``body`` at ``key`` in the raw bucket; return the version id."""
        data = body.encode() if isinstance(body, str) else body
        response = self.s3.put_object(Bucket=self.outputs.raw_bucket, Key=key, Body=data)
        self.track(key, response.get("VersionId", ""))
        return str(response.get("VersionId") or response["ETag"].strip('"'))

    def track(self, key: str, version: str) -> None:
        """A raw version this run put there by other means (the AWS CLI): removed at the end."""
        self._uploaded.append((key, version))

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
        why: str = "",
    ) -> dict[str, Any]:
        """The metadata item of ``key``'s ``version`` once ``done``; ``why``: how ``timeout``
        was arrived at, for the failure message."""
        deadline = time.monotonic() + timeout
        item: dict[str, Any] = {}
        while time.monotonic() < deadline:
            item = self.item(key, version)
            if item and done(item):
                return item
            time.sleep(0.5)
        raise AssertionError(
            f"{key} ({version}) did not get there within {timeout:.0f} s{f' ({why})' if why else ''}; "
            f"last seen: {item}"
        )

    def retries(self, queue: str) -> tuple[int, float, str]:
        """A file that fails every attempt on ``queue`` ("processing", "load"): how many
        attempts it gets (the work queue's maxReceiveCount), how long they take at most
        here, and how that bound was arrived at. The function hands such a message back at
        once, not after the visibility timeout: each attempt waits the event source's
        batching window and one invocation. Read from the stack, not assumed."""
        url = self.outputs.get(f"{queue}_queue_url")
        policy = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        attempts = int(json.loads(policy["RedrivePolicy"])["maxReceiveCount"])
        function = self.outputs.get("function_names")[CONSUMERS[queue]]
        window = max(
            (
                int(m.get("MaximumBatchingWindowInSeconds") or 0)
                for m in self.lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
                if m["EventSourceArn"].rsplit(":", 1)[-1] == url.rsplit("/", 1)[-1]
            ),
            default=0,
        )
        per_attempt = window + ATTEMPT_SECONDS
        why = (
            f"maxReceiveCount {attempts} x (batching window {window} s + {ATTEMPT_SECONDS} s an "
            f"invocation) + 60 s"
        )
        return attempts, attempts * per_attempt + 60, why

    def check_own_settings(self, function: str, queue_url: str) -> None:
        """Fail unless ``function`` and its queue run with the stack's own settings: no crash
        switch, the visibility timeout deployed. A test that changes them and puts back what
        it found would otherwise put back, for good, another run's change (two runs on one
        stack) or one an interrupted run left."""
        config = self.lam.get_function_configuration(FunctionName=function)
        environment = (config.get("Environment") or {}).get("Variables") or {}
        visibility = int(
            self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])[
                "Attributes"
            ]["VisibilityTimeout"]
        )
        windows = [
            int(m.get("MaximumBatchingWindowInSeconds") or 0)
            for m in self.lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        ]
        deployed = visibility_timeout(config["Timeout"], max(windows, default=0))
        crash_rate = environment.get("HEADRACE_CRASH_RATE", "0")
        if float(crash_rate) or visibility < deployed:
            pytest.fail(
                f"{function} runs with HEADRACE_CRASH_RATE={crash_rate} and its queue's visibility "
                f"timeout is {visibility} s (deployed: {deployed} s): another test run on this stack is "
                "using the crash switch, or an interrupted one left it on; `pulumi up --refresh` puts "
                "the stack's settings back"
            )

    def dead_letter(self, queue: str, key: str) -> bool:
        """Whether a message about ``key`` is in ``queue``'s DLQ: a pass over the whole DLQ,
        which on a shared stack may hold many other messages (one receive brings at most ten,
        a sample); each is visible again afterwards, none is consumed."""
        describe = Describer(queue, None)
        sweep = Sweep(self.sqs, self.outputs.get(f"{queue}_dlq_url"), 30)
        try:
            return any(describe.subject(m) == key for batch in sweep.batches() for m in batch)
        finally:
            sweep.release()

    def wait_for_dead_letter(self, queue: str, key: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.dead_letter(queue, key):
            assert time.monotonic() < deadline, f"the message of {key} did not reach the {queue} DLQ"
            time.sleep(1)

    def discard_dead_letters(self) -> int:
        """Delete this run's dead letters from the processing and load DLQs (its poison files
        end there; on a shared stack they would keep its DLQ alarm raised for 14 days).
        Every other message is left as it was: never a purge."""
        removed = 0
        for queue in CONSUMERS:
            describe, url = Describer(queue, None), self.outputs.get(f"{queue}_dlq_url")
            sweep = Sweep(self.sqs, url, 60)
            try:
                for batch in sweep.batches():
                    mine = [m for m in batch if self.is_mine(describe.subject(m))]
                    for start in range(0, len(mine), BATCH):
                        chunk = mine[start : start + BATCH]
                        self.sqs.delete_message_batch(
                            QueueUrl=url,
                            Entries=[
                                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                for i, m in enumerate(chunk)
                            ],
                        )
                    for m in mine:
                        sweep.forget(m["MessageId"])
                    removed += len(mine)
            finally:
                sweep.release()
        return removed

    def parquet_rows(self, item: dict[str, Any], columns: str = "*") -> list[tuple[Any, ...]]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "file.parquet"
            self.s3.download_file(self.outputs.processed_bucket, item["parquet_key"], str(path))
            return duckdb.sql(f"SELECT {columns} FROM read_parquet('{path}')").fetchall()

    def queue_depth(self, url: str) -> int:
        return sum(message_counts(url, self.sqs))

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

    def add_tenant(self, name: str) -> str:
        """A tenant of this run, created with `headrace tenants add`; its API key."""
        out = io.StringIO()
        self._tenants.append(name)
        with contextlib.redirect_stdout(out):
            assert main(["tenants", "add", name, "--outputs", str(self.outputs_path)]) == 0, out.getvalue()
        return out.getvalue().strip().splitlines()[-1]

    def remove_tenants(self) -> None:
        """Offboard this run's tenants (`headrace tenants purge --revoke-keys --execute`):
        their keys revoked, their stored records deleted. Not a test's keys left valid on a
        shared stack."""
        while self._tenants:
            name = self._tenants[-1]
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(
                    [
                        "tenants",
                        "purge",
                        name,
                        "--revoke-keys",
                        "--execute",
                        "--outputs",
                        str(self.outputs_path),
                    ]
                )
            assert code == 0, f"tenant {name} could not be offboarded: {out.getvalue()}"
            self._tenants.pop()

    def cleanup(self) -> None:
        """Take away what this run put on the stack (module docstring); every step is
        tried, the first failure raised at the end."""
        errors: list[BaseException] = []
        for step in (self.remove_tenants, self._delete_uploads, self.discard_dead_letters):
            try:
                step()
            except Exception as exc:  # the other steps still run
                errors.append(exc)
        if errors:
            raise errors[0]

    def _delete_uploads(self) -> None:
        while self._uploaded:
            key, version = self._uploaded[-1]
            extra = {"VersionId": version} if version else {}
            self.s3.delete_object(Bucket=self.outputs.raw_bucket, Key=key, **extra)
            self._uploaded.pop()


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
        try:
            yield deployed
        finally:
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
def tenants(stack: Stack) -> Iterator[dict[str, str]]:
    """Two tenants, created with `headrace tenants add` on the stack; name -> API key.
    Offboarded after the module (keys revoked, records purged), even if it failed. Each
    module's are new names: an offboarded tenant's name is refused to a new customer."""
    module = uuid.uuid4().hex[:4]
    try:
        yield {
            name: stack.add_tenant(name)
            for name in (f"acme{stack.run_id}{module}", f"beta{stack.run_id}{module}")
        }
    finally:
        stack.remove_tenants()


@pytest.fixture
def admin_session(stack: Stack) -> boto3.Session:
    return stack.outputs.session()
