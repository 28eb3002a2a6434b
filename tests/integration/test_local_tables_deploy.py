"""The embedded runtime's deploy handler for DynamoDB tables, against moto: a table is
created with the keys, indexes and projections the program declares."""

from __future__ import annotations

from typing import Any

import boto3
from pulumi.runtime import MockResourceArgs

from handlers.models import tables
from headrace.local.deploy import HANDLERS, EmulatorMocks

from .conftest import REGION

TABLE = "aws:dynamodb/table:Table"


def _inputs(spec: tables.TableSpec) -> dict[str, Any]:
    """A table's inputs as the engine passes them from components/metadata.py (camelCase)."""
    return {
        "name": "headrace-local-metadata",
        "billingMode": "PAY_PER_REQUEST",
        "hashKey": spec.hash_key,
        "rangeKey": spec.range_key,
        "attributes": [{"name": a, "type": t} for a, t in spec.attributes.items()],
        "globalSecondaryIndexes": [
            {
                "name": i.name,
                "keySchemas": [{"attributeName": i.hash_key, "keyType": "HASH"}]
                + ([{"attributeName": i.range_key, "keyType": "RANGE"}] if i.range_key else []),
                "projectionType": i.projection,
                **({"nonKeyAttributes": list(i.non_key_attributes)} if i.non_key_attributes else {}),
            }
            for i in spec.indexes
        ],
    }


def test_the_metadata_table_gets_every_index_with_its_projection(aws):
    # Given the program's metadata table
    inputs = _inputs(tables.METADATA)
    # When the emulator's handler creates it
    HANDLERS[TABLE](
        EmulatorMocks(lambda service: boto3.client(service, region_name=REGION), REGION),
        MockResourceArgs(TABLE, "metadata", inputs),
        inputs,
    )
    # Then each index projects what the spec says: by_failure the attributes status shows
    described = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=inputs["name"])["Table"]
    projections = {i["IndexName"]: i["Projection"] for i in described["GlobalSecondaryIndexes"]}
    assert projections == {
        i["IndexName"]: i["Projection"]
        for i in tables.METADATA.boto3_create_args(inputs["name"])["GlobalSecondaryIndexes"]
    }
    assert set(projections["by_failure"]["NonKeyAttributes"]) == set(tables.FAILURE_ATTRIBUTES)
    # and a failure's error is read from the index, its summary is not
    table = boto3.resource("dynamodb", region_name=REGION).Table(inputs["name"])
    table.put_item(
        Item={
            "object_key": "incoming/x.csv",
            "version": "v1",
            "status": "failed",
            "error": "the file is empty (0 bytes)",
            "schema": {"a": "int"},
            "failure_day": "2026-12-07",
            "failure_at": "2026-12-07T10:00:00.000Z",
        }
    )
    [item] = table.query(
        IndexName="by_failure",
        KeyConditionExpression="failure_day = :d",
        ExpressionAttributeValues={":d": "2026-12-07"},
    )["Items"]
    assert item["error"] == "the file is empty (0 bytes)" and "schema" not in item
