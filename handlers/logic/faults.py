"""Fault injection (``HEADRACE_CRASH_RATE``) for experiments and recovery tests."""

from __future__ import annotations

import random


class SimulatedCrash(BaseException):
    """Escapes the batch processor like a runtime crash: the whole invocation fails
    mid-batch, and every message of the batch comes back after its visibility timeout."""


def maybe_crash(rate: float, attempt: int, what: str) -> None:
    """Crash on a message's first delivery with probability ``rate``. Redeliveries never
    crash, so every message still succeeds in the end: the switch exercises recovery
    (redelivery, idempotency), not the dead-letter path."""
    if rate > 0 and attempt == 1 and random.random() < rate:
        raise SimulatedCrash(f"simulated crash while handling {what}")
