"""TENANT_KEYS_TABLE: API keys by hash (written by ``headrace tenants``, read by the API)."""

from __future__ import annotations

from handlers.models.ingest import StoredKey, TenantKey

from .aws import Deadline, api_table


class TenantKeyStore:
    def __init__(self, table_name: str):
        self.table_name = table_name

    def lookup(self, key_hash: str, deadline: Deadline) -> StoredKey | None:
        # Consistent read: a key issued a moment ago must work at once.
        item = deadline.call(
            "GetItem",
            lambda: api_table(self.table_name).get_item(
                Key={"key_hash": key_hash},
                ConsistentRead=True,
                ProjectionExpression="key_hash, tenant_id, key_id, #n, disabled",
                ExpressionAttributeNames={"#n": "name"},
            ),
        ).get("Item")
        if item is None or not item.get("tenant_id"):
            return None
        return StoredKey(key_hash=str(item["key_hash"]), key=TenantKey.model_validate(item))
