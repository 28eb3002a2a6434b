"""Schema drift between files of one dataset, against a real PostgreSQL: new columns are
added, types are widened, narrower values load into wider columns, and nothing crashes."""

from __future__ import annotations

import threading

import duckdb
from psycopg import sql


def test_new_columns_are_added_and_missing_ones_are_null(loader):
    # Given a dataset table made from a file with columns a, b
    loader.process_and_load("incoming/m/1.csv", "a,b\n1,x\n")
    # When a file with an extra column c arrives, then one without b
    loader.process_and_load("incoming/m/2.csv", "a,b,c\n2,zed,true\n")
    loader.process_and_load("incoming/m/3.csv", "a,c\n3,false\n")
    # Then the table has every column, older rows hold NULL in the new one, and a file
    # without a column holds NULL in it
    assert list(loader.columns("m"))[:3] == ["a", "b", "_rescued_data"]
    assert loader.columns("m")["c"] == "boolean"
    assert loader.values("m", "c") == [None, True, False]
    assert loader.values("m", "b") == ["x", "zed", None]
    # and the lineage table keeps each file's own schema
    schemas = dict(loader.query(sql.SQL("SELECT object_key, schema FROM {}").format(loader.table("_files"))))
    assert schemas["incoming/m/3.csv"] == {"a": "int", "c": "bool"}


def test_int_widens_to_float_then_to_text(loader):
    # Given integers
    loader.process_and_load("incoming/w/1.csv", "n\n10\n20\n")
    # When a file has decimals in that column
    loader.process_and_load("incoming/w/2.csv", "n\n1.5\n")
    # Then the column became double precision and the integers kept their value
    assert loader.columns("w")["n"] == "double precision"
    assert loader.values("w", "n") == [10.0, 20.0, 1.5]
    # When a file has words in it
    loader.process_and_load("incoming/w/3.csv", "n\nlots\nmany\n")
    # Then the column became text, every earlier value written the same way
    assert loader.columns("w")["n"] == "text"
    assert loader.values("w", "n") == ["10", "20", "1.5", "lots", "many"]


def test_dates_widen_to_timestamps_then_to_text(loader):
    # Given dates
    loader.process_and_load("incoming/t/1.csv", "d\n2025-01-01\n")
    # When a file has timestamps in that column
    loader.process_and_load("incoming/t/2.csv", "d\n2025-01-02T10:30:00Z\n")
    # Then the column became timestamptz; the date is midnight UTC
    assert loader.columns("t")["d"] == "timestamp with time zone"
    assert [v.isoformat() for v in loader.values("t", "d")] == [
        "2025-01-01T00:00:00+00:00",
        "2025-01-02T10:30:00+00:00",
    ]
    # When a file has free text in it
    loader.process_and_load("incoming/t/3.csv", "d\nsoon\n")
    # Then it became text, old and new timestamps in one format (ISO, UTC)
    assert loader.values("t", "d") == [
        "2025-01-01 00:00:00.000000+00",
        "2025-01-02 10:30:00.000000+00",
        "soon",
    ]
    # When a later file has timestamps again, they are written the same way
    loader.process_and_load("incoming/t/4.csv", "d\n2025-01-03T08:00:00Z\n")
    assert loader.values("t", "d")[-1] == "2025-01-03 08:00:00.000000+00"


def test_booleans_and_text_meet_as_text(loader):
    loader.process_and_load("incoming/b/1.csv", "flag\ntrue\nfalse\n")
    loader.process_and_load("incoming/b/2.csv", "flag\nmaybe\n")
    assert loader.columns("b")["flag"] == "text"
    assert loader.values("b", "flag") == ["true", "false", "maybe"]


def test_narrower_values_load_into_a_wider_column_without_altering_it(loader):
    # Given a float column
    loader.process_and_load("incoming/n/1.csv", "price\n1.25\n")
    # When a file brings integers
    loader.process_and_load("incoming/n/2.csv", "price\n3\n")
    # Then the column stays double precision and holds the value
    assert loader.columns("n")["price"] == "double precision"
    assert loader.values("n", "price") == [1.25, 3.0]


def test_columns_match_case_insensitively(loader):
    # Given a column "Price"
    loader.process_and_load("incoming/c/1.csv", "Price\n1\n")
    # When the next file spells it "price"
    loader.process_and_load("incoming/c/2.csv", "price\n2\n")
    # Then both land in the one column
    assert [c for c in loader.columns("c") if c.lower() == "price"] == ["Price"]
    assert loader.values("c", "Price") == [1, 2]


def test_concurrent_loads_into_one_dataset_with_different_new_columns(loader):
    # Given a dataset table
    loader.process_and_load("incoming/k/0.csv", "a\n0\n")
    e1 = loader.process("incoming/k/1.csv", "a,x\n1,one\n")
    e2 = loader.process("incoming/k/2.csv", "a,y\n2,2.5\n")
    # When two loaders add different columns at the same time (separate connections)
    from handlers.dal.secrets import Credentials
    from handlers.dal.warehouse import Connections, Warehouse
    from handlers.logic import load_file as logic
    from handlers.models.events import FileProcessed

    settings = loader.handler.settings
    errors: list[BaseException] = []

    def run(event):
        warehouse = Warehouse(
            Connections(lambda _refresh: Credentials.from_secret(loader.server.secret())), loader.schema
        )
        try:
            logic.load_file(
                FileProcessed.model_validate(event["detail"]), settings, warehouse, lambda *_: None
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            warehouse.close()

    threads = [threading.Thread(target=run, args=(e,)) for e in (e1, e2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Then both succeed (their migrations are serialized) and the table has both columns
    assert errors == []
    assert {"x", "y"} <= set(loader.columns("k"))
    assert loader.values("k", "a") == [0, 1, 2]


def _load_with_year_zero(loader, key: str, body: str, tmp_path) -> None:
    """Process ``body`` (``0001-01-01`` standing for year 0), then load its Parquet as the
    processor wrote it before 2026-12-07: a ``0000-01-01`` sentinel was a date then (1 BC),
    and tables loaded before still hold it; now it is a type mismatch, kept as written."""
    event = loader.process(key, body)
    s3, bucket, parquet_key = loader.pipeline.s3, loader.pipeline.processed, event["detail"]["parquet_key"]
    before, after = tmp_path / "before.parquet", tmp_path / "after.parquet"
    before.write_bytes(s3.get_object(Bucket=bucket, Key=parquet_key)["Body"].read())
    duckdb.sql(
        f"COPY (SELECT * REPLACE ("
        f"CASE WHEN d = DATE '0001-01-01' THEN DATE '0000-01-01' ELSE d END AS d, "
        f"CASE WHEN year(t) = 1 THEN t - INTERVAL 1 YEAR ELSE t END AS t) "
        f"FROM read_parquet('{before}')) TO '{after}' (FORMAT parquet)"
    )
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{after}') WHERE year(d) = 0").fetchall() == [(1,)]
    s3.put_object(Bucket=bucket, Key=parquet_key, Body=after.read_bytes())
    assert loader.load(event) == {"batchItemFailures": []}


def test_values_turned_into_text_read_the_same_whichever_way_they_got_there(loader, tmp_path):
    # Given a database whose defaults write dates as 02/01/2025 and floats with 15 digits
    [(database,)] = loader.query("SELECT current_database()")

    def alter(clause: str) -> None:
        with loader.connect() as conn:
            conn.execute(sql.SQL(f"ALTER DATABASE {{}} {clause}").format(sql.Identifier(database)))

    alter("SET DateStyle = 'SQL, DMY'")
    alter("SET extra_float_digits = 0")
    try:
        # and floats, dates and timestamps loaded as such, year 0 (1 BC: a sentinel, which
        # tables loaded before the processor refused it may hold) among them
        values = (
            "n,d,t\n100.0,2025-01-02,2025-01-02 03:04:05.5\n3.141592653589793,2025-01-03,\n"
            "1e15,0001-01-01,0001-01-01 10:00:00\ninf,,\n"
        )
        _load_with_year_zero(loader, "incoming/f/1.csv", values, tmp_path)
        # When words make the columns text, and a later file brings the same values again
        loader.process_and_load("incoming/f/2.csv", "n,d,t\nword,soon,later\n")
        _load_with_year_zero(loader, "incoming/f/3.csv", values, tmp_path)
    finally:
        alter("RESET DateStyle")
        alter("RESET extra_float_digits")
    # Then the values PostgreSQL converted and those loaded later are written alike, and
    # year 0 stays year 0 (not "0001-01-01 BC", nor 1 AD: the era dropped)
    numbers = ["100", "3.141592653589793", "1e+15", "Infinity"]
    assert loader.values("f", "n") == [*numbers, "word", *numbers]
    dates = ["2025-01-02", "2025-01-03", "0000-01-01", None]
    assert loader.values("f", "d") == [*dates, "soon", *dates]
    times = ["2025-01-02 03:04:05.500000+00", None, "0000-01-01 10:00:00.000000+00", None]
    assert loader.values("f", "t") == [*times, "later", *times]


def test_infinite_dates_and_timestamps_do_not_stop_their_column_becoming_text(loader):
    # Given date and timestamp columns holding PostgreSQL's infinities (the processor read
    # "-infinity" as a date before 2026-12-07, and a hand-written row may hold one)
    loader.process_and_load("incoming/inf/1.csv", "d,t\n2025-01-02,2025-01-02 10:00:00\n")
    with loader.connect() as conn:
        conn.execute(sql.SQL("UPDATE {} SET d = '-infinity', t = 'infinity'").format(loader.table("inf")))
    # When words make both columns text
    loader.process_and_load("incoming/inf/2.csv", "d,t\nsoon,later\n")
    # Then the file loads (the widening's year arithmetic failed on an infinity, so its load
    # failed on every retry) and the infinities read as PostgreSQL writes them
    assert loader.values("inf", "d") == ["-infinity", "soon"]
    assert loader.values("inf", "t") == ["infinity", "later"]


def test_a_column_without_values_takes_its_type_from_the_first_file_that_has_some(loader):
    # Given a header-only first file, and one whose column b is always empty
    loader.process_and_load("incoming/e/1.csv", "a,b\n")
    loader.process_and_load("incoming/e/2.csv", "a,b\n1,\n2,\n")
    assert "b" not in loader.columns("e")
    # When b has values
    loader.process_and_load("incoming/e/3.csv", "a,b\n3,2025-01-05\n")
    # Then b is a date column, NULL for the earlier rows, and a later empty b loads as NULL
    loader.process_and_load("incoming/e/4.csv", "a,b\n4,\n")
    assert loader.columns("e")["a"] == "bigint" and loader.columns("e")["b"] == "date"
    assert [str(v) if v else v for v in loader.values("e", "b")] == [None, None, "2025-01-05", None]
    # and the lineage table keeps each file's own schema
    schemas = dict(loader.query(sql.SQL("SELECT object_key, schema FROM {}").format(loader.table("_files"))))
    assert schemas["incoming/e/2.csv"] == {"a": "int", "b": "string"}


def test_a_nul_character_among_rescued_values_does_not_stop_the_load(loader):
    # jsonb cannot hold \u0000: before, this file failed every retry and went to the DLQ
    records = [f'{{"n": {i}}}' for i in range(29)] + ['{"n": "x\\u0000y"}']
    loader.process_and_load("incoming/r/1.ndjson", "\n".join(records) + "\n")
    assert loader.count("r", "incoming/r/1.ndjson") == 30
    assert loader.values("r", "_rescued_data")[-1] == {"n": "xy"}


def test_a_nul_character_in_text_is_removed_and_counted(loader, caplog):
    # Given text with NUL characters (JSON's \u0000), which PostgreSQL text cannot hold
    records = ['{"s": "a\\u0000b", "t": "x"}', '{"s": "\\u0000\\u0000", "t": "y"}', '{"s": "c", "t": "z"}']
    event = loader.process_and_load("incoming/nul/1.ndjson", "\n".join(records) + "\n")
    # Then the file loads, every other character kept (an all-NUL value is an empty
    # string, not NULL)
    assert loader.values("nul", "s") == ["ab", "", "c"]
    assert loader.values("nul", "t") == ["x", "y", "z"]
    # and what was removed is counted, by column, on the file's lineage row and in the log
    assert loader.query(sql.SQL("SELECT nuls_removed FROM {}").format(loader.table("_files"))) == [
        ({"s": 2},)
    ]
    assert any(getattr(r, "nuls_removed", None) == {"s": 2} for r in caplog.records)
    # and a reload counts them again, not twice
    assert loader.load(event) == {"batchItemFailures": []}
    assert loader.query(sql.SQL("SELECT nuls_removed FROM {}").format(loader.table("_files"))) == [
        ({"s": 2},)
    ]


def test_a_dataset_named_like_another_datasets_index_loads(loader):
    loader.process_and_load("incoming/sales/1.csv", "a\n1\n")
    loader.process_and_load("incoming/sales_object_key_idx/1.csv", "a\n2\n")
    assert loader.count("sales_object_key_idx", "incoming/sales_object_key_idx/1.csv") == 1


def test_indexes_named_by_an_older_version_are_renamed_out_of_the_datasets_way(loader):
    # Given a table whose index has the name older versions gave it, migration 2 not applied
    loader.process_and_load("incoming/sales/1.csv", "a\n1\n")
    schema = sql.Identifier(loader.schema)
    with loader.connect() as conn:
        conn.execute(
            sql.SQL("ALTER INDEX {}._sales_object_key_idx RENAME TO sales_object_key_idx").format(schema)
        )
        conn.execute(sql.SQL("DELETE FROM {}._migrations WHERE version = 2").format(schema))
    loader.handler.warehouse.close()  # the next load connects afresh and migrates
    # When a dataset with that name arrives
    loader.process_and_load("incoming/sales_object_key_idx/1.csv", "a\n2\n")
    # Then the old index was renamed first, and both tables load
    assert loader.count("sales_object_key_idx", "incoming/sales_object_key_idx/1.csv") == 1
    [(name,)] = loader.query(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'sales'", [loader.schema]
    )
    assert name == "_sales_object_key_idx"


def test_integers_a_double_cannot_hold_keep_their_digits_when_fractions_arrive(loader):
    # Given JSON integers beyond 2**53, which keep every digit (a double would round
    # 9007199254740993 to ...992 and 1234567890123456789 to ...768)
    loader.process_and_load(
        "incoming/bi/1.ndjson", '{"n": 9007199254740993}\n{"n": -1234567890123456789}\n{"n": 7}\n'
    )
    assert loader.columns("bi")["n"] == "bigint"
    # When a file brings fractions in that column
    loader.process_and_load("incoming/bi/2.ndjson", '{"n": 1.5}\n')
    # Then the column became text, not double precision: no digit was lost
    assert loader.columns("bi")["n"] == "text"
    assert loader.values("bi", "n") == ["9007199254740993", "-1234567890123456789", "7", "1.5"]


def test_integers_a_double_cannot_hold_widen_a_float_column_to_text(loader):
    # Given a double precision column
    loader.process_and_load("incoming/bf/1.ndjson", '{"n": 1.5}\n')
    # When a file brings integers beyond 2**53 into it
    loader.process_and_load("incoming/bf/2.ndjson", '{"n": 1234567890123456789}\n{"n": 2}\n')
    # Then they are not rounded into it: the column became text
    assert loader.columns("bf")["n"] == "text"
    assert loader.values("bf", "n") == ["1.5", "1234567890123456789", "2"]
    # and integers a double holds still widen an integer column to double precision
    loader.process_and_load("incoming/bs/1.ndjson", '{"n": 9007199254740992}\n')
    loader.process_and_load("incoming/bs/2.ndjson", '{"n": 0.5}\n')
    assert loader.columns("bs")["n"] == "double precision"
    assert loader.values("bs", "n") == [9007199254740992.0, 0.5]


def test_a_value_a_hand_altered_column_refuses_is_named_by_column_and_value(loader):
    # Given a column someone altered by hand to numeric (the loader leaves it alone)
    loader.process_and_load("incoming/ha/1.csv", "id,amount\n1,10\n")
    with loader.connect() as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN amount TYPE numeric(10,2)").format(loader.table("ha"))
        )
    # When a file has a word in it, after a blank line and a malformed row (it is on the
    # file's line 6, its 3rd row; COPY numbers its rows in an order of its own)
    event = loader.process("incoming/ha/2.csv", "id,amount\n2,12.5\n\n3,4,extra\n5,7\n6,lots\n")
    record = loader.record(event)
    response = loader.invoke(record)
    # Then the load is rejected (not retried), naming the file, the column and the value,
    # and no line of the COPY stream that the file's line could be taken for
    assert response == {"batchItemFailures": []}
    item = loader.pipeline.item({"key": "incoming/ha/2.csv", "version": event["detail"]["version"]})
    assert item["load_error"].startswith(
        'LoadRejected: PostgreSQL refused a value of incoming/ha/2.csv, column amount (value "lots"): '
        'invalid input syntax for type numeric: "lots"; nothing was loaded'
    ), item["load_error"]
    assert "line" not in item["load_error"]
    assert loader.count("ha", "incoming/ha/2.csv") == 0
