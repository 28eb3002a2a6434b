"""A deadline for processing one file (the processor passes the time its invocation has).

DuckDB's running query is interrupted from the deadline on; the Python phases (decoding and
transcoding the text, converting log lines, finding blank lines) call ``check()`` at each
chunk. Either way processing ends with ``OutOfTime``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .errors import OutOfTime

if TYPE_CHECKING:
    import duckdb

_deadline: ContextVar[float | None] = ContextVar("processing_deadline", default=None)


def check() -> None:
    """Raise ``OutOfTime`` when the current file's deadline has passed."""
    check_by(_deadline.get())


def check_by(deadline: float | None, what: str = "processing") -> None:
    """Raise ``OutOfTime`` when ``deadline`` (a ``time.monotonic()`` value) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise OutOfTime(f"{what} was stopped at its deadline")


@contextmanager
def enforced(con: duckdb.DuckDBPyConnection, deadline: float | None) -> Iterator[None]:
    """Hold processing on ``con`` to ``deadline`` (a ``time.monotonic()`` value): its query
    is interrupted from then on, again every 50 ms (a query that starts after one interrupt
    is stopped by the next), and ``check()`` raises."""
    if deadline is None:
        yield
        return
    if time.monotonic() >= deadline:
        raise OutOfTime("no time was left to start processing")
    finished = threading.Event()

    def watch() -> None:
        if finished.wait(max(0.0, deadline - time.monotonic())):
            return
        while True:
            con.interrupt()
            if finished.wait(0.05):
                return

    token = _deadline.set(deadline)
    watcher = threading.Thread(target=watch, name="processing-deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()
        _deadline.reset(token)
