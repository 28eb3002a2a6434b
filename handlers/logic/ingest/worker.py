"""The ingest worker's unit of work: one internal message -> one stored, redacted item.

Redaction uses the processor's PII rule set (``PiiOptions(...).rules``), so a phone number
is redacted the same way in a log line pushed to the API and in a file dropped in the raw
bucket. The write is conditional on the item not existing: the first delivery of a
``(tenant_id, log_id)`` stores it, every later one (SQS redelivery, a client retry, a
replay) changes nothing. A later one with the same (redacted) text is a ``duplicate``; one
with another text is a ``conflict``: a client that reused a log id for a different record,
whose new record is dropped, and which the worker reports rather than passing over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from handlers.logic.pii_guard import time_limited
from handlers.logic.processing.pii import PiiRuleSet
from handlers.models.ingest import IngestMessage, iso_utc


class LogStore(Protocol):
    def put_once(self, item: dict[str, Any], original: str | None = None) -> dict[str, Any] | None:
        """None when stored; else the item already stored under its key."""
        ...


@dataclass(frozen=True)
class Outcome:
    status: Literal["stored", "duplicate", "conflict"]
    redactions: dict[str, int] = field(default_factory=dict)


# How long redacting one record may take (16 KB of text takes milliseconds with the
# built-in rules): a slower one fails alone instead of holding the batch (pii_guard).
REDACTION_SECONDS = 2.0


def log_item(message: IngestMessage, rules: PiiRuleSet, stored_at: datetime, ttl_days: int) -> dict[str, Any]:
    """The TENANT_LOGS_TABLE item (without the encrypted original)."""
    text, counts = time_limited(REDACTION_SECONDS, lambda: rules.redact_text(message.text))
    return {
        "tenant_id": message.tenant_id,
        "log_id": message.log_id,
        "source": message.source,
        "text": text,
        "received_at": iso_utc(message.received_at),
        "stored_at": iso_utc(stored_at),
        "redactions": counts,
        "ttl": int((stored_at + timedelta(days=ttl_days)).timestamp()),
    }


def store_message(
    message: IngestMessage,
    rules: PiiRuleSet,
    store: LogStore,
    *,
    now: datetime,
    ttl_days: int,
    keep_original: bool,
) -> Outcome:
    item = log_item(message, rules, now, ttl_days)
    # The original is worth keeping (encrypted) only when redaction changed something.
    original = message.text if keep_original and item["redactions"] else None
    existing = store.put_once(item, original=original)
    if existing is None:
        return Outcome("stored", item["redactions"])
    same = existing.get("text", item["text"]) == item["text"]
    return Outcome("duplicate" if same else "conflict", item["redactions"])
