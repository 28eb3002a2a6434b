"""A stack as the experiments see it: only its outputs file and AWS APIs.

Uploads carry the run id under a dedicated dataset (``<raw_prefix>experiments/<run>-...``).
Every change the experiments make to the stack (function environment, timeout, event
source mapping, queue visibility timeout, the database secret) is registered with an undo
action in :class:`Changes` and undone when the experiment ends, however it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal.queues import message_counts
from headrace.outputs import OutputsError, StackOutputs

log = logging.getLogger("headrace.experiments")

DATASET = "experiments"
TERMINAL = ("completed", "failed")
# How long the embedded runtime's executor takes to see a configuration change
# (headrace.local.executor.WATCH_SECONDS is 2 s), plus a margin.
EMBEDDED_SETTLE_SECONDS = 3.0
# The environment variable whose change retires a function's warm sandboxes (cold starts).
RUN_MARKER = "HEADRACE_EXPERIMENT_RUN"
# How long a DLQ message stays hidden while the others are read (made visible right after).
DLQ_PAGE_SECONDS = 30


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp from a metadata item."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def environment_kind(outputs: StackOutputs) -> str:
    """embedded | localstack | aws, from the outputs (and AWS_ENDPOINT_URL). LocalStack's
    queue URLs name it (sqs.<region>.localhost.localstack.cloud) or its account
    (000000000000); its outputs file from ``make e2e-local`` has an ``aws_endpoint_url``, as
    the embedded runtime's has."""
    url = outputs.processing_queue_url
    if "localstack" in url or "/000000000000/" in url:
        return "localstack"
    if outputs.aws_endpoint_url:
        return "embedded"
    if ":4566" in url or os.environ.get("AWS_ENDPOINT_URL"):
        return "localstack"
    return "aws"


@dataclass
class Upload:
    key: str
    version: str
    size: int
    start: float  # epoch seconds, client clock
    end: float
    label: dict[str, Any] = field(default_factory=dict)
    version_id: str | None = None  # None when the bucket is not versioned (version is the ETag)

    @property
    def upload_ms(self) -> float:
        return (self.end - self.start) * 1000


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored meanwhile, so what runs inside (putting the stack
    back, cleaning up: both bounded) runs to its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Changes:
    """Undo actions for the changes an experiment makes, run in reverse order on exit,
    shielded from a second Ctrl-C or SIGTERM. An undo that fails (or is interrupted anyway)
    is logged and appended to ``failures`` (pass the stack's ``unrestored`` to report it
    with the run), and the others still run."""

    def __init__(self, failures: list[str] | None = None) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self.failures: list[str] = [] if failures is None else failures

    def push(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def has(self, what: str) -> bool:
        return any(w == what for w, _ in self._undo)

    def undo_all(self) -> None:
        with shielded():
            while self._undo:
                what, undo = self._undo.pop()
                try:
                    undo()
                    log.info("restored %s", what)
                except BaseException as exc:  # an interrupt too: the remaining undos must still run
                    message = f"could not restore {what}: {type(exc).__name__}: {exc}"
                    log.error("%s", message)
                    self.failures.append(message)

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo_all()


class ExperimentStack:
    """The pipeline under test, seen through its outputs file."""

    def __init__(
        self,
        outputs: StackOutputs,
        run_id: str | None = None,
        settle_seconds: float | None = None,
        kind: str | None = None,
    ):
        self.outputs = outputs
        self.run_id = run_id or time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.kind = kind or environment_kind(outputs)
        if settle_seconds is None:
            settle_seconds = EMBEDDED_SETTLE_SECONDS if self.kind == "embedded" else 1.0
        self.settle_seconds = settle_seconds
        self.s3 = outputs.client("s3", max_pool_connections=64)
        self.sqs = outputs.client("sqs")
        self.ddb = outputs.client("dynamodb")
        self.lam = outputs.client("lambda")
        self.secrets = outputs.client("secretsmanager")
        self.uploads: list[Upload] = []
        # every key an upload was started for: one interrupted (Ctrl-C) after S3 stored the
        # object but before it was recorded in ``uploads`` is found by the clean-up this way
        self.attempted: list[str] = []
        self.unrestored: list[str] = []  # changes that could not be undone (see Changes)
        self._uploads_lock = threading.Lock()
        self._deserialize = TypeDeserializer().deserialize
        self._touches = 0
        self._changed_variables: dict[str, set[str]] = {}

    def check(self) -> None:
        """Refuse, before anything is changed or uploaded, a stack the experiments cannot
        use: the outputs must name the processor and the loader, and the stack must answer."""
        names = self.outputs.model_extra.get("function_names") if self.outputs.model_extra else None
        missing = [f for f in ("processor", "loader") if not isinstance(names, dict) or not names.get(f)]
        if missing:
            raise OutputsError(
                f"the outputs have no function_names for {' and '.join(missing)} "
                "(the experiments change and read the functions' configuration)"
            )
        try:
            self.function_configuration("processor")
            self.queue_depth(self.outputs.processing_queue_url)
        except (BotoCoreError, ClientError) as exc:
            where = self.outputs.aws_endpoint_url or f"AWS in {self.outputs.region}"
            raise OutputsError(f"the stack does not answer ({where}): {exc}") from exc

    # ------------------------------------------------------------------ names
    def function(self, logical: str) -> str:
        names = self.outputs.get("function_names")
        return str(names[logical])

    def key(self, name: str) -> str:
        return f"{self.outputs.raw_prefix}{DATASET}/{self.run_id}-{name}"

    def queue_arn(self, url: str) -> str:
        return str(
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )

    def queue_attribute(self, url: str, name: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])

    def max_receive_count(self) -> int:
        policy = self.queue_attribute(self.outputs.processing_queue_url, "RedrivePolicy")
        return int(json.loads(policy)["maxReceiveCount"])

    # ------------------------------------------------------------------ uploads
    def upload(self, name: str, body: bytes | Path, **label: Any) -> Upload:
        key = self.key(name)
        with self._uploads_lock:
            self.attempted.append(key)
        start = time.time()
        if isinstance(body, Path):
            self.s3.upload_file(str(body), self.outputs.raw_bucket, key)
            end = time.time()
            response = self.s3.head_object(Bucket=self.outputs.raw_bucket, Key=key)
            size = body.stat().st_size
        else:
            response = self.s3.put_object(Bucket=self.outputs.raw_bucket, Key=key, Body=body)
            end = time.time()
            size = len(body)
        version_id = response.get("VersionId") if response.get("VersionId") not in (None, "null") else None
        version = version_id or response["ETag"].strip('"')
        upload = Upload(key, str(version), size, start, end, dict(label), version_id)
        with self._uploads_lock:
            self.uploads.append(upload)
        return upload

    def upload_many(
        self, files: list[tuple[str, bytes]], concurrency: int, label: dict[str, Any] | None = None
    ) -> list[Upload]:
        """Upload ``files`` (name, body) with ``concurrency`` client threads."""
        label = label or {}
        if concurrency <= 1:
            return [self.upload(name, body, **label) for name, body in files]
        with ThreadPoolExecutor(concurrency, thread_name_prefix="upload") as pool:
            return list(pool.map(lambda f: self.upload(f[0], f[1], **label), files))

    # ------------------------------------------------------------------ metadata
    def items(self, uploads: Iterable[Upload]) -> dict[tuple[str, str], dict[str, Any]]:
        """The metadata items of ``uploads`` (strongly consistent), by (key, version)."""
        wanted = [{"object_key": {"S": u.key}, "version": {"S": u.version}} for u in uploads]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            request: dict[str, Any] = {
                self.outputs.metadata_table: {"Keys": wanted[start : start + 100], "ConsistentRead": True}
            }
            for _ in range(10):  # unprocessed keys are retried a few times
                response = self.ddb.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.outputs.metadata_table, []):
                    item = {k: self._deserialize(v) for k, v in raw.items()}
                    found[(item["object_key"], item["version"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.2)
        return found

    def wait(
        self,
        uploads: list[Upload],
        deadline: float,
        done: Callable[[dict[str, Any]], bool] = lambda item: item.get("status") in TERMINAL,
        on_done: Callable[[Upload, dict[str, Any]], None] | None = None,
        interval: float = 0.5,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Poll the metadata items of ``uploads`` until ``done`` holds for each, or until
        ``deadline`` (monotonic clock). Returns the last item seen of each (those that never
        got there included, when they exist)."""
        pending = {(u.key, u.version): u for u in uploads}
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        while pending:
            items = self.items(pending.values())
            for ident, item in items.items():
                seen[ident] = item
                if done(item):
                    upload = pending.pop(ident)
                    if on_done:
                        on_done(upload, item)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(interval)
        return seen

    def queue_depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue (SQS's approximate counts)."""
        return message_counts(url, self.sqs)

    def quiesce(self, deadline: float) -> bool:
        """Wait until the processing and load queues are empty (nothing of an earlier
        experiment still running), or ``deadline``. Returns whether they are."""
        while True:
            depths = [
                self.queue_depth(self.outputs.processing_queue_url),
                self.queue_depth(self.outputs.load_queue_url),
            ]
            if all(v == 0 and f == 0 for v, f in depths):
                return True
            if time.monotonic() >= deadline:
                log.warning("queues still busy when the experiment started: %s", depths)
                return False
            time.sleep(0.5)

    def dlq_arrivals(self, url: str, pages: int = 50) -> dict[str, float]:
        """Object keys of the messages in a DLQ (up to ``pages`` x 10 of them), each with
        the time the receive that returned it ended. A receive returns at most 10, so each
        message received is hidden while the next pages are read (a DLQ that already holds
        other messages must not hide the run's), then every one is made visible again."""
        arrivals: dict[str, float] = {}
        handles: list[str] = []
        try:
            for _ in range(pages):
                messages = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=DLQ_PAGE_SECONDS,
                    WaitTimeSeconds=1,
                ).get("Messages", [])
                seen = time.time()
                if not messages:
                    break
                handles += [m["ReceiptHandle"] for m in messages]
                for key in (message_key(m["Body"]) for m in messages):
                    if key:
                        arrivals.setdefault(key, seen)
        finally:
            for handle in handles:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                    )
        return arrivals

    # ------------------------------------------------------------------ configuration
    def function_configuration(self, logical: str) -> dict[str, Any]:
        return dict(self.lam.get_function_configuration(FunctionName=self.function(logical)))

    def _wait_updated(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            config = self.lam.get_function_configuration(FunctionName=name)
            if config.get("LastUpdateStatus", "Successful") in ("Successful", "Failed"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{name}: the configuration update did not finish within {timeout:.0f} s")

    def _update_function(self, name: str, **changes: Any) -> None:
        for attempt in range(20):
            try:
                self._wait_updated(name)
                self.lam.update_function_configuration(FunctionName=name, **changes)
                break
            except ClientError as exc:  # another update in progress
                if exc.response["Error"]["Code"] != "ResourceConflictException" or attempt == 19:
                    raise
                time.sleep(1)
        self._wait_updated(name)

    def settle(self) -> None:
        time.sleep(self.settle_seconds)

    def set_environment(self, changes: Changes, logical: str, updates: dict[str, str | None]) -> None:
        """Set (or remove, with None) environment variables of a function; the original
        environment is restored by ``changes``."""
        name = self.function(logical)
        current = dict(self.function_configuration(logical).get("Environment", {}).get("Variables", {}))
        what = f"{logical} environment"
        if not changes.has(what):
            original = dict(current)
            changed: set[str] = set()
            self._changed_variables[what] = changed
            # Settle after restoring only when the change mattered to the code (not the
            # marker that merely forces new sandboxes): e.g. the crash rate must be off
            # before the next experiment measures.
            changes.push(
                what,
                lambda: self._restore_environment(name, original, settle=bool(changed - {RUN_MARKER})),
            )
        self._changed_variables[what].update(updates)
        for variable, value in updates.items():
            if value is None:
                current.pop(variable, None)
            else:
                current[variable] = value
        self._update_function(name, Environment={"Variables": current})
        self.settle()

    def _restore_environment(self, name: str, original: dict[str, str], settle: bool) -> None:
        self._update_function(name, Environment={"Variables": original})
        if settle:
            self.settle()

    def touch(self, changes: Changes, logical: str) -> None:
        """A configuration change that retires the function's warm sandboxes: the next
        invocation is a cold start, on any stack."""
        self._touches += 1
        self.set_environment(changes, logical, {RUN_MARKER: f"{self.run_id}-{self._touches}"})

    def set_timeout(self, changes: Changes, logical: str, seconds: int) -> None:
        name = self.function(logical)
        original = int(self.function_configuration(logical)["Timeout"])
        if original >= seconds:
            return
        changes.push(
            f"{logical} timeout ({original} s)", lambda: self._update_function(name, Timeout=original)
        )
        self._update_function(name, Timeout=seconds)

    def set_visibility_timeout(self, changes: Changes, url: str, seconds: int) -> None:
        original = int(self.queue_attribute(url, "VisibilityTimeout"))
        if original >= seconds:
            return
        changes.push(
            f"visibility timeout of {url.rsplit('/', 1)[-1]} ({original} s)",
            lambda: self.sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"VisibilityTimeout": str(original)}
            ),
        )
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})

    def mapping(self, logical: str, queue_url: str) -> dict[str, Any]:
        """The event source mapping from ``queue_url`` to the function."""
        arn = self.queue_arn(queue_url)
        mappings = self.lam.list_event_source_mappings(
            FunctionName=self.function(logical), EventSourceArn=arn
        ).get("EventSourceMappings", [])
        if not mappings:  # some emulators ignore the filters
            mappings = [
                m
                for m in self.lam.list_event_source_mappings().get("EventSourceMappings", [])
                if m.get("EventSourceArn") == arn
            ]
        if not mappings:
            raise LookupError(f"no event source mapping from {queue_url} to {logical}")
        return dict(mappings[0])

    def update_mapping(
        self,
        changes: Changes,
        mapping: dict[str, Any],
        batch_size: int,
        window_seconds: int,
        max_concurrency: int | None,
    ) -> None:
        uid = mapping["UUID"]
        what = f"event source mapping {uid}"
        if not changes.has(what):
            original = {
                "BatchSize": mapping["BatchSize"],
                "MaximumBatchingWindowInSeconds": mapping.get("MaximumBatchingWindowInSeconds", 0),
                "ScalingConfig": mapping.get("ScalingConfig") or {},
            }
            changes.push(what, lambda: self._apply_mapping(uid, original, settle=False))
        self._apply_mapping(
            uid,
            {
                "BatchSize": batch_size,
                "MaximumBatchingWindowInSeconds": window_seconds,
                "ScalingConfig": {"MaximumConcurrency": max_concurrency} if max_concurrency else {},
            },
        )

    def _apply_mapping(self, uid: str, settings: dict[str, Any], settle: bool = True) -> None:
        for attempt in range(30):
            try:
                self.lam.update_event_source_mapping(UUID=uid, **settings)
                break
            except ClientError as exc:  # still updating from the last change
                if exc.response["Error"]["Code"] != "ResourceInUseException" or attempt == 29:
                    raise
                time.sleep(2)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = self.lam.get_event_source_mapping(UUID=uid).get("State", "Enabled")
            if state == "Enabled":
                break
            time.sleep(1)
        if settle:
            self.settle()

    def break_database(self, changes: Changes) -> None:
        """Point the database secret at a closed port (restored by ``changes``). The secret's
        value stays in memory only."""
        arn = self.outputs.db_secret_arn
        original = self.secrets.get_secret_value(SecretId=arn)["SecretString"]
        broken = dict(json.loads(original))
        broken["port"] = closed_port(broken.get("host", ""), int(broken.get("port", 5432)))
        changes.push(
            "database secret",
            lambda: self.secrets.put_secret_value(SecretId=arn, SecretString=original),
        )
        self.secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(broken))

    def database(self) -> Any | None:
        """A connection to the warehouse with the pipeline's secret, or None when it cannot
        be reached from here (RDS is private to its VPC)."""
        try:
            return self.outputs.connect_warehouse(connect_timeout=3, autocommit=True)
        except Exception as exc:
            log.info("the warehouse is not reachable from here: %s", type(exc).__name__)
            return None

    def warehouse_schema(self) -> str:
        env = self.function_configuration("loader").get("Environment", {}).get("Variables", {})
        return str(env.get("WAREHOUSE_SCHEMA", "headrace"))

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """The configuration the measurements depend on (for run.json and the cost model)."""
        description: dict[str, Any] = {}
        for logical in ("processor", "loader"):
            try:
                config = self.function_configuration(logical)
            except (ClientError, KeyError, LookupError) as exc:
                description[logical] = {"error": str(exc)}
                continue
            description[logical] = {
                "name": config["FunctionName"],
                "memory_mb": int(config.get("MemorySize", 128)),
                "timeout_seconds": int(config.get("Timeout", 3)),
                "architecture": (config.get("Architectures") or ["x86_64"])[0],
                "runtime": config.get("Runtime"),
            }
        for logical, url in (
            ("processor", self.outputs.processing_queue_url),
            ("loader", self.outputs.load_queue_url),
        ):
            try:
                m = self.mapping(logical, url)
                description[logical]["mapping"] = {
                    "batch_size": m.get("BatchSize"),
                    "window_seconds": m.get("MaximumBatchingWindowInSeconds", 0),
                    "max_concurrency": (m.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                }
                description[logical]["queue_visibility_timeout_seconds"] = int(
                    self.queue_attribute(url, "VisibilityTimeout")
                )
            except (ClientError, KeyError, LookupError) as exc:
                description[logical]["mapping"] = {"error": str(exc)}
        with contextlib.suppress(ClientError, KeyError, ValueError):
            description["max_receive_count"] = self.max_receive_count()
        return description


def message_key(body: str) -> str | None:
    """The object key a queue message is about (S3 event or "File Processed" event)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    if not isinstance(detail, dict):
        return None
    obj = detail.get("object")
    if isinstance(obj, dict) and obj.get("key"):
        return str(obj["key"])
    return str(detail["object_key"]) if detail.get("object_key") else None


def closed_port(host: str, port: int) -> int:
    """A port next to ``port`` that nothing listens on (checked on loopback hosts only)."""
    candidate = port + 1 if port < 65535 else port - 1
    if host in ("127.0.0.1", "localhost", "::1"):
        for candidate in range(port + 1, min(port + 200, 65535)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", candidate)) != 0:
                    return candidate
    return candidate


class DepthSampler(threading.Thread):
    """Samples queue depths every ``interval`` seconds until stopped."""

    def __init__(self, stack: ExperimentStack, queues: dict[str, str], interval: float = 0.5):
        super().__init__(name="queue-depth", daemon=True)
        self.sqs = stack.outputs.client("sqs")
        self.queues = queues
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            at = time.time()
            for name, url in self.queues.items():
                try:
                    attributes = self.sqs.get_queue_attributes(
                        QueueUrl=url,
                        AttributeNames=[
                            "ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible",
                        ],
                    )["Attributes"]
                except Exception as exc:
                    log.debug("queue depth sample failed: %s", exc)
                    continue
                self.samples.append(
                    {
                        "t": at,
                        "queue": name,
                        "visible": int(attributes["ApproximateNumberOfMessages"]),
                        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
                    }
                )
            self._stop_event.wait(self.interval)

    def stop(self) -> list[dict[str, Any]]:
        self._stop_event.set()
        self.join(timeout=10)
        return self.samples


@contextlib.contextmanager
def sampling(stack: ExperimentStack, interval: float = 0.5) -> Iterator[DepthSampler]:
    sampler = DepthSampler(
        stack,
        {"processing": stack.outputs.processing_queue_url, "load": stack.outputs.load_queue_url},
        interval,
    )
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def machine() -> dict[str, Any]:
    """Where the client ran (and, for the embedded runtime, the whole pipeline)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "hostname_hash": uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).hex[:8],
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def git_commit(root: Path, exclude: Path | None = None) -> dict[str, Any]:
    """The commit measured, and whether tracked files differ from it (the results
    directory ``exclude`` aside: a run rewrites it)."""
    pathspec = ["--", "."]
    if exclude is not None:
        with contextlib.suppress(ValueError):
            pathspec.append(f":(exclude){exclude.resolve().relative_to(root.resolve())}")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", *pathspec],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
