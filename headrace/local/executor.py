"""The embedded runtime's Lambda service: runs the handlers of whatever is deployed.

Everything is discovered through the emulator's own APIs (Lambda functions and their
configuration, event source mappings, EventBridge schedules, API Gateway routes), so the
executor drives any stack deployed against the endpoint — the embedded deployment, or a
``pulumi up -s local`` pointed at it. Semantics follow AWS:

- SQS event source mappings: long polling; batches of up to ``BatchSize`` messages, waiting
  up to ``MaximumBatchingWindowInSeconds`` to fill them; at most ``MaximumConcurrency``
  batches in flight; with ``ReportBatchItemFailures`` only the reported messages stay on
  the queue, otherwise a failed invocation leaves the whole batch. Messages left on the
  queue come back after its visibility timeout; SQS (the emulator) moves a message to its
  DLQ on the receive after ``maxReceiveCount``.
- Functions: each runs in its own warm worker processes (``sandbox.Sandbox``), killed and
  replaced when an invocation exceeds the function's timeout or its memory size. A new configuration, or
  (given a ``CodeWatch``: ``local up``) an edit of the handlers' code, retires them as a
  function update does: the next invocations run in fresh ones. Whatever invokes a
  function gets its response as Lambda's runtime returns it, as JSON: one it cannot
  marshal fails the invocation (Runtime.MarshalError), and so does one over 6 MB
  (Function.ResponseSizeTooLarge), for every trigger.
- Schedules: ``rate(...)`` and ``cron(...)`` rules on the default bus, and EventBridge
  Scheduler schedules, invoking Lambda targets with their configured input.
- Asynchronous invocations (schedules, ``aws lambda invoke --invocation-type Event``): a
  function error is retried twice, one minute and then two minutes later, as Lambda's
  default for an asynchronous event; then the event is dropped.
- HTTP APIs: API Gateway v2 routes served on a local port, with payload format 2.0; a
  body reaches the function as text only for the content types API Gateway passes as text
  (``passed_as_text``), else base64-encoded; a request whose event exceeds Lambda's
  invocation payload limit is refused as API Gateway refuses it (413), without invoking
  the function; a response Lambda cannot return (not JSON, over 6 MB) or API Gateway
  cannot map is API Gateway's 500. A client has REQUEST_READ_SECONDS (30) to send a whole
  request, then its connection is closed (this port's and the Invoke API's).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from botocore.credentials import Credentials

from .codewatch import CodeWatch, some
from .cron import ScheduleError, next_fire
from .logs import LogForwarder
from .sandbox import FunctionSpec, Invocation, Sandbox

log = logging.getLogger("headrace.local")

POLL_SECONDS = 2  # long-poll wait per receive; short enough to stop promptly
WATCH_SECONDS = 2  # how often function configurations are checked for changes
DEFAULT_CONCURRENCY = 4  # a mapping's MaximumConcurrency when it sets none
ACCOUNT_CONCURRENCY = 64  # sandboxes per function at most
# Lambda's waits before retrying an asynchronous event whose invocation failed (its default
# MaximumRetryAttempts, 2).
ASYNC_RETRY_DELAYS = (60.0, 120.0)


@dataclass(frozen=True)
class QueueMapping:
    uuid: str
    function: str
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    window_seconds: float = 0.0
    max_concurrency: int = DEFAULT_CONCURRENCY
    report_batch_item_failures: bool = False


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    function: str
    payload: Any  # the target's configured input; None: EventBridge's "Scheduled Event"
    rule_arn: str = ""


@dataclass(frozen=True)
class Route:
    api_id: str
    key: str  # "POST /ingest", "ANY /{proxy+}", "$default"
    function: str
    function_url: bool = False  # a Lambda function URL, not an HTTP API route


@dataclass
class Deployment:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    mappings: list[QueueMapping] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


# ------------------------------------------------------------------------------ discovery
def _function_name(arn: str) -> str:
    """Function name from a Lambda ARN or an API Gateway Lambda invocation URI."""
    match = re.search(r"function:([^:/]+)", arn)
    return match.group(1) if match else arn


def discover_functions(client: Callable[[str], Any]) -> dict[str, FunctionSpec]:
    functions: dict[str, FunctionSpec] = {}
    for page in client("lambda").get_paginator("list_functions").paginate():
        for f in page["Functions"]:
            functions[f["FunctionName"]] = FunctionSpec(
                name=f["FunctionName"],
                arn=f["FunctionArn"],
                handler=f["Handler"],
                environment=dict(f.get("Environment", {}).get("Variables", {})),
                timeout_seconds=int(f.get("Timeout", 3)),
                memory_mb=int(f.get("MemorySize", 128)),
                role=f.get("Role", ""),
                log_group=f.get("LoggingConfig", {}).get("LogGroup", ""),
                runtime=f.get("Runtime", "python3.12"),
            )
    return functions


def discover_mappings(client: Callable[[str], Any]) -> list[QueueMapping]:
    """Enabled SQS event source mappings."""
    sqs = client("sqs")
    mappings = []
    for m in client("lambda").list_event_source_mappings().get("EventSourceMappings", []):
        arn = m.get("EventSourceArn", "")
        if not arn.startswith("arn:aws:sqs:") or m.get("State", "Enabled") not in (
            "Enabled",
            "Creating",
            "Enabling",
        ):
            continue
        *_, account, queue = arn.split(":")
        mappings.append(
            QueueMapping(
                uuid=m["UUID"],
                function=_function_name(m["FunctionArn"]),
                queue_arn=arn,
                queue_url=sqs.get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"],
                batch_size=int(m.get("BatchSize", 10)),
                window_seconds=float(m.get("MaximumBatchingWindowInSeconds", 0)),
                max_concurrency=int(
                    m.get("ScalingConfig", {}).get("MaximumConcurrency", DEFAULT_CONCURRENCY)
                ),
                report_batch_item_failures="ReportBatchItemFailures" in m.get("FunctionResponseTypes", []),
            )
        )
    return mappings


def discover(client: Callable[[str], Any]) -> Deployment:
    """Read what is deployed from the emulator. ``client(service)`` returns a boto3 client."""
    functions = discover_functions(client)
    return Deployment(
        functions=functions,
        mappings=discover_mappings(client),
        schedules=list(_schedules(client)),
        routes=list(_routes(client, functions)),
    )


def _schedules(client: Callable[[str], Any]) -> Iterable[Schedule]:
    events = client("events")
    for rule in events.list_rules().get("Rules", []):
        expression = rule.get("ScheduleExpression")
        if not expression or rule.get("State") == "DISABLED":
            continue
        for target in events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", []):
            if ":lambda:" in target["Arn"]:
                payload = json.loads(target["Input"]) if target.get("Input") else None
                yield Schedule(
                    rule["Name"], expression, _function_name(target["Arn"]), payload, rule.get("Arn", "")
                )
    try:
        scheduler = client("scheduler")
        for summary in scheduler.list_schedules().get("Schedules", []):
            s = scheduler.get_schedule(Name=summary["Name"], GroupName=summary.get("GroupName", "default"))
            target = s["Target"]
            if s.get("State") != "DISABLED" and ":lambda:" in target["Arn"]:
                payload = json.loads(target["Input"]) if target.get("Input") else {}
                yield Schedule(s["Name"], s["ScheduleExpression"], _function_name(target["Arn"]), payload)
    except Exception as exc:
        log.debug("no EventBridge Scheduler schedules: %s", exc)


def scheduled_event(schedule: Schedule) -> Any:
    """What the target receives when the schedule fires (built at that moment)."""
    if schedule.payload is not None:
        return schedule.payload
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [schedule.rule_arn],
        "detail": {},
    }


def _routes(client: Callable[[str], Any], functions: Iterable[str] = ()) -> Iterable[Route]:
    """HTTP API routes, and Lambda function URLs (every path goes to the function)."""
    lam = client("lambda")
    for name in functions:
        try:
            url = lam.get_function_url_config(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            continue
        yield Route(url["FunctionUrl"], "$default", name, function_url=True)
    api = client("apigatewayv2")
    for item in api.get_apis().get("Items", []):
        integrations = {
            i["IntegrationId"]: i for i in api.get_integrations(ApiId=item["ApiId"]).get("Items", [])
        }
        for route in api.get_routes(ApiId=item["ApiId"]).get("Items", []):
            target = route.get("Target", "")
            integration = integrations.get(target.removeprefix("integrations/"))
            if integration and "lambda" in integration.get("IntegrationUri", ""):
                yield Route(item["ApiId"], route["RouteKey"], _function_name(integration["IntegrationUri"]))


# ------------------------------------------------------------------------------ functions
class FunctionPool:
    """Warm sandboxes of one function, at most ``concurrency`` at a time. A new
    configuration (``reconfigure``) or new code (``retire``) retires the sandboxes of the
    old one, as on AWS: idle ones at once, a busy one once its invocation ends.
    Their output goes to ``log_dir/<name>.log`` and, given ``logs``, to CloudWatch Logs."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        root: Path,
        log_dir: Path,
        concurrency: int,
        logs: LogForwarder | None = None,
    ):
        self.spec = spec
        self._env = env
        self._root = root
        self._log_path = log_dir / f"{spec.name}.log"
        self._logs = logs
        self._idle: list[Sandbox] = []
        # Bumped by each retirement: a sandbox taken before it is not put back afterwards.
        self._generation = 0
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, event: Any) -> Invocation:
        # Sandboxes are killed outside the lock: a kill waits for the sandbox's output (up to
        # DRAIN_SECONDS when a process it started holds the pipe), and under the lock every
        # other invocation of the function would wait with it.
        with self._slots:
            dead: list[Sandbox] = []
            with self._lock:
                if self._closed:
                    # the runtime is stopping (an asynchronous event or a schedule's firing
                    # that raced with it): a new sandbox would outlive the stop
                    return Invocation(
                        ok=False, error_type="Runtime.Stopping", error="the runtime is stopping: not invoked"
                    )
                sandbox = self._idle.pop() if self._idle else None
                while sandbox is not None and not sandbox.alive():  # died while idle (killed, OOM)
                    dead.append(sandbox)
                    sandbox = self._idle.pop() if self._idle else None
                spec, env, generation = self.spec, self._env, self._generation
            for gone in dead:
                gone.kill()
            if sandbox is None:
                sandbox = Sandbox(spec, env, self._root, self._log_path, self._logs)
            result = sandbox.invoke(event)
            with self._lock:
                keep = (
                    sandbox.alive()
                    and not self._closed
                    and sandbox.spec == self.spec
                    and generation == self._generation
                )
                if keep:
                    self._idle.append(sandbox)
            if not keep:
                sandbox.kill()
            return result

    def reconfigure(self, spec: FunctionSpec, env: dict[str, str]) -> None:
        with self._lock:
            self.spec, self._env = spec, env
            retired = self._retire_locked()
        for sandbox in retired:
            sandbox.kill()

    def retire(self) -> None:
        """The next invocations run in fresh sandboxes (the function's code changed): the
        idle sandboxes end now; one busy with an invocation finishes it on the code it
        started with, then ends instead of serving the next."""
        with self._lock:
            retired = self._retire_locked()
        for sandbox in retired:
            sandbox.kill()

    def _retire_locked(self) -> list[Sandbox]:
        """Start a new generation of sandboxes; the idle ones, to be killed (outside the lock)."""
        self._generation += 1
        retired, self._idle = self._idle, []
        return retired

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sandbox in idle:
            sandbox.kill()


# ------------------------------------------------------------------------------ SQS
def lambda_sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS API message in the shape Lambda passes to the function."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode()
            if "BinaryValue" in value
            else None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def record_label(body: str) -> str:
    """A short description of what a message is about, for the invocation log."""
    try:
        data = json.loads(body)
    except ValueError:
        return "(not JSON)"
    if not isinstance(data, dict):
        return "(not an object)"
    detail: dict[str, Any] = data["detail"] if isinstance(data.get("detail"), dict) else {}
    obj: dict[str, Any] = detail["object"] if isinstance(detail.get("object"), dict) else {}
    for value in (
        obj.get("key"),
        detail.get("object_key"),
        data.get("log_id") and f"{data.get('tenant_id')}/{data.get('log_id')}",
    ):
        if value:
            return str(value)
    return "(message)"


class SqsPoller(threading.Thread):
    def __init__(
        self, mapping: QueueMapping, pool: FunctionPool, sqs: Any, region: str, report: Callable[..., None]
    ):
        super().__init__(name=f"poller:{mapping.function}", daemon=True)
        self.mapping = mapping
        self.pool = pool
        self.sqs = sqs
        self.region = region
        self.stop_event = threading.Event()
        self.report = report
        self._slots = threading.BoundedSemaphore(mapping.max_concurrency)
        self._workers = ThreadPoolExecutor(
            mapping.max_concurrency, thread_name_prefix=f"batch:{mapping.function}"
        )

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self._slots.acquire(timeout=0.5):
                    continue
                try:
                    batch = self._collect()
                except Exception as exc:
                    log.debug("receive from %s failed: %s", self.mapping.queue_url, exc)
                    batch = []
                    self.stop_event.wait(1)
                if not batch:
                    self._slots.release()
                    continue
                self._workers.submit(self._invoke, batch).add_done_callback(lambda _: self._slots.release())
        finally:
            self._workers.shutdown(wait=True)

    def _collect(self) -> list[dict[str, Any]]:
        mapping = self.mapping
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(batch) < mapping.batch_size and not self.stop_event.is_set():
            if batch and mapping.window_seconds <= 0:
                break
            wait = POLL_SECONDS
            if deadline is not None:
                wait = max(0, min(POLL_SECONDS, int(deadline - time.monotonic())))
            messages = self.sqs.receive_message(
                QueueUrl=mapping.queue_url,
                MaxNumberOfMessages=min(10, mapping.batch_size - len(batch)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if messages and deadline is None:
                deadline = time.monotonic() + mapping.window_seconds
            batch.extend(messages)
            if not batch:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                break
        return batch

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        mapping = self.mapping
        event = {"Records": [lambda_sqs_record(m, mapping.queue_arn, self.region) for m in messages]}
        result = self.pool.invoke(event)
        failed = {m["MessageId"] for m in messages}
        if result.ok:
            failed = self._reported_failures(result.response, failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ]
            self.sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=entries)
        self.report(mapping.function, messages, failed, result)

    def _reported_failures(self, response: Any, everything: set[str]) -> set[str]:
        if not self.mapping.report_batch_item_failures:
            return set()
        if response is None or (isinstance(response, dict) and not response.get("batchItemFailures")):
            return set()
        try:
            ids = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        except (TypeError, KeyError):
            return everything  # an invalid partial-batch response fails the whole batch, as on AWS
        return ids if ids <= everything else everything


# ------------------------------------------------------------------------------ schedules
class Scheduler(threading.Thread):
    def __init__(
        self,
        schedules: list[Schedule],
        invoke_async: Callable[[str, Any, str], None],
        stop: threading.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        super().__init__(name="scheduler", daemon=True)
        self.schedules = schedules
        self.invoke_async = invoke_async
        self.stop_event = stop
        self.clock = clock

    def run(self) -> None:
        now = self.clock()
        due = {s.name: _next_fire(s, now) for s in self.schedules}
        while not self.stop_event.wait(1):
            now = self.clock()
            for schedule in self.schedules:
                when = due[schedule.name]
                if when is not None and when <= now:
                    due[schedule.name] = _next_fire(schedule, now + timedelta(seconds=1))
                    self.invoke_async(
                        schedule.function, scheduled_event(schedule), f"schedule {schedule.name}"
                    )


def _next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """When ``schedule`` fires next; None, said in the log, when the local runtime cannot
    tell (an expression that never fires): that schedule stays idle, the others run."""
    try:
        return next_fire(schedule.expression, after)
    except ScheduleError as exc:
        log.error("schedule %s (%s) will not run locally: %s", schedule.name, schedule.function, exc)
        return None


# ------------------------------------------------------------------------------ HTTP API
class MalformedResponse(Exception):
    """A function's answer that API Gateway cannot turn into an HTTP response."""


class BadFraming(Exception):
    """A request whose body cannot be read as sent: answered with ``status`` (None: the
    client is gone, nothing to answer) and the connection closed."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# Lambda refuses a synchronous invocation whose payload (the event's JSON) is larger than
# this: RequestEntityTooLargeException, "Request must be smaller than 6291456 bytes for the
# InvokeFunction operation".
LAMBDA_MAX_REQUEST_BYTES = 6 * 1024 * 1024
# ... and an asynchronous one (InvocationType Event) larger than this: 1 MB since October
# 2025 (256 KB before).
LAMBDA_MAX_ASYNC_REQUEST_BYTES = 1024 * 1024


def event_bytes(event: Any) -> int:
    """The size of ``event`` as the JSON a function is invoked with. API Gateway passes the
    body as a JSON string, so it grows: a control character becomes six bytes (``\u001b``),
    a quote or backslash two, and a body that is not UTF-8 is base64 (4/3 of its size)."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


# The media types whose bodies an HTTP API (and a function URL) passes to the function as
# text; every other body, one without a Content-Type included, arrives base64-encoded with
# isBase64Encoded true. AWS documents only "if the content type is binary"; this split was
# measured against real HTTP APIs (payload 2.0) by two emulators independently
# (ministackorg/ministack PR #766; floci-io/floci issue #2172 and PR #2203): text/*,
# application/json, application/xml and application/javascript are text, with no charset
# or charset=utf-8, while text/plain; charset=iso-8859-1 and application/x-www-form-urlencoded
# are base64.
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})


def passed_as_text(content_type: str | None) -> bool:
    """Whether API Gateway passes a body sent with ``content_type`` as text (else base64)."""
    if not content_type:
        return False
    kind, *params = content_type.split(";")
    kind = kind.strip().lower()
    if not (kind.startswith("text/") or kind in TEXT_MEDIA_TYPES):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


# How long a client has to send a whole request (request line, headers and body), from
# when the server starts waiting for it, including the wait between two requests of a
# keep-alive connection; and how long one write of the answer may wait on a client that
# does not read. Then the connection is closed, as API Gateway closes it. Without a bound,
# a client that sent half a request (or none, or one byte every few seconds) held a
# server thread for as long as it kept the connection open. AWS publishes no figure for
# this; 30 s is its integration timeout, and ample for 10 MB over loopback.
REQUEST_READ_SECONDS = 30.0


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each given what is left of ``handler.read_deadline``: one
    slow read cannot last longer than the request may, nor can many slow ones together."""

    def __init__(self, sock: socket.socket, handler: _QuietHandler):
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._handler.read_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request was not received within {REQUEST_READ_SECONDS:g} s")
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(REQUEST_READ_SECONDS)  # for the answer's writes


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add 40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    read_deadline = 0.0

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by one keeping the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle_one_request(self) -> None:
        # A read past the deadline raises TimeoutError, which the base class answers by
        # closing the connection (at any point of the request: before its first byte,
        # in its headers or in its body; the function is not invoked).
        self.read_deadline = time.monotonic() + REQUEST_READ_SECONDS
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _send(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    request.send_response(status)
    for name, value in headers.items():
        if name != "content-length":
            request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)


class _LoopbackServer:
    """A threaded HTTP server (``port`` 0: any free one), served from a daemon thread."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], host: str, port: int, name: str) -> None:
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class InvokeBridge(_LoopbackServer):
    """The Lambda Invoke API's back end: the emulator forwards ``aws lambda invoke`` here
    (adjustment 19 of ``headrace.local.motoserver``), and the function runs in its pool like
    any other invocation. Loopback only; a request must carry ``token`` (the emulator reads
    it, with the address, from a file only this user can read), so the port is no way
    around the emulator's IAM check of ``lambda:InvokeFunction``.

    ``POST /<function>`` with the event as its body and ``X-Invocation-Type``; the answer is
    ``{"ok", "response", "error_type", "error", "stack_trace", "request_id"}`` (``Event``:
    202 at once, run after)."""

    def __init__(
        self,
        invoke: Callable[[str, Any], Invocation],
        invoke_async: Callable[[str, Any, str], None],
        functions: Iterable[str],
        host: str = "127.0.0.1",
    ):
        self.token = secrets.token_urlsafe(32)
        bridge, known = self, frozenset(functions)

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                function = unquote(self.path.lstrip("/"))
                if not hmac.compare_digest(self.headers.get("X-Bridge-Token", ""), bridge.token):
                    return self._answer(403, {"error": "not the emulator"})
                if function not in known:
                    return self._answer(
                        404,
                        {
                            "error": f"the executor runs no function {function!r} (made after the "
                            "runtime started? restart `headrace local up`)"
                        },
                    )
                try:
                    event = json.loads(body or b"{}")
                except ValueError as exc:  # the emulator refuses it first; never a traceback here
                    return self._answer(400, {"error": f"the event is not JSON: {exc}"})
                if self.headers.get("X-Invocation-Type") == "Event":
                    invoke_async(function, event, "invoke")
                    return self._answer(202, {})
                result = invoke(function, event)
                fields = ("ok", "response", "error_type", "error", "stack_trace", "request_id")
                self._answer(200, {k: getattr(result, k) for k in fields})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                _send(
                    self, status, {"content-type": "application/json"}, json.dumps(body, default=str).encode()
                )

        self._serve(Handler, host, 0, "invoke")


class ApiServer(_LoopbackServer):
    """API Gateway HTTP API (payload format 2.0) in front of the routes' functions."""

    MAX_BODY = 10 * 1024 * 1024  # API Gateway's own limit on a request body

    def __init__(
        self,
        routes: list[Route],
        pools: dict[str, FunctionPool],
        host: str,
        port: int,
        report: Callable[..., None],
    ):
        self.routes = routes
        self.pools = pools
        self.report = report
        server = self

        class Handler(_QuietHandler):
            def _handle(self) -> None:
                server.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        self._serve(Handler, host, port, "api")

    def match(self, method: str, path: str) -> Route | None:
        exact = [r for r in self.routes if r.key in (f"{method} {path}", f"ANY {path}")]
        if exact:
            return exact[0]
        for route in self.routes:
            if route.key == "$default":
                continue
            route_method, _, pattern = route.key.partition(" ")
            if route_method not in (method, "ANY"):
                continue
            regex = re.sub(r"\\\{[^/]+\\\+\\\}", ".+", re.sub(r"\\\{[^/+]+\\\}", "[^/]+", re.escape(pattern)))
            if re.fullmatch(regex, path):
                return route
        return next((r for r in self.routes if r.key == "$default"), None)

    @staticmethod
    def target(request: BaseHTTPRequestHandler) -> SplitResult:
        """The request target's path and query as the client sent them. ``request.path``
        is not: http.server reduces a leading ``//`` to ``/`` (against open redirects from
        its file server), whereas API Gateway passes the path as sent (``GET //logs`` has
        the rawPath ``//logs``, which is not the route ``/logs``)."""
        words = request.requestline.split()
        target = words[1] if len(words) >= 2 else request.path
        if not target.startswith("/"):
            return urlsplit(target)  # absolute form: http://host/path?query
        path, _, query = target.partition("#")[0].partition("?")
        return SplitResult("", "", path, query, "")

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = self.target(request)
        route = self.match(request.command, url.path)
        try:
            body = self.read_body(request)
        except BadFraming as refused:
            # The rest of the connection cannot be trusted to start at a request: close it.
            request.close_connection = True
            if refused.status:
                message = json.dumps({"message": refused.message}).encode()
                _send(request, refused.status, {"content-type": "application/json"}, message)
            return
        if route is None:
            return _send(request, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
        event = self.event(request, route, url, body)
        size = event_bytes(event)
        if size > LAMBDA_MAX_REQUEST_BYTES:
            # Lambda refuses the invocation (RequestEntityTooLargeException), so the function
            # never runs; an HTTP API then answers 413 {"message":"Request Entity Too Large"}
            # (a REST API: 413 "Request Too Long"). That is what AWS's own emulator does for
            # this error (aws/aws-lambda-dotnet, LambdaTestTool-v2: ApiGatewayEmulatorProcess
            # and InvokeResponseExtensions.ToHttpApiV2RequestTooLargeResponse, added in PR
            # #1990 from API Gateway's observed answers). Function URL routes get the same
            # answer here (what a function URL itself answers was not found).
            not_invoked = Invocation(
                ok=False,
                error_type="RequestEntityTooLargeException",
                error=f"the event is {size} bytes: Request must be smaller than "
                f"{LAMBDA_MAX_REQUEST_BYTES} bytes for the InvokeFunction operation",
            )
            self.report(
                route.function, None, {"request"}, not_invoked, label=f"{request.command} {url.path} 413"
            )
            return _send(
                request, 413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}'
            )
        result = self.pools[route.function].invoke(event)
        answer = None
        if result.ok:
            try:
                answer = self.response(result.response)
            except MalformedResponse as exc:
                # API Gateway cannot map it either: its own 500, the function's fault.
                result = replace(result, ok=False, error_type="MalformedResponse", error=str(exc))
        # the answer's status in the line: a request the function refused (401, 413) is an
        # invocation that went well, and looked like one that was accepted
        self.report(
            route.function,
            None,
            set() if result.ok else {"request"},
            result,
            label=f"{request.command} {url.path} {answer[0] if answer else 500}",
        )
        if answer is None:
            return _send(
                request, 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
            )
        _send(request, *answer)

    def read_body(self, request: BaseHTTPRequestHandler) -> bytes:
        """The whole body, as API Gateway hands it on: by Content-Length or chunked, never
        part of one (a client that goes away mid-body invokes nothing)."""
        codings = self._transfer_codings(request)
        if codings is not None:  # Transfer-Encoding overrides Content-Length (RFC 9112, 6.3)
            if codings[-1:] != ["chunked"] or codings.count("chunked") > 1:
                raise BadFraming(400, "Bad Request: the body must be chunked, once and last")
            if len(codings) > 1:
                raise BadFraming(501, f"Not Implemented: transfer coding {codings[0]!r}")
            return self._read_chunked(request)
        lengths = set(request.headers.get_all("Content-Length") or ["0"])
        raw = lengths.pop().strip()
        if lengths or not (raw.isascii() and raw.isdigit()):
            raise BadFraming(400, "Bad Request: invalid Content-Length")
        if len(raw.lstrip("0")) > len(str(self.MAX_BODY)):  # and int() refuses 4,300 digits
            raise BadFraming(413, "Request Entity Too Large")
        length = int(raw)
        if length > self.MAX_BODY:
            raise BadFraming(413, "Request Entity Too Large")
        body = request.rfile.read(length) if length else b""
        if len(body) < length:
            raise BadFraming(None, "the client closed the connection before the end of the body")
        return body

    @staticmethod
    def _transfer_codings(request: BaseHTTPRequestHandler) -> list[str] | None:
        """The request's transfer codings in the order applied (None: no Transfer-Encoding).
        Only ``chunked`` is understood: a server answers an unknown coding 501, and a body
        whose last coding is not chunked 400, since its length cannot be known (RFC 9112)."""
        fields = request.headers.get_all("Transfer-Encoding")
        if not fields:
            return None
        return [c.split(";")[0].strip().lower() for c in ",".join(fields).split(",") if c.strip()]

    def _read_chunked(self, request: BaseHTTPRequestHandler) -> bytes:
        """A chunked body: chunks of ``size CRLF data CRLF``, then ``0 CRLF``, trailer
        fields and an empty line. Bad framing is a 400; a connection that ends before the
        last chunk is a client gone (nothing to answer). A bare LF is taken for CRLF."""
        body = bytearray()
        while True:
            size_field = self._chunk_line(request, 1024, "invalid chunk size").split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_field):  # int() would take "-1", "0x5"
                raise BadFraming(400, "Bad Request: invalid chunk size")
            size = int(size_field, 16)
            if size == 0:
                while self._chunk_line(request, 65_537, "trailer field too long").strip():
                    pass  # trailer fields, up to the empty line
                return bytes(body)
            if len(body) + size > self.MAX_BODY:
                raise BadFraming(413, "Request Entity Too Large")
            chunk = request.rfile.read(size)
            if len(chunk) < size:
                raise BadFraming(None, "the client closed the connection before the end of the body")
            if self._chunk_line(request, 3, "a chunk is not followed by CRLF").strip():
                raise BadFraming(400, "Bad Request: a chunk is not followed by CRLF")
            body += chunk

    @staticmethod
    def _chunk_line(request: BaseHTTPRequestHandler, limit: int, too_long: str) -> bytes:
        """One line of a chunked body, its line end included: at most ``limit`` bytes, else
        a 400 saying ``too_long``; BadFraming(None) when the connection ends before it does."""
        line = request.rfile.readline(limit)
        if line.endswith(b"\n"):
            return line
        if len(line) < limit:
            raise BadFraming(None, "the client closed the connection before the end of the body")
        raise BadFraming(400, f"Bad Request: {too_long}")

    @staticmethod
    def event(request: BaseHTTPRequestHandler, route: Route, url: Any, body: bytes) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, raw_value in request.headers.items():
            key = name.lower()
            # Whitespace around a field value is not part of it (RFC 9110, 5.5); Python's
            # parser keeps what follows the value, API Gateway does not.
            value = raw_value.strip(" \t")
            if key == "cookie":
                cookies += [cookie.strip() for cookie in value.split(";") if cookie.strip()]
                # Payload 2.0 moves cookies out of the headers into "cookies"; a function
                # URL was seen to keep the header as well.
                if not route.function_url:
                    continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        # A text type's body that is not the UTF-8 it claims to be is passed as sent, in
        # base64 (what AWS does with one was not found).
        text, encoded = base64.b64encode(body).decode(), True
        if passed_as_text(headers.get("content-type")):
            with contextlib.suppress(UnicodeDecodeError):
                text, encoded = body.decode("utf-8"), False
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": url.path,
            "rawQueryString": url.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": route.api_id,
                "domainName": headers.get("host", "localhost"),
                "domainPrefix": headers.get("host", "localhost").split(".")[0],
                "http": {
                    "method": request.command,
                    "path": url.path,
                    "protocol": request.request_version,
                    "sourceIp": request.client_address[0],
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route.key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": encoded,
        }
        if url.query:
            params: dict[str, str] = {}
            for name, value in parse_qsl(url.query, keep_blank_values=True):
                params[name] = f"{params[name]},{value}" if name in params else value
            event["queryStringParameters"] = params
        if body:
            event["body"] = text
        if cookies:
            event["cookies"] = cookies
        return event

    @staticmethod
    def response(response: Any) -> tuple[int, dict[str, str], bytes]:
        """Payload 2.0 response rules: a dict with ``statusCode`` is used as is; anything
        else is returned as a JSON body with status 200. A ``statusCode`` response API
        Gateway cannot map (a status that is not an HTTP status, a body that is not a
        string, a base64 body that is not base64, headers that are not an object) raises
        MalformedResponse: API Gateway answers 500 instead."""
        if isinstance(response, dict) and "statusCode" in response:
            status = response["statusCode"]
            if isinstance(status, bool) or not re.fullmatch(r"[1-5][0-9][0-9]", str(status)):
                raise MalformedResponse(f"statusCode {status!r} is not an HTTP status code")
            body = response.get("body")
            if body is None:
                body = ""
            if not isinstance(body, str):
                raise MalformedResponse(f"body is a {type(body).__name__}, not a string")
            headers = response.get("headers") or {}
            if not isinstance(headers, dict):
                raise MalformedResponse(f"headers is a {type(headers).__name__}, not an object")
            try:
                raw = (
                    base64.b64decode(body, validate=True)
                    if response.get("isBase64Encoded")
                    else body.encode()
                )
            except (ValueError, UnicodeEncodeError) as exc:  # binascii.Error is a ValueError
                raise MalformedResponse(f"body cannot be sent: {exc}") from None
            # An HTTP API gives a response without a Content-Type its own (seen on AWS, and
            # in AWS's emulator: aws/aws-lambda-dotnet LambdaTestTool-v2).
            sent = {"content-type": "text/plain; charset=utf-8"}
            sent.update({k.lower(): str(v) for k, v in headers.items()})
            return int(status), sent, raw
        return 200, {"content-type": "application/json"}, json.dumps(response).encode()


# ------------------------------------------------------------------------------ the service
class Executor:
    """Runs a deployment: one pool per function, one poller per queue mapping, the
    scheduler, and the HTTP API."""

    def __init__(
        self,
        deployment: Deployment,
        sandbox_env: Callable[[FunctionSpec], dict[str, str]],
        client: Callable[[str], Any],
        region: str,
        root: Path,
        log_dir: Path,
        api_host: str = "127.0.0.1",
        api_port: int = 0,
        on_invocation: Callable[[str], None] | None = None,
        function_client: Callable[[FunctionSpec, str], Any] | None = None,
        code_watch: CodeWatch | None = None,
    ):
        """``client(service)``: the executor's own calls (discovery);
        ``function_client(spec, service)``: calls made for a function — its mappings' queue
        polling, which on AWS uses the function's execution role (default: ``client``);
        ``code_watch``: the code to check for changes with the configurations (none: the
        sandboxes run the code as it is when each starts)."""
        self.deployment = deployment
        self.region = region
        self._sandbox_env = sandbox_env
        self._client = client
        self._function_client = function_client or (lambda spec, service: client(service))
        self._stop = threading.Event()
        self._on_invocation = on_invocation or (lambda line: log.info("%s", line))
        self._code_watch = code_watch
        # the console's lines start with the function's name, padded to the longest one's
        # (the deployed names, headrace-local-processor, are not the logical ones)
        self._name_width = max(map(len, deployment.functions), default=0)
        log_dir.mkdir(parents=True, exist_ok=True)
        # The functions' output, in their log groups as the Lambda service writes it.
        self.logs = LogForwarder(lambda: client("logs"))
        # Concurrency per function comes from its triggers (each mapping's maximum); the
        # pool only caps it like an account-level concurrency limit.
        self.pools = {
            name: FunctionPool(spec, sandbox_env(spec), root, log_dir, ACCOUNT_CONCURRENCY, self.logs)
            for name, spec in deployment.functions.items()
        }
        self.pollers = {m.uuid: self._poller(m) for m in deployment.mappings if m.function in self.pools}
        self.scheduler = Scheduler(
            [s for s in deployment.schedules if s.function in self.pools], self.invoke_async, self._stop
        )
        self.api = (
            ApiServer(
                [r for r in deployment.routes if r.function in self.pools],
                self.pools,
                api_host,
                api_port,
                self._report,
            )
            if deployment.routes
            else None
        )
        self.invocations = InvokeBridge(self.invoke, self.invoke_async, self.pools)

        self._watcher = threading.Thread(target=self._watch_configuration, name="config-watch", daemon=True)

    def _poller(self, mapping: QueueMapping) -> SqsPoller:
        pool = self.pools[mapping.function]
        return SqsPoller(mapping, pool, self._function_client(pool.spec, "sqs"), self.region, self._report)

    def start(self) -> None:
        self.logs.start()
        for poller in self.pollers.values():
            poller.start()
        self.scheduler.start()
        if self.api:
            self.api.start()
        self.invocations.start()
        self._watcher.start()

    def _watch_configuration(self) -> None:
        """`aws lambda update-function-configuration` takes effect like on AWS: the next
        invocations run in fresh sandboxes with the new settings. So does an edit of the
        handlers' code, given a ``code_watch`` (``check_code``)."""
        while not self._stop.wait(WATCH_SECONDS):
            self.check_code()
            try:
                current = discover_functions(self._client)
            except Exception as exc:  # the emulator is stopping
                log.debug("configuration check failed: %s", exc)
                continue
            for name, spec in current.items():
                pool = self.pools.get(name)
                if pool is not None and pool.spec != spec:
                    pool.reconfigure(spec, self._sandbox_env(spec))
                    self._on_invocation(f"{name:<{self._name_width}} reconfigured: new sandboxes from now on")
            try:
                mappings = {m.uuid: m for m in discover_mappings(self._client) if m.function in self.pools}
            except Exception as exc:  # the emulator is stopping
                log.debug("event source mapping check failed: %s", exc)
                continue
            for uuid_, poller in list(self.pollers.items()):
                if mappings.get(uuid_) != poller.mapping:
                    poller.stop_event.set()  # finishes its batches in flight, then ends
                    del self.pollers[uuid_]
            for uuid_, mapping in mappings.items():
                if uuid_ not in self.pollers and not self._stop.is_set():
                    poller = self._poller(mapping)
                    self.pollers[uuid_] = poller
                    poller.start()
                    self._on_invocation(
                        f"{mapping.function:<{self._name_width}} polling {mapping.queue_url.rsplit('/', 1)[-1]} "
                        f"(batch {mapping.batch_size}, window {mapping.window_seconds:g} s, concurrency {mapping.max_concurrency})"
                    )

    def check_code(self) -> None:
        """A change of the handlers' code retires every function's sandboxes, as a code
        update does on AWS: the next invocations start fresh ones, which import it;
        invocations in flight finish on the code they started with. A change of the
        program's code is only reported: it needs a deploy, so a restart."""
        if self._code_watch is None:
            return
        try:
            handlers, program = self._code_watch.check()
        except OSError as exc:  # the repository unreadable: checked again next time
            log.debug("code check failed: %s", exc)
            return
        if handlers:
            for pool in self.pools.values():
                pool.retire()
            self._on_invocation(
                f"handlers changed ({some(handlers)}): new sandboxes from the next invocation"
            )
        if program and self._code_watch.program_as_deployed():
            self._on_invocation(f"program changed ({some(program)}): as deployed again, no restart needed")
        elif program:
            self._on_invocation(
                f"program changed ({some(program)}): not deployed; restart `headrace local up` to deploy it"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():  # its last check done: it reports and starts nothing after this
            self._watcher.join(timeout=WATCH_SECONDS + 10)
        self.invocations.stop()
        if self.api:
            self.api.stop()
        pollers = list(self.pollers.values())
        for poller in pollers:
            poller.stop_event.set()
        for poller in pollers:
            poller.join(timeout=POLL_SECONDS + 35)
        for pool in self.pools.values():
            pool.close()
        self.logs.stop()  # sends what the sandboxes wrote last

    def invoke(self, function: str, payload: Any) -> Invocation:
        result = self.pools[function].invoke(payload)
        self._report(function, None, set(), result, label="invoke")
        return result

    def invoke_async(self, function: str, payload: Any, label: str) -> None:
        """Invoke ``function`` as Lambda runs an asynchronous event, in the background: a
        failed attempt is retried after each of ``ASYNC_RETRY_DELAYS``, unless the runtime
        stops meanwhile."""
        threading.Thread(
            target=self._async_attempts,
            args=(function, payload, label),
            name=f"async {function}",
            daemon=True,
        ).start()

    def _async_attempts(self, function: str, payload: Any, label: str) -> None:
        """``invoke_async``'s attempts, in the calling thread."""
        for attempt, delay in enumerate((*ASYNC_RETRY_DELAYS, None), start=1):
            result = self.pools[function].invoke(payload)
            notes = [f"attempt {attempt}"] if attempt > 1 else []
            if not result.ok:
                # a stopping runtime retries nothing: say so rather than promise a retry
                notes.append("dropped" if delay is None or self._stop.is_set() else f"retry in {delay:g} s")
            self._report(function, None, set(), result, label=" ".join([label, *(f"({n})" for n in notes)]))
            if result.ok or delay is None or self._stop.wait(delay):
                return

    def _report(
        self,
        function: str,
        messages: list[dict[str, Any]] | None,
        failed: set[str],
        result: Invocation,
        label: str = "",
    ) -> None:
        """One line per record (per request or scheduled run for other triggers)."""
        timing = f"{result.duration_ms:6.0f} ms{' cold' if result.cold else ''}"
        if not result.ok:
            timing += (
                f"  {result.error_type}: {(result.error or '').splitlines()[0][:160] if result.error else ''}"
            )
        if messages is None:
            self._on_invocation(
                f"{function:<{self._name_width}} {'ok' if result.ok and not failed else 'FAILED':<6} {label}  ({timing})"
            )
            return
        for m in messages:
            status = "retry" if m["MessageId"] in failed else "ok"
            self._on_invocation(
                f"{function:<{self._name_width}} {status:<6} {record_label(m['Body'])}  ({timing})"
            )


# The variables Lambda sets itself, which a function's configuration cannot set
# (CreateFunction and UpdateFunctionConfiguration refuse them: adjustment 25 of
# ``headrace.local.motoserver``). AWS's "Defined runtime environment variables".
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def sandbox_environment(
    spec: FunctionSpec, endpoint: str, region: str, credentials: Credentials, scratch: Path
) -> dict[str, str]:
    """The environment a local sandbox gets: the function's variables plus what the Lambda
    runtime would set — its execution role's ``credentials`` among them — with
    ``AWS_ENDPOINT_URL`` pointing at the emulator. A reserved variable is always Lambda's
    (``Sandbox`` adds the log stream and ``LAMBDA_TASK_ROOT``, and makes
    ``SCRATCH_DIR``, the function's, a directory of its own inside it)."""
    scratch = scratch / spec.name
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")
        if name in os.environ
    }
    # Lambda's time zone, as Lambda spells it; not reserved: a function may set its own
    env["TZ"] = ":UTC"
    env.update({k: v for k, v in spec.environment.items() if k not in RESERVED_VARIABLES})
    env.update(
        {
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            # No X-Ray daemon runs locally; traces are off, everything else is as deployed.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "SCRATCH_DIR": str(scratch),
            # Lambda's stdout is unbuffered: every line (Powertools prints its EMF metric
            # lines) reaches the log at once, even when the sandbox is killed right after
            # (a timeout, or the runtime stopping).
            "PYTHONUNBUFFERED": "1",
        }
    )
    if credentials.token:
        env["AWS_SESSION_TOKEN"] = credentials.token
    return env
