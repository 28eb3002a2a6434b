"""One Lambda execution environment: a child process running one function's handler.

Like a Lambda sandbox, a worker lives across invocations (warm starts), has its own
environment variables (the function's, plus ``AWS_ENDPOINT_URL`` pointing at the emulator,
so handler code needs no local special case) and its own scratch directory, handles one
event at a time, and is killed when an invocation exceeds the function's timeout.
"""

from __future__ import annotations

import importlib
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 30
    memory_mb: int = 128
    role: str = ""  # the execution role's ARN


@dataclass
class Invocation:
    ok: bool
    response: Any = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    cold: bool = False


class _Context:
    """The ``context`` object handlers receive."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float):
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _serve(conn: Connection, spec: FunctionSpec, root: str) -> None:
    """Child process: import the handler once, then serve invocations one at a time."""
    sys.path.insert(0, root)
    started = time.perf_counter()
    try:
        module_name, function_name = spec.handler.rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), function_name)
    except BaseException as exc:
        conn.send(("init_error", type(exc).__name__, f"{exc}\n{traceback.format_exc()}"))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        _, request_id, event, deadline = message
        clock = time.perf_counter()
        try:
            response = handler(event, _Context(spec, request_id, deadline))
            conn.send(("ok", response, (time.perf_counter() - clock) * 1000))
        except BaseException as exc:
            print(traceback.format_exc(), flush=True)
            conn.send(("error", type(exc).__name__, str(exc), (time.perf_counter() - clock) * 1000))


# How often a sandbox checks that the executor that started it is still alive.
PARENT_CHECK_SECONDS = 0.5


def _end_with_executor(executor_pid: int) -> None:
    """End this sandbox as soon as the executor that started it is gone (the runtime killed
    with SIGKILL, by the OOM killer...). An idle sandbox ends anyway (its receive loop sees
    the connection close), but one busy with an invocation would run its handler on to the
    end, past the function's timeout (the executor enforced it), writing to whatever then
    answers on the emulator's and PostgreSQL's ports: the next runtime's, on a restart.
    Polled rather than PR_SET_PDEATHSIG, which follows the executor *thread* that started
    the sandbox, and is Linux only."""
    while os.getppid() == executor_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(137)


def main() -> None:
    """``python -m headrace.local.sandbox ADDRESS``: the key and the function arrive on stdin,
    then the process connects back to the executor."""
    threading.Thread(target=_end_with_executor, args=(os.getppid(),), daemon=True).start()
    key, spec_fields, root = pickle.load(sys.stdin.buffer)
    with Client(sys.argv[1], family="AF_UNIX", authkey=key) as conn:
        _serve(conn, FunctionSpec(**spec_fields), root)


INIT_TIMEOUT = 60


class Sandbox:
    """A fresh interpreter per sandbox (``python -m``): nothing is inherited from the
    executor's process but the environment it is given. If the executor dies, the sandbox
    ends at once, even in the middle of an invocation (``_end_with_executor``), so no
    sandbox outlives it."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], root: Path, log_path: Path):
        self.spec = spec
        self.log_path = log_path
        self.fresh = True
        self.init_error: str | None = None
        key = secrets.token_bytes(32)
        with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
            address = str(Path(tmp) / "s")
            with Listener(address, family="AF_UNIX", authkey=key) as listener:
                with log_path.open("ab") as log:
                    self._process = subprocess.Popen(
                        [sys.executable, "-m", "headrace.local.sandbox", address],
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=str(root),
                    )
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
            return
        if reply[0] == "init_error":
            self.init_error = f"{reply[1]}: {reply[2]}"
            self.kill()

    def alive(self) -> bool:
        return self._process.poll() is None and self.init_error is None

    def invoke(self, event: Any) -> Invocation:
        if self.init_error:
            return Invocation(ok=False, error_type="Runtime.InitError", error=self.init_error)
        cold, self.fresh = self.fresh, False
        timeout = self.spec.timeout_seconds
        request_id = str(uuid.uuid4())
        log_start = self._log_size()
        clock = time.perf_counter()
        try:
            self._conn.send(("invoke", request_id, event, time.time() + timeout))
            ready = self._conn.poll(timeout)
            reply = self._conn.recv() if ready else None
        except (EOFError, BrokenPipeError, OSError) as exc:
            reply = ("crash", f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - clock) * 1000
        if reply is None:
            self.kill()
            return Invocation(
                ok=False,
                error_type="Sandbox.Timedout",
                error=f"Task timed out after {timeout} seconds",
                duration_ms=elapsed,
                cold=cold,
            )
        if reply[0] == "ok":
            return Invocation(ok=True, response=reply[1], duration_ms=reply[2], cold=cold)
        if reply[0] == "error":
            return Invocation(ok=False, error_type=reply[1], error=reply[2], duration_ms=reply[3], cold=cold)
        status = self._process.poll()
        self.kill()
        return Invocation(
            ok=False,
            error_type="Runtime.ExitError",
            error=f"the sandbox process exited during the invocation (status {status}; {reply[1]}): "
            f"{self._log_tail(log_start)}",
            duration_ms=elapsed,
            cold=cold,
        )

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

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


if __name__ == "__main__":
    main()
