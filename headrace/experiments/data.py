"""The files the experiments upload: deterministic CSV of a given row count or size, and
poison files.

Every CSV has the same eight columns (int, timestamp, two low-cardinality strings, int,
float, bool, free text), about 70 bytes per row, so the processor infers the same schema
for every size and the loader appends to one warehouse table. DuckDB writes them, so a
1 GB file takes seconds, not minutes.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

COLUMNS = "id,event_time,region,product,quantity,amount,active,comment"

# Binary junk: not text in any encoding the processor accepts, so it is recorded failed
# at once and its message goes to the processing DLQ after maxReceiveCount receives.
POISON = bytes(range(256)) * 8

_QUERY = """
COPY (
    SELECT
        i AS id,
        TIMESTAMP '2025-01-01 00:00:00' + to_seconds(i % 31536000) AS event_time,
        (['north', 'south', 'east', 'west'])[i % 4 + 1] AS region,
        (['widget', 'gadget', 'doohickey', 'sprocket', 'gizmo'])[(i * 3) % 5 + 1] AS product,
        1 + hash(i) % 50 AS quantity,
        round((hash(i * 7) % 100000) / 100.0, 2) AS amount,
        i % 3 <> 0 AS active,
        'order ' || i || ' ok' AS comment
    FROM range({rows}) t(i)
) TO '{path}' (FORMAT csv, HEADER true)
"""


def write_csv(path: Path, rows: int) -> int:
    """Write ``rows`` data rows to ``path``; return the file's size in bytes."""
    if rows < 1:
        raise ValueError("a file needs at least one row")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute(_QUERY.format(rows=int(rows), path=str(path).replace("'", "''")))
    finally:
        con.close()
    return path.stat().st_size


def csv_bytes(rows: int, scratch: Path) -> bytes:
    """A small file's content (read into memory; for sizes up to a few MB)."""
    path = scratch / f"rows-{rows}.csv"
    if not path.exists():
        write_csv(path, rows)
    return path.read_bytes()


def rows_for_size(target_bytes: int, scratch: Path) -> int:
    """How many rows make a file of about ``target_bytes`` (from a 20,000-row sample)."""
    sample = scratch / "sample-20000.csv"
    if not sample.exists():
        write_csv(sample, 20_000)
    per_row = sample.stat().st_size / 20_000
    return max(1, math.ceil(target_bytes / per_row))


def write_csv_of_size(path: Path, target_bytes: int, scratch: Path) -> tuple[int, int]:
    """Write a CSV of about ``target_bytes``; return (rows, actual bytes)."""
    rows = rows_for_size(target_bytes, scratch)
    return rows, write_csv(path, rows)
