"""``headrace query``'s DuckDB engine against an S3 API (the emulator, as a server: pyarrow's
S3 filesystem cannot use moto in-process), over outputs the real processing core wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import pytest

from handlers.logic.processing import process_file
from headrace import cli, query
from headrace.local.emulator import Emulator, free_port
from headrace.outputs import StackOutputs
from headrace.query import DatasetFile, DuckDbEngine, QueryError, execute
from tests.stack_outputs import STACK_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "processed"
# (dataset, ingest date, sample): January's file lacks the region column February's has
FILES = [
    ("sales", "2025-02-01", "sales.csv"),
    ("sales", "2025-02-02", "sales-2025-02.csv"),
    ("orders", "2025-02-02", "orders.json"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    emulator = Emulator(port=free_port())
    emulator.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket=BUCKET)
        work = tmp_path_factory.mktemp("outputs")
        rows: dict[str, int] = {}
        keys: dict[tuple[str, str], str] = {}
        for dataset, day, sample in FILES:
            parquet = work / f"{sample}.parquet"
            summary = process_file(ROOT / "samples" / sample, parquet_path=parquet)
            stem = f"dataset={dataset}/ingest_date={day}/{Path(sample).stem}--0123456789abcdef"
            s3.upload_file(str(parquet), BUCKET, f"parquet/{stem}.parquet")
            s3.put_object(
                Bucket=BUCKET, Key=f"summaries/{stem}.json", Body=json.dumps(summary.to_json_dict())
            )
            rows[dataset] = rows.get(dataset, 0) + summary.row_count
            keys[(dataset, day)] = f"s3://{BUCKET}/parquet/{stem}.parquet"
        # a Parquet whose summary is not written yet (the processor is mid-file): not read
        s3.upload_file(
            str(work / "sales.csv.parquet"),
            BUCKET,
            "parquet/dataset=sales/ingest_date=2025-02-03/x--1.parquet",
        )
        outputs = StackOutputs.model_validate(
            {
                **STACK_OUTPUTS,
                "processed_bucket": BUCKET,
                "region": "us-east-1",
                "aws_endpoint_url": emulator.endpoint,
                "aws_access_key_id": "test",
                "aws_secret_access_key": "test",
                "athena_workgroup": "wg",  # the embedded runtime has one; its endpoint still means DuckDB
                "glue_database": "db",
            }
        )
        path = work / "outputs.json"
        path.write_text(outputs.model_dump_json())
        yield {"outputs": outputs, "path": path, "rows": rows, "keys": keys}
    finally:
        emulator.stop()


def test_count_is_the_sum_of_the_files_row_counts(stack):
    # Given two complete sales files and one still being written
    # When counted
    result = execute(stack["outputs"], "SELECT count(*) AS n FROM sales")
    # Then the count is the files' row counts, read by DuckDB, from the two complete files only
    assert result.stats.engine == "duckdb"
    assert result.rows == [(stack["rows"]["sales"],)] == [(100,)]
    assert result.stats.files_total == 2 and len(result.stats.files_scanned) == 2


def test_the_table_has_the_catalog_schema_across_drift(stack):
    # Given January without region and February with it
    result = execute(stack["outputs"], "DESCRIBE sales")
    # Then the table has every column with the catalog's types, _rescued_data, then ingest_date
    assert [(r[0], r[1]) for r in result.rows] == [
        ("date", "DATE"),
        ("product", "VARCHAR"),
        ("quantity", "BIGINT"),
        ("price", "DOUBLE"),
        ("region", "VARCHAR"),
        ("_rescued_data", "VARCHAR"),
        ("ingest_date", "VARCHAR"),
    ]
    # and January's rows have no region
    rows = execute(
        stack["outputs"], "SELECT ingest_date, count(region) FROM sales GROUP BY 1 ORDER BY 1"
    ).rows
    assert rows == [("2025-02-01", 0), ("2025-02-02", 97)]


def test_a_filter_on_ingest_date_opens_only_that_partition(stack):
    # When one day of sales is queried
    result = execute(
        stack["outputs"], "SELECT count(*), sum(quantity) FROM sales WHERE ingest_date = '2025-02-02'"
    )
    # Then only that day's file was opened
    assert result.stats.files_scanned == [stack["keys"][("sales", "2025-02-02")]]
    assert result.rows[0][0] == 97
    # and a range before any file opens none, without failing
    empty = execute(stack["outputs"], "SELECT count(*) FROM sales WHERE ingest_date < '2025-01-01'")
    assert (empty.rows, empty.stats.files_scanned) == ([(0,)], [])
    # while a filter on a data column has to read every file
    everything = execute(stack["outputs"], "SELECT count(*) FROM sales WHERE region = 'north'")
    assert len(everything.stats.files_scanned) == 2


def test_a_join_opens_each_table_once_and_prunes_the_filtered_one(stack):
    result = execute(
        stack["outputs"],
        "SELECT count(*) FROM sales s JOIN orders o ON o.total > s.price WHERE s.ingest_date = '2025-02-01'",
    )
    assert sorted(result.stats.files_scanned) == sorted(
        [stack["keys"][("sales", "2025-02-01")], stack["keys"][("orders", "2025-02-02")]]
    )


def test_unknown_tables_and_bad_sql_are_clear_errors(stack):
    # An unknown table lists the known ones
    with pytest.raises(QueryError, match=r"unknown table nope; the tables of this stack are: orders, sales"):
        execute(stack["outputs"], "SELECT * FROM nope")
    # Bad SQL shows DuckDB's message
    with pytest.raises(QueryError, match='DuckDB: Parser Error: syntax error at or near "selec"'):
        execute(stack["outputs"], "selec 1")
    # A CTE may shadow a dataset's name
    assert execute(stack["outputs"], "WITH sales AS (SELECT 1 AS x) SELECT x FROM sales").rows == [(1,)]


def test_the_engine_lists_datasets_and_only_complete_files(stack):
    engine = DuckDbEngine(stack["outputs"])
    assert engine.datasets() == ["orders", "sales"]
    # SHOW TABLES lists them, as Athena lists the Glue tables
    assert execute(stack["outputs"], "show tables;").rows == [("orders",), ("sales",)]
    # written any way: case, spacing, comments, ALL
    for sql in ("show tables -- the datasets", "/* list */ Show\n\tTABLES ;", "SHOW ALL TABLES"):
        assert execute(stack["outputs"], sql).rows == [("orders",), ("sales",)], sql
    # while DuckDB's own catalog, which holds no dataset a query does not name, is refused
    for sql in (
        "SELECT table_name FROM information_schema.tables",
        "SELECT * FROM duckdb_tables()",
        "SHOW TABLES FROM memory",
    ):
        with pytest.raises(QueryError, match="SHOW TABLES lists the datasets, DESCRIBE <table>"):
            execute(stack["outputs"], sql)
    assert [f.ingest_date for f in engine.files("sales")] == ["2025-02-01", "2025-02-02"]


def test_cli_prints_json_and_the_files_it_scanned(stack, capsys):
    # When the CLI runs a partition query as JSON with --explain
    status = cli.main(
        [
            "query",
            "SELECT product, sum(quantity) AS units FROM sales WHERE ingest_date = '2025-02-01' GROUP BY 1 ORDER BY 1",
            "--outputs",
            str(stack["path"]),
            "--format",
            "json",
            "--explain",
        ]
    )
    captured = capsys.readouterr()
    # Then stdout is the rows as JSON, and stderr says what was scanned, file by file
    assert status == 0
    assert json.loads(captured.out) == [{"product": "Gadget", "units": 5}, {"product": "Widget", "units": 10}]
    assert "duckdb: scanned 1 of 2 Parquet files" in captured.err
    assert f"scanned: {stack['keys'][('sales', '2025-02-01')]}" in captured.err.splitlines()


def test_cli_json_keeps_both_tables_columns_of_a_join_and_says_so(stack, capsys):
    sql = (
        "SELECT s.ingest_date, o.ingest_date, 1 AS a, 2 AS a FROM sales s, orders o "
        "WHERE s.ingest_date = '2025-02-01' LIMIT 1"
    )
    status = cli.main(["query", sql, "--outputs", str(stack["path"]), "--format", "json"])
    captured = capsys.readouterr()
    assert status == 0
    assert json.loads(captured.out) == [
        {"ingest_date": "2025-02-01", "ingest_date_2": "2025-02-02", "a": 1, "a_2": 2}
    ]
    assert (
        "headrace: note: repeated column names keyed as ingest_date -> ingest_date_2, a -> a_2"
        in captured.err
    )


def test_cli_table_stops_at_max_rows_and_says_how_many_it_left_out(stack, capsys):
    sql = "SELECT product, quantity FROM sales ORDER BY ingest_date, product, quantity"
    assert cli.main(["query", sql, "--outputs", str(stack["path"]), "--max-rows", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 + 2 + 1 + 1  # header (3 lines), 2 rows, bottom border, the notice
    assert lines[-1].startswith("100 rows; the first 2 shown, 98 not shown: --format csv")
    # and --max-rows 0 shows every row
    assert cli.main(["query", sql, "--outputs", str(stack["path"]), "--max-rows", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "100 rows"


def test_a_file_deleted_while_the_query_runs_is_one_line_and_a_stack_error(stack, capsys, monkeypatch):
    # Given a file listed for the query, and gone when it is read (the processor deletes a
    # version's Parquet when a newer version of its key completes)
    files = DuckDbEngine.files
    gone = "parquet/dataset=sales/ingest_date=2025-02-09/replaced--0123456789abcdef.parquet"

    def listed_then_deleted(self: DuckDbEngine, dataset: str) -> list[DatasetFile]:
        found = files(self, dataset)
        return [*found, DatasetFile(gone, 1, "2025-02-09", found[0].summary_key)]

    monkeypatch.setattr(DuckDbEngine, "files", listed_then_deleted)
    # (whether pyarrow's filesystem was let go once the query ended: the command waits for it,
    # 30 s at most, and the failed read's traceback, once kept, held it that long)
    released: list[bool] = []
    wait = query._wait_until_released

    def wait_and_note(handler: weakref.ref[Any], timeout: float = 5.0) -> None:
        wait(handler, timeout)
        released.append(handler() is None)

    monkeypatch.setattr(query, "_wait_until_released", wait_and_note)
    # When the query reads it
    status = cli.main(["query", "SELECT count(*) FROM sales", "--outputs", str(stack["path"])])
    # Then one line names the file and says to run the query again, not pyarrow's traceback
    # inside DuckDB's error; and the status is the stack's (2), not the SQL's (1)
    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        f"headrace: error: s3://{BUCKET}/{gone} was deleted while the query ran (a newer version "
        "of its file replaced it): run the query again\n"
    )
    # and at once, not after waiting for a filesystem nothing would release
    assert released == [True]


def test_cli_writes_duckdb_decimals_exactly(stack, capsys):
    sql = "SELECT CAST('1234567890123456.78' AS DECIMAL(20,2)) AS amount, {'a': 1.5} AS st"
    for fmt, expected in (
        ("csv", 'amount,st\n1234567890123456.78,"{""a"": 1.5}"\n'),
        ("json", '[\n  {\n    "amount": 1234567890123456.78,\n    "st": {\n      "a": 1.5\n    }\n  }\n]\n'),
    ):
        assert cli.main(["query", sql, "--outputs", str(stack["path"]), "--format", fmt]) == 0
        assert capsys.readouterr().out == expected


def test_timestamps_with_a_time_zone_come_back_as_aware_datetimes(stack):
    # DuckDB needs pytz to hand TIMESTAMPTZ values to Python: without it, any such result
    # (now(), a timestamp column cast to TIMESTAMPTZ) ended in a traceback
    result = execute(stack["outputs"], "SELECT TIMESTAMPTZ '2025-01-02 10:30:00+00' AS t")
    [(moment,)] = result.rows
    assert moment.utcoffset() is not None
    assert moment.astimezone(UTC).isoformat() == "2025-01-02T10:30:00+00:00"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('{outputs}')",
        "SELECT * FROM glob('/*')",
        "SELECT count(*) FROM sales, read_blob('/etc/hostname')",
        "SELECT * FROM read_parquet('s3://processed/parquet/dataset=sales/*/*.parquet')",
    ],
)
def test_sql_reads_no_file_but_the_stacks_tables(stack, sql):
    # When the SQL names a local file, a glob or an S3 URL itself
    with pytest.raises(QueryError) as refused:
        execute(stack["outputs"], sql.format(outputs=stack["path"]))
    # Then DuckDB refuses to open it, in one line that says why
    message = str(refused.value)
    assert "Permission Error: Cannot access file" in message
    assert message.endswith("(headrace query reads only the stack's tables)") and "\n" not in message


@pytest.mark.parametrize(
    ("sql", "verb"),
    [
        ("COPY (SELECT * FROM sales) TO '{tmp}/copied.parquet' (FORMAT parquet)", "COPY"),
        ("ATTACH '{tmp}/attached.duckdb' AS p", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("RESET lock_configuration", "RESET"),
        ("EXPORT DATABASE '{tmp}/exported'", "EXPORT"),
        ("CREATE TABLE copied AS SELECT * FROM sales", "CREATE"),
        ("SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'", "COPY"),
        # EXPLAIN ANALYZE runs the statement it explains
        ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 42; SELECT * FROM t", "CREATE"),
        ("explain analyze create macro m(a) as a + 1", "CREATE"),
        ("EXPLAIN (FORMAT json) COPY (SELECT 1) TO '{tmp}/explained.csv'", "COPY"),
    ],
)
def test_statements_that_are_not_queries_are_refused_before_anything_runs(stack, tmp_path, sql, verb):
    with pytest.raises(QueryError) as refused:
        execute(stack["outputs"], sql.format(tmp=tmp_path))
    assert str(refused.value) == (
        f"headrace query only reads: {verb} statements are not run "
        "(SELECT, WITH, DESCRIBE, SHOW or EXPLAIN over the stack's tables)"
    )
    assert list(tmp_path.iterdir()) == []


def test_explained_queries_still_run(stack):
    for sql in ("EXPLAIN SELECT * FROM sales", "EXPLAIN ANALYZE SELECT count(*) FROM sales"):
        assert execute(stack["outputs"], sql).rows, sql


def test_the_session_is_locked_down_and_ordinary_queries_still_run(stack, capsys):
    # The settings the SQL runs under: no external access, no extension autoloading, locked
    settings = execute(
        stack["outputs"],
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'autoinstall_known_extensions', 'autoload_known_extensions', 'allow_community_extensions', "
        "'python_enable_replacements', 'lock_configuration') ORDER BY name",
    ).rows
    assert settings == [
        ("allow_community_extensions", "false"),
        ("autoinstall_known_extensions", "false"),
        ("autoload_known_extensions", "false"),
        ("enable_external_access", "false"),
        ("lock_configuration", "true"),
        ("python_enable_replacements", "false"),
    ]
    # while the stack's tables read as before, in joins, CTEs and EXPLAIN too
    assert execute(
        stack["outputs"],
        "WITH s AS (SELECT count(*) AS n FROM sales) SELECT s.n, (SELECT count(*) FROM orders) > 0 FROM s",
    ).rows == [(100, True)]
    assert execute(stack["outputs"], "EXPLAIN SELECT count(*) FROM sales").rows
    # and the CLI says it in one line, exit status 1
    status = cli.main(
        ["query", "SELECT * FROM read_csv('/etc/passwd')", "--outputs", str(stack["path"]), "--format", "csv"]
    )
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert captured.err.count("\n") == 1 and 'Cannot access file "/etc/passwd"' in captured.err


def _add_dataset(stack, tmp_path, dataset: str, texts: list[str]) -> list[str]:
    """Process ``texts`` (CSV) into ``dataset``, one file per ingest date: their S3 URLs.
    (Tests calling this come last in the module: the others do not expect the dataset.)"""
    s3 = stack["outputs"].client("s3")
    urls = []
    for day, text in enumerate(texts, start=1):
        source, parquet = tmp_path / f"{dataset}{day}.csv", tmp_path / f"{dataset}{day}.parquet"
        source.write_text(text)
        summary = process_file(source, parquet_path=parquet)
        stem = f"dataset={dataset}/ingest_date=2025-02-0{day}/{day}--0123456789abcdef"
        s3.upload_file(str(parquet), BUCKET, f"parquet/{stem}.parquet")
        s3.put_object(Bucket=BUCKET, Key=f"summaries/{stem}.json", Body=json.dumps(summary.to_json_dict()))
        urls.append(f"s3://{BUCKET}/parquet/{stem}.parquet")
    return urls


def test_a_column_empty_in_one_file_takes_its_type_from_the_others(stack, tmp_path):
    _add_dataset(stack, tmp_path, "readings", ["id,note\n1,\n2,\n", "id,note\n3,7\n"])
    # Then the column is BIGINT, as the Glue catalog makes it, and both files read
    columns = dict((r[0], r[1]) for r in execute(stack["outputs"], "DESCRIBE readings").rows)
    assert columns["note"] == "BIGINT"
    assert execute(stack["outputs"], "SELECT count(*), sum(note) FROM readings").rows == [(3, 7)]


def test_a_column_empty_in_every_file_is_there_to_select(stack, tmp_path):
    # the header declares it: a query naming it reads NULLs, as Athena does (Glue has it untyped)
    _add_dataset(stack, tmp_path, "notes", ["id,note\n1,\n2,\n", "id,note\n3,\n"])
    assert dict((r[0], r[1]) for r in execute(stack["outputs"], "DESCRIBE notes").rows)["note"] == "VARCHAR"
    assert execute(stack["outputs"], "SELECT count(*), count(note) FROM notes").rows == [(3, 0)]


def test_a_column_spelled_in_another_case_by_some_files_is_one_column(stack, tmp_path):
    # Given files spelling one column Qty, qty and QTY (one column in Glue and Athena)
    urls = _add_dataset(
        stack, tmp_path, "units", ["id,Qty\n1,10\n2,20\n", "id,qty\n3,30\n", "id,QTY\n4,40\n"]
    )
    # Then every file's values are in it, under the first spelling
    columns = [r[0] for r in execute(stack["outputs"], "DESCRIBE units").rows]
    assert columns == ["id", "Qty", "_rescued_data", "ingest_date"]
    assert execute(stack["outputs"], "SELECT sum(qty), count(qty) FROM units").rows == [(100, 4)]
    # and a filter on the ingest date still opens only that day's file
    one_day = execute(stack["outputs"], "SELECT qty FROM units WHERE ingest_date = '2025-02-02'")
    assert (one_day.rows, one_day.stats.files_scanned) == ([(30,)], [urls[1]])


def _ids(stack, sql: str) -> list[int]:
    return [row[0] for row in execute(stack["outputs"], sql).rows]


def test_a_filter_on_a_widened_column_reads_every_file_as_the_table_type(stack, tmp_path):
    # Given a dataset whose second file widens flag (bool, then int: string), d (date, then
    # text: string), val (bigint, then double) and seen (date, then timestamp); each file
    # keeps its own Parquet types
    urls = _add_dataset(
        stack,
        tmp_path,
        "evo",
        [
            "id,val,d,flag,seen\n1,10,2025-01-01,true,2025-01-01\n2,20,2025-01-02,false,2025-01-02\n",
            "id,val,d,flag,seen\n3,1.5,hello,1,2025-01-02 10:00:00\n4,2.5,2025-01-03,0,2025-01-03 00:00:00\n",
        ],
    )
    columns = dict((r[0], r[1]) for r in execute(stack["outputs"], "DESCRIBE evo").rows)
    assert [columns[c] for c in ("val", "d", "flag", "seen")] == ["DOUBLE", "VARCHAR", "VARCHAR", "TIMESTAMP"]
    # Then a filter on a widened column compares the table's type in every file
    assert _ids(stack, "SELECT id FROM evo WHERE flag = 'true'") == [1]
    assert _ids(stack, "SELECT id FROM evo WHERE flag IN ('false', '0') ORDER BY id") == [2, 4]
    assert _ids(stack, "SELECT id FROM evo WHERE d = '2025-01-01'") == [1]
    assert _ids(stack, "SELECT id FROM evo WHERE d >= '2025-01-02' ORDER BY id") == [2, 3, 4]
    assert _ids(stack, "SELECT id FROM evo WHERE val = 20 OR val = 2.5 ORDER BY id") == [2, 4]
    assert _ids(stack, "SELECT id FROM evo WHERE seen = '2025-01-01'") == [1]
    assert _ids(stack, "SELECT id FROM evo WHERE seen > TIMESTAMP '2025-01-02 00:00:00' ORDER BY id") == [
        3,
        4,
    ]
    # and a filter on the ingest date still opens only that day's file
    one_day = execute(stack["outputs"], "SELECT id FROM evo WHERE ingest_date = '2025-02-02' AND flag = '1'")
    assert (one_day.rows, one_day.stats.files_scanned) == ([(3,)], [urls[1]])


def test_values_widened_to_text_read_as_a_cast_writes_them(stack, tmp_path):
    # Given a float and a timestamp column, then a file where both hold text
    _add_dataset(
        stack,
        tmp_path,
        "widened",
        [
            "id,x,t\n1,3.0,2025-01-01 10:00:00\n2,1.5,2025-01-02 00:00:00\n",
            "id,x,t\n3,abc,later\n",
        ],
    )
    # Then the older file's values read as the usual text of their type
    assert execute(stack["outputs"], "SELECT id, x, t FROM widened ORDER BY id").rows == [
        (1, "3.0", "2025-01-01 10:00:00"),
        (2, "1.5", "2025-01-02 00:00:00"),
        (3, "abc", "later"),
    ]
    # and filters on that text find them, in either file
    assert _ids(stack, "SELECT id FROM widened WHERE x = '3.0'") == [1]
    assert _ids(stack, "SELECT id FROM widened WHERE x IN ('abc')") == [3]
    assert _ids(stack, "SELECT id FROM widened WHERE t = '2025-01-01 10:00:00'") == [1]


def test_timestamps_compare_in_utc_whatever_the_machines_time_zone(stack, tmp_path):
    # Given timestamps written with three offsets: stored in UTC as 08:00, 10:00 and 15:00
    _add_dataset(
        stack,
        tmp_path,
        "zoned",
        ["id,ts\n1,2025-01-01T10:00:00+02:00\n2,2025-01-01T10:00:00Z\n3,2025-01-01T10:00:00-05:00\n"],
    )
    # When queried on a machine in Tokyo (DuckDB takes its session zone from the machine's)
    sql = (
        "SELECT count(*) FILTER (WHERE ts < TIMESTAMPTZ '2025-01-01 09:00:00+00') AS before_nine, "
        "min(ts::TIMESTAMPTZ) AS first, current_setting('TimeZone') AS zone FROM zoned"
    )
    run = subprocess.run(
        [sys.executable, "-m", "headrace", "query", sql, "--outputs", str(stack["path"]), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "Asia/Tokyo"},
        check=False,
    )
    # Then the stored values are read as UTC, as Athena reads them: one answer everywhere
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"before_nine": 1, "first": "2025-01-01 08:00:00+00:00", "zone": "UTC"}]


def test_columns_glue_cannot_hold_are_queryable_in_duckdb(stack, tmp_path):
    # Given a file with a column name over 255 characters and one with a line break, which
    # the Glue table leaves out (catalog_error says so)
    long = "c" * 300
    _add_dataset(stack, tmp_path, "unholdable", [f'id,"multi\nline",{long}\n1,2,3\n4,5,6\n'])
    # Then DuckDB has them, as the docs and catalog_error say, in the file's order
    columns = [r[0] for r in execute(stack["outputs"], "DESCRIBE unholdable").rows]
    assert columns == ["id", "multi\nline", long, "_rescued_data", "ingest_date"]
    sql = f'SELECT id, "multi\nline", "{long}" FROM unholdable ORDER BY id'
    assert execute(stack["outputs"], sql).rows == [(1, 2, 3), (4, 5, 6)]


def test_integers_beyond_float_meeting_fractions_read_exactly_as_text(stack, tmp_path):
    # Given a file whose id is 2**53 + 1 (INT64 in its Parquet), then files with a fraction
    # there; n has small integers, then a fraction; the column of one file is spelled Big
    urls = _add_dataset(
        stack,
        tmp_path,
        "bigids",
        [
            "id,n,Big\n9007199254740993,1,9007199254740993\n",
            "id,n,big\n1.5,2.5,1.5\n",
            "id,n,big\n-9007199254740993,3,7\n",
        ],
    )
    # Then id and big are VARCHAR, as in the Glue table and the warehouse (text), not DOUBLE;
    # n, whose integers a double holds, is DOUBLE as before
    columns = dict((r[0], r[1]) for r in execute(stack["outputs"], "DESCRIBE bigids").rows)
    assert (columns["id"], columns["n"], columns["Big"]) == ("VARCHAR", "DOUBLE", "VARCHAR")
    # and every value reads as stored, the integers with every digit (a double read ...992)
    assert execute(stack["outputs"], "SELECT id, n, big FROM bigids ORDER BY ingest_date").rows == [
        ("9007199254740993", 1.0, "9007199254740993"),
        ("1.5", 2.5, "1.5"),
        ("-9007199254740993", 3.0, "7"),
    ]
    # and a filter on the exact text finds that file's row only, opening only its partition
    one = execute(stack["outputs"], "SELECT n FROM bigids WHERE id = '9007199254740993'")
    assert one.rows == [(1.0,)]
    pruned = execute(
        stack["outputs"], "SELECT n FROM bigids WHERE ingest_date = '2025-02-01' AND id = '9007199254740993'"
    )
    assert (pruned.rows, pruned.stats.files_scanned) == ([(1.0,)], [urls[0]])


def test_a_query_that_stops_early_returns_once_pyarrow_let_go_of_its_filesystem(stack, tmp_path, monkeypatch):
    # Given a dataset of 40 files (one processed file, stored under 40 keys)
    source, parquet = tmp_path / "many.csv", tmp_path / "many.parquet"
    source.write_text("id\n1\n2\n")
    summary = json.dumps(process_file(source, parquet_path=parquet).to_json_dict())
    s3 = stack["outputs"].client("s3")
    for n in range(40):
        stem = f"dataset=many/ingest_date=2025-03-{n % 28 + 1:02d}/f{n}--0123456789abcdef"
        s3.put_object(Bucket=BUCKET, Key=f"parquet/{stem}.parquet", Body=parquet.read_bytes())
        s3.put_object(Bucket=BUCKET, Key=f"summaries/{stem}.json", Body=summary)
    handlers = []
    counting = query.counting_filesystem

    def watched(inner, counter):
        filesystem = counting(inner, counter)
        handlers.append(weakref.ref(filesystem.handler))
        return filesystem

    monkeypatch.setattr(query, "counting_filesystem", watched)
    # When a query stops after one row, while pyarrow still reads ahead in its own threads
    result = execute(stack["outputs"], "SELECT id FROM many LIMIT 1")
    # Then it returns only once no pyarrow task holds the filesystem (Python code): one still
    # running at exit calls into a finalizing interpreter, which aborted (status 134) or hung
    # the command after it had printed the result
    assert len(result.rows) == 1 and 0 < len(result.stats.files_scanned) < 40
    assert [handler() for handler in handlers] == [None]


def test_control_characters_of_the_data_reach_no_terminal_raw(stack, tmp_path, capsys):
    # Given values (and a column name) holding ESC sequences, a backspace and a C1 CSI
    _add_dataset(stack, tmp_path, "escapes", ['id,"n\x1b[2Jame"\n1,"\x1b]0;owned\x07x\x08hidden\x9b31m"\n'])
    path = str(stack["path"])
    # When shown as the table, and as CSV and JSON into a file
    assert cli.main(["query", "SELECT * EXCLUDE (ingest_date) FROM escapes", "--outputs", path]) == 0
    table = capsys.readouterr().out
    assert cli.main(["query", 'SELECT "n\x1b[2Jame" FROM escapes', "--outputs", path, "--format", "csv"]) == 0
    as_csv = capsys.readouterr().out
    assert (
        cli.main(["query", 'SELECT "n\x1b[2Jame" FROM escapes', "--outputs", path, "--format", "json"]) == 0
    )
    as_json = capsys.readouterr().out
    # Then the table shows each control character as an escape, none raw
    assert "n\\x1b[2Jame" in table and "\\x1b]0;owned\\x07x\\x08hidden\\x9b31m" in table
    assert not any(c in table for c in "\x1b\x07\x08\x9b")
    # CSV into a file keeps the value as stored; JSON escapes it, and reads back the same
    assert as_csv == "n\x1b[2Jame\n\x1b]0;owned\x07x\x08hidden\x9b31m\n"
    assert not any(c in as_json for c in "\x1b\x07\x08\x9b")
    assert json.loads(as_json) == [{"n\x1b[2Jame": "\x1b]0;owned\x07x\x08hidden\x9b31m"}]
    # And an error quoting a value of the data shows it escaped on stderr too
    status = cli.main(["query", 'SELECT CAST("n\x1b[2Jame" AS INTEGER) FROM escapes', "--outputs", path])
    err = capsys.readouterr().err
    assert status == 1 and "\\x1b]0;owned" in err and not any(c in err for c in "\x1b\x07\x08\x9b")
