"""TENANT_LOGS_TABLE: ingested records, partition key ``tenant_id``, sort key ``log_id``.

Every read is a Query on one partition key, so it can only ever return one tenant's items.
The optional original text is encrypted with KMS under an encryption context naming the
tenant; KMS encrypts at most 4096 bytes per call, so a longer original is stored as
several ciphertexts (``original_ciphertext`` is a list), decrypted and joined in order.

An item is gone once its ``ttl`` has passed, whether or not DynamoDB has deleted it yet
(that can take days): listings skip it, and a new record with its log id replaces it
instead of being dropped as a duplicate of a record about to vanish.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from handlers.models.ingest import PUBLIC_LOG_FIELDS

from .aws import Deadline, api_table, client, table

KMS_MAX_PLAINTEXT = 4096
_DESERIALIZE = TypeDeserializer().deserialize
# absent, or expired (DynamoDB deletes expired items only eventually); "ttl" is a reserved word
_NEW_ITEM = "(attribute_not_exists(tenant_id) AND attribute_not_exists(log_id)) OR #ttl < :now"
_LIVE_ITEM = "attribute_not_exists(#ttl) OR #ttl >= :now"
# Listings read only what a tenant may see (never the ciphertext). Names go through
# placeholders: several (text, source, ttl, ...) are DynamoDB reserved words.
_PROJECTION = ", ".join(f"#p{i}" for i in range(len(PUBLIC_LOG_FIELDS)))
_NAMES = {f"#p{i}": name for i, name in enumerate(PUBLIC_LOG_FIELDS)} | {"#ttl": "ttl"}


class TenantLogStore:
    def __init__(self, table_name: str, kms_key_arn: str | None = None):
        self.table_name = table_name
        self.kms_key_arn = kms_key_arn

    def put_once(self, item: dict[str, Any], original: str | None = None) -> dict[str, Any] | None:
        """Store ``item`` unless its key exists (unexpired). None when stored; else the item
        already stored under that key (``{}`` if DynamoDB did not return it)."""
        if original is not None:
            item = {**item, "original_ciphertext": self.encrypt(original, item["tenant_id"])}
        try:
            table(self.table_name).put_item(
                Item=item,
                ConditionExpression=_NEW_ITEM,
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":now": int(time.time())},
                # the stored item comes back with the refusal: no read, no extra permission
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                stored = exc.response.get("Item") or {}
                return {name: _DESERIALIZE(value) for name, value in stored.items()}
            raise
        return None

    def page(
        self,
        tenant_id: str,
        limit: int,
        start_key: Mapping[str, str] | None,
        deadline: Deadline,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of ``tenant_id``'s unexpired records in log id order, and the key to
        continue from (the API's read: bounded by its ``deadline``). Expired items are
        filtered out after ``limit`` items are read, so a page may hold fewer, even none."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "tenant_id = :t",
            "FilterExpression": _LIVE_ITEM,
            "ExpressionAttributeValues": {":t": tenant_id, ":now": int(time.time())},
            "Limit": limit,
            "ProjectionExpression": _PROJECTION,
            "ExpressionAttributeNames": _NAMES,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = dict(start_key)
        response = deadline.call("Query", lambda: api_table(self.table_name).query(**kwargs))
        return response.get("Items", []), response.get("LastEvaluatedKey")

    # ----------------------------------------------------------------- originals
    def encrypt(self, text: str, tenant_id: str) -> list[bytes]:
        if not self.kms_key_arn:
            raise RuntimeError("keeping originals needs a KMS key (ORIGINALS_KMS_KEY_ARN)")
        raw = text.encode("utf-8")
        return [
            client("kms").encrypt(
                KeyId=self.kms_key_arn,
                Plaintext=raw[i : i + KMS_MAX_PLAINTEXT],
                EncryptionContext={"tenant_id": tenant_id},
            )["CiphertextBlob"]
            for i in range(0, len(raw), KMS_MAX_PLAINTEXT)
        ]


def decrypt_original(item: Mapping[str, Any]) -> str | None:
    """The original text of a stored item (operators, audits), or None when not kept.
    Needs kms:Decrypt on the key, with the item's tenant as encryption context."""
    parts = item.get("original_ciphertext")
    if not parts:
        return None
    kms = client("kms")
    raw = b"".join(
        kms.decrypt(CiphertextBlob=bytes(part), EncryptionContext={"tenant_id": item["tenant_id"]})[
            "Plaintext"
        ]
        for part in parts
    )
    return raw.decode("utf-8")
