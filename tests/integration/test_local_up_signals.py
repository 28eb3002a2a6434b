"""``headrace local up`` stops cleanly on the signals a script sends it: started in the
background by a script (``headrace local up &``), it inherits SIGINT ignored, and
``kill -INT`` must still stop it as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from components.queues import visibility_timeout
from headrace.local.emulator import free_port, port_in_use
from headrace.local.runtime import EMBEDDED_CONFIG, LocalRuntime
from headrace.outputs import StackOutputs
from tests.processes import process_running

ROOT = Path(__file__).resolve().parents[2]

# headrace's command line, with the runtime's state directory (argv[1]) redirected to the
# test's own: the checkout's .headrace/local may hold a runtime the developer is running
DRIVER = """
import sys
from pathlib import Path

from headrace.local import runtime

init = runtime.LocalRuntime.__init__


def elsewhere(self, root, state_dir=None, **kwargs):
    init(self, root, state_dir=Path(sys.argv[1]), **kwargs)


runtime.LocalRuntime.__init__ = elsewhere
from headrace.cli import main

sys.exit(main(sys.argv[2:]))
"""


def ignore_sigint() -> None:
    """What a non-interactive shell does for a command started with ``&``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_until(condition: Callable[[], bool], bound: float) -> None:
    deadline = time.monotonic() + bound
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], state: Path) -> None:
    """Whatever the test's outcome, nothing is left running: the runtime (its emulator and
    sandboxes die with it) and its PostgreSQL, which runs in a session of its own."""
    if process.poll() is None:
        process.terminate()  # SIGTERM stops it cleanly, with or without the fix
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    LocalRuntime(ROOT, state_dir=state)._reclaim_postgres()  # left only if it was killed


def test_sigint_stops_a_runtime_that_inherited_it_ignored(tmp_path):
    state = tmp_path / "state"
    outputs = state / "outputs.json"
    port, api_port = free_port(), free_port()
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                str(state),
                "local",
                "up",
                "--port",
                str(port),
                "--api-port",
                str(api_port),
                # (this start also serves to check --config: one runtime start, not two)
                "--config",
                "functions.processor.timeout_seconds=42",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its console lines as they are printed
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=ignore_sigint,
        )
    try:
        # Given a runtime started with SIGINT ignored, up and serving
        def serving() -> bool:
            return outputs.exists() and "Ctrl-C stops everything." in log_path.read_text()

        wait_until(lambda: serving() or process.poll() is not None, bound=300)
        assert process.poll() is None and serving(), log_path.read_text()
        assert port_in_use("127.0.0.1", port)
        deployed_with_the_config_setting(outputs, log_path.read_text())
        # When it gets SIGINT
        process.send_signal(signal.SIGINT)
        # Then it stops as after Ctrl-C: everything it started stopped, its outputs removed
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None  # still running: SIGINT was ignored
        # 0 ("stopped") once serving; 130 ("interrupted: stopped") had the signal come in the
        # instant between the line above and its wait: Ctrl-C's answers, both
        assert code in (0, 130), log_path.read_text()
    finally:
        stop(process, state)
    assert log_path.read_text().rstrip().endswith("stopped")
    assert not outputs.exists()
    assert not (state / "postgres-dir").exists()  # its PostgreSQL was stopped and deleted
    assert not port_in_use("127.0.0.1", port)


def deployed_with_the_config_setting(outputs: Path, log: str) -> None:
    """`--config functions.processor.timeout_seconds=42` was shown at start and deployed as
    on AWS: the processor's timeout, and the visibility timeout of the queue it consumes,
    derived from it by the program (a timeout changed after the deploy, with `aws lambda
    update-function-configuration`, leaves the queue's as it was: too short)."""
    assert "config: headrace:functions.processor.timeout_seconds = 42  (--config)" in log
    stack = StackOutputs.load(outputs)
    processor = stack.model_extra["function_names"]["processor"] if stack.model_extra else None
    configuration = stack.client("lambda").get_function_configuration(FunctionName=processor)
    assert configuration["Timeout"] == 42
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.processing_queue_url, AttributeNames=["VisibilityTimeout"]
    )["Attributes"]
    window = EMBEDDED_CONFIG["headrace:functions"]["processor"]["batching_window_seconds"]
    assert int(attributes["VisibilityTimeout"]) == visibility_timeout(42, window)


# The same, with a deploy step that gets SIGTERM while it runs (a Pulumi program cut short
# there waits for ever for the resources it did not finish declaring)
INTERRUPTED_DEPLOY = (
    DRIVER.split("from headrace.cli import main")[0]
    + """
import os
import signal
import time


def deploy(root, client, region, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
    (Path(sys.argv[1]) / "deployed").write_text("to its end")
    return {}


runtime.deploy = deploy
from headrace.cli import main

sys.exit(main(sys.argv[2:]))
"""
)


def test_a_stop_signal_during_the_deploy_step_stops_the_runtime_once_the_step_ends(tmp_path):
    # (SIGTERM or Ctrl-C in the middle of the deploy step hung `local up` for ever now and
    # then, with its PostgreSQL running)
    state = tmp_path / "state"
    port = free_port()
    # Given `local up`, killed while it deploys the program
    command = ["local", "up", "--port", str(port), "--api-port", str(free_port())]
    up = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_DEPLOY, str(state), *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        # Then the step ran to its end, and everything it started is stopped as after Ctrl-C
        assert (state / "deployed").exists(), up.stderr
        assert up.returncode == 130, up.stderr
        assert "stopping once deploying the program ends" in up.stderr
        assert up.stderr.rstrip().endswith("interrupted: stopped")
        assert not (state / "outputs.json").exists()
        assert not (state / "postgres-dir").exists()  # its PostgreSQL was stopped and deleted
        assert not port_in_use("127.0.0.1", port)
    finally:
        LocalRuntime(ROOT, state_dir=state)._reclaim_postgres()  # left only if it failed


def test_an_emulator_port_taken_after_the_check_is_refused_naming_it_and_its_option(tmp_path):
    # (a port taken between the start's check and the emulator's bind was "the emulator
    # exited with status 1 (see .../emulator.log)")
    import socket

    from headrace.local.emulator import Emulator, EmulatorError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the check's connect fails
        port = taken.getsockname()[1]
        emulator = Emulator(port=port, log_path=tmp_path / "emulator.log")
        try:
            with pytest.raises(EmulatorError, match=f"port {port} on 127.0.0.1 is already in use.*--port$"):
                emulator.start()
        finally:
            emulator.stop()


# An executor (the runtime's process) with one sandbox busy with a long invocation.
BUSY_EXECUTOR = """
import sys, threading, time
from pathlib import Path

from headrace.local.sandbox import FunctionSpec, Sandbox

root = Path(sys.argv[1])
spec = FunctionSpec(name="slow", arn="arn:aws:lambda:us-east-1:123456789012:function:slow",
                    handler="slow.handler", timeout_seconds=300)
sandbox = Sandbox(spec, {"PYTHONPATH": sys.argv[2]}, root, root / "slow.log")
assert sandbox.init_error is None, sandbox.init_error
threading.Thread(target=sandbox.invoke, args=({},), daemon=True).start()
print(sandbox._process.pid, flush=True)
time.sleep(300)
"""


def test_a_sandbox_busy_with_an_invocation_ends_when_its_runtime_is_killed(tmp_path):
    # Given a runtime's executor whose sandbox is in the middle of a long invocation
    (tmp_path / "slow.py").write_text(
        "import pathlib, time\n\n\ndef handler(event, context):\n"
        "    pathlib.Path(__file__).with_name('started').touch()\n"
        "    time.sleep(300)\n"
    )
    executor = subprocess.Popen(
        [sys.executable, "-c", BUSY_EXECUTOR, str(tmp_path), str(ROOT)], stdout=subprocess.PIPE
    )
    assert executor.stdout is not None
    sandbox = int(executor.stdout.readline())
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 60)
        assert (tmp_path / "started").exists()
        # When the runtime is killed (SIGKILL: nothing of it runs any cleanup)
        executor.kill()
        executor.wait()
        # Then the sandbox ends with it, instead of running its handler on to the end
        # (past the function's timeout, into whatever then answers on the runtime's ports)
        wait_until(lambda: not process_running(sandbox), 15)
        assert not process_running(sandbox)
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
        if process_running(sandbox):
            os.kill(sandbox, signal.SIGKILL)
