"""The Glue Data Catalog: the tables ``handlers.logic.catalog`` keeps in step with the data."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .aws import client


class CatalogRejected(Exception):
    """Glue refused the request for a reason retrying cannot fix (recorded, not retried)."""


class TableChanged(Exception):
    """The table was created or updated concurrently; read it again and merge again."""


# Errors retrying cannot fix: the processor records them instead of retrying the file.
PERMANENT_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidInputException",
        "ValidationException",
        "EntityNotFoundException",  # the database itself is missing (a table is looked up apart)
        "ResourceNumberLimitExceededException",
        "GlueEncryptionException",
    }
)
CONFLICT_CODES = frozenset({"AlreadyExistsException", "ConcurrentModificationException"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(operation: str, database: str, exc: ClientError) -> Exception:
    code = _code(exc)
    if code in CONFLICT_CODES:
        return TableChanged(f"{operation}: {code}")
    if code in PERMANENT_CODES:
        message = exc.response.get("Error", {}).get("Message", "")
        return CatalogRejected(f"glue {operation} in {database}: {code}: {message}"[:1000])
    return exc


class GlueCatalog:
    """``handlers.logic.catalog.CatalogStore`` over boto3's Glue client: a table that does
    not exist reads as ``None``; conflicts raise ``TableChanged``, refusals
    ``CatalogRejected``; anything else (throttling after retries, service errors) as is."""

    def get_table(self, database: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(client("glue").get_table(DatabaseName=database, Name=name)["Table"])
        except ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", ""))
            # "Table <name> not found." vs "Database <name> not found." (the latter is permanent)
            if _code(exc) == "EntityNotFoundException" and not message.startswith("Database "):
                return None
            raise _translate("GetTable", database, exc) from exc

    def create_table(self, database: str, table_input: dict[str, Any]) -> None:
        try:
            client("glue").create_table(DatabaseName=database, TableInput=table_input)
        except ClientError as exc:
            raise _translate("CreateTable", database, exc) from exc

    def update_table(self, database: str, table_input: dict[str, Any], version_id: str | None) -> None:
        extra = {"VersionId": version_id} if version_id else {}
        try:
            client("glue").update_table(DatabaseName=database, TableInput=table_input, **extra)
        except ClientError as exc:
            raise _translate("UpdateTable", database, exc) from exc

    def create_partition(self, database: str, table: str, partition_input: dict[str, Any]) -> None:
        try:
            client("glue").create_partition(
                DatabaseName=database, TableName=table, PartitionInput=partition_input
            )
        except ClientError as exc:
            if _code(exc) == "AlreadyExistsException":
                return  # the day's earlier files registered it
            raise _translate("CreatePartition", database, exc) from exc

    def get_partition(self, database: str, table: str, values: list[str]) -> dict[str, Any] | None:
        try:
            return dict(
                client("glue").get_partition(DatabaseName=database, TableName=table, PartitionValues=values)[
                    "Partition"
                ]
            )
        except ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if _code(exc) == "EntityNotFoundException" and not message.startswith(("Database ", "Table ")):
                return None  # no such partition (yet)
            raise _translate("GetPartition", database, exc) from exc

    def update_partition(
        self, database: str, table: str, values: list[str], partition_input: dict[str, Any]
    ) -> None:
        try:
            client("glue").update_partition(
                DatabaseName=database,
                TableName=table,
                PartitionValueList=values,
                PartitionInput=partition_input,
            )
        except ClientError as exc:
            raise _translate("UpdatePartition", database, exc) from exc
