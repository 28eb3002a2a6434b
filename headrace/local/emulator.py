"""Start and stop the AWS emulator (``headrace.local.motoserver``) as a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_PORT = 4566  # LocalStack's port, so the AWS CLI, boto3 and the local stack config find it
DEFAULT_API_PORT = 4567  # the HTTP API (ingest) of the deployed program
REGION = "us-east-1"
# moto's default account; any credentials work until IAM enforcement is switched on
# (Emulator.enforce_iam, after the deploy step).
ACCOUNT_ID = "123456789012"


# The emulator's process environment. glibc's malloc (Linux) gives a thread that finds the arenas
# in use one of its own (up to 8 per core) and keeps in each what is freed there: each of
# the server's 16 threads in turn builds a large answer (`headrace status`: the day's
# metadata items), so the process grew by the freed memory of every thread's largest
# answers (+24 MB over 50 status calls of 600 items, with no Python object left behind;
# 2 arenas: +8 MB). A MALLOC_ARENA_MAX of the user's own wins.
EMULATOR_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2"}


class EmulatorError(Exception):
    pass


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def port_taken(host: str, port: int, option: str) -> str:
    """The error for a port of the runtime that another process has, naming the option
    that chooses another."""
    return (
        f"port {port} on {host} is already in use (is LocalStack or another `headrace local up` "
        f"running?); stop it or choose another port with {option}"
    )


def _bindable(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` (as servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Emulator:
    def __init__(
        self,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        invocations_file: Path | None = None,
    ):
        """``invocations_file``: where the runtime will name its executor, which runs what
        the Lambda Invoke API is asked to (adjustment 19 of ``headrace.local.motoserver``)."""
        self.host = host
        self.port = port
        self.log_path = log_path
        self.invocations_file = invocations_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if port_in_use(self.host, self.port):
            raise EmulatorError(port_taken(self.host, self.port, "--port"))
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "headrace.local.motoserver",
                "--host",
                self.host,
                "--port",
                str(self.port),
                *(["--invocations-file", str(self.invocations_file)] if self.invocations_file else []),
                "--end-with-parent",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**EMULATOR_ENVIRONMENT, **os.environ},  # the user's own settings win
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if not _bindable(self.host, self.port):  # taken since the check above
                    raise EmulatorError(port_taken(self.host, self.port, "--port"))
                raise EmulatorError(
                    f"the emulator exited with status {self._process.returncode} (see {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise EmulatorError(f"the emulator did not answer on {self.endpoint} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def enforce_iam(self) -> None:
        """From now on every request must be signed by a known identity and is checked
        against its policies (``headrace.local.iam``)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


# How often a child of the runtime checks that the runtime is still alive.
PARENT_CHECK_SECONDS = 0.5


def end_with_parent(parent_pid: int) -> None:
    """Run in a daemon thread of a child of the runtime (the emulator, each function's
    sandbox): end the process as soon as the runtime that started it (``parent_pid``) is
    gone, killed with SIGKILL included, on every platform (``die_with_parent`` is Linux's
    kernel doing it, and nothing elsewhere: on macOS a killed runtime's emulator kept its
    port, and the next start was refused).
    Polled rather than PR_SET_PDEATHSIG, which follows the thread that started the child."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(137)


def die_with_parent() -> None:
    """``preexec_fn`` for children of the runtime: on Linux, ask the kernel to kill the child
    when the runtime dies, even abruptly, so nothing is left running. A no-op elsewhere
    (where ``end_with_parent`` does it, a moment later).
    The signal follows the *thread* that started the child: start long-lived children
    from the main thread only."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
