"""The embedded runtime: emulator + PostgreSQL + the deployed program + the executor.

runtime = LocalRuntime(root)
with runtime:                 # start, deploy, serve
    runtime.outputs           # the stack outputs (also in .headrace/local/outputs.json)
# everything stopped, no process left behind
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import Credentials

from components.config import ConfigError
from headrace.outputs import RUNTIME_LOCK_FILE, stopped_runtime

from .codewatch import CodeWatch
from .deploy import DeployError, check_config, deploy, merge_config, stack_file_warnings, stub_archive
from .emulator import (
    DEFAULT_API_PORT,
    DEFAULT_PORT,
    REGION,
    Emulator,
    EmulatorError,
    port_in_use,
    port_taken,
)
from .executor import Deployment, Executor, discover, sandbox_environment
from .iam import (
    ADMIN_STATEMENT,
    ADMIN_USER,
    EMULATOR_LIMITS,
    LAMBDA_SERVICE_STATEMENT,
    LAMBDA_SERVICE_USER,
    RoleSessions,
    create_user,
)
from .postgres import EmbeddedPostgres, PostgresError
from .sandbox import FunctionSpec

log = logging.getLogger("headrace.local")

# The embedded runtime deploys the `local` stack (Pulumi.local.yaml) with these changes:
# short function timeouts (SQS visibility timeouts derive from them, so retries and redrive
# happen in seconds, not minutes) and no batching window (a file is picked up at once), an
# HTTP API for ingest (moto has API Gateway v2), the query catalog (moto has Glue and Athena:
# the processor keeps its tables there; moto runs no SQL, so `headrace query` uses DuckDB),
# and the embedded PostgreSQL as warehouse. The report function keeps Lambda's longest
# timeout instead: nothing derives from it, and the emulator answers its reads of a day's
# items (the by_day index) at about 7 ms an item (measured: 4,000 items in 27 s), so a
# day of ~120,000 files fits where the 60 s it had held ~8,000.
REPORT_TIMEOUT_SECONDS = 900
EMBEDDED_CONFIG: dict[str, Any] = {
    "headrace:functions": {
        "processor": {
            "timeout_seconds": 10,
            "batching_window_seconds": 0,
            "batch_size": 10,
            "max_concurrency": 2,
        },
        "loader": {"timeout_seconds": 30, "batching_window_seconds": 0, "max_concurrency": 2},
        "ingest_worker": {
            "timeout_seconds": 10,
            "batching_window_seconds": 0,
            "batch_size": 10,
            "max_concurrency": 2,
        },
        "report": {"timeout_seconds": REPORT_TIMEOUT_SECONDS},
    },
    "headrace:ingest": {"endpoint": "http_api"},
    "headrace:catalog": {"enabled": True},
}


# Keys the runtime sets itself, for its embedded PostgreSQL: not to be overridden.
RUNTIME_KEYS = ("headrace:db_password", "headrace:warehouse.mode", "headrace:warehouse.external")


class RuntimeBusy(EmulatorError):
    """Another runtime serves from the same state directory, or a port is taken."""


class RuntimeConfigError(EmulatorError):
    """The configuration the runtime would deploy the program with is invalid (one line)."""


def _lock_within(fd: int, seconds: float) -> None:
    """Take ``fd``'s exclusive lock, trying for ``seconds``: a command reading the outputs
    file holds a shared one for an instant (``stopped_runtime``), a runtime for its life.
    Raise ``BlockingIOError`` when it is still held."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def not_running(outputs_path: Path) -> str | None:
    """Why ``outputs_path`` is not the outputs file of an embedded runtime running now (None
    when it is): a runtime writes ``outputs.json`` in its state directory and holds that
    directory's lock while it runs; one killed without its cleanup leaves the file behind."""
    if (
        outputs_path.name != "outputs.json"
        or not (outputs_path.resolve().parent / RUNTIME_LOCK_FILE).exists()
    ):
        return (
            f"{outputs_path} is not the outputs file of an embedded runtime (`headrace local up` "
            "writes it in its state directory, beside its logs and scratch space: "
            ".headrace/local/outputs.json)"
        )
    return stopped_runtime(outputs_path)


# The signals that stop a runtime (Ctrl-C, kill, a closed terminal).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_held_until_done(step: str) -> Iterator[None]:
    """Hold the stop signals until ``step`` ends, then deliver them: the deploy step runs
    the Pulumi program, and Pulumi, interrupted in the middle of it, waits for resources
    the program never finished declaring - for ever (``local up`` hung after Ctrl-C or
    SIGTERM, its PostgreSQL running). Only the main thread receives signals; elsewhere
    this does nothing. A signal ignored stays ignored; one that came during a step that
    failed is dropped (the failure stops the runtime, with its own message)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _: object) -> None:
        if not pending:
            os.write(2, f"stopping once {step} ends (a few seconds)\n".encode())
        pending.append(signum)

    previous = {
        signum: handler
        for signum in STOP_SIGNALS
        if (handler := signal.getsignal(signum)) not in (signal.SIG_IGN, None)
    }
    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    except BaseException:
        # the step failed: the runtime stops for that, and its error, not the interrupt
        # a held signal would raise in its place, is what the user must see
        pending.clear()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])  # handled as if it came now


class LocalRuntime:
    def __init__(
        self,
        root: Path,
        state_dir: Path | None = None,
        port: int = DEFAULT_PORT,
        api_port: int = DEFAULT_API_PORT,
        on_invocation: Callable[[str], None] | None = None,
        overrides: dict[str, Any] | None = None,
        watch_code: bool = False,
    ):
        """``watch_code``: an edit of the handlers' code retires the sandboxes (the next
        invocations run it), one of the program's is reported as needing a restart
        (``local up``; Executor.check_code)."""
        self.root = root.resolve()
        self.state_dir = (state_dir or self.root / ".headrace" / "local").resolve()
        self.emulator = Emulator(
            port=port,
            log_path=self.state_dir / "logs" / "emulator.log",
            invocations_file=self._invocations_file,
        )
        self.api_port = api_port
        self.on_invocation = on_invocation
        self.overrides = overrides or {}
        self.watch_code = watch_code
        self.postgres: EmbeddedPostgres | None = None
        self.executor: Executor | None = None
        self.outputs: dict[str, Any] = {}
        self.relaxed: list[str] = []
        # Until IAM is enforced any credentials work; then these are the administrator's.
        self.credentials = Credentials("test", "test")
        self.roles: RoleSessions | None = None
        self._lock: int | None = None  # descriptor holding the state directory's lock

    @property
    def outputs_path(self) -> Path:
        return self.state_dir / "outputs.json"

    @property
    def _invocations_file(self) -> Path:
        """Where the emulator finds the executor, to run what ``aws lambda invoke`` asks."""
        return self.state_dir / "invocations"

    def client(self, service: str, credentials: Credentials | None = None, **config: Any) -> Any:
        """A client of the emulator, as the administrator unless ``credentials`` say otherwise;
        ``config``: botocore ``Config`` options over the defaults (standard retries)."""
        credentials = credentials or self.credentials
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
            config=Config(retries={"mode": "standard"}).merge(Config(**config)),
        )

    def role_credentials(self, spec: FunctionSpec) -> Credentials:
        """What the function's sandboxes run with: its execution role, assumed."""
        assert self.roles is not None, "the runtime is not started"
        return self.roles.credentials(spec.role, spec.name)

    # ------------------------------------------------------------------ lifecycle
    def check_config(self) -> None:
        """Validate the configuration the program will be deployed with (the `local` stack
        file, EMBEDDED_CONFIG, ``overrides``) as the program validates it; raise
        :class:`RuntimeConfigError` naming each offending key. Starts nothing."""
        owned = [key for key in RUNTIME_KEYS if _touches(self.overrides, key)]
        if owned:
            raise RuntimeConfigError(
                f"{', '.join(owned)}: set by the embedded runtime for its own PostgreSQL; "
                "it cannot be overridden"
            )
        placeholder = {"host": "127.0.0.1", "port": 5432, "dbname": "headrace", "username": "headrace"}
        try:
            check_config(self.root, "local", REGION, self._config(placeholder, "placeholder"))
        except (ConfigError, DeployError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            raise RuntimeConfigError(
                "invalid configuration for the embedded runtime (Pulumi.local.yaml, EMBEDDED_CONFIG, "
                f"--config): {'; '.join(problems)}"
            ) from None
        for warning in stack_file_warnings(self.root, "local"):
            log.warning("%s", warning)

    def start(self) -> LocalRuntime:
        self.check_config()  # before anything starts: an invalid configuration starts nothing
        self._claim()  # before anything is touched: a refused start must not harm a running one
        # Every run starts empty, like the emulator: no data from an earlier run.
        for stale in ("logs", "scratch"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        self._invocations_file.unlink(missing_ok=True)  # a killed runtime's executor
        # ... and its outputs file: from now on this runtime holds the directory's lock, and
        # every command would take that file for this runtime's (its endpoint, its access
        # key), as would a script waiting for the file to appear. Written again once up.
        self.outputs_path.unlink(missing_ok=True)
        # Only this user may read them: the functions' logs, and scratch space holding raw
        # files before their PII is redacted.
        for private in ("logs", "scratch"):
            (self.state_dir / private).mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.emulator.start()
            log.info("AWS emulator on %s", self.emulator.endpoint)
            # its own temporary directory: reachable by the account PostgreSQL runs as
            self._reclaim_postgres()
            self.postgres = EmbeddedPostgres()
            # noted before the server is created: a runtime killed while initdb or pg_ctl
            # runs leaves a server (or a directory with its credentials) all the same
            self._postgres_marker.write_text(str(self.postgres.base_dir))
            self.postgres.start()
            log.info("PostgreSQL on %s:%s", self.postgres.host, self.postgres.port)
            iam = self.client("iam")
            self.credentials = create_user(iam, ADMIN_USER, ADMIN_STATEMENT)
            self.roles = RoleSessions(
                self.client("sts", create_user(iam, LAMBDA_SERVICE_USER, LAMBDA_SERVICE_STATEMENT))
            )
            # taken before the deploy reads the program: an edit made during it is reported
            code_watch = CodeWatch(self.root) if self.watch_code else None
            with signals_held_until_done("deploying the program"):
                self.outputs = self._deploy()
            # From here on, every call is checked against the caller's policies.
            self.emulator.enforce_iam()
            deployment = discover(self.client)
            self.executor = self._executor(deployment, code_watch)
            if self.executor.api:
                self.outputs["ingest_api_url"] = self.executor.api.url
            self.executor.start()
            bridge = self.executor.invocations
            # its token lets a caller past the emulator's IAM check: readable by this user only
            fd = os.open(self._invocations_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(f"{bridge.url} {bridge.token}\n")
            self.outputs_path.write_text(json.dumps(self.outputs, indent=2, sort_keys=True) + "\n")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._invocations_file.unlink(missing_ok=True)
        if self.executor is not None:
            self.executor.stop()  # the batches in flight end first
            self.executor = None
            left = self._left_on_queues()
            if left:  # info: `local up` shows it; `local demo`, which leaves its DLQ sample, not
                log.info(
                    "not carried over to the next start (every start begins empty): messages "
                    "still on the queues: %s",
                    ", ".join(left),
                )
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None
            self._postgres_marker.unlink(missing_ok=True)
        self.emulator.stop()
        if self._lock is not None:
            self.outputs_path.unlink(missing_ok=True)
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _left_on_queues(self) -> list[str]:
        """What a stop discards: the messages still on the pipeline's queues and DLQs
        (``12 in processing``), files uploaded or records accepted that were not processed
        yet. Nothing when the emulator cannot say at once (it is what failed)."""
        from headrace.status import QUEUES

        sqs = self.client("sqs", connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1})
        counts = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        left = []
        for label, output, _ in QUEUES:
            url = self.outputs.get(output)
            if not url:
                continue
            try:
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(counts))
            except Exception as exc:  # never in the way of the stop
                log.debug("cannot count the messages of %s: %s", url, exc)
                return []
            number = sum(int(attributes["Attributes"].get(name, 0)) for name in counts)
            if number:
                left.append(f"{number} in {label}")
        return left

    @property
    def _postgres_marker(self) -> Path:
        """Where this runtime's PostgreSQL directory is noted while it runs."""
        return self.state_dir / "postgres-dir"

    def _reclaim_postgres(self) -> None:
        """Stop and delete the PostgreSQL of an earlier runtime on this state directory that
        had no chance to (killed with SIGKILL): its server runs in a session of its own and
        outlives it, with its credentials on disk. Called holding the directory's lock."""
        if not self._postgres_marker.exists():
            return
        left = Path(self._postgres_marker.read_text().strip())
        if left.is_dir() and left.name.startswith("headrace-pg-"):
            # a warning: `local demo` shows no info lines, and this says what became of it
            log.warning("stopping and deleting the PostgreSQL a killed runtime left running (%s)", left)
            with contextlib.suppress(PostgresError, OSError):
                EmbeddedPostgres(left).stop()
            shutil.rmtree(left, ignore_errors=True)
        self._postgres_marker.unlink(missing_ok=True)

    def _claim(self) -> None:
        """Take the state directory (its outputs file, logs and scratch space) for this
        runtime, and check the ports; raise :class:`RuntimeBusy`, having changed nothing,
        when another runtime holds the directory or a port is in use."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.state_dir / RUNTIME_LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock_within(fd, seconds=0.2)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeBusy(
                f"another embedded runtime (pid {holder}) is using {self.state_dir}; stop it first "
                "(its outputs file serves every headrace command meanwhile)"
            ) from None
        try:
            for port, option in ((self.emulator.port, "--port"), (self.api_port, "--api-port")):
                if port_in_use(self.emulator.host, port):
                    raise RuntimeBusy(port_taken(self.emulator.host, port, option))
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)  # releases the lock
            raise
        self._lock = fd

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ pieces
    def _executor(self, deployment: Deployment, code_watch: CodeWatch | None = None) -> Executor:
        """The executor of ``deployment``; its HTTP API on ``api_port``, a port that another
        process may have taken since the start's check (refused as that check refuses it)."""
        try:
            return Executor(
                deployment,
                sandbox_env=lambda spec: sandbox_environment(
                    spec,
                    self.emulator.endpoint,
                    REGION,
                    self.role_credentials(spec),
                    self.state_dir / "scratch",
                ),
                function_client=lambda spec, service: self.client(service, self.role_credentials(spec)),
                client=self.client,
                region=REGION,
                root=self.root,
                log_dir=self.state_dir / "logs",
                api_port=self.api_port,
                on_invocation=self.on_invocation,
                code_watch=code_watch,
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise RuntimeBusy(port_taken(self.emulator.host, self.api_port, "--api-port")) from None

    def _config(self, warehouse: dict[str, Any], password: str) -> dict[str, Any]:
        """What the runtime sets over the `local` stack file: EMBEDDED_CONFIG, its
        PostgreSQL (``warehouse``: host, port, dbname, username) and ``overrides``."""
        own = {
            "headrace:warehouse": {"mode": "external", "external": warehouse},
            "headrace:db_password": password,
        }
        return merge_config(merge_config(EMBEDDED_CONFIG, self.overrides), own)

    def _deploy(self) -> dict[str, Any]:
        assert self.postgres is not None
        warehouse = {
            "host": self.postgres.host,
            "port": self.postgres.port,
            "dbname": self.postgres.dbname,
            "username": self.postgres.username,
        }
        archive = self.state_dir / "placeholder-package.zip"
        archive.write_bytes(stub_archive())
        outputs = deploy(
            self.root,
            self.client,
            REGION,
            stack="local",
            overrides=self._config(warehouse, self.postgres.password),
            archive=archive,
            relaxed=self.relaxed,
        )
        self.relaxed.extend(EMULATOR_LIMITS)
        (self.state_dir / "relaxed-policies.txt").write_text("".join(f"{line}\n" for line in self.relaxed))
        outputs.update(
            {
                "region": REGION,
                "aws_endpoint_url": self.emulator.endpoint,
                "aws_access_key_id": self.credentials.access_key,
                "aws_secret_access_key": self.credentials.secret_key,
            }
        )
        return outputs


def _touches(config: dict[str, Any], key: str) -> bool:
    """Whether ``config`` (``headrace:section`` -> nested values) sets the dotted ``key``,
    itself or by setting one of its sections to a value that is not an object."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict):
            return True
        if part not in value:
            return False
        value = value[part]
    return True
