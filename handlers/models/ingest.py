"""The ingest API: configuration, limits, and the internal message it hands the worker.

Deliberately free of the processing core (``settings.py`` and the PII rules import DuckDB,
about 270 ms of cold start the API does not need); the worker's settings, which need the
PII rules, are in ``ingest_worker.py``. Environment variable names: ``docs/contracts.md``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Literal, Self

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

# ------------------------------------------------------------------------------ limits
# Identifiers. Patterns are unanchored: match them with ``re.fullmatch`` (a ``$`` would
# accept a trailing newline); pydantic fields use the anchored ``^...$`` forms (Rust regex).
TENANT_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
LOG_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
# One record's text, in UTF-8 bytes. Keeps every queue message far below the SQS limit
# (even with JSON escaping) and every stored item far below DynamoDB's 400 KB.
MAX_TEXT_BYTES = 16_384
# A request body, at most. API Gateway hands the body to the function as a string in the
# event's JSON, where a control character takes six bytes (\u001b), and Lambda refuses an
# event over 6 MiB (6,291,456 bytes) before the function runs: 1,000,000 bytes all escaped,
# plus the event's other fields (an HTTP API takes 10,240 bytes of request line and header
# values), still fit. The default is that ceiling.
MAX_BODY_BYTES_CEILING = 1_000_000
DEFAULT_MAX_BODY_BYTES = MAX_BODY_BYTES_CEILING
DEFAULT_MAX_BATCH_RECORDS = 100
# GET /logs page size
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Source = Literal["json", "text"]


def iso_utc(moment: datetime) -> str:
    """``2025-01-01T12:00:00.123Z``: the one timestamp format of the ingest messages and items."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------ settings
class EnvSettings(BaseModel):
    """Environment variables parsed once (same shape as ``settings._Settings``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Self:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class IngestApiSettings(EnvSettings):
    """``handlers.ingest_api``: POST /ingest, GET /logs."""

    ingest_queue_url: str = Field(alias="INGEST_QUEUE_URL")
    tenant_keys_table: str = Field(alias="TENANT_KEYS_TABLE")
    tenant_logs_table: str = Field(alias="TENANT_LOGS_TABLE")
    # Larger bodies could make events Lambda refuses (see MAX_BODY_BYTES_CEILING).
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024, le=MAX_BODY_BYTES_CEILING, alias="MAX_BODY_BYTES"
    )
    max_batch_records: int = Field(DEFAULT_MAX_BATCH_RECORDS, ge=1, le=1000, alias="MAX_BATCH_RECORDS")


# ------------------------------------------------------------------------------ messages
class IngestMessage(BaseModel):
    """The internal message (SQS body) every accepted record becomes, whatever its input
    format: ``{"tenant_id", "log_id", "source", "text", "received_at"}``."""

    # Validation errors must never echo the text (it is unredacted) into logs.
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    tenant_id: str = Field(pattern=f"^{TENANT_ID_PATTERN}$")
    log_id: str = Field(pattern=f"^{LOG_ID_PATTERN}$")
    source: Source
    text: str = Field(min_length=1)
    received_at: datetime

    @field_validator("text")
    @classmethod
    def _storable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (lone surrogate)") from None
        if size > MAX_TEXT_BYTES:
            raise ValueError(f"text is {size} bytes, more than {MAX_TEXT_BYTES}")
        return value

    @field_validator("received_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def to_json(self) -> str:
        """The SQS body. ASCII-only JSON: every character is escaped into the range SQS
        accepts (a raw U+FFFF or lone surrogate would be refused as InvalidMessageContents)."""
        return json.dumps(
            {
                "tenant_id": self.tenant_id,
                "log_id": self.log_id,
                "source": self.source,
                "text": self.text,
                "received_at": iso_utc(self.received_at),
            },
            ensure_ascii=True,
            separators=(",", ":"),
        )


class IngestRecord(SqsRecordModel):
    """An SQS record of the ingest queue (the worker's BatchProcessor model)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    body: Json[IngestMessage]  # type: ignore[assignment]


class TenantKey(BaseModel):
    """What an API key resolves to (an item of ``TENANT_KEYS_TABLE``, minus its hash)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: str
    key_id: str = ""
    name: str = ""
    disabled: bool = False


class StoredKey(BaseModel):
    """A TENANT_KEYS_TABLE item as the API reads it: the hash it was found under, and the key."""

    model_config = ConfigDict(frozen=True)

    key_hash: str
    key: TenantKey


# What GET /logs shows of a stored record: never the encrypted original, nor the TTL.
PUBLIC_LOG_FIELDS = ("tenant_id", "log_id", "source", "text", "received_at", "stored_at", "redactions")
