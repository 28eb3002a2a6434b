"""Reading the metadata table by upload day (its ``by_day`` index: pk ``day`` = YYYY-MM-DD
of upload, sk ``uploaded_at``), for the daily report and ``headrace status``, and by
completion day (its ``by_completion`` index: pk ``completed_day``, sk ``completed_at``, keys
only), for the staleness signal and ``headrace status``, and by failure day (its ``by_failure``
index: pk ``failure_day``, sk ``failure_at``, the UTC day and time of a version's latest
failure; projecting ``tables.FAILURE_ATTRIBUTES``), for ``headrace status``.

Works on any boto3 DynamoDB ``Table`` resource, so the CLI can pass one built from a stack
outputs file. DynamoDB numbers come back as ``int`` or ``float``, not ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

BY_DAY_INDEX = "by_day"
BY_COMPLETION_INDEX = "by_completion"
BY_FAILURE_INDEX = "by_failure"


def files_on_day(table: Any, day: str, attributes: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every item uploaded on ``day`` (all pages), in upload order, as plain values."""
    return list(iter_files_on_day(table, day, attributes))


def iter_files_on_day(
    table: Any, day: str, attributes: tuple[str, ...] | None = None
) -> Iterator[dict[str, Any]]:
    """``files_on_day`` one page at a time: a caller that keeps only what it counts holds
    one page (1 MB read) of a day's items, not the whole day."""
    for item in iter_query(
        table, attributes, IndexName=BY_DAY_INDEX, KeyConditionExpression=Key("day").eq(day)
    ):
        yield plain(item)


def last_completed_on(table: Any, day: str) -> dict[str, Any] | None:
    """The version completed last on ``day`` (UTC, by ``completed_at``), or None: one Query
    of a single index item, its keys only (``object_key``, ``version``, ``completed_day``,
    ``completed_at``), whatever the day's volume."""
    page = table.query(
        IndexName=BY_COMPLETION_INDEX,
        KeyConditionExpression=Key("completed_day").eq(day),
        ScanIndexForward=False,
        Limit=1,
    )
    items = page.get("Items", [])
    return plain(items[0]) if items else None


def iter_failed_on_day(table: Any, day: str, since: str | None = None) -> Iterator[dict[str, Any]]:
    """The versions whose latest failure (processing or load) was on ``day`` (UTC), at or
    after ``since`` (an ISO time, as the writers store it) when given, newest first, a page at
    a time, with what the ``by_failure`` index projects. A version that failed and was
    processed again since is among them: whether it is still failed is the caller's to read
    (``status``, ``load_status``)."""
    condition = Key("failure_day").eq(day)
    if since:
        condition = condition & Key("failure_at").gte(since)
    for item in iter_query(
        table, None, IndexName=BY_FAILURE_INDEX, KeyConditionExpression=condition, ScanIndexForward=False
    ):
        yield plain(item)


# What ``headrace backfill-failures`` reads of an item: its keys and when each stage failed.
BACKFILL_ATTRIBUTES = (
    "object_key",
    "version",
    "status",
    "skip_reason",
    "failed_at",
    "load_status",
    "load_failed_at",
)


def iter_unindexed_failures_on_day(table: Any, day: str) -> Iterator[dict[str, Any]]:
    """The versions uploaded on ``day`` that are failed (processing, not a skip; or load,
    given up on or rejected)
    and have no ``failure_day`` (written before the ``by_failure`` index existed), a page at
    a time, with ``BACKFILL_ATTRIBUTES`` only. The filter trims what is sent back, not what
    is read: DynamoDB reads (and charges for) every item of the day."""
    failed = (Attr("status").eq("failed") & Attr("skip_reason").not_exists()) | Attr("load_status").is_in(
        ["failed", "rejected"]
    )
    for item in iter_query(
        table,
        BACKFILL_ATTRIBUTES,
        IndexName=BY_DAY_INDEX,
        KeyConditionExpression=Key("day").eq(day),
        FilterExpression=failed & Attr("failure_day").not_exists(),
    ):
        yield plain(item)


def query_all(table: Any, attributes: tuple[str, ...] | None = None, **query: Any) -> list[dict[str, Any]]:
    """Every item ``query`` matches (all pages: a page holds at most 1 MB of items read).
    ``attributes`` limits what is returned (less to transfer; DynamoDB still reads whole
    items)."""
    return list(iter_query(table, attributes, **query))


def iter_query(
    table: Any, attributes: tuple[str, ...] | None = None, **query: Any
) -> Iterator[dict[str, Any]]:
    """``query_all``, reading the next page only once the items of the last one are taken."""
    if attributes:
        names = {f"#p{i}": name for i, name in enumerate(attributes)}
        query["ProjectionExpression"] = ", ".join(names)
        query["ExpressionAttributeNames"] = names
    while True:
        page = table.query(**query)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as int/float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
