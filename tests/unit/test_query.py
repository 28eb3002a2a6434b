"""``headrace query`` without a stack: engine choice, the Athena engine against botocore's
Stubber (moto's Athena runs no SQL and cannot fail a query the way Athena does), output
formats and exit statuses."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from botocore.stub import Stubber

from headrace import cli
from headrace import query as query_module
from headrace.outputs import StackOutputs
from headrace.query import (
    TABLE_ROWS,
    AthenaEngine,
    QueryError,
    QueryResult,
    QueryStats,
    choose_engine,
    json_keys,
    render,
)
from tests.stack_outputs import STACK_OUTPUTS

BASE = STACK_OUTPUTS
AWS = {**BASE, "athena_workgroup": "headrace-dev", "glue_database": "headrace_dev"}


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def outputs(**values: Any) -> StackOutputs:
    return StackOutputs.model_validate(values)


def test_auto_picks_athena_on_aws_and_duckdb_everywhere_else(monkeypatch):
    # Given an AWS stack with a workgroup, the embedded runtime (endpoint + workgroup), and
    # a LocalStack stack (no workgroup)
    assert choose_engine(outputs(**AWS)) == "athena"
    assert choose_engine(outputs(**AWS, aws_endpoint_url="http://127.0.0.1:4566")) == "duckdb"
    assert choose_engine(outputs(**BASE)) == "duckdb"
    # and an AWS stack queried with boto3's endpoint variable set (pointing elsewhere)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
    assert choose_engine(outputs(**AWS)) == "duckdb"
    # Then an explicit engine wins, but Athena needs a workgroup
    assert choose_engine(outputs(**AWS), "duckdb") == "duckdb"
    with pytest.raises(QueryError, match="no Athena workgroup"):
        choose_engine(outputs(**BASE), "athena")
    # and is refused on the embedded runtime, whose emulator answers without running SQL
    with pytest.raises(QueryError, match="runs no SQL"):
        choose_engine(outputs(**AWS, aws_endpoint_url="http://127.0.0.1:4566"), "athena")


def _engine() -> tuple[AthenaEngine, Stubber, Stubber, list[float]]:
    sleeps: list[float] = []
    engine = AthenaEngine(outputs(**AWS), sleep=sleeps.append)
    return engine, Stubber(engine.athena), Stubber(engine.glue), sleeps


START = {
    "QueryString": "SELECT 1",
    "WorkGroup": "headrace-dev",
    "QueryExecutionContext": {"Database": "headrace_dev"},
}


def _execution(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "QueryExecution": {
            "QueryExecutionId": "q-1",
            "Status": {"State": state, **extra.pop("status", {})},
            **extra,
        }
    }


def _row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


COLUMNS = [
    {"Name": "product", "Type": "varchar"},
    {"Name": "n", "Type": "bigint"},
    {"Name": "avg_price", "Type": "double"},
    {"Name": "express", "Type": "boolean"},
]


def test_athena_query_runs_in_the_workgroup_polls_and_pages_typed_rows():
    # Given Athena queueing, running, then succeeding with two pages of results
    engine, athena, _, sleeps = _engine()
    athena.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, START)
    athena.add_response("get_query_execution", _execution("QUEUED"), {"QueryExecutionId": "q-1"})
    athena.add_response("get_query_execution", _execution("RUNNING"), {"QueryExecutionId": "q-1"})
    athena.add_response(
        "get_query_execution",
        _execution("SUCCEEDED", StatementType="DML", Statistics={"DataScannedInBytes": 2048}),
        {"QueryExecutionId": "q-1"},
    )
    athena.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "ResultSetMetadata": {"ColumnInfo": COLUMNS},
                "Rows": [_row("product", "n", "avg_price", "express"), _row("Widget", "3", "29.99", "true")],
            },
            "NextToken": "page-2",
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    athena.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "ResultSetMetadata": {"ColumnInfo": COLUMNS},
                "Rows": [_row("Gadget", "1", None, "false")],
            }
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "page-2"},
    )
    # When the query runs
    with athena:
        result = engine.execute("SELECT 1")
    # Then the header row is dropped, values are typed, NULL stays None, and every page is read
    assert result.columns == ["product", "n", "avg_price", "express"]
    assert result.rows == [("Widget", 3, 29.99, True), ("Gadget", 1, None, False)]
    assert (result.stats.engine, result.stats.bytes_scanned, result.stats.query_id) == ("athena", 2048, "q-1")
    # and it waited between polls, backing off
    assert sleeps == [0.25, 0.5]
    athena.assert_no_pending_responses()


def test_a_query_over_the_scan_limit_says_so_and_names_the_limit():
    # Given Athena cancelling the query at the workgroup's bytes-scanned cutoff
    engine, athena, _, _ = _engine()
    athena.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, START)
    athena.add_response(
        "get_query_execution",
        _execution("CANCELLED", status={"StateChangeReason": "Bytes scanned limit was exceeded"}),
        {"QueryExecutionId": "q-1"},
    )
    athena.add_response(
        "get_work_group",
        {
            "WorkGroup": {
                "Name": "headrace-dev",
                "Configuration": {"BytesScannedCutoffPerQuery": 10 * 1024 * 1024},
            }
        },
        {"WorkGroup": "headrace-dev"},
    )
    # When it runs
    with athena, pytest.raises(QueryError) as caught:
        engine.execute("SELECT 1")
    # Then the error names the limit, the setting, and how to narrow the query
    message = str(caught.value)
    assert "Athena cancelled the query: it would scan more than the workgroup's limit of 10.0 MiB" in message
    assert "headrace:catalog.bytes_scanned_limit_mb" in message and "ingest_date" in message


def test_an_unknown_table_lists_the_known_ones():
    # Given Athena failing on a table the catalog does not have
    engine, athena, glue, _ = _engine()
    reason = "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.headrace_dev.nope' does not exist"
    athena.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, START)
    athena.add_response(
        "get_query_execution",
        _execution("FAILED", status={"StateChangeReason": reason}),
        {"QueryExecutionId": "q-1"},
    )
    glue.add_response(
        "get_tables",
        {"TableList": [{"Name": "sales"}, {"Name": "orders"}]},
        {"DatabaseName": "headrace_dev"},
    )
    # Then the error keeps Athena's reason and adds the tables of the stack
    with athena, glue, pytest.raises(QueryError) as caught:
        engine.execute("SELECT 1")
    assert (
        str(caught.value) == f"Athena failed the query: {reason}; the tables of this stack are: orders, sales"
    )


def test_bad_sql_shows_athenas_message():
    # Given Athena refusing the statement outright
    engine, athena, _, _ = _engine()
    athena.add_client_error(
        "start_query_execution",
        service_error_code="InvalidRequestException",
        service_message="line 1:1: mismatched input 'selec'",
        expected_params=START,
    )
    with athena, pytest.raises(QueryError, match="Athena: line 1:1: mismatched input 'selec'"):
        engine.execute("SELECT 1")


RESULT = QueryResult(
    columns=["product", "day", "n", "note"],
    rows=[("Widget", date(2025, 1, 1), 3, None), ('Gad|get, "x"', date(2025, 1, 2), 10, "ok")],
    stats=QueryStats(engine="duckdb", files_scanned=["s3://b/k"], files_total=2, bytes_scanned=2048),
)


def test_json_csv_and_table_output():
    # Given a result with a date, a NULL and characters CSV must quote
    as_json, as_csv, as_table = io.StringIO(), io.StringIO(), io.StringIO()
    # When rendered in each format
    render(RESULT, "json", as_json)
    render(RESULT, "csv", as_csv)
    render(RESULT, "table", as_table)
    # Then JSON is a list of objects with ISO dates and nulls
    assert json.loads(as_json.getvalue()) == [
        {"product": "Widget", "day": "2025-01-01", "n": 3, "note": None},
        {"product": 'Gad|get, "x"', "day": "2025-01-02", "n": 10, "note": "ok"},
    ]
    # CSV has a header, empty NULLs and quoting
    assert as_csv.getvalue().splitlines() == [
        "product,day,n,note",
        "Widget,2025-01-01,3,",
        '"Gad|get, ""x""",2025-01-02,10,ok',
    ]
    # and the table shows every value, NULL spelled out, and the row count
    table = as_table.getvalue()
    assert "Widget" in table and "2025-01-02" in table and "NULL" in table and "2 rows" in table
    # and the statistics line says what was read
    assert RESULT.stats.line().startswith("duckdb: scanned 1 of 2 Parquet files (2.0 KiB)")


def test_csv_reads_back_as_written_carriage_returns_and_empty_strings_too():
    # Given values with a carriage return (a JSON file's "\\r"), an empty string and NULLs
    result = QueryResult(columns=["a", "b"], rows=[("x\ry", "z"), ("", None), (None, "")], stats=RESULT.stats)
    single = QueryResult(columns=["a"], rows=[(None,), ("v",)], stats=RESULT.stats)
    out, one = io.StringIO(), io.StringIO()
    render(result, "csv", out)
    render(single, "csv", one)
    # Then the carriage return is quoted (bare, it split the row in two for csv and pandas),
    # an empty string is "" and NULL an empty field, as DuckDB's and PostgreSQL's CSV
    assert out.getvalue() == 'a,b\n"x\ry",z\n"",\n,""\n'
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [
        ["a", "b"],
        ["x\ry", "z"],
        ["", ""],
        ["", ""],
    ]
    # and a row of one NULL is no blank line a reader would skip
    assert one.getvalue() == 'a\n""\nv\n'


def test_infinities_and_booleans_render_alike_in_every_format():
    result = QueryResult(
        columns=["x", "ok"],
        rows=[(float("inf"), True), (float("-inf"), False), (float("nan"), None), (1.5, True)],
        stats=RESULT.stats,
    )
    as_json, as_csv, as_table = io.StringIO(), io.StringIO(), io.StringIO()
    render(result, "json", as_json)
    render(result, "csv", as_csv)
    render(result, "table", as_table)
    # strict JSON (no bare Infinity or NaN), the words PostgreSQL uses
    assert json.loads(as_json.getvalue(), parse_constant=lambda c: pytest.fail(f"bare {c}")) == [
        {"x": "Infinity", "ok": True},
        {"x": "-Infinity", "ok": False},
        {"x": "NaN", "ok": None},
        {"x": 1.5, "ok": True},
    ]
    # and CSV writes booleans as the table does
    assert as_csv.getvalue().splitlines() == ["x,ok", "Infinity,true", "-Infinity,false", "NaN,", "1.5,true"]
    assert "Infinity" in as_table.getvalue() and "true" in as_table.getvalue()


def test_cli_exit_statuses(tmp_path, capsys):
    # Given no outputs file
    # Then the stack cannot be read: status 2 and a one-line error
    assert cli.main(["query", "SELECT 1", "--outputs", str(tmp_path / "missing.json")]) == 2
    assert "no such outputs file" in capsys.readouterr().err
    # Given a LocalStack-like stack without a workgroup, asked for Athena
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(BASE))
    # Then the query cannot run: status 1
    assert cli.main(["query", "SELECT 1", "--outputs", str(path), "--engine", "athena"]) == 1
    assert "use --engine duckdb" in capsys.readouterr().err


def test_a_processed_bucket_that_does_not_exist_is_named(tmp_path, capsys, monkeypatch):
    from botocore.exceptions import ClientError

    from headrace.query import DuckDbEngine

    # Given the outputs of another stack (or of one destroyed since): S3 has no such bucket
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**BASE, "aws_endpoint_url": "http://127.0.0.1:9"}))

    def no_bucket(self: Any) -> Any:
        error = {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"}
        raise ClientError({"Error": error}, "ListObjectsV2")

    monkeypatch.setattr(DuckDbEngine, "datasets", no_bucket)
    # Then one line names the bucket and the likely cause (S3's own message names neither)
    assert cli.main(["query", "SELECT * FROM sales", "--outputs", str(path)]) == 2
    assert capsys.readouterr().err == (
        "headrace: error: the processed bucket processed does not exist (an outputs file of "
        "another stack, or one destroyed since?)\n"
    )


def test_values_inside_lists_and_structs_render_as_strict_json_too():
    result = QueryResult(
        columns=["xs", "s"], rows=[([1.5, float("inf")], {"d": date(2025, 1, 1)})], stats=RESULT.stats
    )
    out = io.StringIO()
    render(result, "json", out)
    assert json.loads(out.getvalue()) == [{"xs": [1.5, "Infinity"], "s": {"d": "2025-01-01"}}]


def test_json_keeps_every_column_when_names_repeat():
    # Given a join's result: both tables' id and ingest_date, and a column already named id_2
    result = QueryResult(
        columns=["id", "ingest_date", "id", "ingest_date", "id_2"],
        rows=[(1, "2025-01-01", 2, "2025-01-02", 3)],
        stats=RESULT.stats,
    )
    out = io.StringIO()
    render(result, "json", out)
    # Then a repeated name is keyed with _2, _3, ... (skipping names the result has), no value lost
    assert json.loads(out.getvalue()) == [
        {"id": 1, "ingest_date": "2025-01-01", "id_3": 2, "ingest_date_2": "2025-01-02", "id_2": 3}
    ]
    assert json_keys(["a", "a", "a"]) == ["a", "a_2", "a_3"] and json_keys(["a", "b"]) == ["a", "b"]


def test_the_table_shows_names_and_values_as_written_not_as_markup():
    # Given column names and values that look like Rich markup
    names = ["x [/m]", "[/]", "price [usd]", "[bold]name[/bold]", "ends\\"]
    values = ("[/m]", "[red]v[/red]", 9.5, "[bold]alice[/bold]", "c:\\")
    result = QueryResult(columns=names, rows=[values], stats=RESULT.stats)
    out = io.StringIO()
    # When rendered as the table (the default), which used to crash on [/m] and [/]
    render(result, "table", out)
    # Then every header and value is there, literally
    table = out.getvalue()
    for text in [*names, "[/m]", "[red]v[/red]", "9.5", "[bold]alice[/bold]", "c:\\"]:
        assert text in table, text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_control_characters_show_as_escapes_wherever_a_terminal_would_obey_them():
    # Given a name and values with ESC sequences, a carriage return, a tab, DEL and a C1 CSI
    result = QueryResult(
        columns=["n\x1b[2Jame", "b"],
        rows=[("\x1b]0;owned\x07x\rgone", "a\tb\x7f\x9b31m"), ("two\nlines", None)],
        stats=RESULT.stats,
    )
    raw = "\x1b\x07\r\t\x7f\x9b"
    table, csv_file, csv_terminal, as_json = io.StringIO(), io.StringIO(), _Terminal(), io.StringIO()
    render(result, "table", table)
    render(result, "csv", csv_file)
    render(result, "csv", csv_terminal)
    render(result, "json", as_json)
    # Then the table shows each as an escape, a line break as a line break
    assert "n\\x1b[2Jame" in table.getvalue() and "\\x1b]0;owned\\x07x\\rgone" in table.getvalue()
    assert "a\\tb\\x7f\\x9b31m" in table.getvalue() and not any(c in table.getvalue() for c in raw)
    # CSV in a terminal too (into a file it holds the values as stored)
    assert csv_terminal.getvalue().splitlines()[:2] == [
        "n\\x1b[2Jame,b",
        "\\x1b]0;owned\\x07x\\rgone,a\\tb\\x7f\\x9b31m",
    ]
    assert csv_file.getvalue().startswith("n\x1b[2Jame,b\n")
    # and JSON escapes every one of them (json leaves DEL and C1 raw), reading back the same
    assert not any(c in as_json.getvalue() for c in raw)
    assert json.loads(as_json.getvalue()) == [
        {"n\x1b[2Jame": "\x1b]0;owned\x07x\rgone", "b": "a\tb\x7f\x9b31m"},
        {"n\x1b[2Jame": "two\nlines", "b": None},
    ]


def test_the_table_shows_at_most_its_row_limit_and_says_how_to_get_the_rest():
    # Given a result of 2,500 rows
    result = QueryResult(columns=["n"], rows=[(f"row-{i}",) for i in range(2500)], stats=RESULT.stats)
    as_table, as_csv, as_json = io.StringIO(), io.StringIO(), io.StringIO()
    # When rendered as a table with the default limit, and as csv and json
    render(result, "table", as_table)
    render(result, "csv", as_csv)
    render(result, "json", as_json)
    # Then the table holds the first TABLE_ROWS rows and says what it left out and how to see it
    table = as_table.getvalue()
    assert TABLE_ROWS == 1000
    assert "row-999" in table and "row-1000" not in table
    assert table.rstrip().endswith(
        "2,500 rows; the first 1,000 shown, 1,500 not shown: --format csv or --format json "
        "writes every row, --max-rows N shows more (0: all)"
    )
    # while csv and json hold every row
    assert len(as_csv.getvalue().splitlines()) == 2501 and len(json.loads(as_json.getvalue())) == 2500
    # and without a limit the table holds them all
    everything = io.StringIO()
    render(result, "table", everything, max_rows=None)
    assert "row-2499" in everything.getvalue() and everything.getvalue().rstrip().endswith("2,500 rows")


def test_max_rows_must_be_a_whole_number(capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["query", "SELECT 1", "--max-rows", "-3"])
    assert refused.value.code == 2
    assert "expected a whole number of rows, 0 for all: '-3'" in capsys.readouterr().err


def test_decimals_are_written_exactly_and_nested_values_as_json_text():
    # Given a DECIMAL(20,2) that a float cannot hold, an integral one, and nested values
    amount = Decimal("1234567890123456.78")
    result = QueryResult(
        columns=["amount", "whole", "st", "xs"],
        rows=[(amount, Decimal("5.00"), {"a": 1, "d": Decimal("0.10")}, [Decimal("2.5"), "x"])],
        stats=RESULT.stats,
    )
    as_json, as_csv, as_table = io.StringIO(), io.StringIO(), io.StringIO()
    render(result, "json", as_json)
    render(result, "csv", as_csv)
    render(result, "table", as_table)
    # Then JSON has the exact number (read back exactly by a reader that keeps decimals)
    assert json.loads(as_json.getvalue(), parse_float=Decimal) == [
        {"amount": amount, "whole": 5, "st": {"a": 1, "d": Decimal("0.10")}, "xs": [Decimal("2.5"), "x"]}
    ]
    # and CSV and the table write its digits, and nested values as JSON, not Python reprs
    assert as_csv.getvalue().splitlines() == [
        "amount,whole,st,xs",
        '1234567890123456.78,5,"{""a"": 1, ""d"": 0.10}","[2.5, ""x""]"',
    ]
    assert "1234567890123456.78" in as_table.getvalue() and '{"a": 1, "d": 0.10}' in as_table.getvalue()


def test_ctrl_c_during_a_duckdb_query_is_an_interruption_not_a_traceback(capsys, monkeypatch, tmp_path):
    # Given the embedded runtime's outputs (DuckDB engine; SELECT 42 reads no table, so no
    # request reaches the endpoint) and a query that Ctrl-C stops while DuckDB runs it:
    # DuckDB's Python client then raises RuntimeError("Query interrupted")
    import duckdb

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**BASE, "aws_endpoint_url": "http://127.0.0.1:9"}))
    connect = duckdb.connect

    class Interrupted:
        def __init__(self) -> None:
            self.con = connect()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.con, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "SELECT 42":
                raise RuntimeError("Query interrupted")
            return self.con.execute(sql, *args)

    monkeypatch.setattr(duckdb, "connect", Interrupted)
    # Then it ends as any interrupted command does (it was a RuntimeError traceback, exit 1)
    try:
        status = cli.main(["query", "SELECT 42", "--outputs", str(path)])
    except KeyboardInterrupt:  # caught here: escaping, it would end the whole test run
        pytest.fail("the KeyboardInterrupt escaped headrace's main()")
    assert status == 130
    assert capsys.readouterr().err == "headrace: interrupted\n"


class _IgnoresSigint:
    """A DuckDB connection whose query ``SELECT 42`` runs on through SIGINT, as DuckDB's
    nested loop join did, and stops only when ``interrupt()`` is called (or never, with
    ``honours_interrupt=False``, until ``release`` is set)."""

    honours_interrupt = True
    connect: Any = None  # duckdb.connect, before the test replaces it

    def __init__(self) -> None:
        self.con = self.connect()
        self.interrupted = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def interrupt(self) -> None:
        self.interrupted.set()

    def execute(self, sql: str, *args: Any) -> Any:
        import duckdb

        if sql != "SELECT 42":
            return self.con.execute(sql, *args)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # Ctrl-C, mid-query
        for _ in range(200):  # bounded: a query that nothing stops ends, with its result
            try:
                if self.honours_interrupt and self.interrupted.wait(0.05):
                    raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
                if self.release.wait(0 if self.honours_interrupt else 0.05):
                    break
            except KeyboardInterrupt:  # what DuckDB does with a SIGINT here: nothing
                continue
        return self.con.execute(sql, *args)


@pytest.fixture
def python_sigint() -> None:
    """SIGINT raises KeyboardInterrupt, as in a new process, whatever an earlier test or
    fixture of this one installed (tests/conftest.py puts that back afterwards)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_ctrl_c_stops_a_duckdb_query_that_does_not_look_for_sigint(
    python_sigint, capsys, monkeypatch, tmp_path
):
    # Given a query DuckDB runs on through SIGINT (a join without an equality:
    # `ON a.x + b.y = 7` over two large tables ran for minutes after Ctrl-C, and exit 0)
    import duckdb

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**BASE, "aws_endpoint_url": "http://127.0.0.1:9"}))
    connections: list[_IgnoresSigint] = []
    monkeypatch.setattr(_IgnoresSigint, "connect", staticmethod(duckdb.connect))
    monkeypatch.setattr(duckdb, "connect", lambda: connections.append(_IgnoresSigint()) or connections[-1])
    # When Ctrl-C comes while it runs
    try:
        status = cli.main(["query", "SELECT 42", "--outputs", str(path)])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped headrace's main()")
    # Then the query is interrupted through its connection and the command ends as interrupted
    assert connections[-1].interrupted.is_set()
    assert (status, capsys.readouterr()) == (130, ("", "headrace: interrupted\n"))


def test_a_query_that_ignores_its_interrupt_too_is_left_behind(python_sigint, capsys, monkeypatch, tmp_path):
    # Given a query that stops for neither SIGINT nor interrupt()
    import duckdb

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**BASE, "aws_endpoint_url": "http://127.0.0.1:9"}))
    connections: list[_IgnoresSigint] = []
    monkeypatch.setattr(_IgnoresSigint, "connect", staticmethod(duckdb.connect))

    def stubborn() -> _IgnoresSigint:
        connections.append(_IgnoresSigint())
        connections[-1].honours_interrupt = False
        return connections[-1]

    monkeypatch.setattr(duckdb, "connect", stubborn)
    monkeypatch.setattr(query_module, "INTERRUPT_SECONDS", 0.01)
    abandoned: list[bool] = []

    def abandon() -> None:  # the real one ends the process (os._exit(130))
        abandoned.append(True)
        connections[-1].release.set()
        for thread in threading.enumerate():  # its connection closes next: let the query end first
            if thread.name == "headrace-duckdb-query":
                thread.join()

    monkeypatch.setattr(query_module, "_abandon", abandon)
    # When Ctrl-C comes while it runs, then the command does not wait for it
    assert cli.main(["query", "SELECT 42", "--outputs", str(path)]) == 130
    assert abandoned == [True] and connections[-1].interrupted.is_set()
