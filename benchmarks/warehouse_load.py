"""Warehouse load benchmark: the loader's COPY path vs row-by-row INSERT, on a real
PostgreSQL (the embedded server, durable settings: fsync and synchronous commit on).

    .venv/bin/python benchmarks/warehouse_load.py [--rows 1000000] [--baseline-rows 100000]
                                                  [--compare-encodings]

1. Generates a Parquet file shaped like the processor's output: mixed types (bigint,
   double, boolean, date, timestamp, text with NULLs, the ``_rescued_data`` JSON column),
   and a summary lineage with skipped (malformed) lines.
2. COPY: loads it with ``Warehouse.load`` and ``rows.csv_chunks``, exactly what the loader
   Lambda runs after downloading the file: create the table, DuckDB -> CSV -> named pipe
   -> ``COPY ... FROM STDIN``, index maintenance, lineage row, commit. Then a reload of the
   same object (DELETE + COPY in one transaction).
3. Baseline, row-by-row INSERT: one ``INSERT ... VALUES (...)`` per row, each executed and
   acknowledged before the next (``cursor.execute`` in a loop; psycopg prepares it after
   five runs), into an identical table (same columns, same index), in one transaction, on
   the first ``--baseline-rows`` rows; rows/s is extrapolated from that subset. Also timed
   for reference: psycopg's ``executemany``, which pipelines the same statements (sends
   them without waiting for each result). Preparing the Python tuples is not timed.
4. ``--compare-encodings``: also times psycopg's own COPY encoders fed row by row from
   DuckDB (``write_row``, binary and text formats), the alternatives to the CSV pipe.

Prints rows/s and the ratios; exits 1 if COPY is below 100,000 rows/s or under 10x the
row-by-row baseline (the targets of issue 5). Not part of CI: timings depend on the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import psycopg
from psycopg import sql

from handlers.dal.secrets import Credentials
from handlers.dal.warehouse import Connections, FileToLoad, Warehouse
from handlers.logic.processing.summary import Lineage
from handlers.logic.warehouse import rows
from handlers.logic.warehouse.schema import logical_of_duckdb_type
from headrace.local.postgres import EmbeddedPostgres

TARGET_ROWS_PER_SECOND = 100_000
TARGET_RATIO = 10
SCHEMA = "bench"
COLUMNS = (
    "order_id bigint, customer text, quantity bigint, price double precision, paid boolean, "
    "order_date date, shipped_at timestamptz, note text, _rescued_data jsonb, object_key text NOT NULL, "
    "object_version text NOT NULL, line_number bigint, loaded_at timestamptz NOT NULL DEFAULT now()"
)
INSERT_COLUMNS = (
    "order_id, customer, quantity, price, paid, order_date, shipped_at, note, _rescued_data, "
    "object_key, object_version, line_number"
)


def make_parquet(path: Path, n: int) -> None:
    duckdb.execute("SET TimeZone = 'UTC'")
    duckdb.execute(
        f"""COPY (
            SELECT i AS order_id,
                   'customer ' || (i % 50000) AS customer,
                   CASE WHEN i % 37 = 0 THEN NULL ELSE (i % 97)::BIGINT END AS quantity,
                   round((i * 7919 % 100000) / 100.0, 2)::DOUBLE AS price,
                   i % 3 <> 0 AS paid,
                   DATE '2024-01-01' + (i % 400)::INTEGER AS order_date,
                   TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i * 13) AS shipped_at,
                   CASE WHEN i % 10 = 0 THEN NULL
                        WHEN i % 10 = 1 THEN 'fragile, "handle" with care'
                        ELSE 'note ' || i END AS note,
                   CASE WHEN i % 1000 = 0 THEN '{{"quantity": "n/a"}}' END AS _rescued_data
            FROM range({n}) t(i)
        ) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"""
    )


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def copy_path(
    pg: EmbeddedPostgres, parquet: Path, lineage: Lineage, n: int, work: Path
) -> tuple[float, float]:
    warehouse = Warehouse(Connections(lambda _refresh: Credentials.from_secret(pg.secret())), SCHEMA)
    con = rows.connect()
    try:
        incoming = [(name, logical_of_duckdb_type(kind)) for name, kind in rows.parquet_columns(con, parquet)]

        def csv(columns):
            return rows.csv_chunks(
                con, rows.export_query(con, parquet, columns, lineage, "incoming/orders/big.csv", "v1"), work
            )

        file = FileToLoad(
            object_key="incoming/orders/big.csv",
            object_version="v1",
            dataset="orders",
            source_bucket="raw",
            format="csv",
            row_count=n,
            lineage_unit="line",
            processed_bucket="processed",
            parquet_key="parquet/orders/big.parquet",
            summary_key="summaries/orders/big.json",
            uploaded_at=datetime.now(UTC),
            processed_at=datetime.now(UTC),
        )
        warehouse.prepare()  # connect and migrate outside the timing
        start = time.perf_counter()
        outcome = warehouse.load(file, incoming, csv)
        first = time.perf_counter() - start
        assert outcome.rows == n, outcome
        start = time.perf_counter()
        outcome = warehouse.load(file, incoming, csv)
        reload = time.perf_counter() - start
        assert outcome.rows == n and outcome.replaced_rows == n, outcome
        return first, reload
    finally:
        con.close()
        warehouse.close()


def fresh_table(conn: psycopg.Connection, name: str) -> sql.Composed:
    table = sql.Identifier(SCHEMA, name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(COLUMNS)))
    conn.execute(sql.SQL("CREATE INDEX ON {} (object_key)").format(table))
    conn.commit()
    return table


def python_rows(parquet: Path, limit: int) -> list[tuple]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(
        f"SELECT order_id, customer, quantity, price, paid, order_date, "
        f"shipped_at, note, _rescued_data, 'incoming/orders/big.csv', 'v1', file_row_number + 2 "
        f"FROM read_parquet('{parquet}', file_row_number = true) LIMIT {limit}"
    ).fetchall()


def baseline(pg: EmbeddedPostgres, parquet: Path, limit: int, pipelined: bool) -> float:
    """Row-by-row INSERT of the first ``limit`` rows, in one transaction. ``pipelined``:
    psycopg's ``executemany`` (pipeline mode: statements sent without waiting for each
    result); otherwise one ``execute`` per row, each acknowledged before the next."""
    data = python_rows(parquet, limit)
    with psycopg.connect(pg.conninfo()) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        table = fresh_table(conn, "orders_insert")
        placeholders = sql.SQL(", ").join(sql.Placeholder() * 12)
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            table, sql.SQL(INSERT_COLUMNS), placeholders
        )
        start = time.perf_counter()
        with conn.cursor() as cur:
            if pipelined:
                cur.executemany(statement, data)
            else:
                for row in data:
                    cur.execute(statement, row)
        conn.commit()
        return time.perf_counter() - start


def write_row_copy(pg: EmbeddedPostgres, parquet: Path, n: int, binary: bool) -> float:
    """psycopg's COPY fed row by row from DuckDB (Python tuples)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with psycopg.connect(pg.conninfo()) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        table = fresh_table(conn, "orders_write_row")
        start = time.perf_counter()
        cursor = con.execute(
            "SELECT order_id, customer, quantity, price, paid, order_date, shipped_at, note, _rescued_data, "
            f"'incoming/orders/big.csv', 'v1', file_row_number + 2 FROM read_parquet('{parquet}', file_row_number = true)"
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            table, sql.SQL(INSERT_COLUMNS), sql.SQL(" (FORMAT binary)" if binary else "")
        )
        with conn.cursor() as cur, cur.copy(statement) as copy:
            if binary:  # naive DuckDB timestamps are UTC: send them as timestamp (same binary form)
                copy.set_types(
                    [
                        "int8",
                        "text",
                        "int8",
                        "float8",
                        "bool",
                        "date",
                        "timestamp",
                        "text",
                        "jsonb",
                        "text",
                        "text",
                        "int8",
                    ]
                )
            while batch := cursor.fetchmany(10_000):
                for row in batch:
                    copy.write_row(row)
        conn.commit()
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--compare-encodings", action="store_true")
    args = parser.parse_args()
    n, m = args.rows, min(args.baseline_rows, args.rows)

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-") as tmp, EmbeddedPostgres(durable=True) as pg:
        work = Path(tmp)
        print(f"postgres: {pg.binaries.version} (embedded, 127.0.0.1, fsync on, synchronous_commit on)")
        print(
            f"python {platform.python_version()}, duckdb {duckdb.__version__}, psycopg {psycopg.__version__}"
        )
        parquet = work / "orders.parquet"
        start = time.perf_counter()
        make_parquet(parquet, n)
        skipped = list(range(500, n + 500, max(1, n // 200)))  # ~200 malformed lines skipped
        lineage = Lineage(unit="line", first=2, skipped=skipped)
        print(
            f"generated {n:,} rows as Parquet ({parquet.stat().st_size / 2**20:.1f} MiB) "
            f"in {time.perf_counter() - start:.1f} s"
        )

        first, reload = copy_path(pg, parquet, lineage, n, work)
        copy_rate = n / first
        print(f"COPY (loader path)      {n:>10,} rows  {first:7.2f} s  {copy_rate:>10,.0f} rows/s")
        print(f"reload (DELETE + COPY)  {n:>10,} rows  {reload:7.2f} s  {n / reload:>10,.0f} rows/s")

        if args.compare_encodings:
            for binary in (True, False):
                elapsed = write_row_copy(pg, parquet, n, binary)
                label = f"COPY write_row {'binary' if binary else 'text'}"
                print(f"{label:<23} {n:>10,} rows  {elapsed:7.2f} s  {n / elapsed:>10,.0f} rows/s")

        results = {}
        for pipelined, label in ((False, "INSERT row by row"), (True, "INSERT executemany")):
            elapsed = baseline(pg, parquet, m, pipelined)
            results[pipelined] = m / elapsed
            print(
                f"{label:<23} {m:>10,} rows  {elapsed:7.2f} s  {m / elapsed:>10,.0f} rows/s"
                + (f"  (extrapolated: {n:,} rows in ~{n * elapsed / m:.0f} s)" if m < n else "")
            )
        insert_rate, pipelined_rate = results[False], results[True]
        ratio = copy_rate / insert_rate
        print(
            f"COPY / INSERT row by row: {ratio:.1f}x   (COPY / executemany: {copy_rate / pipelined_rate:.1f}x)"
        )
        ok = copy_rate >= TARGET_ROWS_PER_SECOND and ratio >= TARGET_RATIO
        verdict = "met" if ok else "MISSED"
        print(
            f"targets (>= {TARGET_ROWS_PER_SECOND:,} rows/s and >= {TARGET_RATIO}x the baseline): {verdict}"
        )
        print(
            json.dumps(
                {
                    "rows": n,
                    "copy_rows_per_second": round(copy_rate),
                    "reload_rows_per_second": round(n / reload),
                    "insert_rows_per_second": round(insert_rate),
                    "executemany_rows_per_second": round(pipelined_rate),
                    "baseline_rows": m,
                    "ratio": round(ratio, 1),
                    "targets_met": ok,
                }
            )
        )
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
