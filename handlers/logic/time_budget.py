"""How much of an invocation's time one file may use.

A Lambda function that reaches its timeout is cut off: no partial batch response, so every
record of the batch (the ones already done too) returns to the queue after the visibility
timeout, the file that ran out of time is retried without a recorded reason, and the files
after it in the batch were never started — with a file that always runs out of time, they
would share its fate. So the processor starts a file only while enough time is left, and
stops processing it early enough to write the outcome before the timeout. Of the time kept
back, the first half is for writing the outputs and the second for what follows marking the
file completed (its "File Processed" event above all): a file is not marked completed once
only that second half is left, since an invocation cut off after the mark leaves a version
recorded completed whose event was never sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

MAX_RESERVE_MS = 10_000


class NotStarted(Exception):
    """Too little of the invocation's time was left to start this record."""


@dataclass(frozen=True)
class TimeBudget:
    context: Any  # the invocation's LambdaContext
    reserve_ms: int  # kept back for what follows processing: outputs, metadata, the response

    @classmethod
    def of(cls, context: Any) -> TimeBudget:
        """Keep back a fifth of the time the invocation starts with, at most 10 s."""
        return cls(context, min(MAX_RESERVE_MS, context.get_remaining_time_in_millis() // 5))

    def deadline(self) -> float | None:
        """The ``time.monotonic()`` by which processing a file started now must stop, or
        None when less than the reserve would be left for it: too little to start a file."""
        usable_ms = self.context.get_remaining_time_in_millis() - self.reserve_ms
        if usable_ms < self.reserve_ms:
            return None
        return time.monotonic() + usable_ms / 1000

    def finish_by(self) -> float:
        """The ``time.monotonic()`` from which a file started now must no longer be marked
        completed: half the reserve is then left for what must follow that mark."""
        return time.monotonic() + (self.context.get_remaining_time_in_millis() - self.reserve_ms / 2) / 1000

    def not_started(self) -> NotStarted:
        """The failure of a record there is too little time left to start (``deadline`` None)."""
        return NotStarted(f"not started: less than {2 * self.reserve_ms / 1000:g} s left in the invocation")
