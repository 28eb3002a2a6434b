"""A time limit on redacting one text with Python's regular expressions.

The ingest worker redacts log lines anyone with an API key sends, with Python's
backtracking engine. The built-in rules are linear, and a user's rule is checked at deploy
time for the slow shape it can spot ((a+)+), but not every slow pattern has it
(``\\w+\\.?\\w+@x`` is cubic): a crafted line could hold the worker for the whole invocation,
and its timeout would return every record of the batch to the queue. Python's regular
expression engine checks for signals while it matches, so a timer interrupts it: the slow
record fails alone (retried, then the DLQ) and is never stored unredacted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class RedactionTooSlow(Exception):
    """Redacting one text took longer than its limit."""


@contextmanager
def _interrupt_after(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise RedactionTooSlow(
            f"redacting this text took over {seconds:g} s: a PII rule's pattern (pii.extra_rules) "
            "is too slow on it for Python's engine"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def time_limited(seconds: float, work: Callable[[], T]) -> T:
    """``work()``, interrupted with ``RedactionTooSlow`` after ``seconds`` (a timer signal:
    only in the main thread, which runs a Lambda handler; elsewhere without a limit)."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    with _interrupt_after(seconds):
        return work()
