"""Table changes (a new column, a widening) against a real PostgreSQL: made in a short
transaction of their own, so readers of the table are not blocked while the rows load;
bounded when readers hold the table; named when they run out of time."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import errors, sql

from handlers.dal import warehouse as wh


def read_during_copy(loader, monkeypatch, table: str) -> dict[str, Any]:
    """Make the loader's COPY run a reader on another connection before its first row: the
    data transaction is open and the COPY under way. The reader gives up on any lock it
    would wait for (``lock_timeout = 100ms``); what it saw is returned (filled once the
    load has run)."""
    from handlers.logic.warehouse import rows

    real = rows.csv_chunks
    seen: dict[str, Any] = {}

    def observed(con, query, work_dir):
        with loader.connect() as reader:
            reader.execute("SET lock_timeout = '100ms'")
            try:
                [(seen["count"],)] = reader.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(loader.table(table))
                ).fetchall()
            except errors.LockNotAvailable as exc:
                seen["error"] = str(exc)
            seen["strong_locks"] = reader.execute(
                "SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s "
                "AND l.pid <> pg_backend_pid() AND l.mode = 'AccessExclusiveLock'",
                [loader.schema, table],
            ).fetchall()
            seen["columns"] = [
                name
                for (name,) in reader.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    [loader.schema, table],
                ).fetchall()
            ]
        yield from real(con, query, work_dir)

    monkeypatch.setattr(rows, "csv_chunks", observed)
    return seen


def test_a_new_column_does_not_block_readers_while_the_rows_load(loader, monkeypatch):
    # Given a dataset table, and a file that brings a new column
    loader.process_and_load("incoming/lk/1.csv", "a\n1\n")
    event = loader.process("incoming/lk/2.csv", "a,b\n2,x\n")
    seen = read_during_copy(loader, monkeypatch, "lk")
    # When it loads, and a reader queries the table during its COPY
    assert loader.load(event) == {"batchItemFailures": []}
    # Then the reader was not blocked: nobody held the table's ACCESS EXCLUSIVE lock, the
    # new (nullable) column was already committed, and the new row was not yet visible
    assert "error" not in seen, seen.get("error")
    assert seen["strong_locks"] == []
    assert seen["count"] == 1
    assert "b" in seen["columns"]
    # and the load itself is complete
    assert loader.values("lk", "b") == [None, "x"]


def test_a_new_table_is_created_with_its_rows(loader, monkeypatch):
    # Given a file of a new dataset whose COPY fails
    event = loader.process("incoming/nt/1.csv", "a\n1\n")
    from handlers.logic.warehouse import rows

    def broken(con, query, work_dir):
        raise OSError("simulated failure while streaming rows")
        yield b""

    monkeypatch.setattr(rows, "csv_chunks", broken)
    record = loader.record(event)
    assert loader.invoke(record) == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # Then no empty table was left behind: it is created in the data transaction
    assert loader.query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'nt'", [loader.schema]
    ) == [(0,)]


def test_a_column_change_waits_for_running_queries_only_briefly(loader, monkeypatch):
    # Given a dataset table that an analyst's long query is reading, and a file with a new
    # column (the change waits 100 ms for the table's lock, twice)
    loader.process_and_load("incoming/lq/1.csv", "a\n1\n")
    event = loader.process("incoming/lq/2.csv", "a,b\n2,x\n")
    monkeypatch.setattr(wh, "SCHEMA_LOCK_TIMEOUT_MS", 100)
    monkeypatch.setattr(wh, "SCHEMA_LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(wh, "SCHEMA_RETRY_PAUSE_SECONDS", 0)
    record = loader.record(event)
    with loader.connect() as analyst:
        analyst.execute("BEGIN")
        analyst.execute(sql.SQL("SELECT count(*) FROM {}").format(loader.table("lq")))
        # When the file loads while the query holds the table
        response = loader.invoke(record)
        analyst.execute("ROLLBACK")
    # Then the load gives up (to be retried) naming the table, instead of queueing every
    # new reader behind its ALTER for as long as the function can run
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/lq/2.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith(
        f"LoadTimedOut: could not change table {loader.schema}.lq: other sessions kept it locked"
    )
    assert "b" not in loader.columns("lq")
    # and once the query is over, the retry succeeds
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.values("lq", "b") == [None, "x"]


def test_a_migration_waits_for_loads_of_the_previous_version_only_briefly(loader, monkeypatch):
    # Given a warehouse a previous version set up (migration 3 not applied yet), upgraded
    # while a load of that version still runs: its transaction has read _files
    loader.process_and_load("incoming/mg/1.csv", "a\n1\n")
    event = loader.process("incoming/mg/2.csv", "a\n2\n")
    schema = sql.Identifier(loader.schema)
    with loader.connect() as conn:
        conn.execute(sql.SQL("ALTER TABLE {}._files DROP COLUMN nuls_removed").format(schema))
        conn.execute(sql.SQL("DELETE FROM {}._migrations WHERE version = 3").format(schema))
    loader.handler.warehouse.close()  # the next load connects afresh and migrates
    monkeypatch.setattr(wh, "SCHEMA_LOCK_TIMEOUT_MS", 100)
    monkeypatch.setattr(wh, "SCHEMA_LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(wh, "SCHEMA_RETRY_PAUSE_SECONDS", 0)
    record = loader.record(event)
    with loader.connect() as old_load:
        # (the server ends this session if the load waits for it: the test fails, not hangs)
        old_load.execute("SET idle_in_transaction_session_timeout = '10s'")
        old_load.execute("BEGIN")
        old_load.execute(sql.SQL("SELECT object_version FROM {}._files").format(schema))
        # When the upgraded loader's first load migrates
        response = loader.invoke(record)
        old_load.execute("ROLLBACK")
    # Then it gave up (to be retried) saying why, instead of holding its ALTER TABLE, and
    # every load and reader of _files queued behind it, for as long as the old load runs
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/mg/2.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith(
        f"LoadTimedOut: could not apply the warehouse's migrations in schema {loader.schema}"
    )
    assert loader.query(sql.SQL("SELECT max(version) FROM {}._migrations").format(schema)) == [(2,)]
    # and once that load is over, the retry migrates and loads
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.query(sql.SQL("SELECT max(version) FROM {}._migrations").format(schema)) == [(3,)]
    assert loader.values("mg", "a") == [1, 2]


@pytest.mark.parametrize("skipped", [1, wh.SCHEMA_ROUNDS])
def test_a_table_changed_again_before_the_load_is_checked_under_the_lock(loader, monkeypatch, skipped):
    # Given a file with a new column whose table change is lost before the data transaction
    # (as if someone dropped the column meanwhile): once, or in every round
    loader.process_and_load("incoming/rc/1.csv", "a\n1\n")
    event = loader.process("incoming/rc/2.csv", "a,b\n2,x\n")
    real = wh.Warehouse._change_table
    calls = []

    def forgetful(self, *args):
        calls.append(1)
        return ([], []) if len(calls) <= skipped else real(self, *args)

    monkeypatch.setattr(wh.Warehouse, "_change_table", forgetful)
    # When it loads
    assert loader.load(event) == {"batchItemFailures": []}
    # Then the data transaction saw the table as it is and the file loaded whole: after
    # another round of table changes, or (the last round) changing the table itself
    assert loader.values("rc", "b") == [None, "x"]
    assert len(calls) == min(skipped + 1, wh.SCHEMA_ROUNDS)


def test_a_widening_that_runs_out_of_time_is_named(loader, monkeypatch):
    # Given a column whose widening takes longer than the load has (a slow cast stands in
    # for the rewrite of a very large table)
    loader.process_and_load("incoming/wb/1.csv", "n,s\n1,a\n")
    event = loader.process("incoming/wb/2.csv", "n,s\n1.5,b\n")
    schema = sql.Identifier(loader.schema)
    with loader.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}.slow(x bigint) RETURNS double precision LANGUAGE plpgsql "
                "AS $$ BEGIN PERFORM pg_sleep(60); RETURN x; END $$"
            ).format(schema)
        )
    from tests.integration.conftest import Invocation

    monkeypatch.setattr(wh, "cast_for_widening", lambda column, *_: f'"{loader.schema}".slow({column})')
    # When it loads with 1.5 s left (the loader keeps 10 s of the function's time)
    record = loader.record(event)
    response = loader.handler.lambda_handler({"Records": [record]}, Invocation(11_500))
    # Then the load fails, to be retried, and says which change ran out of time and what to do
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    item = loader.pipeline.item({"key": "incoming/wb/2.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith("LoadTimedOut: widening wb.n (int -> float) timed out")
    assert "functions.loader.timeout_seconds" in item["load_error"]
    assert "alter the column by hand" in item["load_error"]
    assert loader.columns("wb")["n"] == "bigint"


def test_a_widening_a_view_prevents_says_which_view_and_what_to_do(loader):
    # Given an integer column that a view (an analyst's) selects
    loader.process_and_load("incoming/wv/1.csv", "n,s\n1,a\n")
    with loader.connect() as conn:
        conn.execute(sql.SQL("CREATE VIEW public.wv_report AS SELECT n FROM {}").format(loader.table("wv")))
    # When a file brings fractions into it: PostgreSQL cannot change the type under the view
    event = loader.process("incoming/wv/2.csv", "n,s\n1.5,b\n")
    record = loader.record(event)
    response = loader.invoke(record)
    # Then the load is rejected (not retried), naming the column, the view and the way out
    assert response == {"batchItemFailures": []}
    item = loader.pipeline.item({"key": "incoming/wv/2.csv", "version": event["detail"]["version"]})
    error = item["load_error"]
    assert error.startswith("LoadRejected: cannot widen wv.n (int -> float): view wv_report depends on it")
    assert f'ALTER TABLE "{loader.schema}"."wv" ALTER COLUMN "n" TYPE double precision' in error
    assert "then load the file again with headrace replay --force and its key" in error
    assert item["load_status"] == "rejected"
    # and nothing changed: the view still reads the column
    assert loader.columns("wv")["n"] == "bigint"
    assert loader.query("SELECT n FROM public.wv_report") == [(1,)]
    # When the view is dropped, the replayed file's load widens the column and loads it
    with loader.connect() as conn:
        conn.execute("DROP VIEW public.wv_report")
    assert loader.invoke(loader.record(event)) == {"batchItemFailures": []}
    assert loader.values("wv", "n") == [1.0, 1.5]


def test_a_widening_a_policy_prevents_names_the_policy_not_a_view(loader):
    # (the error named the policy, then said to drop "the view" and create "the view" again)
    # Given an integer column that a row-level security policy uses
    loader.process_and_load("incoming/wp/1.csv", "n,s\n1,a\n")
    with loader.connect() as conn:
        conn.execute(sql.SQL("CREATE POLICY wp_small ON {} USING (n < 100)").format(loader.table("wp")))
    # When a file brings fractions into it: PostgreSQL cannot change the type under the policy
    event = loader.process("incoming/wp/2.csv", "n,s\n1.5,b\n")
    record = loader.record(event)
    assert loader.invoke(record) == {"batchItemFailures": []}
    # Then the error names the policy, and the way out drops and recreates the policy
    item = loader.pipeline.item({"key": "incoming/wp/2.csv", "version": event["detail"]["version"]})
    error = item["load_error"]
    assert error.startswith(
        f"LoadRejected: cannot widen wp.n (int -> float): policy wp_small on table {loader.schema}.wp "
        "depends on it, and PostgreSQL cannot change the type of a column a policy uses. "
        "Nothing was loaded. Drop the policy, widen the column as the loader would"
    ), error
    assert "view" not in error
    assert "create the policy again, then load the file again with headrace replay --force" in error
    assert loader.columns("wp")["n"] == "bigint"
