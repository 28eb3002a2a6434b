"""Process one raw object version: download, process, write outputs, record, announce.

Outcomes:

- completed: Parquet + summary written, metadata ``completed``, "File Processed" published;
- failed (permanent): the file cannot be processed (bad content, object deleted), metadata
  ``failed`` with a readable ``error``; the message is done, retrying would not help;
- exception (transient): anything else propagates, so the SQS message is retried and, after
  ``maxReceiveCount`` receives, lands in the DLQ.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from handlers.dal import events, s3
from handlers.dal.metadata import MetadataStore
from handlers.logic.layout import processed_keys
from handlers.logic.processing import UnprocessableFile, process_file
from handlers.models.events import FileProcessed, ObjectRef
from handlers.models.settings import ProcessorSettings


@dataclass(frozen=True)
class Outcome:
    status: str  # "completed" | "failed"
    rows: int = 0
    bytes: int = 0
    latency_ms: float = 0.0  # upload -> completed
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def utcnow() -> datetime:
    return datetime.now(UTC)


def process_object(
    ref: ObjectRef,
    settings: ProcessorSettings,
    store: MetadataStore,
    attempt: int = 1,
    record: Callable[[Outcome], None] = lambda _: None,
) -> Outcome:
    """``record`` is called once with the outcome (metrics), only when work was done."""
    started = utcnow()
    store.mark_processing(ref, started, attempt)
    keys = processed_keys(ref.key, ref.version, settings.raw_prefix, ref.uploaded_at)
    timings: dict[str, float] = {"queue_wait": _ms(started - ref.uploaded_at)}
    with tempfile.TemporaryDirectory(prefix="processor-", dir=settings.scratch_dir) as tmp:
        work = Path(tmp)
        source = work / "input"
        clock = time.perf_counter()
        try:
            s3.download(ref, source)
        except s3.ObjectGone:
            return _failed(ref, store, record, "the object was deleted before it could be processed")
        timings["download"] = _since(clock)

        clock = time.perf_counter()
        parquet = work / "output.parquet"
        try:
            summary = process_file(
                source,
                file_name=PurePosixPath(ref.key).name,
                options=settings.processing_options(),
                parquet_path=parquet,
            )
        except UnprocessableFile as exc:
            return _failed(ref, store, record, str(exc))
        timings["process"] = _since(clock)

        clock = time.perf_counter()
        document = summary.to_json_dict() | {
            "object_key": ref.key,
            "version": ref.version,
            "dataset": keys.dataset,
            "parquet_key": keys.parquet,
        }
        s3.upload(parquet, settings.processed_bucket, keys.parquet, "application/vnd.apache.parquet")
        s3.put_json(settings.processed_bucket, keys.summary, document)
        timings["write"] = _since(clock)

    completed = utcnow()
    timings["total"] = _ms(completed - started)
    data = summary.to_json_dict()
    store.mark_completed(
        ref,
        completed,
        {
            "format": data["format"],
            "encoding": data["encoding"],
            "row_count": data["row_count"],
            "column_count": data["column_count"],
            "schema": data["schema"],
            "statistics": data["statistics"],
            "quality_issues": data["quality_issues"],
            "pii_redactions": data.get("pii_redactions"),
            "log_stats": data.get("log_stats"),
            "warnings": data.get("warnings"),
            "file_size_bytes": data["file_size_bytes"],
            "processing_time_ms": data["processing_time_ms"],
            "dataset": keys.dataset,
            "ingest_date": keys.ingest_date,
            "processed_bucket": settings.processed_bucket,
            "parquet_key": keys.parquet,
            "summary_key": keys.summary,
            "timings_ms": timings,
        },
    )
    events.publish_file_processed(
        settings.event_bus_name,
        FileProcessed(
            bucket=ref.bucket,
            object_key=ref.key,
            version=ref.version,
            dataset=keys.dataset,
            ingest_date=keys.ingest_date,
            format=data["format"],
            row_count=data["row_count"],
            columns=data["schema"],
            processed_bucket=settings.processed_bucket,
            parquet_key=keys.parquet,
            summary_key=keys.summary,
            processed_at=completed,
        ),
    )
    outcome = Outcome(
        status="completed",
        rows=summary.row_count,
        bytes=summary.file_size_bytes,
        latency_ms=_ms(completed - ref.uploaded_at),
    )
    record(outcome)
    return outcome


def _failed(ref: ObjectRef, store: MetadataStore, record: Callable[[Outcome], None], error: str) -> Outcome:
    store.mark_failed(ref, utcnow(), error)
    outcome = Outcome(status="failed", bytes=ref.size or 0, error=error)
    record(outcome)
    return outcome


def _ms(delta: Any) -> float:
    return round(delta.total_seconds() * 1000, 1)


def _since(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 1)
