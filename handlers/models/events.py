"""Events the handlers consume and emit."""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json

FILE_PROCESSED_SOURCE = "headrace.processor"
FILE_PROCESSED_DETAIL_TYPE = "File Processed"


class ObjectCreatedRecord(SqsRecordModel):
    """An SQS message whose body is the EventBridge "Object Created" event from S3."""

    body: Json[S3EventNotificationEventBridgeModel]  # type: ignore[assignment]


class ObjectRef(BaseModel):
    """One version of one raw object: the unit of work (and of idempotency)."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    version_id: str | None = Field(None, description="S3 version id (None when the bucket is not versioned)")
    etag: str = ""
    size: int | None = None
    uploaded_at: datetime
    sequencer: str | None = Field(
        None,
        description="S3's sequencer of the upload: orders the writes of one key (None when unknown)",
    )

    @property
    def version(self) -> str:
        """The version id, or for an unversioned bucket the ETag."""
        return self.version_id or self.etag or "unversioned"

    @classmethod
    def from_event(cls, event: S3EventNotificationEventBridgeModel) -> ObjectRef:
        obj = event.detail.object
        etag = obj.etag.strip('"')
        return cls(
            bucket=event.detail.bucket.name,
            key=obj.key,
            version_id=obj.version_id if obj.version_id not in (None, "", "null") else None,
            etag=etag,
            size=int(obj.size) if obj.size is not None else None,
            uploaded_at=event.time.astimezone(UTC) if event.time.tzinfo else event.time.replace(tzinfo=UTC),
            sequencer=obj.sequencer or None,
        )

    @property
    def is_folder_marker(self) -> bool:
        """An empty key ending in '/': what the S3 console's "Create folder" writes."""
        return self.key.endswith("/") and not self.size

    def idempotency_payload(self) -> dict[str, str]:
        """What identifies the work: the same object version announced twice (by S3, by
        EventBridge retries, or by an SQS redelivery) is processed once."""
        return {"bucket": self.bucket, "key": self.key, "version": self.version}


def sequencer_order(first: str | None, second: str | None) -> int | None:
    """S3's order of two writes of ONE key from their events' sequencers: -1 when ``first``
    came first, 1 when after; None when either is missing or not hex, or they are equal (not
    two distinct S3 writes: a replayed or emulated event). The S3 User Guide ("Event message
    structure") says to left-pad the shorter hex string with zeros and compare the strings,
    which is comparing them as hexadecimal numbers. (Its older editions said right-pad;
    AWS's sequencers are of one length in practice, where both agree.)"""
    try:
        a, b = int(first or "", 16), int(second or "", 16)
    except ValueError:
        return None
    return None if a == b else (-1 if a < b else 1)


class FileProcessed(BaseModel):
    """Detail of the "File Processed" event the processor publishes (loader input)."""

    bucket: str
    object_key: str
    version: str
    uploaded_at: datetime = Field(description="upload time of this version; a loader keeps the newest")
    dataset: str
    ingest_date: str
    format: str
    row_count: int
    columns: dict[str, str] = Field(
        description="the file's schema; empty (and columns_omitted) when it would not fit an event"
    )
    columns_omitted: bool = Field(False, description="the schema is only in the summary (summary_key)")
    processed_bucket: str
    parquet_key: str
    summary_key: str
    processed_at: datetime
