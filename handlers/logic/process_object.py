"""Process one raw object version: download, process, write outputs, record, announce.

Outcomes (metadata ``status`` in brackets):

- ``completed`` [completed]: Parquet + summary written (and, with ``GLUE_DATABASE``, the
  dataset's Glue table in step: ``handlers/logic/catalog.py``), "File Processed" published; outputs
  of older versions of the same key are removed (the latest version of a key wins, so S3
  and the warehouse never count a re-uploaded file twice);
- ``PermanentFailure`` raised [failed]: the file cannot be processed (bad content, an
  archived object that must be restored first, or one encrypted with a customer-provided
  key, SSE-C, that S3 refuses to read without it); the readable ``error`` is recorded and the
  message goes to the DLQ after its retries;
- ``deleted`` / ``superseded`` [failed, with the reason]: the object was deleted, or a newer
  version of the key exists, before this version was processed; nothing to retry;
- any other exception (transient, or ``OutOfTime``, ``OutOfMemory`` or
  ``OutOfScratchSpace`` at a limit of the function) propagates: the message
  is retried with the queue's backoff and, after ``maxReceiveCount`` receives, lands in the DLQ.
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from handlers.dal import events, s3
from handlers.dal.catalog import GlueCatalog
from handlers.dal.metadata import MetadataStore, iso
from handlers.logic.catalog import sync_table
from handlers.logic.layout import ProcessedKeys, processed_keys
from handlers.logic.processing import OutOfScratchSpace, OutOfTime, UnprocessableFile, process_file
from handlers.logic.processing.deadline import check_by
from handlers.logic.processing.engine import scratch_space
from handlers.logic.processing.summary import columns_beyond_float, columns_without_values
from handlers.models.events import FileProcessed, ObjectRef, sequencer_order
from handlers.models.settings import ProcessorSettings

DELETED = "the object was deleted before it could be processed"
SUPERSEDED = "superseded by a newer version of the object"
EVENT_SCHEMA_MAX_BYTES = 200_000  # of the 256 KB an EventBridge entry may hold


class PermanentFailure(Exception):
    """The file itself cannot be processed; already recorded as failed."""


@dataclass(frozen=True)
class Outcome:
    status: str  # "completed" | "failed" | "deleted" | "superseded"
    rows: int = 0
    bytes: int = 0
    latency_ms: float = 0.0  # upload -> completed
    error: str | None = None
    catalog_error: str | None = None  # the Glue table could not follow this file (recorded)

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
    deadline: float | None = None,
    finish_by: float | None = None,
    message_id: str | None = None,
) -> Outcome:
    """``message_id``: the SQS message being handled, recorded with a failure of the file
    itself (``failed_for_good``). ``record`` is called with the outcome (metrics) when the file completes, and when it
    fails for the first time (not on the retries of a file already failed). Processing
    still running at ``deadline`` (``time.monotonic()``) is stopped: ``OutOfTime``; so is a
    file whose outputs are written only at ``finish_by`` or later, before it is marked
    completed: what follows that mark (the "File Processed" event) must fit in the
    invocation too."""
    started = utcnow()
    with tempfile.TemporaryDirectory(prefix="processor-", dir=settings.scratch_dir) as tmp:
        work = Path(tmp)
        source = work / "input"
        clock = time.perf_counter()
        try:
            with s3.open_current(ref) as current:
                if _is_stale(ref, current.version, current.etag):
                    return _skip(ref, store, "superseded", SUPERSEDED)
                if current.key != ref.key:  # the event spelled the key URL-encoded
                    store.discard_received(ref)
                    ref = ref.model_copy(update={"key": current.key})
                store.mark_processing(ref, started, attempt)
                _check_room(current.size, work, settings.scratch_dir)
                # a download slower than the invocation must stop before Lambda's timeout
                # kills the whole batch with no reason recorded
                try:
                    s3.save_body(
                        current.body, source, between_chunks=lambda: check_by(deadline, "the download")
                    )
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    raise OutOfScratchSpace(
                        f"the file ({ref.size or 0:,} bytes) did not fit in the scratch space "
                        f"({scratch_space(settings.scratch_dir)})"
                    ) from exc
        except s3.ObjectGone:
            return _skip(ref, store, "deleted", DELETED)
        except ClientError as exc:
            reason = _unreadable(exc)
            if reason is None:
                raise
            record_failure(store, ref, reason, attempt, record, permanent=True, message_id=message_id)
            raise PermanentFailure(reason) from exc
        timings: dict[str, float] = {"queue_wait": _ms(started - ref.uploaded_at), "download": _since(clock)}
        keys = processed_keys(ref.key, ref.version, settings.raw_prefix, ref.uploaded_at)

        clock = time.perf_counter()
        parquet = work / "output.parquet"
        try:
            summary = process_file(
                source,
                file_name=PurePosixPath(ref.key).name,
                options=settings.processing_options(),
                parquet_path=parquet,
                deadline=deadline,
            )
        except UnprocessableFile as exc:
            record_failure(store, ref, str(exc), attempt, record, permanent=True, message_id=message_id)
            raise PermanentFailure(str(exc)) from exc
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

    if _replaced_meanwhile(ref):
        s3.delete(settings.processed_bucket, [keys.parquet, keys.summary])
        return _skip(ref, store, "superseded", SUPERSEDED)
    data = summary.to_json_dict()
    try:
        recorded = _complete(ref, settings, store, data, keys, started, timings, finish_by)
    except Exception:
        # Not completed (retried, or given up on): its outputs must not be read as data meanwhile,
        # nor for good next to the version before it (the latest version wins). A failure to
        # delete them must not hide why completing failed; the retry writes or deletes them
        # again. (Should the "completed" update have been stored with its answer lost, the
        # item says completed without outputs until the retry rewrites them.)
        with contextlib.suppress(Exception):
            s3.delete(settings.processed_bucket, [keys.parquet, keys.summary])
        raise
    if not recorded:  # a newer version completed while this one was processed: it wins
        s3.delete(settings.processed_bucket, [keys.parquet, keys.summary])
        return _skip(ref, store, "superseded", SUPERSEDED)
    completed, catalog_error = recorded
    _retire_older_versions(ref, settings, store, completed)
    fits_event = len(json.dumps(data["schema"])) <= EVENT_SCHEMA_MAX_BYTES
    events.publish_file_processed(
        settings.event_bus_name,
        FileProcessed(
            bucket=ref.bucket,
            object_key=ref.key,
            version=ref.version,
            uploaded_at=ref.uploaded_at,
            dataset=keys.dataset,
            ingest_date=keys.ingest_date,
            format=data["format"],
            row_count=data["row_count"],
            # an EventBridge entry holds 256 KB: a schema of a thousand long names does not fit
            columns=data["schema"] if fits_event else {},
            columns_omitted=not fits_event,
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
        catalog_error=catalog_error,
    )
    record(outcome)
    return outcome


def _complete(
    ref: ObjectRef,
    settings: ProcessorSettings,
    store: MetadataStore,
    data: dict[str, Any],
    keys: ProcessedKeys,
    started: datetime,
    timings: dict[str, float],
    finish_by: float | None,
) -> tuple[datetime, str | None] | None:
    """Bring the Glue table in step and mark the version ``completed``: its completion time
    and the catalog's refusal, if any; None when a newer version completed meanwhile.
    Query catalog (handlers/logic/catalog.py): transient errors propagate (retried); a
    refusal is recorded as ``catalog_error`` and the file completes. Not marked at or after
    ``finish_by`` (``OutOfTime``): cut off after the mark, before its event is sent, the
    version would be recorded completed and never loaded."""
    catalog_error = None
    if settings.glue_database:
        catalog_error = sync_table(
            GlueCatalog(),
            settings.glue_database,
            keys.dataset,
            data["schema"],
            keys.ingest_date,
            settings.processed_bucket,
            without_values=columns_without_values(data),
            beyond_float=columns_beyond_float(data),
        )
    if finish_by is not None and time.monotonic() >= finish_by:
        raise OutOfTime(
            "too little of the invocation was left to mark the file completed and send its "
            "File Processed event (its outputs were written, then removed)"
        )
    completed = utcnow()
    timings["total"] = _ms(completed - started)
    recorded = store.mark_completed(
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
            **({"catalog_error": catalog_error} if catalog_error else {}),
            "max_rss_mb": peak_rss_mb(),
        },
    )
    return (completed, catalog_error) if recorded else None


def _check_room(size: int | None, work: Path, scratch_dir: str) -> None:
    """Refuse to download a file larger than the scratch space has free: the download
    failed only once it had filled the space, gigabytes later, on every attempt."""
    free = shutil.disk_usage(work).free
    if size is not None and size > free:
        raise OutOfScratchSpace(
            f"the file ({size:,} bytes) is larger than the scratch space has free ({free:,} bytes of "
            f"{scratch_space(scratch_dir)}); not downloaded"
        )


def _unreadable(exc: ClientError) -> str | None:
    """Why S3 will never hand this object to the processor, for a GET error no retry can
    change; None for any other error."""
    code = s3.error_code(exc)
    error = exc.response.get("Error", {})
    if code == "InvalidObjectState":
        # archived (Glacier Flexible Retrieval, Deep Archive, an archive tier): only a
        # restore makes it readable
        storage = error.get("StorageClass") or "an archive storage class"
        return (
            f"the object is archived ({storage}) and cannot be read until it is restored: restore "
            "it (or copy it to a readable storage class), then run headrace replay for it"
        )
    if code == "InvalidRequest":
        # S3 answers a plain GET of an object uploaded with a customer-provided key (SSE-C)
        # with 400 InvalidRequest: only that key reads it, and the pipeline never has it
        return (
            f"S3 refuses to read the object ({code}: {error.get('Message', 'no message')}); an object "
            "encrypted with a customer-provided key (SSE-C) can only be read with that key: upload it "
            "with SSE-S3 or SSE-KMS encryption instead"
        )
    return None


def record_failure(
    store: MetadataStore,
    ref: ObjectRef,
    error: str,
    attempt: int,
    record: Callable[[Outcome], None],
    *,
    permanent: bool = False,
    message_id: str | None = None,
) -> None:
    """Mark the version ``failed``; ``record`` the outcome only the first time it fails
    (a file that keeps failing is retried until the DLQ, and counted once). ``permanent``:
    the file itself cannot be processed, found while handling message ``message_id``
    (``failed_for_good``)."""
    if store.mark_failed(ref, utcnow(), error, attempt, permanent=permanent, message_id=message_id):
        record(Outcome(status="failed", bytes=ref.size or 0, error=error))


def failed_for_good(store: MetadataStore, ref: ObjectRef, message_id: str) -> str | None:
    """The reason an earlier receive of message ``message_id`` recorded this version as a
    file that cannot be processed (bad content, archived, SSE-C), if one did and no newer
    version replaced it since: None otherwise, or when the item cannot be read (the file is
    then processed). Another message (a redrive, a replay, a duplicate event) is processed."""
    try:
        item = store.failure(ref.key, ref.version)
    except ClientError:
        return None
    if not item or item.get("status") != "failed" or item.get("failure_kind") != "permanent":
        return None
    if item.get("failed_message") != message_id:
        return None
    if item.get("superseded_by") or item.get("skip_reason"):
        return None
    return str(item.get("error") or "") or None


def _is_stale(ref: ObjectRef, current_version: str | None, current_etag: str) -> bool:
    """Whether another (newer) version of the key is current; for a versioned object, a
    current object without a version id (written while versioning was suspended) is one.
    An object without a version id (its bucket's versioning suspended, or never enabled)
    is replaced in place by the next write of its key, so the ETag tells: a current object
    of another ETag is a newer write, whose bytes are not this version's."""
    if ref.version_id is not None:
        return current_version != ref.version_id
    return bool(ref.etag) and current_etag != ref.etag


def _stale_now(ref: ObjectRef) -> bool | None:
    """Whether another version of the key is current now; None when the key is gone."""
    try:
        _, version, etag = s3.locate(ref)
        return _is_stale(ref, version, etag)
    except s3.ObjectGone:
        return None


def _replaced_meanwhile(ref: ObjectRef) -> bool:
    """Whether a newer version of the key arrived while ``ref`` was processed (a deletion
    meanwhile leaves this version's outputs in place, as one before processing skips it)."""
    return _stale_now(ref) is True


def _still_current(ref: ObjectRef) -> bool:
    """Whether ``ref`` is the key's current version now (a deleted key has none)."""
    return _stale_now(ref) is False


def _earlier(item: dict[str, Any], ref: ObjectRef, mine: str) -> bool:
    """Whether the version recorded in ``item`` was written before ``ref`` (``mine`` its
    upload time), as far as the events tell."""
    order = sequencer_order(item.get("sequencer"), ref.sequencer)
    if order is not None:
        return order < 0
    uploaded = item.get("uploaded_at", "")
    # (an unversioned bucket has no current version to ask about: the times decide)
    return uploaded < mine or (uploaded == mine and ref.version_id is None)


def _retire_older_versions(
    ref: ObjectRef, settings: ProcessorSettings, store: MetadataStore, at: datetime
) -> None:
    """Remove the outputs of earlier versions of the same key: the latest version wins.
    Each is marked superseded first, then its outputs are read from the marked item: an
    older version completing meanwhile either wrote them before (they are deleted here) or
    finds the mark and deletes its own (``mark_completed`` is conditional on it).

    Which versions are earlier is S3's order, not the upload times: S3 reports those to the
    second, so versions uploaded within one second tie. Every version read here was
    recorded, so uploaded, before the key is looked at afterwards: if ``ref`` is still the
    current version then, they are all older. If it is not (a newer upload meanwhile, which
    retires the rest when it completes), the versions older than ``ref`` by S3's sequencer
    are, and where the sequencers cannot tell (an event without one), those uploaded in an
    earlier second: one of the same second may be the newer upload, and is left alone."""
    mine = iso(ref.uploaded_at)
    others = [
        item
        for item in store.versions(ref.key)
        if item["version"] != ref.version and not item.get("superseded_by")
    ]
    if not others:
        return
    current = ref.version_id is not None and _still_current(ref)
    for item in others:
        if not current and not _earlier(item, ref, mine):
            continue
        marked = store.mark_superseded(ref.key, item["version"], ref.version, at)
        stale = [k for k in (marked.get("parquet_key"), marked.get("summary_key")) if k]
        s3.delete(marked.get("processed_bucket", settings.processed_bucket), stale)


def _skip(ref: ObjectRef, store: MetadataStore, status: str, reason: str) -> Outcome:
    # the event is stale: a version that completed before (redrive, replay, a late
    # duplicate after the idempotency window) keeps its outcome
    store.mark_failed(ref, utcnow(), reason, keep_completed=True, skip_reason=status)
    return Outcome(status=status, error=reason)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: the execution environment's
    high-water mark (interpreter and libraries included; a warm sandbox keeps the peak of
    earlier invocations). Lambda's own "Max Memory Used" measures the same sandbox."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _ms(delta: Any) -> float:
    return round(delta.total_seconds() * 1000, 1)


def _since(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 1)
