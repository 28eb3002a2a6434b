"""DynamoDB table definitions shared by the Pulumi program and the tests, so a test table
can never drift from the deployed one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None = None
    # "ALL", or "KEYS_ONLY": the index holds only its keys and the table's, so a query of it
    # reads (and is charged for) those alone, and an update changing neither writes nothing to it;
    # or "INCLUDE": the keys and ``non_key_attributes`` (changing that list later means
    # building the index again)
    projection: str = "ALL"
    non_key_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    hash_key: str
    range_key: str | None = None
    # attributes used as keys (table or index) and their DynamoDB types
    attributes: dict[str, str] = field(default_factory=dict)
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None

    def boto3_create_args(self, name: str) -> dict:
        """Arguments for ``dynamodb.create_table`` (tests and the local runtime)."""
        keys = [{"AttributeName": self.hash_key, "KeyType": "HASH"}]
        if self.range_key:
            keys.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        args: dict = {
            "TableName": name,
            "KeySchema": keys,
            "AttributeDefinitions": [
                {"AttributeName": a, "AttributeType": t} for a, t in self.attributes.items()
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.indexes:
            args["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": i.name,
                    "KeySchema": [{"AttributeName": i.hash_key, "KeyType": "HASH"}]
                    + ([{"AttributeName": i.range_key, "KeyType": "RANGE"}] if i.range_key else []),
                    "Projection": {"ProjectionType": i.projection}
                    | ({"NonKeyAttributes": list(i.non_key_attributes)} if i.non_key_attributes else {}),
                }
                for i in self.indexes
            ]
        return args


# One item per raw object version (README "Metadata item"). The by_day index serves the
# daily report and `headrace status`: all files received on a day, in upload order. The
# by_completion index serves the staleness signal: the completed files by the UTC day of
# ``completed_at`` (``completed_day``, set only while the item is completed: a sparse index),
# newest last, keys only, so the latest completion is one small read. The by_failure index
# serves `headrace status`: the versions that failed (processing or load), by the UTC day of
# their latest failure (``failure_day``, ``failure_at``: set by every write recording a failure,
# never removed, so a sparse index of the versions that ever failed), whatever their upload
# day; it projects what status shows of a failure, a few KB, not the whole item.
FAILURE_ATTRIBUTES = (
    "status",
    "uploaded_at",
    "error",
    "failed_at",
    "skip_reason",
    "superseded_by",
    "load_status",
    "load_error",
    "load_failed_at",
)
METADATA = TableSpec(
    hash_key="object_key",
    range_key="version",
    attributes={
        "object_key": "S",
        "version": "S",
        "day": "S",
        "uploaded_at": "S",
        "completed_day": "S",
        "completed_at": "S",
        "failure_day": "S",
        "failure_at": "S",
    },
    indexes=(
        Index("by_day", "day", "uploaded_at"),
        Index("by_completion", "completed_day", "completed_at", projection="KEYS_ONLY"),
        Index(
            "by_failure",
            "failure_day",
            "failure_at",
            projection="INCLUDE",
            non_key_attributes=FAILURE_ATTRIBUTES,
        ),
    ),
    ttl_attribute="ttl",
)

# Powertools idempotency records (its default attribute names).
IDEMPOTENCY = TableSpec(hash_key="id", attributes={"id": "S"}, ttl_attribute="expiration")

# Ingest API keys, stored hashed (SHA-256 of the key); by_tenant lists a tenant's keys.
TENANT_KEYS = TableSpec(
    hash_key="key_hash",
    attributes={"key_hash": "S", "tenant_id": "S"},
    indexes=(Index("by_tenant", "tenant_id"),),
)

# Ingested log records, partitioned by tenant: a query on one partition key can only ever
# return that tenant's records.
TENANT_LOGS = TableSpec(
    hash_key="tenant_id",
    range_key="log_id",
    attributes={"tenant_id": "S", "log_id": "S"},
    ttl_attribute="ttl",
)
