"""Load one processed file into the warehouse: fetch its Parquet and summary, reconcile the
dataset table with its columns, and replace the object key's rows in one transaction.

Every failure propagates: the SQS message is retried and, after ``maxReceiveCount``
receives, lands in the load DLQ. Loading is idempotent (the key's rows are replaced), so
a retry or a duplicate event never duplicates rows.
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from handlers.dal import processed
from handlers.dal.warehouse import FileToLoad, LoadOutcome, LoadRejected, Warehouse
from handlers.logic.processing import OutOfScratchSpace
from handlers.logic.processing.engine import scratch_space
from handlers.logic.processing.summary import Lineage, columns_beyond_float, columns_without_values
from handlers.logic.warehouse import rows
from handlers.logic.warehouse.schema import (
    RESCUED,
    ColumnLoad,
    LogicalType,
    logical_of_duckdb_type,
    pg_name,
)
from handlers.models.events import FileProcessed
from handlers.models.loader import LoaderSettings


def load_file(
    event: FileProcessed,
    settings: LoaderSettings,
    warehouse: Warehouse,
    uploaded_at: Callable[[str, str], datetime | None],
    *,
    superseded_by: Callable[[str, str], str | None] = lambda key, version: None,
    deadline: float | None = None,
) -> LoadOutcome:
    """``uploaded_at(key, version)``: when that version was uploaded (the metadata item),
    which orders versions of one key; ``superseded_by(key, version)``: the newer version
    whose processing retired this one's outputs, if any; ``deadline`` (a ``time.monotonic()``
    value, set before the Parquet is fetched) bounds the whole load: the time the download and
    the reading of the Parquet took is no longer the database's."""
    if event.processed_bucket != settings.processed_bucket:
        raise LoadRejected(
            f"the event points to bucket {event.processed_bucket!r}; this loader reads {settings.processed_bucket!r}"
        )
    bucket = settings.processed_bucket
    with tempfile.TemporaryDirectory(prefix="loader-", dir=settings.scratch_dir) as tmp:
        work = Path(tmp)
        parquet = work / "rows.parquet"
        try:
            processed.download(bucket, event.parquet_key, parquet)
            summary = processed.read_json(bucket, event.summary_key)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise OutOfScratchSpace(
                f"the file's Parquet (s3://{bucket}/{event.parquet_key}) did not fit in the loader's "
                f"scratch space ({scratch_space(settings.scratch_dir)}): raise "
                "functions.loader.ephemeral_storage_mb"
            ) from exc
        except processed.OutputMissing:
            # The processor removes a version's outputs once a newer version of the key
            # completes: a late event for the old one has nothing left to load (nor one
            # whose summary went between the two reads).
            newer = superseded_by(event.object_key, event.version)
            if newer:
                return LoadOutcome("superseded", pg_name(event.dataset), current_version=newer)
            raise
        try:
            lineage = Lineage.model_validate((summary or {}).get("lineage"))
        except ValidationError as exc:
            raise LoadRejected(f"s3://{bucket}/{event.summary_key} has no valid lineage: {exc}") from exc
        con = rows.connect(memory_limit=f"{max(128, settings.memory_mb // 2)}MB")
        try:
            empty = columns_without_values(summary or {})
            incoming: list[tuple[str, LogicalType | None]] = []
            for name, kind in rows.parquet_columns(con, parquet):
                logical = logical_of_duckdb_type(kind)
                incoming.append((name, None if name in empty else logical))
            # from the summary's statistics, which keep every digit: no scan of the Parquet
            inexact = columns_beyond_float(summary or {}) & {n for n, t in incoming if t == "int"}
            # PostgreSQL text cannot hold NUL: the load removes it, and says how often
            nuls = rows.nul_counts(con, parquet, [n for n, t in incoming if t == "string" and n != RESCUED])

            def csv(columns: list[ColumnLoad]) -> Generator[bytes, None, None]:
                query = rows.export_query(con, parquet, columns, lineage, event.object_key, event.version)
                return rows.csv_chunks(con, query, work)

            file = FileToLoad(
                object_key=event.object_key,
                object_version=event.version,
                dataset=event.dataset,
                source_bucket=event.bucket,
                format=event.format,
                row_count=event.row_count,
                lineage_unit=lineage.unit,
                processed_bucket=bucket,
                parquet_key=event.parquet_key,
                summary_key=event.summary_key,
                uploaded_at=uploaded_at(event.object_key, event.version),
                processed_at=event.processed_at,
                ints_beyond_float=frozenset(inexact),
                nuls_removed=nuls,
            )
            return warehouse.load(
                file,
                incoming,
                csv,
                deadline=deadline,
                replaced_by=lambda: superseded_by(event.object_key, event.version),
            )
        finally:
            con.close()
