"""One Lambda execution environment: a child process running one function's handler.

Like a Lambda sandbox, a worker lives across invocations (warm starts), has its own
environment variables (the function's, plus ``AWS_ENDPOINT_URL`` pointing at the emulator,
so handler code needs no local special case) and its own scratch directory, handles one
event at a time, and is killed when an invocation exceeds the function's timeout, or its
memory size (on Linux: the resident memory of the process and what it started, checked
every ``MEMORY_CHECK_SECONDS`` of an invocation, so a shorter peak can pass).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import pickle
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .emulator import end_with_parent

if TYPE_CHECKING:
    from .logs import LogForwarder


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 30
    memory_mb: int = 128
    role: str = ""  # the execution role's ARN
    log_group: str = ""  # its LoggingConfig's; by default /aws/lambda/<name>
    runtime: str = "python3.12"

    def __post_init__(self) -> None:
        if not self.log_group:
            object.__setattr__(self, "log_group", f"/aws/lambda/{self.name}")


@dataclass
class Invocation:
    ok: bool
    response: Any = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    cold: bool = False
    # as Lambda answers a failed invocation: the handler's frames, and the request's id
    stack_trace: list[str] = field(default_factory=list)
    request_id: str = ""


class _Context:
    """The ``context`` object handlers receive."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", f"local/{os.getpid()}")
        # Lambda sets these for mobile SDK callers only: None, but there to be read.
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


# The largest response a function can return: Lambda fails a larger one with
# Function.ResponseSizeTooLarge, "Response payload size (N bytes) exceeded maximum allowed
# payload size (6291556 bytes)." (sic: 100 bytes over the 6 MiB of a request).
LAMBDA_MAX_RESPONSE_BYTES = 6_291_556


def _decimal_as_json(value: Any) -> Any:
    # The Python runtime marshals a Decimal (DynamoDB's numbers) as the number it is.
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal_response(response: Any) -> str:
    """The JSON Lambda's Python runtime makes of what a handler returned, as the python3.12+
    runtimes write it (UTF-8, not ASCII escapes; a Decimal as its number). What it cannot
    marshal (a ``datetime``, a ``set``, an object) raises, and the runtime fails the
    invocation with Runtime.MarshalError: whatever invoked the function (an event source
    mapping, API Gateway, ``aws lambda invoke``) gets that error, never the object."""
    return json.dumps(response, ensure_ascii=False, default=_decimal_as_json)


def response_size_error(payload: str) -> str | None:
    """Why Lambda refuses a response of ``payload`` (its JSON), or None."""
    size = len(payload.encode("utf-8", "surrogatepass"))
    if size <= LAMBDA_MAX_RESPONSE_BYTES:
        return None
    return (
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({LAMBDA_MAX_RESPONSE_BYTES} bytes)."
    )


def report_line(
    request_id: str, duration_ms: float, memory_mb: int, used_mb: int | None, extra: str = ""
) -> str:
    """The ``REPORT`` line Lambda writes after each invocation (tab-separated)."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms",
        f"Memory Size: {memory_mb} MB",
    ]
    if used_mb is not None:
        fields.append(f"Max Memory Used: {used_mb} MB")
    return "\t".join(fields) + (f"\t{extra}" if extra else "")


# How often the memory of a sandbox busy with an invocation is measured.
MEMORY_CHECK_SECONDS = 0.1


def resident_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` and its descendants, in MiB, as Lambda counts
    a function's memory (every process of its execution environment); None where ``/proc``
    cannot tell (not Linux, or the process is gone)."""
    total_kb, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            if current == pid:
                return None
            continue  # a child that ended meanwhile
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total_kb / 1024


def _max_memory_mb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return math.ceil(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


class _HandlerNotFound(Exception):
    pass


def _load_handler(name: str) -> Callable[..., Any]:
    module_name, function_name = name.rsplit(".", 1)
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        return getattr(module, function_name)  # type: ignore[no-any-return]
    except AttributeError:
        raise _HandlerNotFound(f"Handler '{function_name}' missing on module '{module_name}'") from None


def _init_failure(name: str, exc: BaseException) -> tuple[str, str]:
    """The error type and message Lambda's Python runtime gives a handler it cannot load:
    its own for a bad handler name, a module that cannot be imported, a syntax error and a
    missing function; any other exception raised as the module loads is the init error of
    that exception."""
    module_name = name.rpartition(".")[0]
    if isinstance(exc, _HandlerNotFound):
        return "Runtime.HandlerNotFound", str(exc)
    if "." not in name:
        return "Runtime.MalformedHandlerName", f"Bad handler '{name}': {exc}"
    if isinstance(exc, SyntaxError):
        return "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
    if isinstance(exc, ImportError):
        return "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
    return "Runtime.InitError", f"{type(exc).__name__}: {exc}"


def _stack_trace(exc: BaseException) -> list[str]:
    """The ``stackTrace`` of Lambda's Python runtime: the frames from the handler's on
    (the runtime's own left out), one formatted entry each."""
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    return traceback.format_list(frames)


def _serve(conn: Connection, spec: FunctionSpec, root: str) -> None:
    """Child process: import the handler once, then serve invocations one at a time,
    writing Lambda's START, END and REPORT lines around each (the handler's own output
    between them, in order)."""
    sys.path.insert(0, root)
    started = time.perf_counter()
    try:
        handler = _load_handler(spec.handler)
    except BaseException as exc:
        error_type, message = _init_failure(spec.handler, exc)
        print(f"[ERROR] {error_type}: {message}\n{traceback.format_exc()}", end="", flush=True)
        conn.send(("init_error", error_type, f"{message}\n{traceback.format_exc()}"))
        return
    init_ms: float | None = (time.perf_counter() - started) * 1000
    conn.send(("ready", init_ms))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        _, request_id, event, deadline = message
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        clock = time.perf_counter()
        reply: tuple[Any, ...]
        try:
            response = handler(event, _Context(spec, request_id, deadline))
        except Exception as exc:  # sys.exit() ends the process, as it ends Lambda's runtime
            print(f"[ERROR] {type(exc).__name__}: {exc}\n{traceback.format_exc()}", end="", flush=True)
            reply = ("error", type(exc).__name__, str(exc), _stack_trace(exc))
        else:
            # The executor gets the response as Lambda's runtime sends it (JSON), not the
            # handler's objects, which need not survive that.
            try:
                reply = ("ok", marshal_response(response))
            except Exception as exc:  # TypeError, ValueError (a circular reference), ...
                message = f"Unable to marshal response: {exc}"
                print(f"[ERROR] Runtime.MarshalError: {message}", flush=True)
                reply = ("error", "Runtime.MarshalError", message, [])
        elapsed = (time.perf_counter() - clock) * 1000
        extra = f"Init Duration: {init_ms:.2f} ms" if init_ms is not None else ""
        init_ms = None
        print(f"END RequestId: {request_id}", flush=True)
        print(report_line(request_id, elapsed, spec.memory_mb, _max_memory_mb(), extra), flush=True)
        conn.send((*reply, elapsed))


def main() -> None:
    """``python -m headrace.local.sandbox ADDRESS``: the key and the function arrive on stdin,
    then the process connects back to the executor."""
    # End as soon as the executor that started this sandbox is gone (the runtime killed with
    # SIGKILL, by the OOM killer...). An idle sandbox ends anyway (its receive loop sees the
    # connection close), but one busy with an invocation would run its handler on to the
    # end, past the function's timeout (the executor enforced it), writing to whatever then
    # answers on the emulator's and PostgreSQL's ports: the next runtime's, on a restart.
    threading.Thread(target=end_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    key, spec_fields, root = pickle.load(sys.stdin.buffer)
    with Client(sys.argv[1], family="AF_UNIX", authkey=key) as conn:
        _serve(conn, FunctionSpec(**spec_fields), root)


INIT_TIMEOUT = 60
# A line longer than this (no newline in sight) is written as it stands, so what a sandbox
# prints without a newline cannot grow the executor's memory without bound.
MAX_LINE_BYTES = 1024 * 1024
# How long a killed sandbox's output is waited for (a process the handler started may hold
# the pipe open after the sandbox is gone).
DRAIN_SECONDS = 2.0


class SandboxOutput(threading.Thread):
    """Reads a sandbox's output (stdout and stderr, one pipe): appends it to the function's
    log file, whole lines at a time (the function's sandboxes share the file), and hands
    each line with the time it was read to ``sink`` (its log stream), as the Lambda
    service takes a function's output for CloudWatch Logs."""

    def __init__(
        self,
        pipe: int,
        log_path: Path,
        sink: Callable[[list[tuple[int, str]]], None] | None,
        name: str,
    ):
        super().__init__(name=f"output:{name}", daemon=True)
        self.log_path = log_path
        self._pipe = pipe
        self._sink = sink
        self._lock = threading.Lock()
        self._last = 0  # events of a stream must be in time order: never step back
        self._file: Any = log_path.open("ab", buffering=0)

    def run(self) -> None:
        partial = b""
        try:
            while chunk := os.read(self._pipe, 65536):
                data = partial + chunk
                cut = data.rfind(b"\n") + 1
                if not cut and len(data) >= MAX_LINE_BYTES:
                    cut = len(data)
                partial = data[cut:]
                if cut:
                    self._emit(data[:cut])
            if partial:
                self._emit(partial)
        except OSError as exc:
            self.write(f"(the sandbox's output could not be read: {exc})")
        finally:
            os.close(self._pipe)

    def write(self, line: str) -> None:
        """A line of the Lambda service's own, after the sandbox's (a timeout, a crash)."""
        self._emit(f"{line}\n".encode())

    def close(self) -> None:
        """No more lines: the sandbox is gone and its output read."""
        with self._lock:
            self._file.close()

    def _emit(self, data: bytes) -> None:
        with self._lock:
            if not self._file.closed:
                # a full disk loses the file's copy, not the log stream's
                with contextlib.suppress(OSError):
                    self._file.write(data if data.endswith(b"\n") else data + b"\n")
            if self._sink is not None:
                now = self._last = max(self._last, time.time_ns() // 1_000_000)
                text = data.decode(errors="replace")
                self._sink([(now, line) for line in text.split("\n") if line.strip()])


class Sandbox:
    """A fresh interpreter per sandbox (``python -m``): nothing is inherited from the
    executor's process but the environment it is given. If the executor dies, the sandbox
    ends at once, even in the middle of an invocation (``emulator.end_with_parent``), so no
    sandbox outlives it.

    Its output goes to ``log_path`` and, given ``logs``, to its log stream in CloudWatch
    Logs (``log_stream_name``, in the function's log group)."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        root: Path,
        log_path: Path,
        logs: LogForwarder | None = None,
    ):
        from .logs import log_stream_name

        self.spec = spec
        self.log_path = log_path
        self.log_stream_name = log_stream_name()
        self.fresh = True
        self.init_error: str | None = None
        self.init_error_type = "Runtime.InitError"
        self._stream = logs.stream(spec.name, spec.log_group, self.log_stream_name) if logs else None
        # the code's directory, Lambda's /var/task
        env = {**env, "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream_name, "LAMBDA_TASK_ROOT": str(root)}
        # Its scratch space (Lambda's /tmp) is a directory of its own in the function's,
        # deleted when it ends (``kill``), however it ends: a timeout or a crash leaves what
        # the handler was writing (a large file's download), once per attempt.
        self._scratch: Path | None = None
        if env.get("SCRATCH_DIR"):
            Path(env["SCRATCH_DIR"]).mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix="sandbox-", dir=env["SCRATCH_DIR"]))
            env["SCRATCH_DIR"] = str(self._scratch)
        key = secrets.token_bytes(32)
        with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
            address = str(Path(tmp) / "s")
            with Listener(address, family="AF_UNIX", authkey=key) as listener:
                read, write = os.pipe()
                try:
                    self._process = subprocess.Popen(
                        [sys.executable, "-m", "headrace.local.sandbox", address],
                        stdin=subprocess.PIPE,
                        stdout=write,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=str(root),
                    )
                except BaseException:
                    os.close(read)
                    self._remove_scratch()
                    raise
                finally:
                    os.close(write)
                self._output = SandboxOutput(
                    read, log_path, self._stream.add if self._stream else None, spec.name
                )
                self._output.start()
                assert self._process.stdin is not None
                pickle.dump((key, asdict(spec), str(root)), self._process.stdin)
                self._process.stdin.close()
                listener._listener._socket.settimeout(INIT_TIMEOUT)  # type: ignore[attr-defined]
                try:
                    self._conn = listener.accept()
                except OSError:
                    self.kill()
                    self.init_error = f"the sandbox did not start within {INIT_TIMEOUT} s"
                    return
        if not self._conn.poll(INIT_TIMEOUT):
            self.kill()
            self.init_error = f"the handler did not initialise within {INIT_TIMEOUT} s"
            return
        try:
            reply = self._conn.recv()
        except EOFError:
            self.init_error = "the sandbox process exited during initialisation"
            self.kill()
            return
        if reply[0] == "init_error":
            self.init_error_type, self.init_error = reply[1], reply[2]
            self.kill()

    def alive(self) -> bool:
        return self._process.poll() is None and self.init_error is None

    def invoke(self, event: Any) -> Invocation:
        request_id = str(uuid.uuid4())
        result = self._invoke(event, request_id)
        result.request_id = request_id
        return result

    def _invoke(self, event: Any, request_id: str) -> Invocation:
        if self.init_error:
            return Invocation(ok=False, error_type=self.init_error_type, error=self.init_error)
        cold, self.fresh = self.fresh, False
        timeout = self.spec.timeout_seconds
        log_start = self._log_size()
        clock = time.perf_counter()
        out_of_memory: float | None = None
        try:
            self._conn.send(("invoke", request_id, event, time.time() + timeout))
            ready, out_of_memory = self._wait(timeout)
            reply = self._conn.recv() if ready else None
        except (EOFError, BrokenPipeError, OSError) as exc:
            reply = ("crash", f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - clock) * 1000
        if out_of_memory is not None:
            # as Lambda ends an execution environment over its memory size: killed at once
            memory = self.spec.memory_mb
            self.kill(
                f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
                "Runtime.OutOfMemory",
                f"END RequestId: {request_id}",
                report_line(
                    request_id, elapsed, memory, memory, "Status: error\tError Type: Runtime.OutOfMemory"
                ),
            )
            return Invocation(
                ok=False,
                error_type="Runtime.OutOfMemory",
                error=(
                    f"RequestId: {request_id} Error: Runtime exited with error: signal: killed (the "
                    f"sandbox used {out_of_memory:,.0f} MB, over the function's memory size, {memory} MB)"
                ),
                duration_ms=elapsed,
                cold=cold,
            )
        if reply is None:
            # with Lambda's own lines when it stops an invocation
            self.kill(
                f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                + f"Z {request_id} Task timed out after {timeout:.2f} seconds",
                f"END RequestId: {request_id}",
                report_line(request_id, elapsed, self.spec.memory_mb, None, "Status: timeout"),
            )
            return Invocation(
                ok=False,
                error_type="Sandbox.Timedout",
                error=f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
                duration_ms=elapsed,
                cold=cold,
            )
        if reply[0] == "ok":
            if too_large := response_size_error(reply[1]):
                return Invocation(
                    ok=False,
                    error_type="Function.ResponseSizeTooLarge",
                    error=too_large,
                    duration_ms=reply[2],
                    cold=cold,
                )
            return Invocation(ok=True, response=json.loads(reply[1]), duration_ms=reply[2], cold=cold)
        if reply[0] == "error":
            return Invocation(
                ok=False,
                error_type=reply[1],
                error=reply[2],
                stack_trace=reply[3],
                duration_ms=reply[4],
                cold=cold,
            )
        try:  # its connection closed: the process is ending, if not yet reaped
            status = self._process.wait(timeout=DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            status = None
        self.kill(keep_stream=True)
        tail = self._log_tail(log_start)
        self.kill(
            f"RequestId: {request_id} Error: Runtime exited with error: exit status {status}",
            "Runtime.ExitError",
            f"END RequestId: {request_id}",
            report_line(
                request_id, elapsed, self.spec.memory_mb, None, "Status: error\tError Type: Runtime.ExitError"
            ),
        )
        return Invocation(
            ok=False,
            error_type="Runtime.ExitError",
            error=f"the sandbox process exited during the invocation (status {status}; {reply[1]}): {tail}",
            duration_ms=elapsed,
            cold=cold,
        )

    def _wait(self, timeout: float) -> tuple[bool, float | None]:
        """Wait up to ``timeout`` s for the invocation's reply: whether it came, and the
        memory (MiB) of a sandbox found over the function's memory size meanwhile."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if self._conn.poll(min(MEMORY_CHECK_SECONDS, left)):
                return True, None
            used = resident_mb(self._process.pid)
            if used is not None and used > self.spec.memory_mb:
                return False, used
        return False, None

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_tail(self, since: int, lines: int = 5) -> str:
        """The last ``lines`` the function logged since byte ``since`` (this invocation's
        start; the file is the function's, so an earlier crash of another sandbox is not
        quoted as this one's)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                written = log.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(written[-lines:]) or "(nothing logged)"

    def kill(self, *last_lines: str, keep_stream: bool = False) -> None:
        """End the sandbox; its output is read to the end (within ``DRAIN_SECONDS``), then
        ``last_lines`` (the Lambda service's) are logged after it, and its log stream is
        closed unless ``keep_stream``: nothing it wrote is missing from the log afterwards."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
        self._output.join(timeout=DRAIN_SECONDS)
        for line in last_lines:
            self._output.write(line)
        if not keep_stream:
            self._output.close()
            if self._stream is not None:
                self._stream.close()
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        """Delete the sandbox's scratch space (the process is gone)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
