"""The worker's unit of work, its settings, and queue batching (no AWS)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from handlers.dal.ingest_queue import chunks
from handlers.logic.ingest import worker
from handlers.logic.ingest.worker import log_item, store_message
from handlers.logic.pii_guard import RedactionTooSlow
from handlers.logic.processing.pii import PiiOptions
from handlers.models.ingest import IngestApiSettings, IngestMessage
from handlers.models.ingest_worker import IngestWorkerSettings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RULES = PiiOptions().rules


def message(text: str = "User 555-0199 mailed jane@example.com", log_id: str = "l1") -> IngestMessage:
    return IngestMessage(tenant_id="acme", log_id=log_id, source="text", text=text, received_at=NOW)


class Store:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}

    def put_once(self, item: dict[str, Any], original: str | None = None) -> dict[str, Any] | None:
        key = (item["tenant_id"], item["log_id"])
        if key in self.items:
            return self.items[key][0]
        self.items[key] = (item, original)
        return None


def test_item_is_redacted_with_the_file_processing_rules():
    # Given a message with a phone number and an e-mail address
    item = log_item(message(), RULES, NOW + timedelta(seconds=2), ttl_days=30)
    # Then the item holds the text redacted exactly as the processor's rule set does
    assert item["text"] == RULES.redact("User 555-0199 mailed jane@example.com")[0]
    assert item["text"] == "User [REDACTED:PHONE] mailed [REDACTED:EMAIL]"
    assert item["redactions"] == {"email": 1, "phone": 1}
    assert (item["tenant_id"], item["log_id"], item["source"]) == ("acme", "l1", "text")
    assert item["received_at"] == "2025-03-01T12:00:00.000Z"
    assert item["stored_at"] == "2025-03-01T12:00:02.000Z"
    assert item["ttl"] == int((NOW + timedelta(days=30, seconds=2)).timestamp())


def test_a_json_log_line_loses_the_values_of_members_named_like_pii():
    # "ssn": "123456789" matches no pattern; a column named ssn is redacted whole in files
    item = log_item(message('{"event": "signup", "ssn": "123456789"}'), RULES, NOW, ttl_days=30)
    assert item["text"] == '{"event": "signup", "ssn": "[REDACTED:NATIONAL_ID]"}'
    assert item["redactions"] == {"national_id": 1}


def test_a_json_log_line_keeps_members_that_describe_pii():
    # "card_type": "visa" and "email_count": 3 became "[REDACTED:CARD]" and "[REDACTED:EMAIL]";
    # an address inside a describing member is still found by the patterns
    text = '{"card_type": "visa", "email_count": 3, "email_status": "to a@b.io", "phone": 5551234567}'
    item = log_item(message(text), RULES, NOW, ttl_days=30)
    assert item["text"] == (
        '{"card_type": "visa", "email_count": 3, "email_status": "to [REDACTED:EMAIL]", "phone": "[REDACTED:PHONE]"}'
    )
    assert item["redactions"] == {"email": 1, "phone": 1}


def test_extra_and_disabled_rules_apply_to_ingested_logs():
    options = PiiOptions(
        extra_rules=({"name": "ticket", "pattern": r"TCK-\d+"},),  # type: ignore[arg-type]
        disabled_rules=frozenset({"phone"}),
    )
    item = log_item(message("TCK-42 from 555-0199"), options.rules, NOW, 1)
    assert item["text"] == "[REDACTED:TICKET] from 555-0199"


def test_a_rule_too_slow_for_one_record_fails_that_record_and_stores_nothing(monkeypatch):
    # a user's pattern the deploy-time check lets through (no nested repeat) that is cubic
    # in Python's engine: a crafted line would hold the worker for the whole invocation
    monkeypatch.setattr(worker, "REDACTION_SECONDS", 0.2)
    slow = PiiOptions(extra_rules=({"name": "corp", "pattern": r"\w+\.?\w+@corp\.example"},))  # type: ignore[arg-type]
    store = Store()
    with pytest.raises(RedactionTooSlow, match=r"took over 0\.2 s"):
        store_message(message("a" * 3000), slow.rules, store, now=NOW, ttl_days=1, keep_original=False)
    assert store.items == {}
    # an ordinary record under the same rule is stored, and the timer is gone afterwards
    outcome = store_message(
        message("no address"), slow.rules, store, now=NOW, ttl_days=1, keep_original=False
    )
    assert outcome.status == "stored"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_first_write_stores_then_replays_are_duplicates():
    store = Store()
    first = store_message(message(), RULES, store, now=NOW, ttl_days=1, keep_original=False)
    again = store_message(message(), RULES, store, now=NOW, ttl_days=1, keep_original=False)
    other = store_message(message("different text"), RULES, store, now=NOW, ttl_days=1, keep_original=False)
    assert (first.status, again.status, other.status) == ("stored", "duplicate", "conflict")
    assert store.items[("acme", "l1")][0]["text"].startswith("User [REDACTED:PHONE]")


def test_original_is_handed_to_the_store_only_when_configured_and_redacted():
    store = Store()
    store_message(message(log_id="a"), RULES, store, now=NOW, ttl_days=1, keep_original=False)
    store_message(message(log_id="b"), RULES, store, now=NOW, ttl_days=1, keep_original=True)
    store_message(message("nothing here", log_id="c"), RULES, store, now=NOW, ttl_days=1, keep_original=True)
    originals = {log_id: original for (_, log_id), (_, original) in store.items.items()}
    assert originals == {"a": None, "b": "User 555-0199 mailed jane@example.com", "c": None}


# ------------------------------------------------------------------ settings
WORKER_ENV = {"TENANT_LOGS_TABLE": "logs", "HEADRACE_STACK": "test"}


def test_worker_settings_defaults_and_pii_variables():
    settings = IngestWorkerSettings.from_env(
        WORKER_ENV
        | {
            "PII_EXTRA_RULES": json.dumps([{"name": "ticket", "pattern": "TCK-[0-9]+"}]),
            "PII_DISABLED_RULES": "phone, card",
        }
    )
    assert (settings.max_receive_count, settings.log_ttl_days, settings.keep_original) == (5, 90, False)
    assert settings.crash_rate == 0.0
    assert [r.name for r in settings.pii().rules.rules] == ["email", "national_id", "ticket"]


def test_keeping_originals_needs_a_kms_key():
    with pytest.raises(ValidationError, match="ORIGINALS_KMS_KEY_ARN"):
        IngestWorkerSettings.from_env(WORKER_ENV | {"KEEP_ORIGINAL": "true", "ORIGINALS_KMS_KEY_ARN": ""})
    ok = IngestWorkerSettings.from_env(
        WORKER_ENV | {"KEEP_ORIGINAL": "true", "ORIGINALS_KMS_KEY_ARN": "arn:k"}
    )
    assert ok.keep_original and ok.originals_kms_key_arn == "arn:k"


def test_a_pii_rule_defined_twice_fails_at_start_up():
    settings = IngestWorkerSettings.from_env(
        WORKER_ENV | {"PII_EXTRA_RULES": json.dumps([{"name": "email", "pattern": "x"}])}
    )
    with pytest.raises(ValueError, match="defined twice"):
        settings.pii()


def test_api_settings_defaults_and_bounds():
    env = {"INGEST_QUEUE_URL": "q", "TENANT_KEYS_TABLE": "k", "TENANT_LOGS_TABLE": "l"}
    settings = IngestApiSettings.from_env(env)
    assert (settings.max_body_bytes, settings.max_batch_records) == (1_000_000, 100)
    with pytest.raises(ValidationError):
        IngestApiSettings.from_env(env | {"MAX_BODY_BYTES": "10000000"})


@pytest.mark.parametrize(
    "body",
    [
        '{"tenant_id": "Acme", "log_id": "x", "source": "json", "text": "t", "received_at": "2025-01-01T00:00:00Z"}',
        '{"tenant_id": "acme", "log_id": "x y", "source": "json", "text": "t", "received_at": "2025-01-01T00:00:00Z"}',
        '{"tenant_id": "acme", "log_id": "x", "source": "ftp", "text": "t", "received_at": "2025-01-01T00:00:00Z"}',
        '{"tenant_id": "acme", "log_id": "x", "source": "json", "text": " ", "received_at": "2025-01-01T00:00:00Z"}',
        '{"tenant_id": "acme", "log_id": "x", "source": "json", "text": "t"}',
    ],
)
def test_worker_refuses_messages_the_api_could_not_have_sent(body):
    with pytest.raises(ValidationError) as caught:
        IngestMessage.model_validate_json(body)
    assert "input_value" not in str(caught.value)  # never echo message content into logs


# ------------------------------------------------------------------ batching
def test_chunks_respect_ten_entries_and_the_byte_budget():
    assert [len(c) for c in chunks(["x"] * 25)] == [10, 10, 5]
    # 100-byte bodies with a 250-byte budget: two per call
    assert list(chunks(["a" * 100] * 5, max_bytes=250)) == [[0, 1], [2, 3], [4]]
    assert list(chunks([])) == []
    with pytest.raises(ValueError):
        list(chunks(["a" * 300], max_bytes=250))
