"""One Lambda execution environment (headrace.local.sandbox) against what Lambda's Python
runtime does, with tiny handler modules: what a handler returns, raises or sets, as the
code that invoked it sees it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headrace.local.sandbox import FunctionSpec, Invocation, Sandbox
from tests.processes import process_running

ROOT = Path(__file__).resolve().parents[2]

HANDLER = """
import datetime, decimal


def handler(event, context):
    kind = event["return"]
    if kind == "datetime":  # a partial-batch response with a datetime in it
        return {"batchItemFailures": [{"itemIdentifier": "m1", "at": datetime.datetime(2026, 1, 1)}]}
    if kind == "set":
        return {"ids": {"m1"}}
    if kind == "large":
        return {"body": "\\u00e9" * 3_145_800}  # 6,291,600 bytes of UTF-8
    if kind == "fits":
        return {"body": "\\u00e9" * 3_145_600, "n": decimal.Decimal("1.5"), "t": ("a", 1)}
    return None
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """A sandbox of ``fn.handler`` written from ``source`` (HANDLER by default)."""
    started: list[Sandbox] = []

    def start(source: str = HANDLER, env: dict[str, str] | None = None, **spec: object) -> Sandbox:
        (tmp_path / "fn.py").write_text(source)
        fields = {
            "name": "fn",
            "arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "handler": "fn.handler",
        }
        box = Sandbox(
            FunctionSpec(**{**fields, **spec}),  # type: ignore[arg-type]
            {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})},
            tmp_path,
            tmp_path / "fn.log",
        )
        started.append(box)
        return box

    yield start
    for box in started:
        box.kill()


def _failure(result: Invocation) -> tuple[bool, str | None, str]:
    return result.ok, result.error_type, (result.error or "").splitlines()[0]


def test_a_response_lambda_cannot_marshal_fails_the_invocation_for_every_trigger(sandbox):
    # A handler that put a datetime in its batchItemFailures passed locally (the executor
    # got the Python objects) and failed on AWS, where the runtime returns JSON
    box = sandbox()
    assert _failure(box.invoke({"return": "datetime"})) == (
        False,
        "Runtime.MarshalError",
        "Unable to marshal response: Object of type datetime is not JSON serializable",
    )
    assert _failure(box.invoke({"return": "set"})) == (
        False,
        "Runtime.MarshalError",
        "Unable to marshal response: Object of type set is not JSON serializable",
    )
    # and the sandbox stays warm, as on AWS
    assert box.alive() and not box.invoke({"return": None}).cold
    box.kill()  # its output read to the end
    assert "[ERROR] Runtime.MarshalError: Unable to marshal response" in box.log_path.read_text()


def test_a_response_over_6_mb_fails_and_one_under_it_arrives_as_json(sandbox):
    box = sandbox()
    assert _failure(box.invoke({"return": "large"})) == (
        False,
        "Function.ResponseSizeTooLarge",
        "Response payload size (6291612 bytes) exceeded maximum allowed payload size (6291556 bytes).",
    )
    # what the caller gets is the JSON the runtime sent: a Decimal is its number, a tuple a list
    result = box.invoke({"return": "fits"})
    assert result.ok and result.response == {"body": "é" * 3_145_600, "n": 1.5, "t": ["a", 1]}


ENVIRONMENT = """
import os


def handler(event, context):
    return {
        "env": {name: os.environ.get(name) for name in event["names"]},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "identity": context.identity,
            "client_context": context.client_context,
            "remaining": 0 < context.get_remaining_time_in_millis() <= 3000,
        },
    }
"""

LAMBDA_VARIABLES = {
    "_HANDLER": "fn.handler",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "AWS_LAMBDA_FUNCTION_NAME": "fn",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "role-key",
    "TZ": ":UTC",
    "STAGE": "dev",  # the function's own
}


def test_a_handler_sees_lambdas_variables_and_context(sandbox, tmp_path):
    # Code reading _HANDLER, LAMBDA_TASK_ROOT or AWS_EXECUTION_ENV (Powertools does), or
    # context.client_context, failed locally and worked on AWS; and a function variable
    # that is reserved (refused by Lambda at deploy) overrode nothing here but is no use
    from botocore.credentials import Credentials

    from headrace.local.executor import sandbox_environment

    spec = FunctionSpec(
        name="fn",
        arn="arn:aws:lambda:eu-west-1:123456789012:function:fn",
        handler="fn.handler",
        memory_mb=256,
        environment={"STAGE": "dev", "AWS_REGION": "us-west-2", "_HANDLER": "other.main"},
    )
    env = sandbox_environment(spec, "http://127.0.0.1:1", "eu-west-1", Credentials("role-key", "s"), tmp_path)
    box = sandbox(ENVIRONMENT, env, memory_mb=256, timeout_seconds=3)
    result = box.invoke({"names": [*LAMBDA_VARIABLES, "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_STREAM_NAME"]})
    assert result.ok, result.error
    env_seen = result.response["env"]
    assert env_seen.pop("LAMBDA_TASK_ROOT") == str(tmp_path)
    assert env_seen.pop("AWS_LAMBDA_LOG_STREAM_NAME") == box.log_stream_name
    assert env_seen == LAMBDA_VARIABLES
    assert result.response["context"] == {
        "function_name": "fn",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
        "memory_limit_in_mb": 256,
        "log_group_name": "/aws/lambda/fn",
        "log_stream_name": box.log_stream_name,
        "identity": None,
        "client_context": None,
        "remaining": True,
    }


@pytest.mark.parametrize(("configured", "seen"), [({}, ":UTC"), ({"TZ": "Europe/Berlin"}, "Europe/Berlin")])
def test_a_function_may_set_its_own_time_zone_as_on_lambda(tmp_path, configured, seen):
    # TZ is not one of Lambda's reserved variables: a function configured with its own
    # ran in Berlin on AWS and in UTC locally
    from botocore.credentials import Credentials

    from headrace.local.executor import sandbox_environment

    spec = FunctionSpec("fn", "arn:aws:lambda:eu-west-1:1:function:fn", "fn.handler", environment=configured)
    env = sandbox_environment(spec, "http://127.0.0.1:1", "eu-west-1", Credentials("k", "s"), tmp_path)
    assert env["TZ"] == seen


EXITS = """
import os, sys

calls = []


def handler(event, context):
    calls.append(event)
    if event.get("exit") is not None:
        sys.exit(event["exit"])
    if event.get("_exit") is not None:
        os._exit(event["_exit"])
    return len(calls)
"""


@pytest.mark.parametrize("event, status", [({"exit": 0}, 0), ({"exit": 3}, 3), ({"_exit": 4}, 4)])
def test_a_handler_that_exits_ends_its_sandbox_as_it_ends_lambdas_runtime(sandbox, event, status):
    # sys.exit() in a handler was an ordinary error ("SystemExit") in a sandbox that lived
    # on with the module's state; on AWS the runtime exits (Runtime.ExitError) and the
    # next invocation is a cold start
    box = sandbox(EXITS)
    assert box.invoke({}).response == 1
    result = box.invoke(event)
    assert (result.ok, result.error_type) == (False, "Runtime.ExitError")
    assert f"(status {status};" in (result.error or "")
    assert not box.alive()
    assert f"Runtime exited with error: exit status {status}" in box.log_path.read_text()


@pytest.mark.parametrize(
    "source, handler, error_type, message",
    [
        (
            "",
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "import not_installed\n",
            "fn.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'fn': No module named 'not_installed'",
        ),
        (
            "def handler(:\n",
            "fn.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'fn': invalid syntax (fn.py, line 1)",
        ),
        (
            "def main(event, context):\n    pass\n",
            "fn.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'fn'",
        ),
        (
            "raise RuntimeError('no TABLE_NAME')\n",
            "fn.handler",
            "Runtime.InitError",
            "RuntimeError: no TABLE_NAME",
        ),
        (
            "",
            "fn",
            "Runtime.MalformedHandlerName",
            "Bad handler 'fn': not enough values to unpack (expected 2, got 1)",
        ),
    ],
)
def test_a_handler_that_cannot_be_loaded_fails_with_lambdas_error(
    sandbox, source, handler, error_type, message
):
    # Every load failure was "Runtime.InitError: AttributeError: module 'fn' has no
    # attribute 'handler'" and the like, where Lambda names what is wrong
    box = sandbox(source, handler=handler)
    assert _failure(box.invoke({})) == (False, error_type, message)
    assert f"[ERROR] {error_type}: {message}" in box.log_path.read_text()


RAISES = """
import time


def check(event):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    raise ValueError(f"bad date {event['date']!r}")


def handler(event, context):
    return check(event)
"""


def test_a_failed_invocation_carries_lambdas_request_id_and_stack_trace(sandbox, tmp_path):
    # `aws lambda invoke` answered {"errorMessage", "errorType"} only: code reading the
    # stackTrace or requestId Lambda adds found nothing
    box = sandbox(RAISES, timeout_seconds=1)
    result = box.invoke({"date": "2026-13-01"})
    assert (result.ok, result.error_type, result.error) == (False, "ValueError", "bad date '2026-13-01'")
    # the handler's frames, from its own on (the sandbox's left out), as Lambda lists them
    assert [entry.splitlines()[:2] for entry in result.stack_trace] == [
        [f'  File "{tmp_path / "fn.py"}", line 12, in handler', "    return check(event)"],
        [
            f'  File "{tmp_path / "fn.py"}", line 8, in check',
            "    raise ValueError(f\"bad date {event['date']!r}\")",
        ],
    ]
    log = tmp_path / "fn.log"
    # and a timeout says what Lambda says
    late = box.invoke({"date": "x", "sleep": 5})
    assert (late.error_type, late.error) == (
        "Sandbox.Timedout",
        f"RequestId: {late.request_id} Error: Task timed out after 1.00 seconds",
    )
    assert f"START RequestId: {result.request_id} " in log.read_text()  # killed: its output read


SCRATCH = """
import os, time


def handler(event, context):
    path = os.path.join(os.environ["SCRATCH_DIR"], "download.csv")
    if event.get("write"):
        with open(path, "w") as file:
            file.write("raw rows, PII not yet redacted")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(1)
    return {"dir": os.environ["SCRATCH_DIR"], "kept": os.path.exists(path)}
"""


def test_a_sandboxs_scratch_files_end_with_it_however_it_ends(sandbox, tmp_path):
    # The function's scratch directory was shared by its sandboxes and lived as long as
    # the runtime: what a handler had written there when its sandbox was killed (a
    # timeout, a crash, a retirement after a code edit) stayed - a large file's download,
    # once per attempt - until the next start, filling the disk the processor checks its
    # room on. On Lambda a sandbox's /tmp is its own and goes with it.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    boxes = [sandbox(SCRATCH, {"SCRATCH_DIR": str(scratch)}, timeout_seconds=1) for _ in range(3)]
    dirs = []
    for box in boxes:
        written = box.invoke({"write": True})
        assert written.ok, written.error
        assert box.invoke({}).response["kept"]  # a warm sandbox keeps its files, as on Lambda
        dirs.append(Path(written.response["dir"]))
    assert len(set(dirs)) == 3 and all(d.parent == scratch for d in dirs)  # each its own
    timed_out, crashed, retired = boxes
    assert timed_out.invoke({"sleep": 5}).error_type == "Sandbox.Timedout"
    assert crashed.invoke({"exit": True}).error_type == "Runtime.ExitError"
    retired.kill()
    assert list(scratch.iterdir()) == []


MEMORY = """
import subprocess, sys, time


def handler(event, context):
    if event.get("child"):  # memory of a process the handler started counts too
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; blob = 'x' * {event['mb']} * 2**20; time.sleep(15)"]
        )
        time.sleep(event["hold"])
        child.kill()
        return 0
    blob = "x" * (event["mb"] * 2**20)  # written, so resident
    time.sleep(event["hold"])
    return len(blob) // 2**20
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="memory is measured through /proc (Linux)")
@pytest.mark.parametrize("child", [False, True])
def test_an_invocation_over_the_functions_memory_size_is_killed_as_on_lambda(sandbox, tmp_path, child):
    # Given a function of 128 MB whose handler holds 256 MB for longer than memory is
    # checked, well within its timeout
    box = sandbox(MEMORY, memory_mb=128, timeout_seconds=30)
    within = box.invoke({"mb": 16, "hold": 0})
    assert within.ok and within.response == 16  # a handler within its memory runs as before
    # When it is invoked
    result = box.invoke({"mb": 256, "hold": 15, "child": child})
    # Then the sandbox is killed as Lambda kills one over its memory size, saying so,
    # instead of the invocation passing locally and failing on AWS
    assert (result.ok, result.error_type) == (False, "Runtime.OutOfMemory")
    assert "Runtime exited with error: signal: killed" in (result.error or "")
    assert "over the function's memory size, 128 MB" in (result.error or "")
    assert not box.alive()
    log = (tmp_path / "fn.log").read_text()
    assert (
        "Memory Size: 128 MB\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory" in log
    )


_EXECUTOR = """
import subprocess, sys, threading
sandbox = subprocess.Popen(
    [sys.executable, "-m", "headrace.local.sandbox", "unused"], stdin=int(sys.argv[1]), pass_fds=(int(sys.argv[1]),)
)
print(sandbox.pid, flush=True)
threading.Event().wait()
"""


def _threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except OSError:
        return 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_sandbox_whose_executor_is_killed_ends(tmp_path):
    # Given a sandbox started by an executor, waiting for its function on a stdin that stays
    # open (held here), as one busy with an invocation would not notice the executor go
    import os
    import signal
    import subprocess
    import sys
    import time

    read_end, write_end = os.pipe()
    executor = subprocess.Popen(
        [sys.executable, "-c", _EXECUTOR, str(read_end)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(read_end,),
    )
    os.close(read_end)
    sandbox_pid = 0
    try:
        assert executor.stdout is not None
        sandbox_pid = int(executor.stdout.readline())
        for _ in range(300):  # its watch on the executor started (a second thread)
            if _threads(sandbox_pid) >= 2:
                break
            time.sleep(0.1)
        assert _threads(sandbox_pid) >= 2
        # When the executor is killed with SIGKILL
        executor.send_signal(signal.SIGKILL)
        executor.wait()
        # Then the sandbox ends (the wait is bounded: it polls twice a second)
        for _ in range(300):
            if not process_running(sandbox_pid):
                break
            time.sleep(0.1)
        assert not process_running(sandbox_pid)
    finally:
        os.close(write_end)
        executor.kill()
        if sandbox_pid and process_running(sandbox_pid):
            os.kill(sandbox_pid, signal.SIGKILL)
