"""The whole pipeline as one component: wires the stack config into the components and
grants each function exactly the resources its handler uses (docs/contracts.md)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.logic.layout import PROCESSED_PREFIXES
from handlers.models.tables import METADATA

from .alarms import Alarms, AlarmsArgs
from .catalog import RESULTS_PREFIX, QueryCatalog, QueryCatalogArgs
from .config import FunctionSettings, StackConfig, pii_environment
from .functions import (
    FunctionCode,
    LambdaPackage,
    LambdaPackageArgs,
    PipelineFunction,
    PipelineFunctionArgs,
    SqsSource,
    VpcPlacement,
)
from .ingest import IngestApi, IngestApiArgs
from .lambda_archive import LambdaArchive
from .metadata import Tables, TablesArgs
from .policies import Allow, kms_key_policy, objects_under
from .queues import QueueWithDlq, QueueWithDlqArgs
from .reporting import AlertsTopicArgs, Reporting, ReportingArgs
from .routing import Routing, RoutingArgs
from .storage import DataBuckets, DataBucketsArgs
from .warehouse import ExternalDatabaseArgs, NetworkArgs, RdsArgs, Warehouse, WarehouseArgs

# Function (service) name -> handler (docs/contracts.md).
HANDLERS = {
    "processor": "handlers.processor.lambda_handler",
    "loader": "handlers.loader.lambda_handler",
    "report": "handlers.report.lambda_handler",
    "ingest": "handlers.ingest_api.lambda_handler",
    "ingest-worker": "handlers.ingest_worker.lambda_handler",
    "warehouse-setup": "handlers.warehouse_setup.lambda_handler",
}

# The stack outputs of README "Stack outputs", then the additional ones operator tools use.
DOCUMENTED_OUTPUTS = (
    "raw_bucket",
    "processed_bucket",
    "reports_bucket",
    "processing_queue_url",
    "processing_dlq_url",
    "load_queue_url",
    "load_dlq_url",
    "metadata_table",
    "db_secret_arn",
    "alerts_topic_arn",
    "ingest_api_url",
    "region",
    "raw_prefix",
)
ADDITIONAL_OUTPUTS = (
    "ingest_queue_url",
    "ingest_dlq_url",
    "idempotency_table",
    "tenant_keys_table",
    "tenant_logs_table",
    "event_bus_name",
    "function_names",
    "raw_suffixes",
    "stack",
)
# With the query catalog on (catalog.enabled; docs/query.md).
CATALOG_OUTPUTS = ("glue_database", "athena_workgroup", "query_policy_arn")
# The warehouse setup function runs once per deployment that changes what it does: it
# needs none of the per-function settings a stack tunes.
WAREHOUSE_SETUP = FunctionSettings(memory_mb=256, timeout_seconds=60)
# Its code: a change of these runs it again (not a change of any other handler, which would
# make every code deployment need the database up).
WAREHOUSE_SETUP_MODULES = (
    "handlers/warehouse_setup.py",
    "handlers/dal/warehouse_roles.py",
    "handlers/dal/warehouse.py",
    "handlers/dal/secrets.py",
    "handlers/models/loader.py",
)


REPOSITORY = Path(__file__).resolve().parents[1]


def warehouse_setup_code_hash(root: Path = REPOSITORY) -> str:
    digest = hashlib.sha256()
    for module in WAREHOUSE_SETUP_MODULES:
        digest.update((root / module).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PipelineArgs:
    config: StackConfig
    project: str
    stack: str
    archive: LambdaArchive
    # headrace:db_password (a Pulumi secret); required when warehouse.mode is external.
    db_password: pulumi.Input[str] | None = None


class Pipeline(pulumi.ComponentResource):
    def __init__(self, name: str, args: PipelineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:pipeline:Pipeline", name, None, opts)
        self._name = name
        self._stack = args.stack
        self._config = config = args.config
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition_info = aws.get_partition_output(opts=invoke)
        partition = partition_info.partition
        account_id = identity.account_id
        prod = config.is_prod
        # Function ARNs are known before the functions exist: a role's policy may name its own.
        self._function_arn_prefix = pulumi.Output.concat(
            "arn:", partition, ":lambda:", config.aws_region, ":", account_id, ":function:"
        )

        # ------------------------------------------------------------ data
        self.buckets = DataBuckets(
            f"{name}-data",
            DataBucketsArgs(
                raw_days=config.retention.raw_days,
                processed_days=config.retention.processed_days,
                reports_days=config.retention.reports_days,
                noncurrent_days=config.retention.noncurrent_days,
                force_destroy=not prod,
                protect=prod,
                reports_prefix_expirations=(
                    ((RESULTS_PREFIX, config.catalog.results_retention_days),)
                    if config.catalog_enabled
                    else ()
                ),
            ),
            opts=child,
        )
        self.tables = Tables(f"{name}-tables", TablesArgs(deletion_protection=prod, protect=prod), opts=child)

        # ------------------------------------------------------------ queues and routing
        fn = config.functions
        max_receive = config.queues.max_receive_count

        def queue(role: str, consumer: Any, routed: bool) -> QueueWithDlq:
            return QueueWithDlq(
                f"{name}-{role}",
                QueueWithDlqArgs(
                    consumer_timeout_seconds=consumer.timeout_seconds,
                    consumer_batching_window_seconds=consumer.batching_window_seconds,
                    max_receive_count=max_receive,
                    message_retention_seconds=config.queues.message_retention_seconds,
                    tls_only_policy=not routed,
                    protect=prod,
                ),
                opts=child,
            )

        self.processing_queue = queue("processing", fn.processor, routed=True)
        self.load_queue = queue("load", fn.loader, routed=True)
        self.ingest_queue = queue("ingest", fn.ingest_worker, routed=False)
        self.routing = Routing(
            f"{name}-events",
            RoutingArgs(
                raw_bucket_name=self.buckets.raw.name,
                raw_prefix=config.raw_prefix,
                processing_queue=self.processing_queue,
                load_queue=self.load_queue,
                max_event_age_seconds=config.routing.max_event_age_seconds,
                max_retry_attempts=config.routing.max_retry_attempts,
            ),
            opts=child,
        )

        # ------------------------------------------------------------ warehouse
        processed, metadata = self.buckets.processed, self.tables.metadata
        # The processor writes and the loader reads the processed layout's two prefixes only
        # (handlers/logic/layout.py); nothing else in the bucket is theirs.
        processed_objects = tuple(objects_under(processed.arn, prefix) for prefix in PROCESSED_PREFIXES)
        # The loader's S3 and DynamoDB calls: with the database secret's, also all that the
        # warehouse network's endpoints let through (RDS mode).
        loader_data = [
            Allow("ReadProcessed", ("s3:GetObject",), processed_objects),
            # Without ListBucket a missing output reads as 403, not 404, and a late event
            # for a superseded version would fail instead of being recorded as such.
            Allow("ListProcessedBucket", ("s3:ListBucket",), (processed.arn,)),
            Allow("RecordLoad", ("dynamodb:GetItem", "dynamodb:UpdateItem"), (metadata.arn,)),
        ]
        self.warehouse = Warehouse(f"{name}-warehouse", self._warehouse_args(args, loader_data), opts=child)

        # ------------------------------------------------------------ query catalog
        self.catalog: QueryCatalog | None = None
        if config.catalog_enabled:
            self.catalog = QueryCatalog(
                f"{name}-catalog",
                QueryCatalogArgs(
                    database_name=config.catalog.database or glue_name(f"{args.project}_{args.stack}"),
                    workgroup_name=name,
                    partition=partition,
                    region=config.aws_region,
                    account_id=account_id,
                    processed_bucket_arn=self.buckets.processed.arn,
                    reports_bucket_name=self.buckets.reports.name,
                    reports_bucket_arn=self.buckets.reports.arn,
                    bytes_scanned_limit_mb=config.catalog.bytes_scanned_limit_mb,
                    force_destroy=not prod,
                    protect=prod,
                ),
                opts=child,
            )

        # ------------------------------------------------------------ functions
        self.package = LambdaPackage(
            f"{name}-package",
            LambdaPackageArgs(archive=args.archive, noncurrent_days=7, force_destroy=not prod),
            opts=child,
        )
        code = self.package.code
        raw, reports = self.buckets.raw, self.buckets.reports
        idempotency = self.tables.idempotency
        pii: dict[str, pulumi.Input[str]] = {**pii_environment(config.pii)}
        faults = {"HEADRACE_CRASH_RATE": str(config.faults.crash_rate)} if config.faults.crash_rate else {}
        catalog_environment: dict[str, pulumi.Input[str]] = {}
        catalog_statements: list[Allow] = []
        if self.catalog is not None:
            catalog_environment["GLUE_DATABASE"] = self.catalog.database_name
            catalog_statements.append(
                Allow(
                    "SyncCatalogTables",
                    (
                        "glue:GetTable",
                        "glue:CreateTable",
                        "glue:UpdateTable",
                        "glue:CreatePartition",
                        "glue:GetPartition",
                        "glue:UpdatePartition",
                    ),
                    (self.catalog.catalog_arn, self.catalog.database_arn, self.catalog.tables_arn),
                )
            )

        self.processor = PipelineFunction(
            f"{name}-processor",
            self._function_args(
                "processor",
                fn.processor,
                code,
                environment={
                    "PROCESSED_BUCKET": processed.name,
                    "METADATA_TABLE": metadata.name,
                    "IDEMPOTENCY_TABLE": idempotency.name,
                    "EVENT_BUS_NAME": self.routing.bus_name,
                    "RAW_PREFIX": config.raw_prefix,
                    "RAW_SUFFIXES": ",".join(config.raw_suffixes),
                    "MAX_RECEIVE_COUNT": str(max_receive),
                    "METADATA_TTL_DAYS": str(config.metadata.ttl_days),
                    "IDEMPOTENCY_TTL_SECONDS": str(config.metadata.idempotency_ttl_seconds),
                    **pii,
                    **faults,
                    **catalog_environment,
                },
                statements=[
                    Allow(
                        "ReadRawUploads",
                        ("s3:GetObject",),
                        (raw.arn.apply(lambda arn: f"{arn}/{config.raw_prefix}*"),),
                    ),
                    # Without ListBucket a deleted upload reads as 403, not 404, and would be
                    # retried instead of recorded as gone.
                    Allow("ListRawBucket", ("s3:ListBucket",), (raw.arn,)),
                    # DeleteObject: a version's outputs are removed when a newer version wins.
                    Allow(
                        "WriteProcessed",
                        ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"),
                        processed_objects,
                    ),
                    # Query: the other versions of a key; DeleteItem: a "received" item
                    # recorded under a URL-encoded spelling of the key.
                    Allow(
                        "RecordMetadata",
                        ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"),
                        (metadata.arn,),
                    ),
                    Allow(
                        "IdempotencyRecords",
                        (
                            "dynamodb:GetItem",
                            "dynamodb:PutItem",
                            "dynamodb:UpdateItem",
                            "dynamodb:DeleteItem",
                        ),
                        (idempotency.arn,),
                    ),
                    Allow("PublishFileProcessed", ("events:PutEvents",), (self.routing.bus_arn,)),
                    *catalog_statements,
                    # A file that cannot be processed is made visible again at once, so it
                    # reaches the DLQ without waiting out the visibility timeout each time.
                    Allow(
                        "RetryPoisonFileNow",
                        ("sqs:GetQueueUrl", "sqs:ChangeMessageVisibility"),
                        (self.processing_queue.arn,),
                    ),
                ],
                sqs_source=self.processing_queue.arn,
            ),
            opts=child,
        )

        self.loader = PipelineFunction(
            f"{name}-loader",
            self._function_args(
                "loader",
                fn.loader,
                code,
                environment={
                    "DB_SECRET_ARN": self.warehouse.secret_arn,
                    "PROCESSED_BUCKET": processed.name,
                    "METADATA_TABLE": metadata.name,
                    "MAX_RECEIVE_COUNT": str(max_receive),
                    "WAREHOUSE_SCHEMA": config.warehouse.db_schema,
                },
                statements=[*loader_data, self.warehouse.read_secret],
                sqs_source=self.load_queue.arn,
                vpc=self.warehouse.loader_placement,
            ),
            opts=child,
        )
        self._warehouse_setup(code)

        self.originals_key: aws.kms.Key | None = None
        if config.ingest.keep_original:
            self.originals_key = aws.kms.Key(
                f"{name}-originals-key",
                description="headrace ingest: encrypts the original (unredacted) log text",
                enable_key_rotation=True,
                deletion_window_in_days=30 if prod else 7,
                # Only the worker's role encrypts (through IAM); only the named readers
                # decrypt: an account-wide kms:Decrypt grant must not reveal unredacted text.
                policy=kms_key_policy(
                    partition,
                    account_id,
                    delegated_use=("kms:Encrypt",),
                    decrypters=config.ingest.original_readers,
                ),
                # Prod: turning keep_original off (or destroying the stack) leaves the key,
                # so the originals already kept stay readable until their log_ttl_days;
                # scheduled for deletion, they would be lost after its 30-day window.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=prod),
            )
        worker_statements = [
            Allow(
                # A conditional PutItem: a redelivered log id is stored once.
                "StoreTenantLogs",
                ("dynamodb:PutItem",),
                (self.tables.tenant_logs.arn,),
            )
        ]
        worker_environment: dict[str, pulumi.Input[str]] = {
            "TENANT_LOGS_TABLE": self.tables.tenant_logs.name,
            "MAX_RECEIVE_COUNT": str(max_receive),
            "KEEP_ORIGINAL": "true" if config.ingest.keep_original else "false",
            "LOG_TTL_DAYS": str(config.ingest.log_ttl_days),
            **pii,
            **faults,
        }
        if self.originals_key is not None:
            worker_environment["ORIGINALS_KMS_KEY_ARN"] = self.originals_key.arn
            worker_statements.append(Allow("EncryptOriginals", ("kms:Encrypt",), (self.originals_key.arn,)))
        self.ingest_worker = PipelineFunction(
            f"{name}-ingest-worker",
            self._function_args(
                "ingest-worker",
                fn.ingest_worker,
                code,
                environment=worker_environment,
                statements=worker_statements,
                sqs_source=self.ingest_queue.arn,
            ),
            opts=child,
        )

        self.ingest = PipelineFunction(
            f"{name}-ingest",
            self._function_args(
                "ingest",
                fn.ingest,
                code,
                environment={
                    "INGEST_QUEUE_URL": self.ingest_queue.url,
                    "TENANT_KEYS_TABLE": self.tables.tenant_keys.name,
                    "TENANT_LOGS_TABLE": self.tables.tenant_logs.name,
                    "MAX_BODY_BYTES": str(config.ingest.max_body_bytes),
                    "MAX_BATCH_RECORDS": str(config.ingest.max_batch_records),
                },
                statements=[
                    Allow("EnqueueLogs", ("sqs:SendMessage",), (self.ingest_queue.arn,)),
                    Allow("LookUpApiKeys", ("dynamodb:GetItem",), (self.tables.tenant_keys.arn,)),
                    Allow("ListTenantLogs", ("dynamodb:Query",), (self.tables.tenant_logs.arn,)),
                ],
            ),
            opts=child,
        )
        self.ingest_api = IngestApi(
            f"{name}-ingest-api",
            IngestApiArgs(
                function_name=self.ingest.name,
                function_arn=self.ingest.arn,
                endpoint=config.ingest.endpoint,
                throttle_rate_per_second=config.ingest.throttle_rate_per_second,
                throttle_burst=config.ingest.throttle_burst,
                log_retention_days=config.retention.log_days,
            ),
            opts=child,
        )

        # ------------------------------------------------------------ reporting and alarms
        # the indexes the report function reads (not by_failure: only `headrace status` does)
        indexes = [
            pulumi.Output.concat(metadata.arn, "/index/", index.name)
            for index in METADATA.indexes
            if index.name in ("by_day", "by_completion")
        ]
        self.reporting = Reporting(
            f"{name}-reporting",
            ReportingArgs(
                function=self._function_args(
                    "report",
                    fn.report,
                    code,
                    environment={
                        "METADATA_TABLE": metadata.name,
                        "REPORTS_BUCKET": reports.name,
                        "PROCESSING_QUEUE_URL": self.processing_queue.url,
                        # the verdict reads the dead letters too: uploads that never reached
                        # the metadata table end in the processing DLQ
                        "PROCESSING_DLQ_URL": self.processing_queue.dlq_url,
                        "LOAD_DLQ_URL": self.load_queue.dlq_url,
                        "REPORT_LINK_TTL_SECONDS": str(config.reporting.link_ttl_seconds),
                        # how far back the staleness signal must look to reach the alarm's threshold
                        "STALENESS_MINUTES": str(config.alarms.staleness_minutes),
                        # a day older than this has no metadata left: its report is refused
                        "METADATA_TTL_DAYS": str(config.metadata.ttl_days),
                    },
                    statements=[
                        # Every read is a query of an index: by_day (the report), by_completion
                        # (the staleness signal).
                        Allow("QueryMetadataIndexes", ("dynamodb:Query",), tuple(indexes)),
                        Allow(
                            "WriteReports",
                            # GetObject: the presigned links in the report are signed with this role.
                            # reports/ only: the bucket also holds Athena's query results
                            ("s3:PutObject", "s3:GetObject"),
                            (reports.arn.apply(lambda arn: f"{arn}/reports/*"),),
                        ),
                        Allow(
                            "QueueDepth",
                            ("sqs:GetQueueAttributes",),
                            (
                                self.processing_queue.arn,
                                self.processing_queue.dlq_arn,
                                self.load_queue.dlq_arn,
                            ),
                        ),
                    ],
                ),
                schedule=config.reporting.schedule,
                alerts=AlertsTopicArgs(
                    partition=partition,
                    account_id=account_id,
                    region=config.aws_region,
                    alarm_name_prefix=name,  # the alarms' name_prefix below
                    dns_suffix=partition_info.dns_suffix,
                    email=config.reporting.alert_email,
                    key_deletion_window_days=30 if prod else 7,
                ),
            ),
            opts=child,
        )
        self.report = self.reporting.function

        self.functions = {
            "processor": self.processor,
            "loader": self.loader,
            "report": self.report,
            "ingest": self.ingest,
            "ingest-worker": self.ingest_worker,
        }
        self.alarms = Alarms(
            f"{name}-alarms",
            AlarmsArgs(
                region=config.aws_region,
                stack=args.stack,  # every function's HEADRACE_STACK (_function_args)
                topic_arn=self.reporting.alerts.arn,
                processor_function_name=self.processor.name,
                processor_timeout_seconds=fn.processor.timeout_seconds,
                queue_names={
                    "processing": self.processing_queue.queue_name,
                    "load": self.load_queue.queue_name,
                    "ingest": self.ingest_queue.queue_name,
                },
                oldest_message_seconds=config.oldest_message_alarm_thresholds,
                dlq_names={
                    "processing": self.processing_queue.dlq_name,
                    "load": self.load_queue.dlq_name,
                    "ingest": self.ingest_queue.dlq_name,
                },
                function_names={service: f.name for service, f in self.functions.items()},
                staleness_minutes=config.alarms.staleness_minutes,
                report_function_name=self.report.name,
                report_schedule_rule_name=self.reporting.schedules["daily"].name,
                loader_function_name=self.loader.name,
                ingest_worker_function_name=self.ingest_worker.name,
                ingest_endpoint=config.ingest.endpoint,
                ingest_function_name=self.ingest.name,
                ingest_api_id=self.ingest_api.api.id if config.ingest.endpoint == "http_api" else None,
                error_rate_percent=config.alarms.error_rate_percent,
                duration_p99_ratio=config.alarms.duration_p99_ratio,
                db_instance_identifier=self.warehouse.instance_identifier,
                rds_cpu_percent=config.alarms.rds_cpu_percent,
                name_prefix=name,  # the alerts topic lets alarms with this prefix publish
                metrics_from_logs=not config.is_localstack,
            ),
            opts=child,
        )

        self.outputs: dict[str, Any] = {
            "raw_bucket": raw.name,
            "processed_bucket": processed.name,
            "reports_bucket": reports.name,
            "processing_queue_url": self.processing_queue.url,
            "processing_dlq_url": self.processing_queue.dlq_url,
            "load_queue_url": self.load_queue.url,
            "load_dlq_url": self.load_queue.dlq_url,
            "metadata_table": metadata.name,
            "db_secret_arn": self.warehouse.secret_arn,
            "alerts_topic_arn": self.reporting.alerts.arn,
            "ingest_api_url": self.ingest_api.url,
            "region": config.aws_region,
            "raw_prefix": config.raw_prefix,
            "ingest_queue_url": self.ingest_queue.url,
            "ingest_dlq_url": self.ingest_queue.dlq_url,
            "idempotency_table": idempotency.name,
            "tenant_keys_table": self.tables.tenant_keys.name,
            "tenant_logs_table": self.tables.tenant_logs.name,
            "event_bus_name": self.routing.bus_name,
            "function_names": {service: f.name for service, f in self.functions.items()},
            "raw_suffixes": list(config.raw_suffixes),
            "stack": args.stack,
        }
        if self.catalog is not None:
            self.outputs.update(
                glue_database=self.catalog.database_name,
                athena_workgroup=self.catalog.workgroup_name,
                query_policy_arn=self.catalog.query_policy.arn,
            )
        if self.warehouse.admin_secret is not None:
            self.outputs["db_admin_secret_arn"] = self.warehouse.admin_secret.arn
        self.register_outputs(self.outputs)

    def _warehouse_setup(self, code: FunctionCode) -> None:
        """RDS: the function that makes the loader's own database role with the master user's
        secret, and its run during the deployment, again whenever a secret, the schema or its
        code changes (it changes nothing that is already as it should be)."""
        self.warehouse_setup: PipelineFunction | None = None
        self.warehouse_setup_run: aws.lambda_.Invocation | None = None
        warehouse = self.warehouse
        if warehouse.instance is None:
            return
        admin_secret, admin_version, network = (
            warehouse.admin_secret,
            warehouse.admin_secret_version,
            warehouse.network,
        )
        assert admin_secret is not None and admin_version is not None and network is not None
        assert warehouse.read_admin_secret is not None
        schema = self._config.warehouse.db_schema
        self.warehouse_setup = PipelineFunction(
            f"{self._name}-warehouse-setup",
            self._function_args(
                "warehouse-setup",
                WAREHOUSE_SETUP,
                code,
                environment={
                    "ADMIN_SECRET_ARN": admin_secret.arn,
                    "DB_SECRET_ARN": warehouse.secret_arn,
                    "WAREHOUSE_SCHEMA": schema,
                },
                statements=[warehouse.read_admin_secret, warehouse.read_secret],
                vpc=warehouse.loader_placement,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.warehouse_setup_run = aws.lambda_.Invocation(
            f"{self._name}-warehouse-setup-run",
            function_name=self.warehouse_setup.name,
            input=json.dumps({"purpose": "create or update the loader's database role"}),
            triggers={
                "admin_secret": admin_version.version_id,
                "loader_secret": warehouse.secret_version.version_id,
                "schema": schema,
                "code": warehouse_setup_code_hash(),
            },
            # the network too: its endpoint policy must pass the administrator secret first
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[warehouse.instance, network, self.warehouse_setup]
            ),
        )

    # ------------------------------------------------------------------ helpers
    def _function_args(
        self,
        service: str,
        settings: FunctionSettings,
        code: FunctionCode,
        *,
        environment: dict[str, pulumi.Input[str]],
        statements: list[Allow],
        sqs_source: pulumi.Input[str] | None = None,
        vpc: VpcPlacement | None = None,
    ) -> PipelineFunctionArgs:
        config = self._config
        source = None
        if sqs_source is not None:
            consumer: Any = settings
            source = SqsSource(
                queue_arn=sqs_source,
                batch_size=consumer.batch_size,
                batching_window_seconds=consumer.batching_window_seconds,
                max_concurrency=consumer.max_concurrency,
            )
        function_name = f"{self._name}-{service}"
        return PipelineFunctionArgs(
            service=service,
            function_name=function_name,
            arn=pulumi.Output.concat(self._function_arn_prefix, function_name),
            handler=HANDLERS[service],
            code=code,
            runtime=config.functions.runtime,
            architecture=config.functions.architecture,
            memory_mb=settings.memory_mb,
            timeout_seconds=settings.timeout_seconds,
            ephemeral_storage_mb=settings.ephemeral_storage_mb,
            reserved_concurrency=settings.reserved_concurrency,
            log_level=settings.log_level,
            log_retention_days=config.retention.log_days,
            stack=self._stack,
            tracing=config.tracing,
            environment=environment,
            statements=statements,
            sqs_source=source,
            vpc=vpc,
        )

    def _warehouse_args(self, args: PipelineArgs, loader_data: list[Allow]) -> WarehouseArgs:
        config = args.config
        warehouse = config.warehouse
        recovery_days = 0 if config.environment == "local" else (30 if config.is_prod else 7)
        if warehouse.mode == "external":
            external = warehouse.external
            if external is None or args.db_password is None:
                raise ValueError("an external warehouse needs warehouse.external and headrace:db_password")
            return WarehouseArgs(
                external=ExternalDatabaseArgs(
                    host=external.host,
                    port=external.port,
                    dbname=external.dbname,
                    username=external.username,
                    password=args.db_password,
                ),
                secret_recovery_window_days=recovery_days,
                sslmode=config.warehouse_sslmode,
                sslrootcert=warehouse.sslrootcert,
            )
        rds = warehouse.rds
        return WarehouseArgs(
            network=NetworkArgs(
                region=config.aws_region,
                cidr=warehouse.network.cidr,
                az_count=warehouse.network.az_count,
                nat_gateway=warehouse.network.nat_gateway,
                endpoint_statements=loader_data,
            ),
            rds=RdsArgs(
                instance_class=rds.instance_class,
                allocated_gb=rds.allocated_gb,
                max_allocated_gb=rds.max_allocated_gb,
                engine_version=rds.engine_version,
                backup_retention_days=rds.backup_retention_days,
                deletion_protection=config.rds_deletion_protection,
                multi_az=rds.multi_az,
                final_snapshot=config.is_prod,
                protect=config.is_prod,
            ),
            secret_recovery_window_days=recovery_days,
            sslmode=config.warehouse_sslmode,
            sslrootcert=warehouse.sslrootcert,
        )


def glue_name(name: str) -> str:
    """``name`` as a Glue/Athena database name: lower case letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())
