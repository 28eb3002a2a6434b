"""A processed file's rows as CSV for PostgreSQL's ``COPY ... FROM STDIN (FORMAT csv)``.

DuckDB reads the Parquet, converts each column to what its warehouse column takes, adds
the lineage columns (object key, version, source line number) and writes CSV into a named
pipe; the loader reads the pipe and hands the bytes to COPY. Conversion and CSV encoding
are DuckDB's vectorized code, the bytes never touch the disk, and DuckDB and PostgreSQL
work at the same time. (Measured in BENCHMARKS.md against psycopg's row-by-row
``write_row`` in binary and text formats: this is the fastest path and keeps Python out of
the per-row work.)

CSV is what PostgreSQL expects: NULL is an unquoted empty field, an empty string is ``""``,
and quoted fields may hold commas, quotes and newlines.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Generator
from pathlib import Path

import duckdb

from handlers.logic import duckdb_process
from handlers.logic.processing.sqltext import ident, literal
from handlers.logic.processing.summary import Lineage

from .schema import ColumnLoad

CHUNK_BYTES = 1 << 20
_JSON_NUL = r"(\\\\)|\\u0000"  # an escaped backslash (kept), or the escape of NUL (dropped)


def connect(memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A cursor of this process's DuckDB (``handlers/logic/duckdb_process.py``)."""
    return duckdb_process.cursor(
        autoinstall_known_extensions=False, memory_limit=memory_limit, threads=threads
    )


def parquet_columns(con: duckdb.DuckDBPyConnection, parquet: Path) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each Parquet column, in file order."""
    rows = con.sql(f"DESCRIBE SELECT * FROM read_parquet({literal(str(parquet))})").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def nul_counts(con: duckdb.DuckDBPyConnection, parquet: Path, columns: list[str]) -> dict[str, int]:
    """Per text column of ``columns``, how many of its cells hold a NUL character, which
    PostgreSQL's ``text`` cannot store and the load removes (``value_sql``); columns
    without any are left out. One scan of those columns only."""
    if not columns:
        return {}
    counts = ", ".join(f"count(*) FILTER (WHERE contains({ident(c)}, chr(0)))" for c in columns)
    found = con.sql(f"SELECT {counts} FROM read_parquet({literal(str(parquet))})").fetchall()
    return {c: int(n) for c, n in zip(columns, found[0], strict=True) if n}


def value_sql(column: ColumnLoad) -> str:
    """The DuckDB expression giving the CSV text of ``column`` for its warehouse column."""
    v = ident(column.source)
    if column.target == "json":
        # Rescued data is JSON text; anything else (should never happen) is kept as a JSON string.
        # jsonb cannot hold \u0000 (NUL): the escape is dropped. Escaped backslashes are
        # matched as pairs, so the "\\u0000" of a literal backslash and "u0000" is kept.
        json_text = (
            f"CASE WHEN json_valid({v}) THEN CAST({v} AS VARCHAR) ELSE CAST(to_json({v}) AS VARCHAR) END"
        )
        return f"regexp_replace({json_text}, {literal(_JSON_NUL)}, '\\1', 'g')"
    if column.target in ("string", "foreign"):
        if column.incoming == "string":
            return f"replace({v}, chr(0), '')"  # PostgreSQL text cannot hold NUL
        if column.incoming == "timestamp":
            return f"strftime({v}, '%Y-%m-%d %H:%M:%S.%f') || '+00'"
        if column.incoming == "date":
            return f"strftime({v}, '%Y-%m-%d')"
        if column.incoming == "float":
            return float_text_sql(v)
        return f"CAST({v} AS VARCHAR)"
    # Same type, or a narrower one PostgreSQL reads into the wider column (int into double
    # precision, date into timestamptz at midnight UTC: the session time zone is UTC).
    return v


def float_text_sql(v: str) -> str:
    """A DOUBLE as PostgreSQL writes ``float8::text`` (shortest exact digits), so the values a
    widened column got from ``ALTER ... TYPE text`` and those loaded into it later read the
    same: ``100`` not ``100.0``, ``1e+15`` not ``1000000000000000.0``, ``Infinity``, ``NaN``.
    DuckDB already agrees elsewhere, exponents included, except between 1e15 and 1e16,
    where PostgreSQL switches to an exponent and DuckDB does not yet."""
    digits = f"rtrim(replace(CAST(abs({v}) AS VARCHAR), '.', ''), '0')"
    return (
        f"CASE WHEN isnan({v}) THEN 'NaN' "
        f"WHEN isinf({v}) THEN CASE WHEN {v} > 0 THEN 'Infinity' ELSE '-Infinity' END "
        f"WHEN abs({v}) >= 1e15 AND abs({v}) < 1e16 THEN "
        f"CASE WHEN {v} < 0 THEN '-' ELSE '' END || left({digits}, 1) "
        f"|| CASE WHEN length({digits}) > 1 THEN '.' || substr({digits}, 2) ELSE '' END || 'e+15' "
        f"ELSE regexp_replace(CAST({v} AS VARCHAR), '\\.0$', '') END"
    )


def line_number_sql(lineage: Lineage, row_index: str, thresholds: str | None) -> str:
    """Line (or record) number of Parquet row ``row_index`` (0-based): the i-th position at
    or after ``lineage.first`` that is not skipped (``Lineage.position``, in SQL).

    With the skipped positions s_0 < s_1 < ... (those >= first), row i lands on
    first + i + k, where k counts the j with s_j - j - first <= i (s_j - j never decreases,
    so an ASOF join on those thresholds finds k)."""
    base = f"{int(lineage.first)} + {row_index}"
    return f"{base} + coalesce({thresholds}.k, 0)" if thresholds else base


def export_query(
    con: duckdb.DuckDBPyConnection,
    parquet: Path,
    columns: list[ColumnLoad],
    lineage: Lineage,
    object_key: str,
    object_version: str,
) -> str:
    """The SELECT producing the CSV rows: the file's columns in ``columns`` order, then
    object_key, object_version, line_number (``loaded_at`` is the column default)."""
    thresholds = None
    skipped = sorted({s for s in lineage.skipped if s >= lineage.first})
    if skipped:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE skipped_positions AS SELECT unnest(CAST(? AS BIGINT[])) AS s",
            [skipped],
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE lineage_thresholds AS "
            f"SELECT s - (n - 1) - {int(lineage.first)} AS t, max(n) AS k FROM "
            "(SELECT s, row_number() OVER (ORDER BY s) AS n FROM skipped_positions) GROUP BY t"
        )
        thresholds = "th"
    values = [value_sql(c) for c in columns]
    values += [
        literal(object_key),
        literal(object_version),
        line_number_sql(lineage, "r.file_row_number", thresholds),
    ]
    source = f"read_parquet({literal(str(parquet))}, file_row_number = true) r"
    if thresholds:
        source += " ASOF LEFT JOIN lineage_thresholds th ON r.file_row_number >= th.t"
    return f"SELECT {', '.join(values)} FROM {source}"


def csv_chunks(con: duckdb.DuckDBPyConnection, query: str, work_dir: Path) -> Generator[bytes, None, None]:
    """The CSV of ``query``'s rows, in chunks, streamed through a named pipe in ``work_dir``.

    Raises DuckDB's error after the last chunk if the export failed (the consumer must not
    commit what it received). Closing the generator early (the consumer failed) stops the
    export promptly.
    """
    fifo = work_dir / "rows.csv"
    os.mkfifo(fifo, 0o600)
    failure: list[BaseException] = []

    def produce() -> None:
        # Hold a writer end of our own from the start, so the reader's open() returns even
        # if DuckDB fails before it opens the pipe, and sees end-of-file only when both
        # this end and DuckDB's are closed.
        fd = os.open(fifo, os.O_WRONLY)
        try:
            con.execute(f"COPY ({query}) TO {literal(str(fifo))} (FORMAT csv, HEADER false)")
        except BaseException as exc:
            failure.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=produce, name="csv-export", daemon=True)
    thread.start()
    finished = False
    try:
        with open(fifo, "rb", buffering=0) as pipe:
            while chunk := pipe.read(CHUNK_BYTES):
                yield chunk
        finished = True
    finally:
        if not finished:
            _stop_writer(fifo, thread)
        thread.join()
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
    if failure:
        raise failure[0]


def _stop_writer(fifo: Path, thread: threading.Thread) -> None:
    """The reader is gone: make DuckDB's next write fail (EPIPE) instead of blocking. A
    writer still waiting to open the pipe is let in by a brief reader, then fails too."""
    while thread.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(0.05)
