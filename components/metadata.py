"""DynamoDB tables, built from the key schemas the handlers use (handlers/models/tables.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.models import tables
from handlers.models.tables import TableSpec


@dataclass(frozen=True)
class TableArgs:
    spec: TableSpec
    deletion_protection: bool = False
    # Pulumi's protect (prod): a plan that would delete or replace the table (a new key
    # schema, say) fails at preview instead of moving the pipeline onto an empty table.
    protect: bool = False


class Table(pulumi.ComponentResource):
    """An on-demand table: encrypted (KMS), point-in-time recovery, TTL when the spec has
    a TTL attribute, global secondary indexes projecting what their spec says."""

    def __init__(self, name: str, args: TableArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:metadata:Table", name, None, opts)
        spec = args.spec
        self.table = aws.dynamodb.Table(
            name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.hash_key,
            range_key=spec.range_key,
            attributes=[aws.dynamodb.TableAttributeArgs(name=a, type=t) for a, t in spec.attributes.items()],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index.name,
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=index.hash_key, key_type="HASH"
                        ),
                        *(
                            [
                                aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                                    attribute_name=index.range_key, key_type="RANGE"
                                )
                            ]
                            if index.range_key
                            else []
                        ),
                    ],
                    projection_type=index.projection,
                    non_key_attributes=list(index.non_key_attributes) or None,
                )
                for index in spec.indexes
            ]
            or None,
            ttl=(
                aws.dynamodb.TableTtlArgs(attribute_name=spec.ttl_attribute, enabled=True)
                if spec.ttl_attribute
                else None
            ),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            # The AWS managed key (aws/dynamodb) rather than the AWS owned default.
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            deletion_protection_enabled=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.name: pulumi.Output[str] = self.table.name
        self.arn: pulumi.Output[str] = self.table.arn
        self.register_outputs({"name": self.name, "arn": self.arn})


@dataclass(frozen=True)
class TablesArgs:
    deletion_protection: bool = False
    protect: bool = False


class Tables(pulumi.ComponentResource):
    """File metadata (one item per raw object version), Powertools idempotency records,
    tenant API keys and tenant logs."""

    def __init__(self, name: str, args: TablesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:metadata:Tables", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def table(role: str, spec: TableSpec) -> Table:
            return Table(
                f"{name}-{role}", TableArgs(spec, args.deletion_protection, args.protect), opts=child
            )

        self.metadata = table("metadata", tables.METADATA)
        self.idempotency = table("idempotency", tables.IDEMPOTENCY)
        self.tenant_keys = table("tenant-keys", tables.TENANT_KEYS)
        self.tenant_logs = table("tenant-logs", tables.TENANT_LOGS)
        self.register_outputs(
            {
                "metadata": self.metadata.name,
                "idempotency": self.idempotency.name,
                "tenant_keys": self.tenant_keys.name,
                "tenant_logs": self.tenant_logs.name,
            }
        )
