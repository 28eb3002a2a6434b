"""Warehouse tables and schema drift (pure logic; docs/warehouse-and-reports.md).

One table per dataset holds the file's columns plus lineage columns. Files of one dataset
may disagree about columns; loading reconciles the table with each file:

- a column the table lacks is added (``ALTER TABLE ... ADD COLUMN``, NULL for older rows);
- a column the file lacks is NULL for the file's rows;
- a column whose type differs gets the narrowest type that holds both (``widen``):
  ``int -> float -> string``, ``date -> timestamp -> string``, ``bool -> string``, any other
  pair -> ``string``. A wider file type alters the column (``ALTER COLUMN ... TYPE ... USING``);
  a narrower file type loads into the wider column as it is. Integers beyond +-2**53, which
  a double cannot hold exactly (JSON integers keep every digit), never go into a ``float``
  column: where they meet fractions the column becomes ``string`` instead.

Columns are matched by exact name, then case-insensitively (``Price`` in one file and
``price`` in the next are one column). Names longer than PostgreSQL's 63 bytes are cut and
given a hash suffix; a file column named like a lineage column, or like one of
PostgreSQL's system columns (``xmin``, ``ctid``...), gets a ``_source`` suffix.
A column without any value in a file (``None`` type: all its cells empty) has no type to
give: it loads NULLs into a column the table has, and is not created until a file brings
values, so an empty first file does not make the column text for good.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

LogicalType = Literal["int", "float", "bool", "date", "timestamp", "string"]
# Target kinds: the logical types, the rescued-data JSON, and columns of a type this loader
# never creates (altered by hand): those are left alone and receive values as text.
Kind = Literal["int", "float", "bool", "date", "timestamp", "string", "json", "foreign"]

RESCUED = "_rescued_data"
OBJECT_KEY, OBJECT_VERSION, LINE_NUMBER, LOADED_AT = (
    "object_key",
    "object_version",
    "line_number",
    "loaded_at",
)
LINEAGE_COLUMNS = (OBJECT_KEY, OBJECT_VERSION, LINE_NUMBER, LOADED_AT)
# Every PostgreSQL table has these hidden system columns: a column of the same name is
# refused ("column name "xmin" conflicts with a system column name"), so a file with one
# (a bounding box's xmin, ymin, xmax, ymax) would fail its load on every retry.
SYSTEM_COLUMNS = ("tableoid", "xmin", "cmin", "xmax", "cmax", "ctid")
MAX_IDENTIFIER_BYTES = 63
# A double holds every integer of at most this magnitude exactly, and not all beyond it
# (9007199254740993 reads 9007199254740992).
FLOAT_EXACT_INTEGER = 2**53

PG_TYPES: dict[Kind, str] = {
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp with time zone",
    "string": "text",
    "json": "jsonb",
}
_FROM_PG: dict[str, Kind] = {pg: kind for kind, pg in PG_TYPES.items()}
_WIDER: dict[str, tuple[LogicalType, ...]] = {
    "int": ("float", "string"),
    "float": ("string",),
    "bool": ("string",),
    "date": ("timestamp", "string"),
    "timestamp": ("string",),
    "string": (),
}


def widen(a: LogicalType, b: LogicalType) -> LogicalType:
    """The narrowest type holding values of both ``a`` and ``b``."""
    if a == b or b in _WIDER[a]:
        return b
    if a in _WIDER[b]:
        return a
    for candidate in _WIDER[a]:
        if candidate in _WIDER[b]:
            return candidate
    return "string"


def kind_of_pg_type(pg_type: str) -> Kind:
    """The kind of an existing column from ``format_type()`` (e.g. ``double precision``)."""
    return _FROM_PG.get(pg_type, "foreign")


def logical_of_duckdb_type(duckdb_type: str) -> LogicalType:
    """The logical type of a Parquet column as DuckDB describes it."""
    t = duckdb_type.upper()
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT"):
        return "int" if t != "UBIGINT" else "float"  # an unsigned 64-bit value may exceed bigint
    if t in ("DOUBLE", "FLOAT", "REAL", "HUGEINT") or t.startswith("DECIMAL"):
        return "float"
    if t == "BOOLEAN":
        return "bool"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return "string"


def pg_name(name: str) -> str:
    """``name`` as a PostgreSQL identifier: at most 63 bytes (longer names are cut at a
    character boundary and suffixed with a hash of the full name in lower case, so two long
    names that share a prefix stay distinct, and two that differ only in case still match
    case-insensitively). NUL characters, which PostgreSQL rejects, are dropped."""
    return _fit(name, case_sensitive_hash=False)


def _fit(name: str, case_sensitive_hash: bool) -> str:
    name = name.replace("\x00", "") or "column"
    raw = name.encode()
    if len(raw) <= MAX_IDENTIFIER_BYTES:
        return name
    hashed = raw if case_sensitive_hash else name.lower().encode()
    suffix = "_" + hashlib.sha256(hashed).hexdigest()[:8]
    cut = raw[: MAX_IDENTIFIER_BYTES - len(suffix)].decode(errors="ignore")
    return cut + suffix


def index_name(table: str, purpose: str) -> str:
    """Starts with ``_``, which no dataset name does: an index shares the namespace of
    tables, and dataset ``sales_object_key_idx`` must not collide with ``sales``'s index."""
    return pg_name(f"_{table}_{purpose}")


@dataclass(frozen=True)
class ColumnLoad:
    """How one Parquet column lands in the table."""

    source: str  # Parquet column name
    column: str  # warehouse column name
    incoming: LogicalType  # the file's type (``string`` for the rescued data)
    target: Kind  # the column's type once the table is reconciled


@dataclass(frozen=True)
class Widening:
    column: str
    from_kind: Kind
    to_kind: LogicalType


@dataclass
class LoadPlan:
    """What loading one file does to its table, and how its columns map."""

    table: str
    create: bool
    columns: list[ColumnLoad] = field(default_factory=list)
    add: list[ColumnLoad] = field(default_factory=list)
    widen: list[Widening] = field(default_factory=list)
    # source columns without any value that the table does not have: not loaded (NULL)
    empty: list[str] = field(default_factory=list)

    @property
    def changes_table(self) -> bool:
        return self.create or bool(self.add or self.widen)

    def schema(self) -> dict[str, str]:
        """The file's logical schema (source column -> type), as the lineage table keeps it."""
        schema = {c.source: c.incoming for c in self.columns if c.source != RESCUED}
        return {**schema, **dict.fromkeys(self.empty, "string")}

    def renamed(self) -> dict[str, str]:
        """Source columns stored under another name."""
        return {c.source: c.column for c in self.columns if c.source != c.column}


def plan_load(
    table: str,
    incoming: list[tuple[str, LogicalType | None]],
    existing: dict[str, str] | None,
    *,
    inexact_ints: Collection[str] = (),
    table_inexact_ints: Collection[str] = (),
) -> LoadPlan:
    """Reconcile a file's columns (``incoming``: Parquet name and logical type, in file order;
    None for a column without any value) with the table's columns (``existing``: name ->
    ``format_type``; None: no table yet). ``inexact_ints``: the file's integer columns with
    a value beyond ``FLOAT_EXACT_INTEGER``; ``table_inexact_ints``: the table's integer
    columns holding such a value. Neither goes into a ``float`` column, which would round
    them: where integers and fractions meet, such a column becomes ``string``."""
    plan = LoadPlan(table=table, create=existing is None)
    current: dict[str, Kind] = {name: kind_of_pg_type(t) for name, t in (existing or {}).items()}
    names = _column_names([source for source, _ in incoming], current)
    for source, logical in incoming:
        name = names[source]
        if source == RESCUED:
            column = ColumnLoad(source, name, "string", current.get(name, "json"))
            if name not in current:
                plan.add.append(column)
            plan.columns.append(column)
            continue
        if logical is None:  # no value to type the column by
            if name in current:
                plan.columns.append(ColumnLoad(source, name, "string", current[name]))
            else:
                plan.empty.append(source)
            continue
        if name not in current:
            column = ColumnLoad(source, name, logical, logical)
            plan.add.append(column)
        else:
            kind = current[name]
            target: Kind = kind
            if kind not in ("foreign", "json"):
                target = widen(kind, logical)  # type: ignore[arg-type]
                if target == "float" and (
                    (logical == "int" and source in inexact_ints)
                    or (kind == "int" and name in table_inexact_ints)
                ):
                    target = "string"  # a double would round these integers
                if target != kind:
                    plan.widen.append(Widening(name, kind, target))
            column = ColumnLoad(source, name, logical, target)
        plan.columns.append(column)
    if plan.create:
        plan.add = []  # created with every column at once
    return plan


def _column_names(sources: list[str], current: dict[str, Kind]) -> dict[str, str]:
    """The warehouse column of each source column. A name PostgreSQL or the loader keeps for
    itself (a lineage or system column, in any case) gets a ``_source`` suffix. Columns
    stored under their own name are placed first, so a renamed one (``line_number`` ->
    ``line_number_source``) never takes
    a file column's own name, whatever the order of the file's columns; a clash then gets
    the first free ``_2``, ``_3``... suffix."""
    by_lower: dict[str, str] = {}
    for name in current:
        by_lower.setdefault(name.lower(), name)
    reserved = {c.lower() for c in (*LINEAGE_COLUMNS, *SYSTEM_COLUMNS)}
    wanted = {s: RESCUED if s == RESCUED else _unreserved(pg_name(s), reserved) for s in sources}
    taken: set[str] = set()
    names: dict[str, str] = {}
    for source in sorted(sources, key=lambda s: wanted[s] != s):  # stable: file order within each
        base = wanted[source]
        # tables loaded before the hash suffix was taken of the lower-case name
        legacy = _unreserved(_fit(source, case_sensitive_hash=True), reserved)
        if base in current:
            name = base
        elif base.lower() in by_lower:
            name = by_lower[base.lower()]
        elif legacy in current:
            name = legacy
        else:
            name = base
        n = 2
        while name.lower() in taken:
            name = _unreserved(pg_name(f"{base}_{n}"), reserved)
            n += 1
        taken.add(name.lower())
        names[source] = name
    return names


def _unreserved(name: str, reserved: set[str]) -> str:
    return pg_name(f"{name}_source") if name.lower() in reserved else name


def cast_for_widening(column_sql: str, from_kind: Kind, to_kind: LogicalType) -> str:
    """The ``USING`` expression of ``ALTER COLUMN ... TYPE`` (``column_sql`` is quoted).
    Text forms match what later loads write into the widened column (ISO, UTC), years
    before 1 AD included: those are numbered as DuckDB (and ISO 8601) number them, year 0
    for 1 BC (``0000-01-01``, a sentinel the processor read as a date before 2026-12-07:
    it is a type mismatch now, but tables loaded before hold it), ``-1`` for 2 BC,
    where PostgreSQL would write ``0001-01-01 BC`` (``::text``) or drop the era
    (``to_char``). PostgreSQL's ``infinity`` and ``-infinity`` (the processor read
    ``-infinity`` as a date before 2026-12-07) are written so: the year of one cannot be an
    integer, which failed the widening, and with it the file's load on every retry."""
    if to_kind == "timestamp" and from_kind == "date":
        return f"({column_sql}::timestamp AT TIME ZONE 'UTC')"
    if to_kind == "string" and from_kind in ("date", "timestamp"):
        value = f"({column_sql} AT TIME ZONE 'UTC')" if from_kind == "timestamp" else column_sql
        rest = "-MM-DD HH24:MI:SS.US" if from_kind == "timestamp" else "-MM-DD"
        zone = " || '+00'" if from_kind == "timestamp" else ""
        year = f"extract(year FROM {value})::int"  # -1 for 1 BC: PostgreSQL has no year 0
        finite = (
            f"CASE WHEN {year} > 0 THEN to_char({value}, 'YYYY{rest}') "
            f"ELSE CASE WHEN {year} = -1 THEN '0000' ELSE ({year} + 1)::text END "
            f"|| to_char({value}, '{rest}') END{zone}"
        )
        return f"(CASE WHEN isfinite({value}) THEN {finite} ELSE {value}::text END)"
    return f"{column_sql}::{PG_TYPES[to_kind]}"
