"""Each function's configuration: environment variables parsed once into a model."""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from handlers.logic.processing import ProcessingOptions
from handlers.logic.processing.pii import PiiOptions, PiiRule


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None):
        return cls.model_validate(dict(os.environ if environ is None else environ))


class ProcessorSettings(_Settings):
    processed_bucket: str = Field(alias="PROCESSED_BUCKET")
    metadata_table: str = Field(alias="METADATA_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    # The stack's name (HEADRACE_STACK): every metric's "stack" dimension, which the
    # stack's alarms and dashboard select by (docs/contracts.md, Metrics).
    stack: str = Field(alias="HEADRACE_STACK", min_length=1)
    raw_prefix: str = Field("incoming/", alias="RAW_PREFIX")
    # keys the processor takes (comma-separated; '*' matches within one name): none, all
    raw_suffixes: tuple[str, ...] = Field((), alias="RAW_SUFFIXES")
    max_receive_count: int = Field(5, ge=1, alias="MAX_RECEIVE_COUNT")
    metadata_ttl_days: int = Field(90, ge=1, alias="METADATA_TTL_DAYS")
    idempotency_ttl_seconds: int = Field(86_400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")
    memory_mb: int = Field(1024, alias="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    scratch_dir: str = Field("/tmp", alias="SCRATCH_DIR")
    pii_extra_rules: tuple[PiiRule, ...] = Field((), alias="PII_EXTRA_RULES")
    pii_disabled_rules: frozenset[str] = Field(frozenset(), alias="PII_DISABLED_RULES")
    # Query catalog (docs/query.md): the Glue database of the dataset tables; unset: no catalog.
    glue_database: str | None = Field(None, alias="GLUE_DATABASE")
    # Fault injection (experiments, tests): share of records that crash the invocation.
    crash_rate: float = Field(0.0, ge=0.0, le=1.0, alias="HEADRACE_CRASH_RATE")

    @field_validator("pii_extra_rules", mode="before")
    @classmethod
    def _rules_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("raw_suffixes", mode="before")
    @classmethod
    def _suffix_list(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("pii_disabled_rules", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return {v.strip() for v in value.split(",") if v.strip()} if isinstance(value, str) else value

    def processing_options(self) -> ProcessingOptions:
        # DuckDB may use 60% of the function's memory, then spills to scratch space.
        return ProcessingOptions(
            memory_limit=f"{max(128, int(self.memory_mb * 0.6))}MB",
            temp_dir=self.scratch_dir,
            pii=PiiOptions(extra_rules=self.pii_extra_rules, disabled_rules=self.pii_disabled_rules),
        )
