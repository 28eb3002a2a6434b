"""The loader's configuration and input (docs/contracts.md: loader)."""

from __future__ import annotations

import os
import re

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

from handlers.models.events import FileProcessed

# Dataset names come from handlers.logic.layout.dataset_for: [a-z0-9_], never starting
# with "_" (the warehouse's own tables start with "_", so no dataset can collide with them).
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class LoaderSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    db_secret_arn: str = Field(alias="DB_SECRET_ARN", min_length=1)
    processed_bucket: str = Field(alias="PROCESSED_BUCKET", min_length=1)
    metadata_table: str = Field(alias="METADATA_TABLE", min_length=1)
    # The stack's name (HEADRACE_STACK): every metric's "stack" dimension, which the
    # stack's alarms and dashboard select by (docs/contracts.md, Metrics).
    stack: str = Field(alias="HEADRACE_STACK", min_length=1)
    max_receive_count: int = Field(5, ge=1, alias="MAX_RECEIVE_COUNT")
    warehouse_schema: str = Field("headrace", alias="WAREHOUSE_SCHEMA", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    scratch_dir: str = Field("/tmp", alias="SCRATCH_DIR")
    memory_mb: int = Field(1024, alias="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LoaderSettings:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class WarehouseSetupSettings(BaseModel):
    """The warehouse setup function's configuration (RDS mode; docs/contracts.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    admin_secret_arn: str = Field(alias="ADMIN_SECRET_ARN", min_length=1)  # the RDS master user's
    db_secret_arn: str = Field(alias="DB_SECRET_ARN", min_length=1)  # the loader's
    warehouse_schema: str = Field("headrace", alias="WAREHOUSE_SCHEMA", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WarehouseSetupSettings:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class FileProcessedEvent(EventBridgeModel):
    """The EventBridge envelope of a "File Processed" event, as the load queue receives it.
    Only ``detail`` matters; ``account`` may be missing (moto, hence the embedded runtime,
    leaves it out)."""

    account: str = ""
    detail: FileProcessed  # type: ignore[assignment]

    @field_validator("detail")
    @classmethod
    def _dataset_is_an_identifier(cls, detail: FileProcessed) -> FileProcessed:
        if not DATASET_NAME.match(detail.dataset):
            raise ValueError(f"dataset {detail.dataset!r} is not a valid warehouse table name ([a-z0-9_])")
        return detail


class FileProcessedRecord(SqsRecordModel):
    """A load-queue message: its body is the EventBridge event (JSON)."""

    body: Json[FileProcessedEvent]  # type: ignore[assignment]


class LoadResult(BaseModel):
    """What one record's load did (logged, returned by the record handler)."""

    status: str  # "loaded" | "superseded"
    object_key: str
    version: str
    table: str
    rows: int = 0
    columns_added: list[str] = []
    columns_widened: list[str] = []
    replaced_rows: int = 0
