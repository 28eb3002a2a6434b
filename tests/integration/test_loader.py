"""The loader Lambda against a real PostgreSQL (the embedded server) and moto S3/DynamoDB:
files go through the real processor first, and the loader receives the very event the
processor published."""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tests.integration.conftest import STACK, emitted_metrics
from tests.integration.conftest_pg import file_processed_event
from tests.integration.ingest_support import capture_logs

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"


def test_a_processed_file_is_loaded_with_its_lineage(loader, capsys):
    # Given a CSV the processor has turned into Parquet
    event = loader.process("incoming/sales/jan.csv", SALES)
    capsys.readouterr()
    # When the loader receives its "File Processed" event
    assert loader.load(event) == {"batchItemFailures": []}
    # Then the dataset table holds the rows, typed, each traceable to its source line
    key, version = event["detail"]["object_key"], event["detail"]["version"]
    rows = loader.query(
        sql.SQL(
            "SELECT date::text, product, quantity, price, object_key, object_version, line_number "
            "FROM {} ORDER BY line_number"
        ).format(loader.table("sales"))
    )
    assert rows == [
        ("2025-01-01", "Widget", 10, 29.99, key, version, 2),
        ("2025-01-02", "Gadget", 5, 49.99, key, version, 3),
        ("2025-01-03", "Widget", None, 39.99, key, version, 4),
    ]
    assert loader.columns("sales") == {
        "date": "date",
        "product": "text",
        "quantity": "bigint",
        "price": "double precision",
        "_rescued_data": "jsonb",
        "object_key": "text",
        "object_version": "text",
        "line_number": "bigint",
        "loaded_at": "timestamp with time zone",
    }
    # and the README's query gives the rows of one file
    assert loader.count("sales", key) == 3
    # and the lineage table records the file
    [(files_version, dataset, row_count, schema, parquet_key, loaded_at, uploaded_at)] = loader.query(
        sql.SQL(
            "SELECT object_version, dataset, row_count, schema, parquet_key, loaded_at, uploaded_at FROM {}"
        ).format(loader.table("_files"))
    )
    assert (files_version, dataset, row_count) == (version, "sales", 3)
    assert schema == {"date": "date", "product": "string", "quantity": "int", "price": "float"}
    assert parquet_key == event["detail"]["parquet_key"]
    assert loaded_at is not None and uploaded_at is not None
    # and the metadata item says it is loaded
    item = loader.pipeline.item({"key": key, "version": version})
    assert (item["load_status"], item["load_rows"], item["load_table"]) == ("loaded", 3, "sales")
    # and the loader's metrics were emitted (EMF)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    loaded = [m for m in emf if m.get("service") == "loader"]
    assert loaded and loaded[-1]["FilesLoaded"] == [1.0] and loaded[-1]["RowsLoaded"] == [3.0]
    assert loaded[-1]["stack"] == STACK  # this stack's metrics (HEADRACE_STACK), as its alarms select


def test_line_numbers_skip_malformed_rows(loader):
    # Given a CSV whose third line is malformed (the processor skips it)
    event = loader.process("incoming/people.csv", "id,name\n1,ann\n2,bob,extra,fields\n3,cid\n4,dee\n")
    # When it is loaded
    assert loader.load(event) == {"batchItemFailures": []}
    # Then each row carries the line it came from
    rows = loader.query(sql.SQL("SELECT id, line_number FROM {} ORDER BY id").format(loader.table("people")))
    assert rows == [(1, 2), (3, 4), (4, 5)]


def test_json_documents_number_their_records(loader, monkeypatch):
    # Given a JSON array of records (processed with 4 GB: at the default 1 GB the processor's
    # JSON reader asks DuckDB for a 2 GiB buffer, beyond its memory limit)
    processor = loader.pipeline.handler
    monkeypatch.setattr(processor, "settings", processor.settings.model_copy(update={"memory_mb": 4096}))
    event = loader.process("incoming/events/a.json", json.dumps([{"a": 1}, {"a": 2, "b": "x"}]))
    # When it is loaded
    assert loader.load(event) == {"batchItemFailures": []}
    # Then line_number is the record's position, and the lineage table says so
    rows = loader.query(sql.SQL("SELECT a, b, line_number FROM {} ORDER BY a").format(loader.table("events")))
    assert rows == [(1, None, 1), (2, "x", 2)]
    assert loader.query(sql.SQL("SELECT lineage_unit FROM {}").format(loader.table("_files"))) == [
        ("record",)
    ]


def test_the_same_event_twice_leaves_one_copy(loader):
    # Given a loaded file
    event = loader.process("incoming/sales/jan.csv", SALES)
    assert loader.load(event) == {"batchItemFailures": []}
    # When the same event arrives again, alone and twice in one batch (SQS redelivery)
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.load(event, event) == {"batchItemFailures": []}
    # Then the rows are there once
    assert loader.count("sales", "incoming/sales/jan.csv") == 3
    assert loader.query(sql.SQL("SELECT count(*) FROM {}").format(loader.table("sales"))) == [(3,)]
    assert loader.query(sql.SQL("SELECT count(*) FROM {}").format(loader.table("_files"))) == [(1,)]


def test_a_new_version_replaces_the_old_one_and_a_late_old_one_is_skipped(loader):
    # Given version 1 of a key, uploaded at 10:00 and loaded
    morning = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    v1 = loader.process("incoming/sales/jan.csv", SALES, uploaded_at=morning)
    assert loader.load(v1) == {"batchItemFailures": []}
    # When version 2 (one more row) is uploaded a minute later, processed and loaded
    v2 = loader.process(
        "incoming/sales/jan.csv",
        SALES + "2025-01-04,Gizmo,1,9.99\n",
        uploaded_at=morning + timedelta(minutes=1),
    )
    assert loader.load(v2) == {"batchItemFailures": []}
    # Then only version 2's rows are in the table
    key = "incoming/sales/jan.csv"
    versions = loader.query(
        sql.SQL("SELECT object_version, count(*) FROM {} GROUP BY 1").format(loader.table("sales"))
    )
    assert versions == [(v2["detail"]["version"], 4)]
    # When version 1's event arrives late (a retry after an outage)
    assert loader.load(v1) == {"batchItemFailures": []}
    # Then it does not overwrite the newer version, and its item says why
    assert loader.count("sales", key) == 4
    assert loader.query(sql.SQL("SELECT object_version FROM {}").format(loader.table("_files"))) == [
        (v2["detail"]["version"],)
    ]
    item = loader.pipeline.item({"key": key, "version": v1["detail"]["version"]})
    assert item["load_status"] == "superseded"
    assert item["superseded_by"] == v2["detail"]["version"]


def test_a_failed_reload_leaves_the_previous_rows_intact(loader, monkeypatch):
    # Given a loaded file
    v1 = loader.process("incoming/sales/jan.csv", SALES)
    assert loader.load(v1) == {"batchItemFailures": []}
    # When the reload of a new version breaks halfway through the COPY
    v2 = loader.process("incoming/sales/jan.csv", SALES + "2025-01-04,Gizmo,1,9.99\n")
    from handlers.logic.warehouse import rows

    real = rows.csv_chunks

    def half_then_fail(con, query, work_dir):
        chunks = real(con, query, work_dir)
        first = next(chunks)
        chunks.close()
        yield first[: len(first) // 2].rsplit(b"\n", 1)[0] + b"\n"
        raise OSError("simulated failure while streaming rows")

    monkeypatch.setattr(rows, "csv_chunks", half_then_fail)
    record = loader.record(v2)
    assert loader.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # Then readers still see exactly version 1's rows: no part of version 2
    key = "incoming/sales/jan.csv"
    assert loader.query(
        sql.SQL("SELECT object_version, count(*) FROM {} GROUP BY 1").format(loader.table("sales"))
    ) == [(v1["detail"]["version"], 3)]
    assert loader.query(sql.SQL("SELECT object_version FROM {}").format(loader.table("_files"))) == [
        (v1["detail"]["version"],)
    ]
    # and the reason is noted for operators while the message is retried
    item = loader.pipeline.item({"key": key, "version": v2["detail"]["version"]})
    assert "simulated failure" in item["load_error"]
    # When the retry succeeds
    monkeypatch.setattr(rows, "csv_chunks", real)
    assert loader.load(v2) == {"batchItemFailures": []}
    # Then version 2 replaced version 1 entirely
    assert loader.count("sales", key) == 4


def test_a_row_count_that_disagrees_with_the_event_loads_nothing(loader):
    # Given an event announcing more rows than its Parquet holds
    event = loader.process("incoming/sales/jan.csv", SALES)
    event["detail"]["row_count"] = 99
    record = loader.record(event)
    # When it is loaded
    response = loader.invoke(record)
    # Then it is rejected for good: recorded, not retried (no DLQ message), nothing visible
    assert response == {"batchItemFailures": []}
    assert loader.query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'sales'", [loader.schema]
    ) == [(0,)]
    item = loader.pipeline.item({"key": event["detail"]["object_key"], "version": event["detail"]["version"]})
    assert item["load_status"] == "rejected"
    assert item["load_error"] == (
        "LoadRejected: the Parquet holds 3 rows but the event announced 99; nothing was loaded"
    )


def test_a_rejected_load_is_counted_for_its_alarm_and_retried_only_if_it_could_not_be_recorded(
    loader, monkeypatch, capsys
):
    # Given an event PostgreSQL's load would refuse on every attempt (its row count is wrong)
    event = loader.process("incoming/sales/jan.csv", SALES)
    event["detail"]["row_count"] = 99
    key, version = event["detail"]["object_key"], event["detail"]["version"]
    # and the metadata table throttling the loader's writes
    from botocore.exceptions import ClientError

    real = loader.handler.status.mark_rejected

    def throttled(*args, **kwargs):
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "UpdateItem",
        )

    monkeypatch.setattr(loader.handler.status, "mark_rejected", throttled)
    capsys.readouterr()
    # When it is loaded
    record = loader.record(event)
    # Then the rejection could not be recorded: the message is retried rather than lost
    assert loader.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert loader.pipeline.item({"key": key, "version": version}).get("load_status") is None
    # When it is received again and the table takes the write
    monkeypatch.setattr(loader.handler.status, "mark_rejected", real)
    assert loader.invoke(loader.record(event, receive_count=2)) == {"batchItemFailures": []}
    # Then it is recorded rejected, with the attempt, and counted as rejected (which pages at
    # once), not as a load failure to retry
    item = loader.pipeline.item({"key": key, "version": version})
    assert (item["load_status"], item["load_attempts"]) == ("rejected", 2)
    assert item["failure_day"] == item["load_failed_at"][:10]  # listed by headrace status
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counted = [m for m in emf if m.get("service") == "loader"]
    assert [m.get("LoadsRejected") for m in counted if "LoadsRejected" in m] == [[1.0]]
    assert [m["LoadFailures"] for m in counted if "LoadFailures" in m] == [[1.0]]  # the unrecorded one
    # and nothing was loaded
    assert loader.query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'sales'", [loader.schema]
    ) == [(0,)]


def test_a_throttled_secret_fails_the_rest_of_the_batch_fast_and_every_record_is_retried(loader, monkeypatch):
    # Given three processed files, a loader with no open connection (a new execution
    # environment: it must read the database secret), and Secrets Manager throttling it
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import ClientError

    from handlers.dal import secrets

    events = [loader.process(f"incoming/st/{i}.csv", SALES) for i in range(3)]
    loader.handler.warehouse.connections.close()
    reads: list[bool] = []
    real = secrets.parameters.get_secret

    def throttled(*args, **kwargs):
        reads.append(True)
        try:  # powertools wraps the SDK's error, as get_secret does
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetSecretValue"
            )
        except ClientError as exc:
            raise GetParameterError(str(exc)) from None

    monkeypatch.setattr(secrets.parameters, "get_secret", throttled)
    # When the batch arrives
    records = [loader.record(e) for e in events]
    response = loader.invoke(*records)
    # Then every record is retried (transient), Secrets Manager was asked once, not once per
    # record, and each item says why
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        r["messageId"] for r in records
    )
    assert reads == [True]
    for event in events:
        item = loader.pipeline.item(
            {"key": event["detail"]["object_key"], "version": event["detail"]["version"]}
        )
        assert "the database secret could not be read" in item["load_error"], item["load_error"]
        assert "ThrottlingException" in item["load_error"]
        assert "load_status" not in item
    # When Secrets Manager answers again
    monkeypatch.setattr(secrets.parameters, "get_secret", real)
    # Then the retries load every file once
    assert loader.load(*events) == {"batchItemFailures": []}
    assert [loader.count("st", e["detail"]["object_key"]) for e in events] == [3, 3, 3]


def test_bad_records_are_retried_without_blocking_the_batch(loader, capsys):
    # Given a batch: a good event, a body that is not JSON, an event that is not a
    # "File Processed" detail, a dataset name that is not an identifier, and an event whose
    # Parquet no longer exists
    good = loader.process("incoming/sales/jan.csv", SALES)
    garbage = loader.record(body="not json at all")
    wrong_shape = loader.record(file_processed_event({"hello": "world"}))
    evil = json.loads(json.dumps(good))
    evil["detail"]["dataset"] = 'sales"; DROP TABLE x; --'
    bad_dataset = loader.record(evil)
    gone = json.loads(json.dumps(good))
    gone["detail"]["parquet_key"] = "parquet/dataset=sales/missing.parquet"
    missing = loader.record(gone)
    records = [loader.record(good), garbage, wrong_shape, bad_dataset, missing]
    capsys.readouterr()
    # When the batch is handled
    with capture_logs(loader.handler) as logs:
        response = loader.invoke(*records)
    # Then only the bad ones are reported for retry (they end in the load DLQ)
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        r["messageId"] for r in records[1:]
    )
    # and the good file is loaded
    assert loader.count("sales", "incoming/sales/jan.csv") == 3
    # And every failed record is a failed load for the loader-failures alarm, the messages
    # that are no "File Processed" event too (the batch processor refused them before the
    # loader saw them: nothing logged or counted them)
    assert emitted_metrics(capsys.readouterr().out)["LoadFailures"] == 4
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith('{"level"')]
    malformed = {
        (line["message_id"], line["attempt"], line["fate"])
        for line in lines
        if line["level"] == "ERROR" and line["message"] == "malformed message: not a File Processed event"
    }
    assert malformed == {(r["messageId"], 1, "will be retried") for r in (garbage, wrong_shape, bad_dataset)}
    assert "not json at all" not in logs.getvalue() and "hello" not in logs.getvalue()


@pytest.mark.parametrize("last_attempt", [False, True])
def test_the_last_failed_attempt_marks_the_item_failed(loader, last_attempt):
    # Given an event whose Parquet is missing
    event = loader.process("incoming/sales/jan.csv", SALES)
    event["detail"]["parquet_key"] = "parquet/missing.parquet"
    # When it fails on a receive (MAX_RECEIVE_COUNT is 3)
    loader.invoke(loader.record(event, receive_count=3 if last_attempt else 1))
    # Then the item keeps the reason; on the last attempt it is marked failed
    item = loader.pipeline.item({"key": event["detail"]["object_key"], "version": event["detail"]["version"]})
    assert "does not exist" in item["load_error"]
    assert item.get("load_status") == ("failed" if last_attempt else None)


def test_a_file_wider_than_a_postgres_table_is_rejected_not_blamed_on_the_database(loader):
    # Given a processed file of 1,700 columns (PostgreSQL tables hold at most 1,600), and
    # the loader's connection, opened by an earlier load
    header = ",".join(f"c{i}" for i in range(1700))
    event = loader.process("incoming/wide/a.csv", header + "\n" + ",".join(["1"] * 1700) + "\n")
    assert loader.load(loader.process("incoming/sales/jan.csv", SALES)) == {"batchItemFailures": []}
    connection = loader.handler.warehouse.connections.get()
    # When the wide file is loaded
    record = loader.record(event)
    response = loader.invoke(record)
    # Then the load is rejected with PostgreSQL's reason, not "database unavailable", not
    # retried, and the healthy connection is kept
    assert response == {"batchItemFailures": []}
    item = loader.pipeline.item({"key": "incoming/wide/a.csv", "version": event["detail"]["version"]})
    assert item["load_status"] == "rejected"
    assert item["load_error"].startswith("LoadRejected: PostgreSQL cannot hold this file: ")
    assert "at most 1600 columns" in item["load_error"]
    assert loader.handler.warehouse.connections.get() is connection


def _fail_inserts_with(loader, dataset: str, sqlstate: str, times: int | None, action: str = "") -> None:
    """Make PostgreSQL fail the next ``times`` inserts into ``dataset``'s table (every one
    when None) with ``sqlstate`` (a trigger: a real error of the server, through psycopg),
    or with ``action`` (a PL/pgSQL statement). A sequence counts them: unlike a table, it is
    not rolled back with the failed load."""
    schema = sql.Identifier(loader.schema)
    limit = "true" if times is None else f"nextval('{loader.schema}.failures') <= {times}"
    action = action or f"RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}';"
    with loader.connect() as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {}.failures").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {limit} THEN {action} END IF; "
                "RETURN NEW; END $$"
            ).format(schema)
        )
        conn.execute(
            sql.SQL("CREATE TRIGGER fail BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}.fail()").format(
                loader.table(dataset), schema
            )
        )


@pytest.mark.parametrize(("sqlstate", "named"), [("40P01", "deadlock"), ("40001", "serialization failure")])
def test_a_load_rolled_back_by_a_deadlock_is_retried_at_once_on_the_same_connection(loader, sqlstate, named):
    # Given a loaded dataset, and PostgreSQL rolling back the next load's transaction once to
    # resolve a conflict with a concurrent one (a deadlock, or a serialization failure under
    # a default_transaction_isolation of serializable)
    loader.process_and_load("incoming/dl/1.csv", "a\n1\n")
    connection = loader.handler.warehouse.connections.get()
    _fail_inserts_with(loader, "dl", sqlstate, times=1)
    # When the next file loads
    event = loader.process("incoming/dl/2.csv", "a\n2\n")
    # Then it loads at once (the load is idempotent), on the same connection: no failed
    # attempt, no message retried a visibility timeout later
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.values("dl", "a") == [1, 2]
    assert loader.handler.warehouse.connections.get() is connection


@pytest.mark.parametrize(("sqlstate", "named"), [("40P01", "deadlock"), ("40001", "serialization failure")])
def test_a_load_that_keeps_conflicting_is_retried_later_and_not_blamed_on_the_database(
    loader, sqlstate, named
):
    # Given a dataset whose every load PostgreSQL rolls back to resolve a conflict
    loader.process_and_load("incoming/dc/1.csv", "a\n1\n")
    connection = loader.handler.warehouse.connections.get()
    _fail_inserts_with(loader, "dc", sqlstate, times=None)
    # When the next file loads
    event = loader.process("incoming/dc/2.csv", "a\n2\n")
    record = loader.record(event)
    # Then it is retried later (transient), its reason says what happened, not "database
    # unavailable", and the healthy connection is kept
    assert loader.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/dc/2.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith(
        "LoadConflicted: PostgreSQL rolled the load back twice to resolve a conflict with a concurrent "
        f"transaction ({named}); nothing was loaded, the load is retried: "
    ), item["load_error"]
    assert "load_status" not in item
    assert loader.handler.warehouse.connections.get() is connection
    assert loader.values("dc", "a") == [1]


def test_a_backend_terminated_mid_load_is_retried_and_loads_the_rows_once(loader):
    # Given a dataset loaded on the loader's connection, and its server process terminated in
    # the middle of the next load's COPY (an administrator, a failover)
    loader.process_and_load("incoming/tb/1.csv", "a\n1\n")
    v1 = loader.process("incoming/tb/2.csv", "a\n2\n3\n")
    assert loader.load(v1) == {"batchItemFailures": []}
    v2 = loader.process("incoming/tb/2.csv", "a\n2\n3\n4\n")
    _fail_inserts_with(
        loader, "tb", "57P01", times=1, action="PERFORM pg_terminate_backend(pg_backend_pid());"
    )
    # When the new version of the second file loads
    assert loader.load(v2) == {"batchItemFailures": []}
    # Then the lost connection was replaced and the load done once more, whole: the key's
    # rows are the new version's, once (the terminated transaction left nothing)
    assert loader.query(
        sql.SQL("SELECT object_version, count(*) FROM {} WHERE object_key = %s GROUP BY 1").format(
            loader.table("tb")
        ),
        ["incoming/tb/2.csv"],
    ) == [(v2["detail"]["version"], 3)]
    # (the backend was terminated at the first row; the retry inserted the three: 4 calls)
    assert loader.query(sql.SQL("SELECT nextval({})").format(sql.Literal(f"{loader.schema}.failures"))) == [
        (5,)
    ]


def _load_rows(loader, key: str, columns: list[tuple[str, str]], values: list[str]):
    """Load one row of ``values`` (CSV text) into ``key``'s dataset, as a file of ``columns``
    (name, logical type) would: straight through the warehouse, no processing (fast)."""
    from handlers.dal.warehouse import FileToLoad

    file = FileToLoad(
        object_key=key,
        object_version="v1",
        dataset=key.split("/")[1],
        source_bucket="raw",
        format="csv",
        row_count=1,
        lineage_unit="line",
        processed_bucket="processed",
        parquet_key="p",
        summary_key="s",
        uploaded_at=None,
        processed_at=None,
    )
    incoming = [*columns, ("_rescued_data", "string")]

    def rows(_plan):
        yield (",".join([*values, "", key, "v1", "2"]) + "\n").encode()

    return loader.handler.warehouse.load(file, incoming, rows)  # type: ignore[arg-type]


def test_files_that_together_reach_the_column_limit_are_told_which_columns_and_table(loader):
    # Given a dataset table that earlier files gave 1,596 columns (3 of them dropped since,
    # which PostgreSQL still counts)
    _load_rows(loader, "incoming/many/a.csv", [("a", "int")], ["1"])
    hundreds = ", ".join(f"ADD COLUMN h{i} text" for i in range(1590))
    with loader.connect() as conn:
        conn.execute(sql.SQL(f"ALTER TABLE {{}} {hundreds}").format(loader.table("many")))  # type: ignore[arg-type]
        conn.execute(sql.SQL("ALTER TABLE {} DROP h0, DROP h1, DROP h2").format(loader.table("many")))
    # When a file brings 10 columns more
    from handlers.dal.warehouse import LoadRejected

    with pytest.raises(LoadRejected) as refused:
        _load_rows(
            loader, "incoming/many/b.csv", [("a", "int")] + [(f"n{i}", "int") for i in range(10)], ["1"] * 11
        )
    # Then the error says which table, which columns, and what counts against the limit
    assert str(refused.value) == (
        f"PostgreSQL cannot hold this file: table {loader.schema}.many already has 1,596 columns "
        "(counting 3 dropped ones, which PostgreSQL never frees) from the earlier files of its "
        "dataset, and this file brings 10 more (n0, n1, n2, n3, n4 and 5 more): PostgreSQL tables "
        "can have at most 1600 columns; nothing was loaded. Files with other columns can go in a "
        "folder of their own: another dataset, another table"
    )
    # and nothing changed
    assert "n0" not in loader.columns("many")
    assert loader.count("many", "incoming/many/b.csv") == 0


def test_a_row_too_big_for_a_postgres_page_says_what_fills_it(loader):
    # Given a file of 1,100 integer columns: PostgreSQL keeps fixed-width values in the row,
    # which must fit in a page of 8 kB (the 1,600-column limit is out of reach for numbers)
    from handlers.dal.warehouse import LoadRejected

    columns = [(f"c{i}", "int") for i in range(1100)]
    # When it is loaded
    with pytest.raises(LoadRejected) as refused:
        _load_rows(loader, "incoming/numbers/a.csv", columns, ["7"] * 1100)
    # Then the error names the table and why the row is too big, and no table is left
    message = str(refused.value)
    assert message.startswith(
        f"PostgreSQL cannot hold this file: one of its rows is too big for a row of table {loader.schema}.numbers "
        "(row is too big: size "
    )
    assert message.endswith(
        "1,100 of the file's 1,100 columns are numbers, dates, timestamps or booleans, which PostgreSQL "
        "keeps within the row's 8 kB page (about 1,000 of them fill it; only long text moves out of it); "
        "nothing was loaded"
    )
    assert loader.columns("numbers") == {}


def test_awkward_names_are_stored_safely(loader):
    # Given a key with quotes and unicode, and columns with quotes, spaces, mixed case, a
    # lineage column's name, and a name longer than PostgreSQL's 63 bytes
    long_name = "a_remarkably_long_column_name_" + "x" * 60
    header = f'"we""ird",Mixed Case,object_key,{long_name}'
    key = "incoming/Q1 'report' ü.csv"
    event = loader.process(key, f"{header}\n1,2,3,4\n")
    # When it is loaded
    assert loader.load(event) == {"batchItemFailures": []}
    # Then the table and columns exist under safe identifiers, the file's own object_key
    # column does not clobber the lineage one, and the long name is cut with a hash
    table = event["detail"]["dataset"]
    columns = list(loader.columns(table))
    assert columns[:3] == ['we"ird', "Mixed Case", "object_key_source"]
    assert columns[3].startswith("a_remarkably_long_column_name_x") and len(columns[3].encode()) <= 63
    assert loader.count(table, key) == 1
    [(renamed,)] = loader.query(sql.SQL("SELECT renamed_columns FROM {}").format(loader.table("_files")))
    assert renamed == {"object_key": "object_key_source", long_name: columns[3]}


def test_columns_named_like_postgres_system_columns_load(loader):
    # Given bounding boxes, whose xmin and xmax are names of PostgreSQL's system columns
    # (a table cannot have a column of that name: every retry of the load failed)
    key = "incoming/boxes/a.csv"
    loader.process_and_load(key, "image,xmin,ymin,xmax,ymax\nx.png,1,2,3,4\n")
    # When a later file of the dataset writes them in capitals and brings a ctid
    loader.process_and_load("incoming/boxes/b.csv", "image,XMIN,XMAX,ctid\ny.png,5,6,7\n")
    # Then both files loaded, into columns named with the lineage names' suffix
    assert list(loader.columns("boxes"))[:5] == ["image", "xmin_source", "ymin", "xmax_source", "ymax"]
    assert "ctid_source" in loader.columns("boxes")
    assert loader.values("boxes", "xmin_source") == [1, 5]
    assert loader.values("boxes", "xmax_source") == [3, 6]
    renamed = dict(
        loader.query(sql.SQL("SELECT object_key, renamed_columns FROM {}").format(loader.table("_files")))
    )
    assert renamed["incoming/boxes/b.csv"] == {
        "XMIN": "xmin_source",
        "XMAX": "xmax_source",
        "ctid": "ctid_source",
    }


def test_a_nul_character_in_a_column_name_does_not_stop_the_load(loader):
    # Given JSON keys holding a NUL character (\u0000), which neither a PostgreSQL name nor
    # jsonb can hold, next to the same name without it; and a NUL in a value too
    key = "incoming/kn/1.ndjson"
    loader.process_and_load(key, '{"a\\u0000b": "x\\u0000", "ab": 2}\n')
    # Then the file loads (it failed every retry, blamed on the database's encoding): the
    # name without its NUL goes to the column of that name, the other gets a suffix
    assert [v for (v,) in loader.query(sql.SQL("SELECT ab::text FROM {}").format(loader.table("kn")))] == [
        "2"
    ]
    assert loader.values("kn", "ab_2") == ["x"]
    # and the lineage table shows the NUL as the escape \u0000 in the names it records
    [(schema, renamed, nuls)] = loader.query(
        sql.SQL("SELECT schema, renamed_columns, nuls_removed FROM {}").format(loader.table("_files"))
    )
    assert schema == {"a\\u0000b": "string", "ab": "int"}
    assert renamed == {"a\\u0000b": "ab_2"}
    assert nuls == {"a\\u0000b": 1}


def test_a_dataset_name_longer_than_postgres_allows_loads_again_and_again(loader):
    # Given a dataset folder name of 80 characters (PostgreSQL identifiers stop at 63 bytes)
    key = f"incoming/{'d' * 80}/x.csv"
    first = loader.process(key, SALES)
    # When it is loaded, then loaded again
    assert loader.load(first) == {"batchItemFailures": []}
    assert loader.load(first) == {"batchItemFailures": []}
    # Then one table holds its rows once, under a shortened name the lineage table records
    [(table,)] = loader.query(sql.SQL("SELECT table_name FROM {}").format(loader.table("_files")))
    assert len(table.encode()) <= 63 and table.startswith("d" * 40)
    assert loader.count(table, key) == 3


def test_a_load_waits_for_the_dataset_lock_only_as_long_as_the_function_can(loader):
    # Given another loader holding the dataset's lock (a long load of the same dataset)
    event = loader.process("incoming/sales/jan.csv", SALES)
    from tests.integration.conftest import Invocation

    # the loader keeps a fifth of the invocation for itself: the load gets 1.2 s
    almost_out_of_time = Invocation(1_500)
    with loader.connect() as other:
        other.execute("BEGIN")
        other.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"headrace:table:{loader.schema}.sales"]
        )
        # When the loader runs with little time left
        record = loader.record(event)
        response = loader.handler.lambda_handler({"Records": [record]}, almost_out_of_time)
        other.execute("ROLLBACK")
    # Then it gives up cleanly after a second, to be retried, instead of being cut off
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/sales/jan.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith("LoadTimedOut: the load ran out of time and was rolled back")
    # and once the other load is done, the retry succeeds
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.count("sales", "incoming/sales/jan.csv") == 3


@pytest.mark.parametrize("last_receive", [False, True])
def test_a_load_there_is_too_little_time_left_to_start_is_handed_back_untouched(
    loader, monkeypatch, capsys, last_receive
):
    # Given a batch of two files, the first of which leaves 5 s of the invocation: less
    # than the loader keeps back for itself (10 s of a 60 s invocation) and a load
    from tests.integration.conftest import Invocation

    first = loader.process("incoming/sales/jan.csv", SALES)
    second = loader.process("incoming/sales/feb.csv", SALES)
    invocation = Invocation(60_000)
    load_file = loader.handler.load_file

    def slow_load(*args, **kwargs):
        outcome = load_file(*args, **kwargs)
        invocation.remaining_ms = 5_000
        return outcome

    monkeypatch.setattr(loader.handler, "load_file", slow_load)
    capsys.readouterr()
    records = [loader.record(first), loader.record(second, receive_count=3 if last_receive else 1)]
    # When the batch is handled
    response = loader.handler.lambda_handler({"Records": records}, invocation)
    # Then the second file is handed back to the queue without being started (never given
    # a moment of the database that the function does not have)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    assert loader.count("sales", "incoming/sales/jan.csv") == 3
    assert loader.count("sales", "incoming/sales/feb.csv") == 0
    # and not counted as a failed load: nothing failed, unless that was its last receive
    # (the message goes to the load DLQ next), which is recorded with the reason
    assert '"LoadFailures"' not in capsys.readouterr().out
    item = loader.pipeline.item({"key": "incoming/sales/feb.csv", "version": second["detail"]["version"]})
    if last_receive:
        assert item["load_status"] == "failed"
        assert item["load_error"].startswith("gave up after 3 receives: not started: less than 20 s left")
    else:
        assert "load_status" not in item and "load_error" not in item


def test_a_loads_last_receive_without_time_to_start_keeps_what_failed_before(loader):
    # Given a load that failed on its earlier receives (the database was down)
    from handlers.dal.load_status import LoadStatusStore
    from tests.integration.test_processor import TimeUsedUp

    event = loader.process("incoming/sales/jan.csv", SALES)
    key, version = "incoming/sales/jan.csv", event["detail"]["version"]
    LoadStatusStore("metadata").note_retry(key, version, "DatabaseUnavailable: connection refused", 2)
    # When its last receive comes with too little time left to start it
    record = loader.record(event, receive_count=3)
    response = loader.handler.lambda_handler({"Records": [record]}, TimeUsedUp())
    # Then it goes to the load DLQ recorded failed, with the earlier attempts' reason too
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": key, "version": version})
    assert item["load_status"] == "failed"
    assert item["load_error"].startswith("gave up after 3 receives: not started")
    assert item["load_error"].endswith(
        "; an earlier attempt failed with: DatabaseUnavailable: connection refused"
    )


def test_the_download_of_a_file_counts_against_its_loads_time(loader, monkeypatch):
    # Given a file whose Parquet takes most of the invocation to download: 55 s of the 50 s
    # a load may take of a 60 s invocation (the clock the load reads is moved on)
    import handlers.dal.warehouse as warehouse_module
    import handlers.logic.load_file as load_file_module
    from tests.integration.conftest import Invocation

    event = loader.process("incoming/sales/jan.csv", SALES)
    clock = {"offset": 0.0}
    real_time, download = warehouse_module.time, load_file_module.processed.download
    monkeypatch.setattr(
        warehouse_module,
        "time",
        types.SimpleNamespace(
            monotonic=lambda: real_time.monotonic() + clock["offset"], sleep=real_time.sleep
        ),
    )

    def slow_download(*args, **kwargs):
        download(*args, **kwargs)
        clock["offset"] = 55.0

    monkeypatch.setattr(load_file_module.processed, "download", slow_download)
    record = loader.record(event)
    # When the loader handles it
    response = loader.handler.lambda_handler({"Records": [record]}, Invocation(60_000))
    # Then the load is not given a fresh 50 s after the download (the function would be cut
    # off in the middle of its transaction): it is rolled back and retried
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/sales/jan.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith("LoadTimedOut: the load ran out of time")
    assert loader.columns("sales") == {}  # nothing of it reached the warehouse


def test_a_parquet_larger_than_the_loaders_scratch_space_names_the_setting_to_raise(loader, monkeypatch):
    # Given a file whose Parquet does not fit in the loader's /tmp (its ephemeral storage)
    import errno

    import handlers.logic.load_file as load_file_module

    event = loader.process("incoming/sales/jan.csv", SALES)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(load_file_module.processed, "download", disk_full)
    # When the loader handles it
    record = loader.record(event)
    assert loader.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # Then the reason says which limit it met and the setting that lifts it, not errno 28
    item = loader.pipeline.item({"key": "incoming/sales/jan.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith("OutOfScratchSpace: the file's Parquet (s3://")
    assert item["load_error"].endswith("raise functions.loader.ephemeral_storage_mb")


def test_a_database_in_another_encoding_gets_its_own_characters(loader):
    # Given a warehouse database in LATIN1 (an external database need not be UTF-8)
    server, database = loader.server, f"latin_{loader.schema}"
    secret = server.secret()
    with psycopg.connect(server.conninfo(superuser=True), autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER {}"
            ).format(sql.Identifier(database), sql.Identifier(secret["username"]))
        )
    from handlers.dal.secrets import Credentials
    from handlers.dal.warehouse import Connections, LoadRejected, Warehouse
    from handlers.logic import load_file as logic
    from handlers.models.events import FileProcessed

    warehouse = Warehouse(
        Connections(lambda _refresh: Credentials.from_secret({**secret, "dbname": database})), loader.schema
    )

    def load_into_latin1(event):
        detail = FileProcessed.model_validate(event["detail"])
        return logic.load_file(detail, loader.handler.settings, warehouse, lambda *_: None)

    try:
        # When a file with accented letters loads
        load_into_latin1(loader.process("incoming/enc/1.csv", "name,city\nJosé,Zürich\n"))
        # Then they are stored as LATIN1 characters (not as UTF-8 bytes: "JosÃ©")
        table = sql.SQL("{}.enc").format(sql.Identifier(loader.schema))
        with psycopg.connect(server.conninfo(dbname=database), autocommit=True) as conn:
            assert conn.execute(
                sql.SQL("SELECT name, city, length(name) FROM {}").format(table)
            ).fetchall() == [("José", "Zürich", 4)]
        # When a file brings a letter LATIN1 lacks
        with pytest.raises(LoadRejected) as rejected:
            load_into_latin1(loader.process("incoming/enc/2.csv", "name,city\nJosé,Łódź\n"))
        # Then its load fails, saying why, with nothing loaded
        assert "encoding (LATIN1) cannot hold a character of this file" in str(rejected.value)
        with psycopg.connect(server.conninfo(dbname=database), autocommit=True) as conn:
            assert conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE object_key = 'incoming/enc/2.csv'").format(table)
            ).fetchall() == [(0,)]
    finally:
        warehouse.close()
        with psycopg.connect(server.conninfo(superuser=True), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def test_an_older_version_of_the_same_second_loading_after_the_newer_one_does_not_overwrite_it(
    loader, monkeypatch
):
    # Given v1 and v2 of a key uploaded within one second (S3 reports upload times to the
    # second: both carry the same uploaded_at), and v1's load slow: it has read v1's outputs
    # when v2 is processed (v1 marked superseded_by v2, its outputs removed) and loaded
    from handlers.logic import load_file

    second = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    key = "incoming/sales/tie.csv"
    v1 = loader.process(key, SALES, uploaded_at=second)
    real = load_file.processed.read_json
    newer: dict = {}

    def v2_overtakes(bucket, summary_key):
        answer = real(bucket, summary_key)
        if not newer:
            newer.update(loader.process(key, SALES + "2025-01-04,Gizmo,1,9.99\n", uploaded_at=second))
            handler = loader.handler
            event = handler.FileProcessedRecord.model_validate(loader.record(newer)).body.detail
            load_file.load_file(event, handler.settings, handler.warehouse, handler.status.uploaded_at)
        return answer

    monkeypatch.setattr(load_file.processed, "read_json", v2_overtakes)
    # When v1's load goes on
    assert loader.load(v1) == {"batchItemFailures": []}
    # Then the warehouse keeps v2 (the key's current version), and v1 is recorded superseded
    assert loader.query(
        sql.SQL("SELECT object_version, row_count FROM {}").format(loader.table("_files"))
    ) == [(newer["detail"]["version"], 4)]
    assert loader.count("sales", key) == 4
    item = loader.pipeline.item({"key": key, "version": v1["detail"]["version"]})
    assert item["load_status"] == "superseded" and item["superseded_by"] == newer["detail"]["version"]


def test_a_version_replaced_between_reading_its_parquet_and_its_summary_is_superseded_not_failed(
    loader, monkeypatch
):
    # Given v1's load has read v1's Parquet when v2 completes (v1's outputs removed)
    from handlers.logic import load_file

    key = "incoming/sales/between.csv"
    v1 = loader.process(key, SALES)
    real = load_file.processed.download
    newer: dict = {}

    def v2_completes(bucket, parquet_key, target):
        real(bucket, parquet_key, target)
        if not newer:
            newer.update(loader.process(key, SALES + "2025-01-04,Gizmo,1,9.99\n"))

    monkeypatch.setattr(load_file.processed, "download", v2_completes)
    # When v1's load goes on to read its summary, gone now
    assert loader.load(v1) == {"batchItemFailures": []}
    # Then v1 is recorded superseded, not a load failure to retry
    item = loader.pipeline.item({"key": key, "version": v1["detail"]["version"]})
    assert item["load_status"] == "superseded" and item["superseded_by"] == newer["detail"]["version"]
    assert "load_error" not in item
