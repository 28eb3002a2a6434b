"""The query catalog: one Glue table per dataset, kept in step with the files (docs/query.md).

The processor calls :func:`sync_table` for every file it completes when its function has a
``GLUE_DATABASE``. The table is created by the dataset's first file and changed only when a
file brings something new:

- a column the table lacks is appended (before ``_rescued_data``, which stays last);
- a column whose type differs gets the narrowest type holding both (the warehouse's
  ``widen``): ``bigint -> double -> string``, ``date -> timestamp -> string``,
  ``boolean -> string``, any other pair -> ``string``; a narrower file type changes nothing;
- integers beyond +-2**53 never become ``double``, which would round them (the warehouse's
  rule): a ``bigint`` column some file of which holds one (its summary's ``min``/``max``,
  ``columns_beyond_float``) says so in its comment (``BEYOND_FLOAT``), and where such a
  column meets fractions (``double``), before or after, it becomes ``string``;
- a column no file has had a value in yet is ``string`` (commented ``UNTYPED``, so the
  column is there to select), and the first file with values gives it its type instead of
  widening it to ``string``;
- columns match case-insensitively; Glue and Athena names are lower case;
- a column whose Glue type this module does not know (changed by hand) is left alone.

The table uses partition projection on ``ingest_date`` (type ``date``, ``yyyy-MM-dd``,
from the earliest ingest date seen to ``NOW``), so Athena computes the partition locations of
the layout (``handlers/logic/layout.py``) itself and a file is queryable as soon as it is
written. Projection is Athena's alone: each ingest date is also registered as a partition
(``partition_input``), which Spark through the Glue Data Catalog, Redshift Spectrum and
other Hive-metastore engines need to see any data, and which Athena ignores.
``ingest_date`` is a ``string`` column, the same in Athena and in ``headrace query``'s
DuckDB engine, so one SQL text runs on both.

A catalog failure never loses the file: transient errors (throttling, conflicts that keep
recurring, service errors) propagate and the message is retried like any other transient
failure; errors that retrying cannot fix (access denied, invalid input, the database
missing) are returned as a message that the processor records on the metadata item
(``catalog_error``) while the file completes and is loaded as usual; the dataset's next file
merges its schema again.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from handlers.dal.catalog import CatalogRejected, TableChanged
from handlers.logic.layout import PARQUET_PREFIX, PARTITION_KEY
from handlers.logic.warehouse.schema import LogicalType, widen

RESCUED = "_rescued_data"
PARTITION_COLUMN = PARTITION_KEY
PARTITION_TYPE = "string"
DATE_FORMAT = "yyyy-MM-dd"  # Athena's (Java) spelling of the layout's %Y-%m-%d

GLUE_TYPES: dict[LogicalType, str] = {
    "int": "bigint",
    "float": "double",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "string": "string",
}
_LOGICAL: dict[str, LogicalType] = {glue: logical for logical, glue in GLUE_TYPES.items()}
GLUE_TYPE_OF: dict[str, str] = {str(k): v for k, v in GLUE_TYPES.items()}  # summary type -> Glue

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
RANGE_KEY = f"projection.{PARTITION_COLUMN}.range"

# The keys of Glue's TableInput (GetTable returns more, which UpdateTable refuses).
_TABLE_INPUT_KEYS = (
    "Name",
    "Description",
    "Owner",
    "Retention",
    "StorageDescriptor",
    "PartitionKeys",
    "TableType",
    "Parameters",
)


# The comment of a column no file has had a value in yet: ``string`` for want of a type,
# which the first file with values replaces (a type never narrows otherwise).
UNTYPED = "headrace: no value yet; the first file with values types it"
# The comment of a ``bigint`` column holding an integer beyond +-2**53 in some file: a later
# file with fractions makes it ``string``, not ``double`` (which would round the integers).
BEYOND_FLOAT = "headrace: integers beyond 2^53; with fractions it becomes string, not double"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Glue/Athena type name
    untyped: bool = False  # no value in any file so far: ``string``, replaced by the first type
    # a ``bigint`` with an integer beyond +-2**53 in some file: never widened to ``double``
    beyond_float: bool = False

    def as_glue(self) -> dict[str, str]:
        comment = UNTYPED if self.untyped else BEYOND_FLOAT if self.beyond_float else None
        return {"Name": self.name, "Type": self.type, **({"Comment": comment} if comment else {})}


def file_columns(
    schema: Mapping[str, str],
    without_values: Collection[str] = (),
    holdable_only: bool = True,
    beyond_float: Collection[str] = (),
) -> list[Column]:
    """A file's columns (summary ``schema``: name -> logical type; ``without_values``: its
    columns with no value, ``columns_without_values``; ``beyond_float``: its integer columns
    holding a value beyond +-2**53, ``columns_beyond_float``) as Glue columns, with
    ``_rescued_data`` last (every Parquet file has it); names Glue cannot hold left out
    (``unholdable_names``) unless ``holdable_only`` is off (``headrace query``'s DuckDB
    engine reads them from the Parquet)."""
    columns = [
        Column(name.lower(), "string", untyped=True)
        if name in without_values
        else Column(
            name.lower(),
            GLUE_TYPE_OF.get(logical, "string"),
            beyond_float=logical == "int" and name in beyond_float,
        )
        for name, logical in schema.items()
        # the partition column shadows a file's own (the processing renames it now; older files)
        if name.lower() not in (RESCUED, PARTITION_COLUMN) and (holdable(name) or not holdable_only)
    ]
    return [*columns, Column(RESCUED, "string")]


# Glue's Column.Name: 1-255 bytes of UTF-8 (the Glue and Athena guides count bytes, not
# characters: 100 CJK characters are 300 bytes), no control character but a tab. A renamed
# column would not find its Parquet column (Athena matches them by name): one Glue cannot hold
# is left out. Checked as Glue gets it, lower case (which can change the length: "İ" is two
# bytes, its lower case three).
_GLUE_NAME = re.compile("[\t\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+")
GLUE_NAME_MAX_BYTES = 255


def holdable(name: str) -> bool:
    """Whether a Glue table can hold a column of this name (as it holds it: lower case)."""
    lower = name.lower()
    return bool(_GLUE_NAME.fullmatch(lower)) and len(lower.encode()) <= GLUE_NAME_MAX_BYTES


def unholdable_names(schema: Mapping[str, str]) -> list[str]:
    """The column names of ``schema`` that a Glue table cannot hold."""
    return [name for name in schema if not holdable(name)]


def merge_columns(table: Sequence[Column], incoming: Iterable[Column]) -> list[Column]:
    """The table's columns after a file with ``incoming`` columns (rules in the module doc)."""
    merged = [c for c in table if c.name.lower() != RESCUED]
    position = {c.name.lower(): i for i, c in enumerate(merged)}
    for column in incoming:
        key = column.name.lower()
        if key == RESCUED:
            continue
        if key not in position:
            position[key] = len(merged)
            merged.append(Column(key, column.type, column.untyped, column.beyond_float))
            continue
        current = merged[position[key]]
        if column.untyped:
            continue  # a file without values in the column says nothing of its type
        if current.untyped:
            merged[position[key]] = Column(current.name, column.type, beyond_float=column.beyond_float)
        elif current.type in _LOGICAL and column.type in _LOGICAL:
            wider = GLUE_TYPES[widen(_LOGICAL[current.type], _LOGICAL[column.type])]
            beyond = current.beyond_float or column.beyond_float
            if wider == "double" and beyond:
                wider = "string"  # a double would round the integers (the warehouse's rule)
            merged[position[key]] = Column(current.name, wider, beyond_float=beyond and wider == "bigint")
    return [*merged, Column(RESCUED, "string")]


def dataset_location(bucket: str, dataset: str) -> str:
    return f"s3://{bucket}/{PARQUET_PREFIX}dataset={dataset}/"


def new_table_input(dataset: str, columns: Sequence[Column], bucket: str, first_date: str) -> dict[str, Any]:
    """The Glue ``TableInput`` of a dataset's table."""
    location = dataset_location(bucket, dataset)
    return {
        "Name": dataset,
        "Description": f"headrace dataset {dataset}: Parquet written by the processor (docs/query.md)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "EXTERNAL": "TRUE",
            "classification": "parquet",
            "projection.enabled": "true",
            f"projection.{PARTITION_COLUMN}.type": "date",
            f"projection.{PARTITION_COLUMN}.format": DATE_FORMAT,
            RANGE_KEY: f"{first_date},NOW",
            f"projection.{PARTITION_COLUMN}.interval": "1",
            f"projection.{PARTITION_COLUMN}.interval.unit": "DAYS",
            "storage.location.template": f"{location}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/",
        },
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": PARTITION_TYPE}],
        "StorageDescriptor": {
            "Columns": [c.as_glue() for c in columns],
            "Location": location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        },
    }


def table_columns(table: Mapping[str, Any]) -> list[Column]:
    """The columns of a Glue table (GetTable's ``Table``)."""
    return [
        Column(
            c["Name"],
            str(c.get("Type", "string")),
            untyped=c.get("Comment") == UNTYPED,
            beyond_float=c.get("Comment") == BEYOND_FLOAT,
        )
        for c in table.get("StorageDescriptor", {}).get("Columns", [])
    ]


def _range_start(table: Mapping[str, Any]) -> str | None:
    value = str(table.get("Parameters", {}).get(RANGE_KEY, ""))
    start = value.split(",")[0].strip()
    return start if len(start) == 10 and start[4] == "-" and start[7] == "-" else None


def next_table_input(
    existing: Mapping[str, Any] | None,
    dataset: str,
    schema: Mapping[str, str],
    ingest_date: str,
    bucket: str,
    without_values: Collection[str] = (),
    beyond_float: Collection[str] = (),
) -> dict[str, Any] | None:
    """What to write to the catalog after a file of ``dataset`` (its summary ``schema``,
    its ``ingest_date``, its columns ``without_values`` and ``beyond_float``): a full
    TableInput when the table is missing or must change, ``None`` when the table already
    covers the file."""
    incoming = file_columns(schema, without_values, beyond_float=beyond_float)
    if existing is None:
        return new_table_input(dataset, incoming, bucket, ingest_date)
    current = table_columns(existing)
    columns = merge_columns(current, incoming)
    start = _range_start(existing)
    earlier = start is not None and ingest_date < start
    if columns == current and not earlier:
        return None
    table_input = {key: existing[key] for key in _TABLE_INPUT_KEYS if key in existing}
    descriptor = dict(table_input.get("StorageDescriptor", {}))
    descriptor["Columns"] = [c.as_glue() for c in columns]
    table_input["StorageDescriptor"] = descriptor
    if earlier:
        parameters = dict(table_input.get("Parameters", {}))
        parameters[RANGE_KEY] = f"{ingest_date},NOW"
        table_input["Parameters"] = parameters
    return table_input


# ---------------------------------------------------------------------- applying it
class CatalogStore(Protocol):
    """The Glue calls :func:`sync_table` needs (``handlers.dal.catalog.GlueCatalog``)."""

    def get_table(self, database: str, name: str) -> dict[str, Any] | None: ...

    def create_table(self, database: str, table_input: dict[str, Any]) -> None: ...

    def update_table(self, database: str, table_input: dict[str, Any], version_id: str | None) -> None: ...

    def create_partition(self, database: str, table: str, partition_input: dict[str, Any]) -> None:
        """Register a partition; one that exists already is left as it is."""
        ...

    def get_partition(self, database: str, table: str, values: list[str]) -> dict[str, Any] | None:
        """A registered partition (GetPartition's ``Partition``), or None when there is none."""
        ...

    def update_partition(
        self, database: str, table: str, values: list[str], partition_input: dict[str, Any]
    ) -> None: ...


# Concurrent first files of one dataset (the processor runs several invocations at once)
# race on the table; each attempt re-reads it. More conflicts than this is transient.
MAX_ATTEMPTS = 5


def sync_table(
    store: CatalogStore,
    database: str,
    dataset: str,
    schema: Mapping[str, str],
    ingest_date: str,
    bucket: str,
    without_values: Collection[str] = (),
    beyond_float: Collection[str] = (),
) -> str | None:
    """Bring the dataset's table in step with one file. Returns ``None`` on success, or the
    reason Glue refused or a column was left out (to be recorded); transient errors propagate."""
    left_out = unholdable_names(schema)
    note = (
        f"{len(left_out)} column(s) left out of the Glue table (a name over 255 bytes of UTF-8, or "
        f"with a line break or another control character): {', '.join(repr(n[:40] + ('...' if len(n) > 40 else '')) for n in left_out)}; "
        "the Parquet and headrace query's DuckDB engine have them, Athena does not"
        if left_out
        else None
    )
    try:
        for _ in range(MAX_ATTEMPTS):
            existing = store.get_table(database, dataset)
            table_input = next_table_input(
                existing, dataset, schema, ingest_date, bucket, without_values, beyond_float
            )
            if table_input is None:  # the table holds the file already (so it exists)
                break
            try:
                if existing is None:
                    store.create_table(database, table_input)
                else:
                    store.update_table(database, table_input, existing.get("VersionId"))
            except TableChanged:
                continue
            break
        else:
            raise TableChanged(f"{database}.{dataset}: changed concurrently {MAX_ATTEMPTS} times in a row")
        grown = existing is not None and table_input is not None
        _register_partition(
            store, database, dataset, table_input or existing or {}, bucket, ingest_date, grown
        )
    except CatalogRejected as exc:
        return str(exc)
    return note


# The partitions this process registered, by database, table, the table's CreateTime and
# day: a day's later files then make no CreatePartition call (a burst of one day's files made
# one each, all but the first refused as existing, and Glue throttles that call). A table
# created anew (a new CreateTime) has its partitions registered again.
_registered: set[tuple[str, str, str, str]] = set()


def _register_partition(
    store: CatalogStore,
    database: str,
    dataset: str,
    table: Mapping[str, Any],
    bucket: str,
    ingest_date: str,
    grown: bool = False,
) -> None:
    """Register the day's partition; when this file changed the table (``grown``: a column
    added or widened), bring an existing partition of the day to the table's columns too (a
    day's first file registers it with the columns of that moment, and engines that read
    partitions would not see a later file's new column). Idempotent: a partition that has the
    columns already is not written."""
    created = table.get("CreateTime")  # none on a table this call created or updated
    known = (database, dataset, str(created), ingest_date)
    if created is not None and known in _registered:
        return
    wanted = partition_input(table, dataset, bucket, ingest_date)
    current = store.get_partition(database, dataset, [ingest_date]) if grown else None
    if current is None:
        store.create_partition(database, dataset, wanted)
    else:
        # merged with what the partition has: a concurrent file of the day that wrote the
        # table after this one read it may have given the partition more already
        had = table_columns(current)
        columns = merge_columns(had, table_columns(wanted))
        if columns != had:
            wanted["StorageDescriptor"]["Columns"] = [c.as_glue() for c in columns]
            store.update_partition(database, dataset, [ingest_date], wanted)
    if created is not None:
        _registered.add(known)


def partition_input(table: Mapping[str, Any], dataset: str, bucket: str, ingest_date: str) -> dict[str, Any]:
    """The Glue ``PartitionInput`` of one ingest date's folder. Athena projects the partitions
    and ignores registered ones; Spark through the Glue Data Catalog (Glue jobs, EMR),
    Redshift Spectrum and Hive-metastore engines know a table's data only through them, and
    without them read the table as empty. The storage descriptor is the table's (Parquet,
    SerDe, columns) at the day's folder; a later file of the day that adds or widens a
    column brings the partition's columns up to the table's (``_register_partition``)."""
    descriptor = dict(table.get("StorageDescriptor", {}))
    descriptor["Location"] = f"{dataset_location(bucket, dataset)}{PARTITION_COLUMN}={ingest_date}/"
    return {"Values": [ingest_date], "StorageDescriptor": descriptor}
