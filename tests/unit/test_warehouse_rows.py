"""Rows as COPY input: line numbers, CSV text per column kind, and the pipe's failure modes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.logic.processing.summary import Lineage
from handlers.logic.warehouse import rows
from handlers.logic.warehouse.schema import ColumnLoad

ROWS = 40


@pytest.fixture(scope="module")
def numbers(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "numbers.parquet"
    duckdb.sql(f"COPY (SELECT i AS n FROM range({ROWS}) t(i)) TO '{path}' (FORMAT parquet)")
    return path


@pytest.fixture(scope="module")
def con():
    connection = rows.connect()
    yield connection
    connection.close()


def export(con, parquet: Path, columns: list[ColumnLoad], lineage: Lineage, tmp: Path) -> list[list[str]]:
    query = rows.export_query(con, parquet, columns, lineage, "incoming/k.csv", "v1")
    data = b"".join(rows.csv_chunks(con, query, tmp)).decode()
    return list(csv.reader(io.StringIO(data)))


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(min_value=0, max_value=5),
    skipped=st.lists(st.integers(min_value=0, max_value=3 * ROWS), max_size=30, unique=True),
)
def test_line_numbers_agree_with_the_summarys_lineage(con, numbers, tmp_path_factory, first, skipped):
    # Given any lineage (first position, skipped malformed or blank positions)
    lineage = Lineage(unit="line", first=first, skipped=sorted(skipped))
    # When the rows are exported
    out = export(con, numbers, [ColumnLoad("n", "n", "int", "int")], lineage, tmp_path_factory.mktemp("x"))
    # Then every row's line number is Lineage.position of its Parquet row
    got = sorted((int(n), int(line)) for n, _key, _version, line in out)
    assert got == [(i, lineage.position(i)) for i in range(ROWS)]


def test_csv_text_distinguishes_null_from_empty_and_survives_awkward_values(con, tmp_path):
    # Given strings with quotes, commas, newlines, NUL; an empty string and a NULL; rescued
    # data that is JSON and some that is not; a timestamp going into a text column
    parquet = tmp_path / "awkward.parquet"
    duckdb.sql(
        "COPY (SELECT * FROM (VALUES "
        "  (1, 'a \"quoted\", comma' || chr(10) || 'newline' || chr(0), '{\"n\": \"x\"}', TIMESTAMP '2025-01-02 03:04:05.5'),"
        "  (2, '', 'not json', NULL),"
        "  (3, NULL, NULL, TIMESTAMP '2025-01-02 00:00:00')"
        f") t(id, s, _rescued_data, ts)) TO '{parquet}' (FORMAT parquet)"
    )
    columns = [
        ColumnLoad("id", "id", "int", "int"),
        ColumnLoad("s", "s", "string", "string"),
        ColumnLoad("_rescued_data", "_rescued_data", "string", "json"),
        ColumnLoad("ts", "ts", "timestamp", "string"),
    ]
    query = rows.export_query(con, parquet, columns, Lineage(unit="line", first=2), "k", "v")
    data = b"".join(rows.csv_chunks(con, query, tmp_path)).decode()
    # Then NULL is an unquoted empty field and the empty string is quoted (PostgreSQL's CSV)
    lines = data.splitlines()
    assert lines[-2].startswith('2,"",') and lines[-1].startswith("3,,,")
    parsed = list(csv.reader(io.StringIO(data)))
    # and awkward text round-trips without the NUL PostgreSQL cannot store
    assert parsed[0][1] == 'a "quoted", comma\nnewline'
    # and rescued data is always valid JSON
    assert parsed[0][2] == '{"n": "x"}' and parsed[1][2] == '"not json"'
    # and a timestamp written as text is ISO and UTC, as the widened column's old values
    assert parsed[0][3] == "2025-01-02 03:04:05.500000+00"
    # and the lineage columns follow: key, version, line number
    assert parsed[2][4:] == ["k", "v", "4"]


@pytest.mark.timeout(30)
def test_an_export_failure_before_any_row_raises_instead_of_hanging(con, tmp_path):
    # Given a query DuckDB cannot run (the Parquet does not exist)
    chunks = rows.csv_chunks(con, f"SELECT * FROM read_parquet('{tmp_path / 'missing.parquet'}')", tmp_path)
    # When the consumer reads it, Then DuckDB's error surfaces (the consumer must not commit)
    with pytest.raises(duckdb.IOException):
        b"".join(chunks)
    assert not (tmp_path / "rows.csv").exists()


@pytest.mark.timeout(60)
def test_a_consumer_that_stops_early_stops_the_export(con, tmp_path):
    # Given a large export
    chunks = rows.csv_chunks(con, "SELECT i, repeat('x', 100) FROM range(3000000) t(i)", tmp_path)
    # When the consumer takes one chunk and gives up (PostgreSQL failed)
    assert next(chunks)
    chunks.close()
    # Then the export thread is gone and the pipe removed (no hang, no leak)
    assert not (tmp_path / "rows.csv").exists()
    assert con.sql("SELECT 42").fetchall() == [(42,)]  # the connection is usable again
