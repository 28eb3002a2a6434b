"""The metadata table: one item per raw object version (README "Metadata item").

Status moves ``received -> processing -> completed | failed``. Every write is an
UpdateItem on the item's key, so repeating one (a redelivered message) is harmless, and
a late ``received`` can never overwrite a finished item.

``completed_day`` (the UTC day of ``completed_at``) is set with ``completed`` and removed by
every write that moves the item away from it (processing again, failed), so the
``by_completion`` index holds exactly the completed versions (the staleness signal).

``failure_day`` and ``failure_at`` (the UTC day and time of the version's latest failure) are
set by every write recording a failure, here and in the loader's ``load_status``, and never
removed: the ``by_failure`` index holds every version that failed, by when it last failed,
whatever day it was uploaded (``headrace status``), and whether it is still failed is read
from the item (``status``, ``load_status``). Versions skipped as superseded or deleted are
no failures and get neither.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, DecimalException
from typing import Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import DYNAMODB_CONTEXT
from botocore.exceptions import ClientError

from handlers.models.events import ObjectRef

from .aws import table
from .metadata_queries import query_all

# DynamoDB's item limit is 400 KB; keep well below it and point to the S3 summary instead.
MAX_ITEM_BYTES = 300_000
# What the processor needs of a key's other versions to retire their outputs.
VERSION_FIELDS = (
    "version",
    "uploaded_at",
    "sequencer",
    "superseded_by",
    "parquet_key",
    "summary_key",
    "processed_bucket",
)
# What the processor reads of a version's item to tell whether an earlier receive of the
# same message found the file cannot be processed (``failed_for_good``): not its summary.
FAILURE_FIELDS = ("status", "failure_kind", "failed_message", "superseded_by", "skip_reason", "error")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failure_keys(at: datetime) -> dict[str, str]:
    """The ``by_failure`` index's keys of a failure recorded at ``at``."""
    return {"failure_day": day_of(at), "failure_at": iso(at)}


def set_failure_keys(metadata_table: Any, object_key: str, version: str, at: datetime) -> bool:
    """Give a version recorded failed before the ``by_failure`` index existed the index's
    keys, from the time of its failure (``headrace backfill-failures``). Conditional: False,
    and nothing written, when the item has them already (a failure recorded since, by the
    processor or the loader, is newer and stays) or no longer exists (expired). Touches
    nothing else of the item, ``updated_at`` and ``ttl`` included."""
    try:
        metadata_table.update_item(
            Key={"object_key": object_key, "version": version},
            UpdateExpression="SET failure_day = :day, failure_at = :at",
            ConditionExpression="attribute_exists(object_key) AND attribute_not_exists(failure_day)",
            ExpressionAttributeValues={":day": day_of(at), ":at": iso(at)},
        )
    except ClientError as exc:
        if _condition_failed(exc):
            return False
        raise
    return True


def day_of(moment: datetime) -> str:
    """The UTC day of ``moment``, YYYY-MM-DD (the partition of the metadata indexes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def to_dynamo(value: Any) -> Any:
    """JSON-compatible data with numbers as Decimal, as DynamoDB wants them. A number it
    cannot hold, or gives back in a form boto3 cannot read, is kept as its text rather than
    failing the whole item: see :func:`_number`."""
    return json.loads(json.dumps(value, default=str), parse_float=_number, parse_int=_number)


def _number(text: str) -> Decimal | str:
    """DynamoDB takes magnitudes from 1e-130 to below 1e126, but returns one of 1e38 or more
    with every digit written out, which boto3's reader refuses (more than 38 digits): a float
    column of 1.5e50 would break every later read of the item. So numbers are kept only
    from 1e-130 to below 1e38 (and 0)."""
    try:
        number = DYNAMODB_CONTEXT.create_decimal(text)
    except DecimalException:
        return text
    if number.is_finite() and (number == 0 or Decimal("1e-130") <= abs(number) < Decimal("1e38")):
        return number
    return text


class MetadataStore:
    def __init__(self, table_name: str, ttl_days: int = 90):
        self.table_name = table_name
        self.ttl_days = ttl_days

    # ---------------------------------------------------------------- transitions
    def mark_received(self, ref: ObjectRef, at: datetime) -> None:
        """First sight of the object version; a no-op once it is further along."""
        self._update(
            ref,
            {"status": "received", "received_at": iso(at)},
            condition="attribute_not_exists(#k) OR #status = :received_status",
            values={":received_status": "received"},
            now=at,
        )

    def discard_received(self, ref: ObjectRef) -> None:
        """Drop a ``received`` item recorded under a key spelling that turned out to be
        wrong (a URL-encoded key in the event)."""
        try:
            table(self.table_name).delete_item(
                Key={"object_key": ref.key, "version": ref.version},
                ConditionExpression="#s = :received",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":received": "received"},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def mark_processing(self, ref: ObjectRef, at: datetime, attempt: int) -> None:
        self._update(
            ref,
            {"status": "processing", "started_at": iso(at), "attempts": attempt},
            # an earlier failure for good (failure_kind) no longer describes a version being
            # processed again (a restored object, a replay): its outcome will
            remove=("error", "skip_reason", "completed_day", "failure_kind", "failed_message"),
            set_if_missing={"received_at": iso(at)},
            now=at,
        )

    def mark_completed(self, ref: ObjectRef, at: datetime, fields: dict[str, Any]) -> bool:
        """Record the completed version; False (and nothing written) when a newer version
        completed meanwhile and already marked this one superseded."""
        fields = dict(fields)
        # DynamoDB items hold 400 KB: the bulkiest parts go first, the schema last (a file of
        # a thousand long column names); the summary JSON in S3 keeps everything.
        for bulky in ("statistics", "quality_issues", "pii_redactions", "warnings", "schema"):
            if len(json.dumps(fields, default=str)) <= MAX_ITEM_BYTES:
                break
            fields.pop(bulky, None)
            fields["summary_truncated"] = True
        written = self._update(
            ref,
            {"status": "completed", "completed_at": iso(at), "completed_day": day_of(at), **fields},
            remove=("error", "last_error", "skip_reason"),
            now=at,
            condition="attribute_not_exists(#k) OR attribute_not_exists(superseded_by)",
        )
        return written is not None

    def mark_failed(
        self,
        ref: ObjectRef,
        at: datetime,
        error: str,
        attempt: int | None = None,
        *,
        keep_completed: bool = False,
        skip_reason: str | None = None,
        permanent: bool = False,
        message_id: str | None = None,
    ) -> bool:
        """Record the failure; True when it is the version's first (no earlier
        ``failed_at``): a file retried or given up on several times is counted once. With
        ``keep_completed`` (a stale event: the version was superseded or deleted since) a
        version that completed stays completed, and one that failed keeps its failure and
        reason. ``skip_reason`` (``superseded``, ``deleted``) marks a version that was not
        processed at all, not a failure of it. ``permanent``: the file itself cannot be
        processed (``failure_kind`` ``permanent``, found handling SQS message ``message_id``,
        ``failed_message``): a redelivery of that message fails at once."""
        fields: dict[str, Any] = {
            "status": "failed",
            "failed_at": iso(at),
            "error": error[:2000],
            "skip_reason": skip_reason,
            "failure_kind": "permanent" if permanent else None,
            "failed_message": message_id if permanent else None,
            **({} if skip_reason else failure_keys(at)),
        }
        if attempt is not None:
            fields["attempts"] = attempt
        earlier = self._update(
            ref,
            fields,
            now=at,
            # a real failure after a skip drops the skip's reason
            remove=("completed_day",)
            + (() if skip_reason else ("skip_reason",))
            + (() if permanent else ("failure_kind", "failed_message")),
            return_old=True,
            condition=(
                "attribute_not_exists(#k) OR (#status <> :completed "
                "AND (#status <> :failed OR attribute_exists(skip_reason)))"
                if keep_completed
                else None
            ),
            values={":completed": "completed", ":failed": "failed"} if keep_completed else None,
        )
        return earlier is not None and "failed_at" not in earlier

    def note_retry(self, ref: ObjectRef, at: datetime, error: str, attempt: int) -> None:
        """A transient failure: the message will be retried; keep the reason for operators."""
        self._update(ref, {"last_error": error[:2000], "attempts": attempt}, now=at)

    def mark_superseded(self, object_key: str, version: str, by_version: str, at: datetime) -> dict[str, Any]:
        """Mark an older version replaced by a newer one; return the item as it is now, with
        the outputs it has at this moment (it may have completed since it was read)."""
        return dict(
            table(self.table_name)
            .update_item(
                Key={"object_key": object_key, "version": version},
                UpdateExpression="SET superseded_by = :by, updated_at = :at",
                ExpressionAttributeValues={":by": by_version, ":at": iso(at)},
                ReturnValues="ALL_NEW",
            )
            .get("Attributes", {})
        )

    def failure(self, object_key: str, version: str) -> dict[str, Any] | None:
        """The version's ``FAILURE_FIELDS`` (None if it has no item), read strongly
        consistently: a failure recorded by the receive just before (the message made
        visible again at once) is seen. Only these attributes travel, not a wide file's
        summary (up to ``MAX_ITEM_BYTES``); DynamoDB still charges the whole item's size,
        twice an eventually consistent read's units (only receives after the first read it)."""
        names = {f"#f{i}": name for i, name in enumerate(FAILURE_FIELDS)}
        return (
            table(self.table_name)
            .get_item(
                Key={"object_key": object_key, "version": version},
                ConsistentRead=True,
                ProjectionExpression=", ".join(names),
                ExpressionAttributeNames=names,
            )
            .get("Item")
        )

    def versions(self, object_key: str) -> list[dict[str, Any]]:
        """Every recorded version of one object key: when it was uploaded, where its
        outputs are and whether it was superseded (``VERSION_FIELDS``; not its summary,
        which can be hundreds of kilobytes per version)."""
        return query_all(
            table(self.table_name), VERSION_FIELDS, KeyConditionExpression=Key("object_key").eq(object_key)
        )

    # ---------------------------------------------------------------- mechanics
    def _update(
        self,
        ref: ObjectRef,
        fields: dict[str, Any],
        *,
        now: datetime,
        remove: tuple[str, ...] = (),
        set_if_missing: dict[str, Any] | None = None,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        return_old: bool = False,
    ) -> dict[str, Any] | None:
        """One UpdateItem; with ``return_old``, the previous values of the attributes it
        set (DynamoDB's ``UPDATED_OLD``), else nothing; None when ``condition`` did not
        hold (nothing was written)."""
        base = {
            "bucket": ref.bucket,
            "size": ref.size,
            "day": day_of(ref.uploaded_at),
            "uploaded_at": iso(ref.uploaded_at),
            "sequencer": ref.sequencer,  # kept when an event without one (a replay) updates it
            "updated_at": iso(now),
            "ttl": int((now + timedelta(days=self.ttl_days)).timestamp()),
        }
        attributes = {k: v for k, v in {**base, **fields}.items() if v is not None}
        names: dict[str, str] = {"#k": "object_key"}
        expression_values: dict[str, Any] = dict(values or {})
        sets: list[str] = []
        for i, (name, value) in enumerate(attributes.items()):
            names[f"#a{i}"] = name
            expression_values[f":v{i}"] = to_dynamo(value)
            sets.append(f"#a{i} = :v{i}")
        for i, (name, value) in enumerate((set_if_missing or {}).items()):
            names[f"#m{i}"] = name
            expression_values[f":m{i}"] = to_dynamo(value)
            sets.append(f"#m{i} = if_not_exists(#m{i}, :m{i})")
        expression = "SET " + ", ".join(sets)
        if remove:
            for i, name in enumerate(remove):
                names[f"#r{i}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        if condition and "#status" in condition:
            names["#status"] = "status"
        kwargs: dict[str, Any] = {
            "Key": {"object_key": ref.key, "version": ref.version},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": expression_values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        else:
            del names["#k"]
        if return_old:
            kwargs["ReturnValues"] = "UPDATED_OLD"
        try:
            return dict(table(self.table_name).update_item(**kwargs).get("Attributes", {}))
        except ClientError as exc:
            if condition and _condition_failed(exc):
                return None
            raise


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
