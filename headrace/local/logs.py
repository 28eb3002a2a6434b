"""The functions' output in the emulator's CloudWatch Logs, as the Lambda service sends it.

Each sandbox is a log stream of its function's log group (``/aws/lambda/<name>``, or its
``LoggingConfig``'s), named as Lambda names them (``2026/12/07/[$LATEST]<32 hex>``); each
line the sandbox writes is an event, with the time it was read. The lines are batched: one
thread sends every stream's pending lines each ``FLUSH_SECONDS`` (one ``PutLogEvents`` per
stream with something to send, within its limits), so a busy function costs the emulator a
call a second, not one a line. Stopping the forwarder sends what is left.

Lines are kept in the function's log file too (``.headrace/local/logs/<name>.log``): the
sandbox reads its output into both (``sandbox.SandboxOutput``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("headrace.local")

FLUSH_SECONDS = 1.0
# PutLogEvents limits: events per call, bytes per call (each event's UTF-8 message plus 26
# bytes), bytes per event (the same count).
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024

Event = tuple[int, str]  # (milliseconds since the epoch, message)


def log_stream_name(now: datetime | None = None) -> str:
    """A new log stream's name, in the form Lambda gives a sandbox's:
    ``YYYY/MM/DD/[$LATEST]`` and 32 hex digits."""
    return f"{(now or datetime.now(UTC)):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"


def _pieces(message: str) -> Iterator[str]:
    """``message`` in pieces that each fit in one event (split on character boundaries)."""
    limit = MAX_EVENT_BYTES - EVENT_OVERHEAD
    data = message.encode()
    while len(data) > limit:
        cut = limit
        while cut and (data[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
            cut -= 1
        yield data[:cut].decode()
        data = data[cut:]
    yield data.decode()


def batches(events: list[Event]) -> Iterator[list[dict[str, Any]]]:
    """``events`` (in order) as PutLogEvents batches: at most ``MAX_BATCH_EVENTS`` events
    and ``MAX_BATCH_BYTES`` each; an event too large for one is split into several; empty
    messages (which PutLogEvents refuses) are left out."""
    batch: list[dict[str, Any]] = []
    size = 0
    for timestamp, message in events:
        if not message:
            continue
        for piece in _pieces(message):
            cost = len(piece.encode()) + EVENT_OVERHEAD
            if batch and (len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append({"timestamp": timestamp, "message": piece})
            size += cost
    if batch:
        yield batch


class LogStream:
    """One sandbox's log stream: its lines waiting to be sent."""

    def __init__(self, function: str, group: str, name: str):
        self.function = function
        self.group = group
        self.name = name
        self.created = False
        self.closed = False  # the sandbox is gone: no more lines will come
        self.refused: str | None = None  # why its lines cannot be sent (they are dropped)
        self._pending: list[Event] = []
        self._lock = threading.Lock()

    def add(self, events: list[Event]) -> None:
        with self._lock:
            self._pending.extend(events)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[Event]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending


class LogForwarder:
    """Sends the sandboxes' lines to CloudWatch Logs with ``client`` (a logs client of the
    emulator), from one thread, each stream's at most once per ``flush_seconds``."""

    def __init__(self, client: Callable[[], Any], flush_seconds: float = FLUSH_SECONDS):
        self._client_factory = client
        self._client: Any = None
        self._flush_seconds = flush_seconds
        self._streams: list[LogStream] = []
        self._lock = threading.Lock()  # the list of streams
        self._sending = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._warned: set[tuple[str, str]] = set()
        self._thread = threading.Thread(target=self._run, name="log-forwarder", daemon=True)

    def stream(self, function: str, group: str, name: str) -> LogStream:
        stream = LogStream(function, group, name)
        with self._lock:
            self._streams.append(stream)
        return stream

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send what is pending, and end the thread (call once the sandboxes are gone)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()

    def flush(self) -> None:
        with self._sending:
            with self._lock:
                streams = list(self._streams)
            for stream in streams:
                # closed before it is emptied: a line it added before closing is sent now
                done = stream.closed
                events = stream.take()
                if events and stream.refused is None:
                    self._send(stream, events)
                if done:
                    with self._lock:
                        self._streams.remove(stream)

    def _send(self, stream: LogStream, events: list[Event]) -> None:
        try:
            if self._client is None:
                self._client = self._client_factory()
            logs = self._client
            if not stream.created:
                # already there: a retried call that had succeeded
                with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                    logs.create_log_stream(logGroupName=stream.group, logStreamName=stream.name)
                stream.created = True
            for batch in batches(events):
                logs.put_log_events(logGroupName=stream.group, logStreamName=stream.name, logEvents=batch)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            if code == "ResourceNotFoundException":
                # As on AWS when the service may not create the group: the lines are lost
                # there; here they stay in the function's log file.
                stream.refused = f"its log group {stream.group} does not exist"
            elif code in ("AccessDenied", "AccessDeniedException"):
                stream.refused = str(exc)
            key = (stream.function, code)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "%s: its output could not be sent to CloudWatch Logs (%s); it is in its log file",
                    stream.function,
                    stream.refused or f"{code}: {exc}",
                )
