"""The summary of one processed file: a public contract (README "Summary JSON").

``inspect`` prints it, the processor stores it next to the Parquet and copies its fields
into the metadata item. Only add fields; renaming or removing one breaks users.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handlers.logic.warehouse.schema import FLOAT_EXACT_INTEGER

ColumnType = Literal["int", "float", "bool", "date", "timestamp", "string"]
FileFormat = Literal["csv", "json", "ndjson", "log"]
Scalar = int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(_Model):
    """Where something is in the source file: ``line`` for line-based formats (CSV, NDJSON,
    logs; a CSV record spanning several lines counts as one), ``record`` (1-based element
    index) for JSON documents."""

    line: int | None = None
    record: int | None = None


class MissingValues(_Model):
    count: int
    percentage: float


class Example(Location):
    value: str


class TypeMismatch(_Model):
    expected: ColumnType
    count: int
    percentage: float
    examples: list[Example] = []


class MalformedRow(Location):
    error: str
    text: str


class MalformedRows(_Model):
    count: int
    rows: list[MalformedRow] = []


class DuplicateRows(_Model):
    """Rows identical to an earlier row; ``first_duplicates`` locates the first few."""

    count: int
    first_duplicates: list[Location] = []


class QualityIssues(_Model):
    missing_values: dict[str, MissingValues] = {}
    type_mismatches: dict[str, TypeMismatch] = {}
    malformed_rows: MalformedRows | None = None
    duplicate_rows: DuplicateRows | None = None


class ColumnStats(_Model):
    null_count: int
    distinct_count: int
    distinct_count_approximate: bool | None = None
    min: Scalar = None
    max: Scalar = None
    avg: Scalar = None
    non_finite_count: int | None = None  # float columns: inf, -inf and NaN, left out of min/max/avg
    min_length: int | None = None
    max_length: int | None = None
    true_count: int | None = None
    false_count: int | None = None


class LogStats(_Model):
    line_count: int
    error_count: int
    warn_count: int
    info_count: int
    avg_response_time_ms: float | None
    max_response_time_ms: float | None
    unique_users: int | None
    unique_endpoints: int | None
    processing_time_ms: int
    file_size_bytes: int


class Lineage(_Model):
    """Maps output rows back to the source: output row *i* (0-based) is the *i*-th position
    at or after ``first`` that is not in ``skipped`` (malformed or blank input, and the
    lines that continue a multi-line log record)."""

    unit: Literal["line", "record"]
    first: int
    skipped: list[int] = []

    def position(self, row_index: int) -> int:
        """Line (or record) number of output row ``row_index`` (0-based)."""
        lo = bisect_left(self.skipped, self.first)
        position = self.first + row_index
        while True:
            shifted = self.first + row_index + bisect_right(self.skipped, position) - lo
            if shifted == position:
                return position
            position = shifted


class Summary(_Model):
    file_name: str
    format: FileFormat
    encoding: str
    row_count: int
    column_count: int
    schema_: dict[str, ColumnType] = Field(alias="schema")
    statistics: dict[str, ColumnStats]
    quality_issues: QualityIssues
    pii_redactions: dict[str, dict[str, int]] = {}
    log_stats: LogStats | None = None
    dialect: dict[str, Any] | None = None
    warnings: list[str] = []
    processing_time_ms: int
    file_size_bytes: int
    lineage: Lineage

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        document = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if self.log_stats is not None:  # every field of the contract, null when not known
            document["log_stats"] = self.log_stats.model_dump(mode="json")
        return document


def columns_beyond_float(summary: Mapping[str, Any]) -> set[str]:
    """The ``int`` columns of a summary document holding an integer a double cannot hold
    exactly (beyond +-``FLOAT_EXACT_INTEGER``), from the column's ``min`` and ``max``
    statistics (every digit kept): no scan of the data. Such a column must not be read as a
    ``double``: where it meets fractions, the warehouse, the Glue table and ``headrace
    query`` make it text instead."""
    schema = summary.get("schema") or {}
    found = set()
    for name, stats in (summary.get("statistics") or {}).items():
        if schema.get(name) != "int" or not isinstance(stats, dict):
            continue
        bounds = [stats.get("min"), stats.get("max")]
        if any(
            isinstance(b, int) and not isinstance(b, bool) and abs(b) > FLOAT_EXACT_INTEGER for b in bounds
        ):
            found.add(name)
    return found


def columns_without_values(summary: Mapping[str, Any]) -> set[str]:
    """Columns of a summary document all of whose cells are empty (or a header-only file's
    columns): typed string for want of values, which says nothing of the type later files
    of the dataset bring. The warehouse neither creates nor widens a column from such a
    file; the query catalog creates it as an untyped string that the first type replaces."""
    row_count = summary.get("row_count") or 0
    schema = summary.get("schema") or {}
    return {
        name
        for name, stats in (summary.get("statistics") or {}).items()
        if schema.get(name) == "string"
        and isinstance(stats, dict)
        and (stats.get("null_count") or 0) >= row_count
    }
