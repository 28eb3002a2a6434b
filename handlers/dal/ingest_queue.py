"""The ingest queue: accepted records go in with SendMessageBatch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.models.ingest import IngestMessage

from .aws import Deadline, api_client

# SendMessageBatch: at most 10 entries, and (on every SQS implementation we target,
# including emulators) at most 256 KiB of message bodies per call.
MAX_ENTRIES = 10
MAX_BATCH_BYTES = 262_144


def chunks(
    bodies: Sequence[str], max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[int]]:
    """Indexes of ``bodies`` grouped into calls, in order, each within both limits."""
    current: list[int] = []
    size = 0
    for i, body in enumerate(bodies):
        length = len(body.encode("utf-8"))
        if length > max_bytes:
            raise ValueError(f"message {i} is {length} bytes, larger than a whole batch ({max_bytes})")
        if current and (len(current) == max_entries or size + length > max_bytes):
            yield current
            current, size = [], 0
        current.append(i)
        size += length
    if current:
        yield current


def _send_batch(queue_url: str, entries: list[dict[str, str]]) -> dict[str, Any]:
    return api_client("sqs").send_message_batch(QueueUrl=queue_url, Entries=entries)


@dataclass
class SendResult:
    enqueued: list[str] = field(default_factory=list)  # log ids, in request order
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "code: message", for the logs


def send(queue_url: str, messages: Sequence[IngestMessage], deadline: Deadline) -> SendResult:
    """Enqueue every message; report which log ids SQS confirmed. After a failed call
    (queue unavailable, throttled or timed out past the retries, or no time left before
    ``deadline``) the remaining calls are not attempted: the client will retry, and what
    was enqueued is deduplicated by the worker. A call that timed out may still have
    enqueued its messages: they are reported failed (not confirmed)."""
    bodies = [m.to_json() for m in messages]
    result = SendResult()
    sent_ok = [False] * len(messages)
    for group in chunks(bodies):
        entries = [{"Id": str(i), "MessageBody": bodies[i]} for i in group]
        try:
            response = deadline.call("SendMessageBatch", partial(_send_batch, queue_url, entries))
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError):
                error = exc.response["Error"]
                result.errors.append(f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}")
            else:
                result.errors.append(f"{type(exc).__name__}: {exc}")
            break
        for entry in response.get("Successful", []):
            sent_ok[int(entry["Id"])] = True
        for entry in response.get("Failed", []):
            result.errors.append(str(entry.get("Code", "Failed")))
    for message, ok in zip(messages, sent_ok, strict=True):
        (result.enqueued if ok else result.failed).append(message.log_id)
    return result
