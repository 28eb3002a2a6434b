"""DynamoDB tables: built from handlers/models/tables.py, encrypted, PITR, TTL."""

from __future__ import annotations

from typing import Any

from handlers.models import tables
from handlers.models.tables import TableSpec

from .conftest import Deployment

SPECS = {
    "metadata": tables.METADATA,
    "idempotency": tables.IDEMPOTENCY,
    "tenant-keys": tables.TENANT_KEYS,
    "tenant-logs": tables.TENANT_LOGS,
}
OUTPUTS = {
    "metadata": "metadata_table",
    "idempotency": "idempotency_table",
    "tenant-keys": "tenant_keys_table",
    "tenant-logs": "tenant_logs_table",
}


def _tables(stack: Deployment) -> dict[str, Any]:
    prefix = f"headrace-{stack.stack}-tables-"
    return {r.name.removeprefix(prefix): r for r in stack.of_type("aws:dynamodb/table:Table")}


def _as_boto3(table: Any) -> dict[str, Any]:
    """The deployed table in boto3 create_table terms, to compare with the spec's."""
    keys = [{"AttributeName": table.inputs["hashKey"], "KeyType": "HASH"}]
    if table.inputs.get("rangeKey"):
        keys.append({"AttributeName": table.inputs["rangeKey"], "KeyType": "RANGE"})
    args: dict[str, Any] = {
        "TableName": table.outputs["name"],
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in table.input("attributes")
        ],
        "BillingMode": table.inputs["billingMode"],
    }
    if table.inputs.get("globalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index["name"],
                "KeySchema": [
                    {"AttributeName": k["attributeName"], "KeyType": k["keyType"]}
                    for k in index["keySchemas"]
                ],
                "Projection": {"ProjectionType": index["projectionType"]}
                | ({"NonKeyAttributes": index["nonKeyAttributes"]} if index.get("nonKeyAttributes") else {}),
            }
            for index in table.input("globalSecondaryIndexes")
        ]
    return args


def test_tables_are_built_from_the_shared_specs(stack: Deployment) -> None:
    # Given a stack's tables
    deployed = _tables(stack)
    assert set(deployed) == set(SPECS)
    for role, spec in SPECS.items():
        table = deployed[role]
        # Then each has exactly the keys, attributes and indexes of its spec (the same the
        # handler tests create in moto)
        assert _as_boto3(table) == spec.boto3_create_args(table.outputs["name"])
        # and is named by its stack output
        assert stack.outputs[OUTPUTS[role]] == table.outputs["name"]


def test_the_metadata_table_indexes_uploads_completions_and_failures_by_day(stack: Deployment) -> None:
    # Given the stack's metadata table
    indexes = {i["name"]: i for i in _tables(stack)["metadata"].input("globalSecondaryIndexes")}
    keys = {
        name: [(k["attributeName"], k["keyType"]) for k in i["keySchemas"]] for name, i in indexes.items()
    }
    # Then the daily report reads whole upload days (every attribute)
    assert keys["by_day"] == [("day", "HASH"), ("uploaded_at", "RANGE")]
    assert indexes["by_day"]["projectionType"] == "ALL"
    # and the staleness signal reads a completion day's last item, its keys only (a few
    # hundred bytes whatever the summaries hold)
    assert keys["by_completion"] == [("completed_day", "HASH"), ("completed_at", "RANGE")]
    assert indexes["by_completion"]["projectionType"] == "KEYS_ONLY"
    # and `headrace status` reads the failures by the day they happened (whatever the upload
    # day), projecting what it shows of them: not the schema and statistics of a completed
    # item that failed to load (up to 300 KB), nor any attribute status does not show
    assert keys["by_failure"] == [("failure_day", "HASH"), ("failure_at", "RANGE")]
    assert indexes["by_failure"]["projectionType"] == "INCLUDE"
    assert set(indexes["by_failure"]["nonKeyAttributes"]) == {
        "status",
        "uploaded_at",
        "error",
        "failed_at",
        "skip_reason",
        "superseded_by",
        "load_status",
        "load_error",
        "load_failed_at",
    }
    assert set(indexes) == {"by_day", "by_completion", "by_failure"}
    attributes = {a["name"]: a["type"] for a in _tables(stack)["metadata"].input("attributes")}
    assert attributes["completed_day"] == attributes["completed_at"] == "S"
    assert attributes["failure_day"] == attributes["failure_at"] == "S"


def test_tables_are_encrypted_recoverable_and_expire_items(stack: Deployment) -> None:
    for role, table in _tables(stack).items():
        spec: TableSpec = SPECS[role]
        # Then every table is encrypted with KMS and has point-in-time recovery
        assert table.input("serverSideEncryption") == {"enabled": True}
        assert table.input("pointInTimeRecovery") == {"enabled": True}
        # and TTL on the spec's attribute when it has one
        if spec.ttl_attribute:
            assert table.input("ttl") == {"attributeName": spec.ttl_attribute, "enabled": True}
        else:
            assert table.inputs.get("ttl") is None
    # The metadata table's TTL is the item's "ttl" (docs/contracts.md, README metadata item)
    assert _tables(stack)["metadata"].input("ttl")["attributeName"] == "ttl"


# The key schemas of the deployed tables. DynamoDB cannot change a table's keys or local
# indexes: a new one here replaces the table, and its items with it, on every deployed stack
# (prod refuses the plan: the tables are protected). Global indexes may come and go in place.
DEPLOYED_KEYS = {
    "metadata": ("object_key", "version"),
    "idempotency": ("id", None),
    "tenant-keys": ("key_hash", None),
    "tenant-logs": ("tenant_id", "log_id"),
}


def test_the_tables_keep_the_keys_deployed_stacks_have(stack: Deployment) -> None:
    # Given a stack's tables
    deployed = _tables(stack)
    # Then each keeps its hash and range key, has no local index, and lets AWS name it
    # (a set name is one more input whose change replaces the table)
    assert {
        role: (t.inputs["hashKey"], t.inputs.get("rangeKey")) for role, t in deployed.items()
    } == DEPLOYED_KEYS
    assert not any(t.inputs.get("localSecondaryIndexes") or t.inputs.get("name") for t in deployed.values())
