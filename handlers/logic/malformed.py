"""Records of an SQS batch that failed before their record handler saw them.

Powertools' ``BatchProcessor`` validates each record against the handler's model first: a
message that is not what the queue should carry (a bug in what sent it, a rule routing the
wrong events, a message sent by hand) fails there, is reported in ``batchItemFailures``,
and is logged by nothing. Each queue consumer names these from the ids its handler saw,
kept by a ``HandledRecords`` for the invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Malformed:
    message_id: str
    attempt: int  # SQS's receive count
    last: bool  # its last receive: the message moves to the DLQ next

    def fate(self) -> str:
        return "moves to the DLQ" if self.last else "will be retried"


class HandledRecords:
    """The message ids a consumer's record handler was called with in this invocation.

    A handler module keeps one: ``start()`` at the top of ``lambda_handler`` (a warm
    container's earlier batch is forgotten), ``seen(message_id)`` first thing in the record
    handler, then ``malformed(event, response)`` after the batch for the records to report.
    """

    def __init__(self, max_receive_count: int) -> None:
        self.max_receive_count = max_receive_count
        self._handled: set[str] = set()

    def start(self) -> None:
        self._handled.clear()

    def seen(self, message_id: str) -> None:
        self._handled.add(message_id)

    def malformed(self, event: Mapping[str, Any], response: Mapping[str, Any]) -> list[Malformed]:
        """The records of ``event`` reported failed in ``response`` that the record handler
        was not called with."""
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        found = []
        for raw in event.get("Records", []):
            message_id = raw.get("messageId")
            if message_id in failed and message_id not in self._handled:
                attempts = str((raw.get("attributes") or {}).get("ApproximateReceiveCount") or "0")
                attempt = int(attempts) if attempts.isdigit() else 0
                found.append(Malformed(message_id, attempt, attempt >= self.max_receive_count))
        return found
