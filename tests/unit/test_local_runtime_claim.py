"""One state directory, one embedded runtime: a second `headrace local up` (or demo) is
refused before it touches anything the running one uses."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from headrace.local.emulator import free_port
from headrace.local.runtime import LocalRuntime, RuntimeBusy
from tests.processes import process_running

ROOT = Path(__file__).resolve().parents[2]


def running(state: Path) -> LocalRuntime:
    """A runtime holding ``state`` as a started one does, with the files it writes."""
    runtime = LocalRuntime(ROOT, state_dir=state, port=free_port(), api_port=free_port())
    runtime._claim()
    (state / "logs").mkdir(exist_ok=True)
    (state / "logs" / "processor.log").write_text("serving\n")
    runtime.outputs_path.write_text("{}\n")
    return runtime


def test_a_second_runtime_on_the_same_state_directory_is_refused_and_harms_nothing(tmp_path):
    first = running(tmp_path)
    try:
        second = LocalRuntime(ROOT, state_dir=tmp_path, port=free_port(), api_port=free_port())
        with pytest.raises(RuntimeBusy, match=r"another embedded runtime \(pid \d+\) is using"):
            second.start()
        assert first.outputs_path.read_text() == "{}\n"
        assert (tmp_path / "logs" / "processor.log").read_text() == "serving\n"
    finally:
        first.stop()
    # the first one's stop releases the directory (and removes its outputs file)
    assert not first.outputs_path.exists()
    running(tmp_path).stop()


@pytest.mark.parametrize("option", ["--port", "--api-port"])
def test_a_port_in_use_is_refused_before_anything_is_touched(tmp_path, option):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = (
            {"port": port, "api_port": free_port()}
            if option == "--port"
            else {"port": free_port(), "api_port": port}
        )
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "old.log").write_text("kept\n")
        with pytest.raises(RuntimeBusy, match=f"port {port} .* already in use.*{option}"):
            LocalRuntime(ROOT, state_dir=tmp_path, **ports).start()
        assert (tmp_path / "logs" / "old.log").exists()
    # and the refused start did not keep the directory
    running(tmp_path).stop()


def test_an_api_port_taken_after_the_check_is_refused_naming_it_and_its_option(tmp_path):
    # (a port taken between the start's check and the HTTP API's bind - another runtime
    # starting at the same moment, a socket bound but not listening - was "a port of the
    # runtime was taken while it started ([Errno 98] Address already in use)")
    from headrace.local.executor import Deployment, Route

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the check's connect fails
        port = taken.getsockname()[1]
        runtime = LocalRuntime(ROOT, state_dir=tmp_path, port=free_port(), api_port=port)
        deployment = Deployment(routes=[Route("api", "$default", "ingest")])
        with pytest.raises(RuntimeBusy, match=f"port {port} on 127.0.0.1 is already in use.*--api-port$"):
            runtime._executor(deployment)


def test_a_command_reading_a_stale_outputs_file_does_not_make_a_start_refuse(tmp_path):
    # Given a command that, at the moment a runtime starts, checks whether the runtime that
    # wrote the outputs file still runs (it holds the lock file's shared lock for an instant)
    import fcntl
    import os
    import threading

    (tmp_path / "runtime.lock").write_text("")
    fd = os.open(tmp_path / "runtime.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.05, os.close, [fd]).start()  # the probe lets go
    # When the runtime claims the state directory meanwhile, then it is not refused
    running(tmp_path).stop()


def test_a_killed_runtime_s_outputs_file_is_gone_as_soon_as_the_next_one_claims_the_directory(
    tmp_path, monkeypatch
):
    # Given the outputs file a runtime killed with SIGKILL left behind
    from headrace.local.emulator import Emulator

    stale = tmp_path / "outputs.json"
    stale.write_text('{"aws_endpoint_url": "http://127.0.0.1:1", "aws_access_key_id": "old"}\n')
    seen: list[bool] = []

    def record(self: Emulator) -> None:
        seen.append(stale.exists())
        raise RuntimeBusy("stopped by the test")

    monkeypatch.setattr(Emulator, "start", record)
    # When the next runtime starts (the emulator is the first thing it starts)
    runtime = LocalRuntime(ROOT, state_dir=tmp_path, port=free_port(), api_port=free_port())
    with pytest.raises(RuntimeBusy, match="stopped by the test"):
        runtime.start()
    # Then the old file was gone by then: while the new runtime holds the directory's lock,
    # every command takes the file for the running runtime's (a script waiting for the file
    # to appear went on at once, with the old endpoint and the old, now unknown, access key)
    assert seen == [False]


def test_a_stop_says_which_messages_it_discards(tmp_path, monkeypatch, caplog):
    # Ctrl-C in the middle of an upload dropped the files not yet processed without a word
    from headrace.local import runtime as runtime_module

    class Sqs:
        counts = {"q-processing": ("7", "2", "0"), "q-load": ("0", "0", "0"), "q-load-dlq": ("1", "0", "0")}

        def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, object]:
            return {"Attributes": dict(zip(AttributeNames, self.counts[QueueUrl], strict=True))}

    monkeypatch.setattr(runtime_module.boto3, "client", lambda service, **kwargs: Sqs())
    runtime = LocalRuntime(ROOT, state_dir=tmp_path, port=free_port(), api_port=free_port())
    runtime.outputs = {
        "processing_queue_url": "q-processing",
        "load_queue_url": "q-load",
        "load_dlq_url": "q-load-dlq",
    }
    stopped: list[bool] = []
    runtime.executor = SimpleNamespace(stop=lambda: stopped.append(True))  # type: ignore[assignment]
    with caplog.at_level("INFO", logger="headrace.local"):
        runtime.stop()
    assert stopped == [True]
    assert caplog.messages == [
        "not carried over to the next start (every start begins empty): messages still on the "
        "queues: 9 in processing, 1 in load DLQ"
    ]


_PARENT = """
import sys, threading
from headrace.local import emulator
emulator.die_with_parent = lambda: None  # as on macOS: no PR_SET_PDEATHSIG
runtime = emulator.Emulator(port=int(sys.argv[1]))
runtime.start()
print(runtime._process.pid, flush=True)
threading.Event().wait()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_emulator_of_a_runtime_killed_with_sigkill_ends_on_every_platform(tmp_path):
    # On Linux the kernel ends it (PR_SET_PDEATHSIG); elsewhere nothing did, and the next
    # start was refused: its port was still in use, by an emulator nobody could see
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    emulator_pid = 0
    try:
        assert parent.stdout is not None
        emulator_pid = int(parent.stdout.readline())  # printed once the emulator answers
        # When the runtime is killed with SIGKILL
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # Then its emulator ends (the wait is bounded: it polls twice a second)
        for _ in range(300):
            if not process_running(emulator_pid):
                break
            time.sleep(0.1)
        assert not process_running(emulator_pid)
    finally:
        parent.kill()
        if emulator_pid and process_running(emulator_pid):
            os.kill(emulator_pid, signal.SIGKILL)
