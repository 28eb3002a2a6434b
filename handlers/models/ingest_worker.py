"""The ingest worker's configuration (it needs the PII rules, hence its own module)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from handlers.logic.processing.pii import PiiOptions, PiiRule

from .ingest import EnvSettings


def _json_rules(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _comma_names(value: Any) -> Any:
    return {v.strip() for v in value.split(",") if v.strip()} if isinstance(value, str) else value


class IngestWorkerSettings(EnvSettings):
    """``handlers.ingest_worker``: the ingest queue -> redacted, idempotent tenant log items."""

    tenant_logs_table: str = Field(alias="TENANT_LOGS_TABLE")
    # The stack's name (HEADRACE_STACK): every metric's "stack" dimension, which the
    # stack's alarms and dashboard select by (docs/contracts.md, Metrics).
    stack: str = Field(alias="HEADRACE_STACK", min_length=1)
    max_receive_count: int = Field(5, ge=1, alias="MAX_RECEIVE_COUNT")
    keep_original: bool = Field(False, alias="KEEP_ORIGINAL")
    originals_kms_key_arn: str | None = Field(None, alias="ORIGINALS_KMS_KEY_ARN")
    log_ttl_days: int = Field(90, ge=1, alias="LOG_TTL_DAYS")
    # The same variables, with the same meaning, as the processor's (one PII rule set).
    pii_extra_rules: Annotated[tuple[PiiRule, ...], BeforeValidator(_json_rules)] = Field(
        (), alias="PII_EXTRA_RULES"
    )
    pii_disabled_rules: Annotated[frozenset[str], BeforeValidator(_comma_names)] = Field(
        frozenset(), alias="PII_DISABLED_RULES"
    )
    # Fault injection (experiments, tests): share of records that crash the invocation.
    crash_rate: float = Field(0.0, ge=0.0, le=1.0, alias="HEADRACE_CRASH_RATE")

    @field_validator("originals_kms_key_arn", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _original_needs_a_key(self) -> Self:
        if self.keep_original and not self.originals_kms_key_arn:
            raise ValueError(
                "KEEP_ORIGINAL=true needs ORIGINALS_KMS_KEY_ARN (originals are only ever kept encrypted)"
            )
        return self

    def pii(self) -> PiiOptions:
        """The processor's rule set with this function's extra and disabled rules; a clash
        (a rule defined twice) fails at start-up rather than on the first record."""
        options = PiiOptions(extra_rules=self.pii_extra_rules, disabled_rules=self.pii_disabled_rules)
        _ = options.rules
        return options
