"""Warehouse tables and drift rules (pure logic)."""

from __future__ import annotations

import hashlib

import pytest

from handlers.logic.warehouse.schema import (
    ColumnLoad,
    Widening,
    logical_of_duckdb_type,
    pg_name,
    plan_load,
    widen,
)

EXISTING = {
    "qty": "bigint",
    "price": "double precision",
    "day": "date",
    "name": "text",
    "_rescued_data": "jsonb",
    "object_key": "text",
    "object_version": "text",
    "line_number": "bigint",
    "loaded_at": "timestamp with time zone",
}


@pytest.mark.parametrize(
    ("a", "b", "joined"),
    [
        ("int", "int", "int"),
        ("int", "float", "float"),
        ("float", "int", "float"),
        ("int", "string", "string"),
        ("date", "timestamp", "timestamp"),
        ("timestamp", "date", "timestamp"),
        ("bool", "int", "string"),
        ("int", "date", "string"),
        ("float", "timestamp", "string"),
        ("bool", "bool", "bool"),
    ],
)
def test_widen_is_the_narrowest_type_holding_both(a, b, joined):
    assert widen(a, b) == joined
    assert widen(b, a) == joined


def test_a_new_table_takes_the_files_columns():
    # Given no table yet
    plan = plan_load("sales", [("qty", "int"), ("name", "string"), ("_rescued_data", "string")], None)
    # Then it is created with every column (rescued data as JSON), nothing to alter
    assert plan.create and not plan.add and not plan.widen
    assert [(c.column, c.target) for c in plan.columns] == [
        ("qty", "int"),
        ("name", "string"),
        ("_rescued_data", "json"),
    ]
    assert plan.schema() == {"qty": "int", "name": "string"}


def test_drift_adds_widens_and_keeps_wider_columns():
    # Given a file with a new column, a wider type, a narrower type and a dropped column
    incoming = [("qty", "float"), ("price", "int"), ("day", "timestamp"), ("colour", "string")]
    plan = plan_load("sales", incoming, EXISTING)
    # Then the new column is added, the wider type widens, the narrower loads as it is
    assert not plan.create
    assert plan.add == [ColumnLoad("colour", "colour", "string", "string")]
    assert plan.widen == [Widening("qty", "int", "float"), Widening("day", "date", "timestamp")]
    targets = {c.column: c.target for c in plan.columns}
    assert targets == {"qty": "float", "price": "float", "day": "timestamp", "colour": "string"}
    assert plan.changes_table


def test_an_unchanged_file_changes_nothing():
    plan = plan_load("sales", [("qty", "int"), ("name", "string")], EXISTING)
    assert not plan.changes_table


def test_columns_match_case_insensitively_and_lineage_names_are_kept_apart():
    plan = plan_load("sales", [("QTY", "int"), ("Object_Key", "string"), ("line_number", "int")], EXISTING)
    assert [c.column for c in plan.columns] == ["qty", "Object_Key_source", "line_number_source"]
    assert plan.renamed() == {
        "QTY": "qty",
        "Object_Key": "Object_Key_source",
        "line_number": "line_number_source",
    }


def test_columns_named_like_postgres_system_columns_are_kept_apart():
    # PostgreSQL refuses a column named like a system column (xmin, ctid...): a bounding
    # box's xmin and xmax take the suffix lineage names take, in any case; ymin does not
    incoming = [("xmin", "float"), ("ymin", "float"), ("XMAX", "float"), ("ctid", "string")]
    plan = plan_load("boxes", incoming, None)
    assert [c.column for c in plan.columns] == ["xmin_source", "ymin", "XMAX_source", "ctid_source"]
    # and a later file's XMIN finds the column the first file's xmin made
    existing = {c.column: "double precision" for c in plan.columns}
    assert plan_load("boxes", [("XMIN", "float")], existing).renamed() == {"XMIN": "xmin_source"}


def test_columns_of_other_types_are_left_alone():
    # Given a column someone altered by hand to numeric
    plan = plan_load("sales", [("price", "float")], {**EXISTING, "price": "numeric(10,2)"})
    # Then it is not altered, and receives the values as text
    assert not plan.widen
    assert plan.columns[0].target == "foreign"


def test_long_names_fit_postgres_and_stay_distinct():
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    assert pg_name("short") == "short"
    assert len(pg_name(a).encode()) <= 63 and pg_name(a) != pg_name(b)
    # multi-byte characters are never cut in half
    long_unicode = "é" * 40
    assert len(pg_name(long_unicode).encode()) <= 63
    pg_name(long_unicode).encode().decode()
    assert pg_name(long_unicode) == pg_name(long_unicode)


@pytest.mark.parametrize(
    ("duckdb_type", "logical"),
    [
        ("BIGINT", "int"),
        ("INTEGER", "int"),
        ("UBIGINT", "float"),
        ("DOUBLE", "float"),
        ("DECIMAL(18,3)", "float"),
        ("BOOLEAN", "bool"),
        ("DATE", "date"),
        ("TIMESTAMP", "timestamp"),
        ("TIMESTAMP WITH TIME ZONE", "timestamp"),
        ("VARCHAR", "string"),
        ("BLOB", "string"),
    ],
)
def test_parquet_types_map_to_logical_types(duckdb_type, logical):
    assert logical_of_duckdb_type(duckdb_type) == logical


def test_long_names_that_differ_only_in_case_are_one_column():
    long = "Customer_" + "X" * 60
    existing = {pg_name(long): "bigint"}
    plan = plan_load("sales", [(long.lower(), "int")], existing)
    assert [c.column for c in plan.columns] == [pg_name(long)] and not plan.add


@pytest.mark.parametrize("order", [1, -1])
def test_a_renamed_column_never_takes_a_file_columns_own_name(order):
    # line_number is a lineage column: the file's one is stored as line_number_source,
    # unless the file has a line_number_source of its own, in either column order
    incoming = [("line_number", "int"), ("line_number_source", "string")][::order]
    plan = plan_load("lo", incoming, None)
    assert {c.source: c.column for c in plan.columns} == {
        "line_number_source": "line_number_source",
        "line_number": "line_number_source_2",
    }


def test_a_column_without_values_neither_creates_nor_widens():
    plan = plan_load("sales", [("qty", None), ("note", None)], {**EXISTING})
    assert not plan.changes_table
    # qty (bigint in the table) loads NULLs as it is; note waits for a file with values
    assert [(c.column, c.target) for c in plan.columns] == [("qty", "int")]
    assert plan.empty == ["note"]
    assert plan.schema() == {"qty": "string", "note": "string"}


def test_a_long_column_named_by_an_older_version_is_still_found():
    # before, the hash suffix was of the name as written; such a column must not be doubled
    long = "Customer_Lifetime_Value_" + "X" * 50
    legacy = long[:54] + "_" + hashlib.sha256(long.encode()).hexdigest()[:8]
    plan = plan_load("sales", [(long, "int")], {legacy: "bigint"})
    assert [c.column for c in plan.columns] == [legacy] and not plan.add


def test_integers_a_double_would_round_never_go_into_a_float_column():
    # A file's integers beyond 2**53 meeting a double precision column: text, not rounded
    plan = plan_load("sales", [("price", "int")], EXISTING, inexact_ints={"price"})
    assert plan.widen == [Widening("price", "float", "string")]
    # a table's integer column holding such values meeting fractions: text too
    plan = plan_load("sales", [("QTY", "float")], EXISTING, table_inexact_ints={"qty"})
    assert plan.widen == [Widening("qty", "int", "string")]
    # integers a double holds widen as before; an integer column stays one for such integers
    assert plan_load("sales", [("qty", "float")], EXISTING).widen == [Widening("qty", "int", "float")]
    assert not plan_load("sales", [("qty", "int")], EXISTING, inexact_ints={"qty"}).changes_table
