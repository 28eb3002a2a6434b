"""``headrace local invoke`` needs a running embedded runtime: anything else is one error
line (exit 2), and nothing is written beside an outputs file that is not the runtime's."""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.cli import main
from tests.stack_outputs import STACK_OUTPUTS

# where nothing listens: a runtime killed with SIGKILL leaves its endpoint behind like this
DEAD = {
    **STACK_OUTPUTS,
    "aws_endpoint_url": "http://127.0.0.1:1",
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "function_names": {"report": "report"},
}


def write_outputs(directory: Path, name: str = "outputs.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(DEAD))
    return path


def invoke(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["local", "invoke", "report", "--outputs", str(path), "--payload", '{"date": "today"}'])
    return code, capsys.readouterr().err


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose lock a runtime holds (as `headrace local up` does)."""
    state = tmp_path / "state"
    state.mkdir()
    fd = os.open(state / "runtime.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield state
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["outputs.json", "copy.json"])
def test_an_outputs_file_outside_a_runtime_s_state_directory_is_refused(tmp_path, capsys, name):
    # Given a copy of a runtime's outputs file somewhere else
    path = write_outputs(tmp_path / "elsewhere", name)
    # When a function is invoked with it
    code, err = invoke(path, capsys)
    # Then one line says what it needs, and no scratch or log folder appears beside the file
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"headrace: error: {path} is not the outputs file of an embedded runtime")
    assert sorted(p.name for p in path.parent.iterdir()) == [name]


def test_the_outputs_file_of_a_stopped_runtime_is_refused(tmp_path, capsys):
    # Given the state directory of a runtime killed without its cleanup: its outputs file
    # and an unheld lock
    path = write_outputs(tmp_path / "state")
    (path.parent / "runtime.lock").write_text("12345\n")
    # When a function is invoked with it
    code, err = invoke(path, capsys)
    # Then one line says the runtime is not running
    assert code == 2 and len(err.splitlines()) == 1
    assert "the embedded runtime that wrote" in err and "is not running" in err
    assert "scratch" not in {p.name for p in path.parent.iterdir()}


def test_a_runtime_that_does_not_answer_is_one_error_line(held_lock, capsys):
    # Given a running runtime's state directory whose endpoint does not answer
    path = write_outputs(held_lock)
    # When a function is invoked
    code, err = invoke(path, capsys)
    # Then the connection error is one line, not a traceback
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"headrace: error: cannot reach the embedded runtime of {path}: ")


def test_an_invoke_whose_answer_is_lost_is_not_sent_again(held_lock, capsys):
    # Given a running runtime's endpoint that takes each request and drops the connection
    # without an answer (as a function still running when the client stops waiting)
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def drop_each() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    requests.append(conn.recv(65536))

    threading.Thread(target=drop_each, daemon=True).start()
    path = write_outputs(held_lock)
    path.write_text(json.dumps({**DEAD, "aws_endpoint_url": f"http://127.0.0.1:{server.getsockname()[1]}"}))
    try:
        # When a function is invoked
        code, err = invoke(path, capsys)
    finally:
        server.close()
    # Then the invoke was sent once: a retry would run the function a second time
    assert code == 2 and err.startswith("headrace: error: cannot reach the embedded runtime")
    assert len(requests) == 1 and requests[0].startswith(b"POST /2015-03-31/functions/report/invocations")


@pytest.mark.parametrize(
    ("function_error", "answer", "status", "said"),
    [
        (None, {"date": "2026-12-07"}, 0, ""),
        (
            "Unhandled",
            {"errorType": "BadRequest", "errorMessage": "date is in the future"},
            1,
            "headrace: error: BadRequest: date is in the future\n",
        ),
        (
            "Unhandled",
            {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900.00 seconds"},
            1,
            "headrace: error: Sandbox.Timedout: Task timed out after 900.00 seconds "
            "(functions.report.timeout_seconds; `headrace local up --config "
            "functions.report.timeout_seconds=N`, at most 900, gives it more)\n",
        ),
    ],
)
def test_the_functions_answer_is_printed_and_its_failure_is_exit_status_1(
    held_lock, capsys, function_error, answer, status, said
):
    # Given a running runtime's endpoint that answers the invoke as Lambda does: its result,
    # or its error with an X-Amz-Function-Error header
    class Lambda(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(answer).encode()
            self.send_response(200)
            if function_error:
                self.send_header("X-Amz-Function-Error", function_error)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lambda)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = write_outputs(held_lock)
    path.write_text(json.dumps({**DEAD, "aws_endpoint_url": f"http://127.0.0.1:{server.server_port}"}))
    try:
        # When a function is invoked
        code = main(["local", "invoke", "report", "--outputs", str(path), "--payload", '{"date": "today"}'])
    finally:
        server.shutdown()
        server.server_close()
    # Then its answer is printed as JSON (exit 0), or its error in one line (exit 1, as the
    # README says: a failure of the function, not of the command)
    out, err = capsys.readouterr()
    assert (code, err) == (status, said)
    assert (json.loads(out) if out else None) == (None if function_error else answer)
