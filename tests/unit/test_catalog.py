"""The query catalog's pure logic: file schema -> Glue columns, drift merge, the table input,
and the create/update loop against a fake store."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.dal.catalog import CatalogRejected, TableChanged
from handlers.logic.catalog import (
    BEYOND_FLOAT,
    PARQUET_SERDE,
    RANGE_KEY,
    Column,
    file_columns,
    merge_columns,
    next_table_input,
    sync_table,
    table_columns,
)
from handlers.logic.processing.summary import columns_beyond_float

SALES = {"date": "date", "product": "string", "quantity": "int", "price": "float"}


def test_file_columns_use_athena_types_and_end_with_rescued_data():
    # Given a summary schema with every logical type and a mixed-case name
    schema = {
        "Id": "int",
        "amount": "float",
        "ok": "bool",
        "day": "date",
        "at": "timestamp",
        "note": "string",
    }
    # Then the Glue columns are lower case, typed for Athena, with _rescued_data last
    assert file_columns(schema) == [
        Column("id", "bigint"),
        Column("amount", "double"),
        Column("ok", "boolean"),
        Column("day", "date"),
        Column("at", "timestamp"),
        Column("note", "string"),
        Column("_rescued_data", "string"),
    ]


@pytest.mark.parametrize(
    ("table_type", "file_type", "expected"),
    [
        ("bigint", "double", "double"),  # int -> float
        ("double", "bigint", "double"),  # a narrower file changes nothing
        ("bigint", "string", "string"),
        ("double", "string", "string"),
        ("date", "timestamp", "timestamp"),
        ("timestamp", "date", "timestamp"),
        ("timestamp", "string", "string"),
        ("boolean", "bigint", "string"),  # unrelated types meet at string
        ("date", "double", "string"),
        ("string", "bigint", "string"),
    ],
)
def test_types_widen_along_the_lattice(table_type, file_type, expected):
    # Given a table column and a file column of another type
    merged = merge_columns(
        [Column("v", table_type), Column("_rescued_data", "string")], [Column("v", file_type)]
    )
    # Then the column gets the narrowest type holding both
    assert merged == [Column("v", expected), Column("_rescued_data", "string")]


def test_new_columns_are_appended_before_rescued_data_and_names_match_case_insensitively():
    # Given the sales table and a February file with an extra column and other spellings
    table = file_columns(SALES)
    february = file_columns({"Date": "date", "PRODUCT": "string", "quantity": "float", "region": "string"})
    # When merged
    merged = merge_columns(table, february)
    # Then existing columns keep their place, quantity widens, region is appended, and
    # _rescued_data stays last; price (absent from the file) stays
    assert [(c.name, c.type) for c in merged] == [
        ("date", "date"),
        ("product", "string"),
        ("quantity", "double"),
        ("price", "double"),
        ("region", "string"),
        ("_rescued_data", "string"),
    ]


def test_columns_of_unknown_types_are_left_alone():
    # Given a column someone changed by hand to a type this module does not manage
    table = [Column("amount", "decimal(10,2)"), Column("_rescued_data", "string")]
    # Then a file with another type for it changes nothing
    assert merge_columns(table, [Column("amount", "string")]) == table


def test_new_table_is_partition_projected_parquet_at_the_dataset_location():
    # Given the first file of a dataset
    table = next_table_input(None, "sales", SALES, "2025-02-14", "processed-bucket")
    assert table is not None
    # Then the table is external Parquet at the dataset's prefix...
    descriptor = table["StorageDescriptor"]
    assert table["Name"] == "sales" and table["TableType"] == "EXTERNAL_TABLE"
    assert descriptor["Location"] == "s3://processed-bucket/parquet/dataset=sales/"
    assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert descriptor["InputFormat"].endswith("MapredParquetInputFormat")
    assert [c["Name"] for c in descriptor["Columns"]][-1] == "_rescued_data"
    # ...partitioned by ingest_date (a string), projected from the file's date to NOW
    assert table["PartitionKeys"] == [{"Name": "ingest_date", "Type": "string"}]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.ingest_date.type"] == "date"
    assert parameters["projection.ingest_date.format"] == "yyyy-MM-dd"
    assert parameters[RANGE_KEY] == "2025-02-14,NOW"
    assert (
        parameters["storage.location.template"]
        == "s3://processed-bucket/parquet/dataset=sales/ingest_date=${ingest_date}/"
    )


def _as_stored(table_input: dict[str, Any]) -> dict[str, Any]:
    """What GetTable returns for a table created with ``table_input`` (plus Glue's fields)."""
    return {**table_input, "DatabaseName": "db", "CreateTime": "2025-01-01", "VersionId": "1"}


def test_a_file_the_table_already_covers_changes_nothing():
    # Given a table created by January's file
    table = _as_stored(next_table_input(None, "sales", SALES, "2025-02-14", "b") or {})
    # Then another file with the same (or a narrower) schema on a later day needs no write
    assert next_table_input(table, "sales", SALES, "2025-02-15", "b") is None
    assert next_table_input(table, "sales", {"quantity": "int"}, "2025-02-15", "b") is None


def test_drift_and_an_earlier_day_update_the_table_keeping_what_glue_cannot_take_back():
    # Given a stored table (with the read-only fields GetTable adds)
    table = _as_stored(next_table_input(None, "sales", SALES, "2025-02-14", "b") or {})
    # When a file with a new column from an earlier day arrives (a redriven old upload)
    update = next_table_input(table, "sales", {**SALES, "region": "string"}, "2025-02-10", "b")
    # Then the update has the new column and a range starting on that day, and only
    # TableInput keys
    assert update is not None
    assert "region" in [c.name for c in table_columns(update)]
    assert update["Parameters"][RANGE_KEY] == "2025-02-10,NOW"
    assert not {"DatabaseName", "CreateTime", "VersionId"} & set(update)
    assert update["StorageDescriptor"]["Location"] == "s3://b/parquet/dataset=sales/"


class FakeStore:
    def __init__(self, conflicts: int = 0, reject: str | None = None):
        self.tables: dict[str, dict[str, Any]] = {}
        self.conflicts = conflicts
        self.reject = reject
        self.writes: list[tuple[str, str | None]] = []
        self.partitions: dict[tuple[str, str], dict[str, Any]] = {}
        self.partition_updates: list[tuple[str, str]] = []

    def get_table(self, database: str, name: str) -> dict[str, Any] | None:
        return self.tables.get(name)

    def _write(self, kind: str, table_input: dict[str, Any], version: str | None) -> None:
        if self.reject:
            raise CatalogRejected(self.reject)
        self.writes.append((kind, version))
        if self.conflicts:
            self.conflicts -= 1
            # another processor wrote the table in between, from a file without region
            other = next_table_input(None, table_input["Name"], SALES, "2025-02-14", "b") or {}
            self.tables[table_input["Name"]] = {**other, "VersionId": f"other-{self.conflicts}"}
            raise TableChanged(kind)
        previous = int(str(self.tables.get(table_input["Name"], {}).get("VersionId", "0")).split("-")[-1])
        self.tables[table_input["Name"]] = {**table_input, "VersionId": str(previous + 1)}

    def create_table(self, database: str, table_input: dict[str, Any]) -> None:
        self._write("create", table_input, None)

    def update_table(self, database: str, table_input: dict[str, Any], version_id: str | None) -> None:
        self._write("update", table_input, version_id)

    def create_partition(self, database: str, table: str, partition_input: dict[str, Any]) -> None:
        if self.reject:
            raise CatalogRejected(self.reject)
        self.partitions.setdefault((table, partition_input["Values"][0]), partition_input)

    def get_partition(self, database: str, table: str, values: list[str]) -> dict[str, Any] | None:
        return self.partitions.get((table, values[0]))

    def update_partition(
        self, database: str, table: str, values: list[str], partition_input: dict[str, Any]
    ) -> None:
        self.partition_updates.append((table, values[0]))
        self.partitions[table, values[0]] = partition_input


def test_each_ingest_date_is_registered_as_a_partition_at_its_folder():
    # Athena projects the partitions, but Spark through the Glue Data Catalog, Redshift
    # Spectrum and Hive-metastore engines read only registered ones: without them, the table
    # read as empty there
    store = FakeStore()
    # When two files of one day and one of the next complete
    sync_table(store, "db", "sales", SALES, "2025-02-14", "bkt")
    sync_table(store, "db", "sales", SALES, "2025-02-14", "bkt")
    sync_table(store, "db", "sales", {**SALES, "region": "string"}, "2025-02-15", "bkt")
    # Then each day is a partition, located where the layout puts the day's files, stored as
    # the table is (Parquet), with the table's columns of that day
    assert sorted(store.partitions) == [("sales", "2025-02-14"), ("sales", "2025-02-15")]
    first, second = store.partitions["sales", "2025-02-14"], store.partitions["sales", "2025-02-15"]
    assert first["Values"] == ["2025-02-14"]
    descriptor = first["StorageDescriptor"]
    assert descriptor["Location"] == "s3://bkt/parquet/dataset=sales/ingest_date=2025-02-14/"
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert "region" not in [c["Name"] for c in descriptor["Columns"]]
    assert "region" in [c["Name"] for c in second["StorageDescriptor"]["Columns"]]
    assert second["StorageDescriptor"]["Location"].endswith("/ingest_date=2025-02-15/")


def test_a_later_file_of_the_day_brings_the_partition_up_to_the_table_once():
    # Given a day's partition registered by its first file, to which a concurrent file of
    # the day has given a column the table read here does not have yet
    store = FakeStore()
    sync_table(store, "db", "sales_day", SALES, "2025-02-14", "bkt")
    registered = store.partitions["sales_day", "2025-02-14"]["StorageDescriptor"]
    registered["Columns"].insert(-1, {"Name": "store_id", "Type": "bigint"})
    # When a later file of the day adds a column
    sync_table(store, "db", "sales_day", {**SALES, "region": "string"}, "2025-02-14", "bkt")
    # Then the partition has it, keeps the concurrent one, and _rescued_data stays last
    names = [c["Name"] for c in store.partitions["sales_day", "2025-02-14"]["StorageDescriptor"]["Columns"]]
    assert names[-3:] == ["store_id", "region", "_rescued_data"]
    assert store.partition_updates == [("sales_day", "2025-02-14")]
    # and files bringing nothing new write nothing more
    sync_table(store, "db", "sales_day", {**SALES, "region": "string"}, "2025-02-14", "bkt")
    sync_table(store, "db", "sales_day", SALES, "2025-02-14", "bkt")
    assert store.partition_updates == [("sales_day", "2025-02-14")]


class DatedStore(FakeStore):
    """A FakeStore whose tables carry Glue's CreateTime, counting CreatePartition calls."""

    def __init__(self) -> None:
        super().__init__()
        self.partition_calls = 0
        self.created = 0

    def get_table(self, database: str, name: str) -> dict[str, Any] | None:
        table = self.tables.get(name)
        return None if table is None else {**table, "CreateTime": f"2025-02-14T00:00:0{self.created}"}

    def create_table(self, database: str, table_input: dict[str, Any]) -> None:
        self.created += 1
        super().create_table(database, table_input)

    def create_partition(self, database: str, table: str, partition_input: dict[str, Any]) -> None:
        self.partition_calls += 1
        super().create_partition(database, table, partition_input)


def test_a_day_s_partition_is_registered_once_per_process_until_the_table_is_new():
    # Given a burst of one day's files (Glue throttles CreatePartition, and all but the first
    # call would be refused as existing)
    store = DatedStore()
    for _ in range(5):
        sync_table(store, "db", "sales_calls", SALES, "2025-02-14", "bkt")
    # Then the table's creation and its first read registered the day, the rest did not call
    assert store.partition_calls == 2
    # When the table is dropped and created anew (its partitions with it), the day is again
    store.tables.clear()
    for _ in range(3):
        sync_table(store, "db", "sales_calls", SALES, "2025-02-14", "bkt")
    assert store.partition_calls == 4
    assert list(store.partitions) == [("sales_calls", "2025-02-14")]


def test_sync_creates_then_updates_only_on_drift():
    # Given an empty catalog
    store = FakeStore()
    # When three files arrive: January, January again, February with a new column
    assert sync_table(store, "db", "sales", SALES, "2025-02-14", "b") is None
    assert sync_table(store, "db", "sales", SALES, "2025-02-14", "b") is None
    assert sync_table(store, "db", "sales", {**SALES, "region": "string"}, "2025-02-15", "b") is None
    # Then the table was created once and updated once, at the version it was read at
    assert store.writes == [("create", None), ("update", "1")]
    assert [c.name for c in table_columns(store.tables["sales"])][-2:] == ["region", "_rescued_data"]


def test_sync_retries_a_concurrent_change_and_merges_again():
    # Given a store where another processor wins the first write
    store = FakeStore(conflicts=1)
    # When a file syncs
    assert sync_table(store, "db", "sales", {**SALES, "region": "string"}, "2025-02-14", "b") is None
    # Then it re-read the table the other one created and updated it at that version
    assert store.writes == [("create", None), ("update", "other-0")]
    assert "region" in [c.name for c in table_columns(store.tables["sales"])]


def test_sync_gives_up_on_endless_conflicts_as_a_transient_error():
    # Given a table that changes under every attempt
    store = FakeStore(conflicts=99)
    # Then the conflict propagates (the message is retried later)
    with pytest.raises(TableChanged, match="5 times"):
        sync_table(store, "db", "sales", {**SALES, "region": "string"}, "2025-02-14", "b")
    assert len(store.writes) == 5


def test_sync_returns_a_refusal_instead_of_raising():
    # Given Glue refusing the write (e.g. access denied)
    store = FakeStore(reject="glue CreateTable in db: AccessDeniedException: no")
    # Then the reason comes back to be recorded
    assert sync_table(store, "db", "sales", SALES, "2025-02-14", "b") == (
        "glue CreateTable in db: AccessDeniedException: no"
    )


def test_a_column_name_glue_cannot_hold_is_left_out_and_said_so():
    # Glue's Column.Name is 1-255 bytes on one line: CreateTable would refuse the
    # whole table, and the dataset would never be queryable on Athena
    store = FakeStore()
    schema = {**SALES, "x" * 256: "string", "multi\nline": "int", "tab\there": "int"}
    note = sync_table(store, "db", "sales", schema, "2025-02-14", "b")
    names = [c.name for c in table_columns(store.tables["sales"])]
    assert names == [*(n.lower() for n in SALES), "tab\there", "_rescued_data"]
    assert note is not None and note.startswith("2 column(s) left out of the Glue table")
    assert "'multi\\nline'" in note and "'" + "x" * 40 + "...'" in note
    # a file the table already covers says so again (its columns are still left out)
    assert sync_table(store, "db", "sales", schema, "2025-02-14", "b") == note


def test_a_column_name_over_255_bytes_is_left_out_however_few_its_characters():
    # Glue and Athena count a name's UTF-8 bytes: 100 CJK characters are 300 bytes, which
    # passed a count of characters, and CreateTable would have refused the whole table
    store = FakeStore()
    cjk, fits = "売" * 100, "売" * 85  # 300 and 255 bytes
    # "İ" is two bytes and its lower case, which Glue holds, three: 255 upper, 382 lower
    dotted = "İ" * 127 + "x"
    note = sync_table(
        store, "db", "sales", {**SALES, cjk: "int", fits: "int", dotted: "int"}, "2025-02-14", "b"
    )
    names = [c.name for c in table_columns(store.tables["sales"])]
    assert names == [*(n.lower() for n in SALES), fits, "_rescued_data"]
    assert note is not None and note.startswith(
        "2 column(s) left out of the Glue table (a name over 255 bytes"
    )


BIG = 9007199254740993  # 2**53 + 1: a double reads it as 9007199254740992


def test_columns_beyond_float_come_from_the_int_statistics_of_the_summary():
    # Given a summary whose int columns reach 2**53 exactly, beyond it either side, and a
    # float column (whose doubles are what they are)
    summary = {
        "schema": {"ok": "int", "big": "int", "low": "int", "f": "float", "empty": "int"},
        "statistics": {
            "ok": {"min": -(2**53), "max": 2**53},
            "big": {"min": 1, "max": BIG},
            "low": {"min": -BIG, "max": 0},
            "f": {"min": 1.5, "max": 1e300},
            "empty": {"null_count": 3},
        },
    }
    # Then only the ints a double would round are named, with no scan of the data
    assert columns_beyond_float(summary) == {"big", "low"}


@pytest.mark.parametrize(
    "files",
    [
        # (schema, columns beyond float) per file, in arrival order
        [({"id": "int"}, {"id"}), ({"id": "float"}, set())],
        [({"id": "float"}, set()), ({"id": "int"}, {"id"})],
        [({"id": "int"}, set()), ({"id": "float"}, set()), ({"id": "int"}, {"id"})],
        [({"id": "int"}, {"id"}), ({"id": "int"}, set()), ({"id": "float"}, set())],
        [({"ID": "int"}, {"ID"}), ({"id": "float"}, set())],  # one column in two spellings
    ],
)
def test_ints_beyond_float_make_the_column_string_where_fractions_meet_them(files):
    # Given files of one dataset where integers beyond 2**53 and fractions meet in a column,
    # in any order (the warehouse makes that column text whatever the order)
    store = FakeStore()
    for schema, beyond in files:
        assert sync_table(store, "db", "t", schema, "2025-02-14", "b", beyond_float=beyond) is None
    # Then the Glue column is string: a double would read 9007199254740993 as ...992
    assert table_columns(store.tables["t"])[0] == Column("id", "string")


def test_a_bigint_column_remembers_its_ints_beyond_float_in_its_comment():
    # Given a table whose id column is bigint without large values
    store = FakeStore()
    sync_table(store, "db", "t", {"id": "int"}, "2025-02-14", "b")
    # When a file with an integer beyond 2**53 arrives
    sync_table(store, "db", "t", {"id": "int"}, "2025-02-14", "b", beyond_float={"id"})
    # Then the column stays bigint (exact) and says so in Glue, so the next file with
    # fractions (processed by another invocation) knows to make it string
    stored = store.tables["t"]["StorageDescriptor"]["Columns"][0]
    assert stored == {"Name": "id", "Type": "bigint", "Comment": BEYOND_FLOAT}
    assert store.writes == [("create", None), ("update", "1")]
    # and a file without large values neither clears nor rewrites it
    assert next_table_input(store.tables["t"], "t", {"id": "int"}, "2025-02-14", "b") is None
    # while integers and fractions that a double holds exactly still widen to double
    store = FakeStore()
    sync_table(store, "db", "t", {"id": "int"}, "2025-02-14", "b")
    sync_table(store, "db", "t", {"id": "float"}, "2025-02-14", "b")
    assert table_columns(store.tables["t"])[0] == Column("id", "double")
