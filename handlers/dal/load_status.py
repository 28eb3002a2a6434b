"""The loader's view of the metadata table: when a file version was uploaded (to order
versions of one key), and the load outcome, kept on the file's metadata item.

Load attributes (added to the item, never touching the processor's): ``load_status``
(``loaded``, ``superseded``, ``failed``: given up on after its retries, its message in the
load DLQ; ``rejected``: refused for good, not retried, no DLQ message), ``loaded_at``, ``load_table``, ``load_rows``,
``load_error``, ``load_failed_at``, ``load_attempts``; a failure also sets ``failure_day`` and
``failure_at``, the ``by_failure`` index's keys, as the processor's do. Every write is a conditional
UpdateItem on an existing item: an expired item is not resurrected as a fragment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .aws import table
from .metadata import failure_keys, iso, to_dynamo


class LoadStatusStore:
    def __init__(self, table_name: str):
        self.table_name = table_name

    def uploaded_at(self, object_key: str, version: str) -> datetime | None:
        value = self._attribute(object_key, version, "uploaded_at")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    def load_error(self, object_key: str, version: str) -> str | None:
        """The reason the latest failed attempt at the load recorded, if any."""
        return self._attribute(object_key, version, "load_error")

    def superseded_by(self, object_key: str, version: str) -> str | None:
        """The version that replaced this one (set by the processor), if any."""
        return self._attribute(object_key, version, "superseded_by")

    def _attribute(self, object_key: str, version: str, name: str) -> str | None:
        """One attribute of the version's item, as text; None when it or the item is missing
        (or empty)."""
        item = (
            table(self.table_name)
            .get_item(Key={"object_key": object_key, "version": version}, ProjectionExpression=name)
            .get("Item")
        )
        value = (item or {}).get(name)
        return str(value) if value else None

    def mark_loaded(self, object_key: str, version: str, at: datetime, table_name: str, rows: int) -> None:
        self._update(
            object_key,
            version,
            {"load_status": "loaded", "loaded_at": iso(at), "load_table": table_name, "load_rows": rows},
            remove=("load_error", "load_failed_at"),
        )

    def mark_superseded(
        self, object_key: str, version: str, at: datetime, current_version: str | None
    ) -> None:
        self._update(
            object_key,
            version,
            {"load_status": "superseded", "superseded_at": iso(at), "superseded_by": current_version},
        )

    def mark_failed(self, object_key: str, version: str, at: datetime, error: str, attempt: int) -> None:
        self._update(
            object_key,
            version,
            {
                "load_status": "failed",
                "load_failed_at": iso(at),
                "load_error": error[:2000],
                "load_attempts": attempt,
                **failure_keys(at),
            },
        )

    def mark_rejected(self, object_key: str, version: str, at: datetime, error: str, attempt: int) -> None:
        """A load that no retry can change (``LoadRejected``): recorded at once, not retried."""
        self._update(
            object_key,
            version,
            {
                "load_status": "rejected",
                "load_failed_at": iso(at),
                "load_error": error[:2000],
                "load_attempts": attempt,
                **failure_keys(at),
            },
        )

    def note_retry(self, object_key: str, version: str, error: str, attempt: int) -> None:
        self._update(object_key, version, {"load_error": error[:2000], "load_attempts": attempt})

    def _update(
        self, object_key: str, version: str, fields: dict[str, Any], remove: tuple[str, ...] = ()
    ) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        names = {"#k": "object_key", **{f"#a{i}": name for i, name in enumerate(fields)}}
        values = {f":v{i}": to_dynamo(value) for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(fields)))
        if remove:
            names.update({f"#r{i}": name for i, name in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        try:
            table(self.table_name).update_item(
                Key={"object_key": object_key, "version": version},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#k)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
