"""The query catalog (docs/query.md): a Glue database for the dataset tables, an Athena
workgroup whose results are encrypted in the reports bucket and whose queries are cancelled
beyond a bytes-scanned limit, and a managed policy for the people who query.

The tables themselves are created and changed by the processor (``handlers/logic/catalog.py``)
as files arrive; nothing here waits for a crawler. Everything is free while idle: a Glue
database and an Athena workgroup cost nothing until queried, a managed policy nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.logic.layout import PROCESSED_PREFIXES

from .policies import Allow, identity_policy, objects_under

# Where Athena writes results in the reports bucket (expired by the bucket's lifecycle).
RESULTS_PREFIX = "athena-results/"
MIB = 1024 * 1024


@dataclass(frozen=True)
class QueryCatalogArgs:
    database_name: str
    workgroup_name: str
    partition: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    processed_bucket_arn: pulumi.Input[str]
    reports_bucket_name: pulumi.Input[str]
    reports_bucket_arn: pulumi.Input[str]
    bytes_scanned_limit_mb: int
    # Let `pulumi destroy` delete a workgroup that still has saved queries (never in prod).
    force_destroy: bool = False
    # Pulumi's protect (prod) on the database: deleting or replacing it (a new
    # catalog.database, catalog.enabled false) deletes every table in it, and the processor
    # recreates a dataset's table only from its next file, with that file's columns and
    # days alone, so Athena would no longer see the older ones.
    protect: bool = False


class QueryCatalog(pulumi.ComponentResource):
    def __init__(self, name: str, args: QueryCatalogArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:catalog:QueryCatalog", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.database = aws.glue.CatalogDatabase(
            f"{name}-database",
            name=args.database_name,
            description="headrace: one table per dataset, kept in step by the processor (docs/query.md)",
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.results_location = pulumi.Output.concat("s3://", args.reports_bucket_name, "/", RESULTS_PREFIX)
        self.workgroup = aws.athena.Workgroup(
            f"{name}-workgroup",
            name=args.workgroup_name,
            description="headrace: queries over the processed bucket (headrace query)",
            force_destroy=args.force_destroy,
            configuration=aws.athena.WorkgroupConfigurationArgs(
                # Users cannot send results elsewhere, unencrypted, or lift the limit.
                enforce_workgroup_configuration=True,
                bytes_scanned_cutoff_per_query=args.bytes_scanned_limit_mb * MIB,
                publish_cloudwatch_metrics_enabled=True,
                engine_version=aws.athena.WorkgroupConfigurationEngineVersionArgs(
                    selected_engine_version="AUTO"
                ),
                result_configuration=aws.athena.WorkgroupConfigurationResultConfigurationArgs(
                    output_location=self.results_location,
                    expected_bucket_owner=args.account_id,
                    encryption_configuration=aws.athena.WorkgroupConfigurationResultConfigurationEncryptionConfigurationArgs(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
            opts=child,
        )

        prefix = pulumi.Output.concat("arn:", args.partition, ":glue:", args.region, ":", args.account_id)
        self.catalog_arn = pulumi.Output.concat(prefix, ":catalog")
        self.database_arn = pulumi.Output.concat(prefix, ":database/", self.database.name)
        self.tables_arn = pulumi.Output.concat(prefix, ":table/", self.database.name, "/*")
        glue_resources = (self.catalog_arn, self.database_arn, self.tables_arn)

        self.query_policy = aws.iam.Policy(
            f"{name}-query",
            description="headrace query: run SQL in the stack's Athena workgroup over the processed "
            "bucket (attach to the users or roles that query; docs/query.md)",
            policy=identity_policy(
                [
                    Allow(
                        "RunQueriesInTheWorkgroup",
                        (
                            "athena:StartQueryExecution",
                            "athena:GetQueryExecution",
                            "athena:GetQueryResults",
                            "athena:StopQueryExecution",
                            "athena:GetWorkGroup",
                        ),
                        (self.workgroup.arn,),
                    ),
                    Allow(
                        "ReadTheCatalog",
                        ("glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"),
                        glue_resources,
                    ),
                    Allow(
                        "ReadProcessedData",
                        ("s3:GetObject",),
                        tuple(
                            objects_under(args.processed_bucket_arn, prefix) for prefix in PROCESSED_PREFIXES
                        ),
                    ),
                    Allow(
                        "ListProcessedData",
                        ("s3:ListBucket",),
                        (args.processed_bucket_arn,),
                        condition={
                            "StringLike": {"s3:prefix": [f"{prefix}*" for prefix in PROCESSED_PREFIXES]}
                        },
                    ),
                    Allow(
                        "WriteQueryResults",
                        (
                            "s3:PutObject",
                            "s3:GetObject",
                            "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts",
                        ),
                        (objects_under(args.reports_bucket_arn, RESULTS_PREFIX),),
                    ),
                    Allow(
                        "ListQueryResults",
                        ("s3:ListBucket",),
                        (args.reports_bucket_arn,),
                        condition={"StringLike": {"s3:prefix": [f"{RESULTS_PREFIX}*"]}},
                    ),
                    Allow(
                        "ListResultUploads", ("s3:ListBucketMultipartUploads",), (args.reports_bucket_arn,)
                    ),
                    Allow(
                        "LocateBuckets",
                        ("s3:GetBucketLocation",),
                        (args.processed_bucket_arn, args.reports_bucket_arn),
                    ),
                ]
            ),
            opts=child,
        )

        self.database_name: pulumi.Output[str] = self.database.name
        self.workgroup_name: pulumi.Output[str] = self.workgroup.name
        self.register_outputs(
            {
                "database": self.database_name,
                "workgroup": self.workgroup_name,
                "query_policy_arn": self.query_policy.arn,
            }
        )
