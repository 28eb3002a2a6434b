"""Functions: handlers, environment (docs/contracts.md), least-privilege roles, log groups,
SQS event sources, and how the code is shipped."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import lambda_archive
from components.config import (
    LAMBDA_ENVIRONMENT_BYTES,
    MAX_NAME_PREFIX_CHARS,
    PROCESSOR_GENERATED_ENVIRONMENT_BYTES,
    ConfigError,
    StackConfig,
    environment_bytes,
    parse_config,
    processor_configured_environment,
)
from components.functions import (
    FunctionCode,
    LambdaPackage,
    LambdaPackageArgs,
    PipelineFunction,
    PipelineFunctionArgs,
    VpcPlacement,
    function_statements,
)
from components.lambda_archive import LambdaArchive
from components.policies import (
    UNSCOPED_ACTIONS,
    VPC_NETWORK_INTERFACE_ACTIONS,
    Allow,
    Deny,
    PrivilegeError,
    check_least_privilege,
    deny_to_function_code,
)
from handlers.logic.layout import processed_keys

from .conftest import ROOT, Deployment, deploy
from .mocks import PipelineMocks

HANDLERS = {
    "processor": "handlers.processor.lambda_handler",
    "loader": "handlers.loader.lambda_handler",
    "report": "handlers.report.lambda_handler",
    "ingest": "handlers.ingest_api.lambda_handler",
    "ingest-worker": "handlers.ingest_worker.lambda_handler",
}
# Only with the warehouse on RDS (dev): it makes the loader's database role at deploy time.
RDS_HANDLERS = {"warehouse-setup": "handlers.warehouse_setup.lambda_handler"}
# docs/contracts.md, "Environment variables" (required ones; optional ones are tested apart).
CONTRACT_ENV = {
    "processor": {
        "PROCESSED_BUCKET",
        "METADATA_TABLE",
        "IDEMPOTENCY_TABLE",
        "EVENT_BUS_NAME",
        "RAW_PREFIX",
        "RAW_SUFFIXES",
        "MAX_RECEIVE_COUNT",
        "METADATA_TTL_DAYS",
        "IDEMPOTENCY_TTL_SECONDS",
    },
    "loader": {
        "DB_SECRET_ARN",
        "PROCESSED_BUCKET",
        "METADATA_TABLE",
        "MAX_RECEIVE_COUNT",
        "WAREHOUSE_SCHEMA",
    },
    "report": {
        "METADATA_TABLE",
        "REPORTS_BUCKET",
        "ALERTS_TOPIC_ARN",
        "PROCESSING_QUEUE_URL",
        "PROCESSING_DLQ_URL",
        "LOAD_DLQ_URL",
        "REPORT_LINK_TTL_SECONDS",
        "METADATA_TTL_DAYS",
    },
    "ingest": {
        "INGEST_QUEUE_URL",
        "TENANT_KEYS_TABLE",
        "TENANT_LOGS_TABLE",
        "MAX_BODY_BYTES",
        "MAX_BATCH_RECORDS",
    },
    "ingest-worker": {"TENANT_LOGS_TABLE", "MAX_RECEIVE_COUNT", "KEEP_ORIGINAL", "LOG_TTL_DAYS"},
    "warehouse-setup": {"ADMIN_SECRET_ARN", "DB_SECRET_ARN", "WAREHOUSE_SCHEMA"},
}
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


def functions(stack: Deployment) -> dict[str, Any]:
    prefix = f"headrace-{stack.stack}-"
    return {r.outputs["name"].removeprefix(prefix): r for r in stack.of_type("aws:lambda/function:Function")}


def role_policies(stack: Deployment) -> dict[str, list[dict[str, Any]]]:
    """Service -> statements of its role's inline policy."""
    roles = {r.outputs["name"]: r for r in stack.of_type("aws:iam/role:Role")}
    by_role = {
        p.input("role"): p.json_input("policy")["Statement"]
        for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    result = {}
    for service, function in functions(stack).items():
        role_name = next(name for name, r in roles.items() if r.outputs["arn"] == function.inputs["role"])
        result[service] = by_role[role_name]
    return result


def env(function: Any) -> dict[str, str]:
    return function.input("environment")["variables"]


def test_the_functions_run_their_handlers_runtime_and_architecture(stack: Deployment) -> None:
    # Given a stack
    deployed = functions(stack)
    # Then the five functions of docs/contracts.md run their handlers on python3.12, and on
    # RDS (dev) the warehouse setup function too
    rds = RDS_HANDLERS if stack.stack == "dev" else {}
    assert {name: f.inputs["handler"] for name, f in deployed.items()} == HANDLERS | rds
    expected_arch = "arm64" if stack.stack == "dev" else "x86_64"
    for function in deployed.values():
        assert function.inputs["runtime"] == "python3.12"
        assert function.inputs["architectures"] == [expected_arch]


def test_environment_follows_the_contract(stack: Deployment) -> None:
    # Given a stack's functions
    for service, function in functions(stack).items():
        variables = env(function)
        # Then each has the contract's variables and the Powertools settings
        assert CONTRACT_ENV[service] | POWERTOOLS <= set(variables), service
        assert variables["POWERTOOLS_SERVICE_NAME"] == service
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "headrace"
    deployed = functions(stack)
    processor = env(deployed["processor"])
    assert processor["PROCESSED_BUCKET"] == stack.outputs["processed_bucket"]
    assert processor["METADATA_TABLE"] == stack.outputs["metadata_table"]
    assert processor["IDEMPOTENCY_TABLE"] == stack.outputs["idempotency_table"]
    assert processor["EVENT_BUS_NAME"] == stack.outputs["event_bus_name"]
    assert processor["RAW_PREFIX"] == "incoming/"
    # (the rule routes the prefix; the processor takes the suffixes, rotated logs included)
    assert tuple(processor["RAW_SUFFIXES"].split(",")) == StackConfig.model_fields["raw_suffixes"].default
    assert env(deployed["loader"])["DB_SECRET_ARN"] == stack.outputs["db_secret_arn"]
    assert env(deployed["report"])["ALERTS_TOPIC_ARN"] == stack.outputs["alerts_topic_arn"]
    # (the report's verdict reads the processing queue and the DLQs uploads can end in)
    report = env(deployed["report"])
    # (and it refuses a day whose metadata has expired: the processor's item lifetime)
    assert report["METADATA_TTL_DAYS"] == processor["METADATA_TTL_DAYS"]
    assert (report["PROCESSING_QUEUE_URL"], report["PROCESSING_DLQ_URL"], report["LOAD_DLQ_URL"]) == (
        stack.outputs["processing_queue_url"],
        stack.outputs["processing_dlq_url"],
        stack.outputs["load_dlq_url"],
    )
    assert env(deployed["ingest"])["INGEST_QUEUE_URL"] == stack.outputs["ingest_queue_url"]
    # and fault injection is off unless configured
    assert all("HEADRACE_CRASH_RATE" not in env(f) for f in deployed.values())


def _contract_variables() -> tuple[set[str], dict[str, set[str]]]:
    """docs/contracts.md's variables: those every function gets, and each function's own."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    common = text[text.index("Every function gets") : text.index("### Environment variables")]
    section = text[text.index("### Environment variables") : text.index("### Permissions")]
    own = {
        name: set(re.findall(r"`([A-Z][A-Z0-9_]+)`", bullet))
        for name, bullet in re.findall(
            r"^- ([a-z-]+)(?: \([^)]*\))?:\s+(.*?)(?=^- |\Z)", section, re.M | re.S
        )
    }
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)=?[^`]*`", common)), own


SETTINGS = {
    "processor": "handlers.models.settings.ProcessorSettings",
    "loader": "handlers.models.loader.LoaderSettings",
    "report": "handlers.models.report.ReportSettings",
    "ingest": "handlers.models.ingest.IngestApiSettings",
    "ingest-worker": "handlers.models.ingest_worker.IngestWorkerSettings",
    "warehouse-setup": "handlers.models.loader.WarehouseSetupSettings",
}


def test_the_contracts_name_every_variable_a_function_gets_and_its_handler_reads(
    tiny_archive: Path,
) -> None:
    common, own = _contract_variables()
    assert sorted(own) == sorted(SETTINGS)
    # Given the dev stack with every optional variable switched on (as in the test above)
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "headrace:faults": {"crash_rate": 0.25},
            "headrace:pii": {
                "extra_rules": [{"name": "x", "pattern": "x[0-9]{1,3}"}],
                "disabled_rules": ["phone"],
            },
            "headrace:ingest": {"keep_original": True, "original_readers": [AUDITOR]},
        },
    )
    for service, function in functions(stack).items():
        # Then every variable a function gets is named in its part of docs/contracts.md
        assert sorted(set(env(function)) - common - own[service]) == [], service
        # and every variable named there is one its handler's settings read
        module, name = SETTINGS[service].rsplit(".", 1)
        model = getattr(importlib.import_module(module), name)
        read = {field.alias for field in model.model_fields.values()}
        assert sorted(own[service] - read) == [], service


AUDITOR = "arn:aws:iam::111122223333:role/log-auditor"


def test_fault_injection_pii_and_originals_reach_their_functions(tiny_archive: Path) -> None:
    # Given dev with a crash rate, extra PII rules and originals kept
    rule = {"name": "iban", "pattern": "[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}"}
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "headrace:faults": {"crash_rate": 0.25},
            "headrace:pii": {"extra_rules": [rule], "disabled_rules": ["phone"]},
            "headrace:ingest": {"keep_original": True, "original_readers": [AUDITOR]},
        },
    )
    deployed = functions(stack)
    # Then the processor and the worker (only) get the crash rate and the PII rules
    for service in ("processor", "ingest-worker"):
        variables = env(deployed[service])
        assert variables["HEADRACE_CRASH_RATE"] == "0.25"
        assert json.loads(variables["PII_EXTRA_RULES"]) == [rule]
        assert variables["PII_DISABLED_RULES"] == "phone"
    assert "HEADRACE_CRASH_RATE" not in env(deployed["loader"])
    # and the worker gets a KMS key for the originals, and may encrypt (only) with it
    key = stack.named("headrace-dev-originals-key")
    worker = env(deployed["ingest-worker"])
    assert worker["KEEP_ORIGINAL"] == "true" and worker["ORIGINALS_KMS_KEY_ARN"] == key.outputs["arn"]
    grants = [s for s in role_policies(stack)["ingest-worker"] if s["Sid"] == "EncryptOriginals"]
    assert grants == [
        {
            "Sid": "EncryptOriginals",
            "Effect": "Allow",
            "Action": ["kms:Encrypt"],
            "Resource": [key.outputs["arn"]],
        }
    ]
    # and the key lets IAM grant only encryption: decrypting is for the named readers alone
    use = {s["Sid"]: s for s in json.loads(key.input("policy"))["Statement"]}
    assert use["AccountDelegatesUseToIam"]["Action"] == ["kms:Encrypt"]
    assert use["NamedPrincipalsDecrypt"]["Principal"] == {"AWS": [AUDITOR]}
    assert use["NamedPrincipalsDecrypt"]["Action"] == ["kms:Decrypt"]
    decrypting = [s for s in use.values() if "kms:Decrypt" in s["Action"] and s["Effect"] == "Allow"]
    assert decrypting == [use["NamedPrincipalsDecrypt"]]
    # nor can anyone give themselves a grant to decrypt (grants bypass the use statements)
    no_grant = use["NoGrantDecrypts"]
    assert (no_grant["Effect"], no_grant["Principal"], no_grant["Action"]) == (
        "Deny",
        {"AWS": "*"},
        ["kms:CreateGrant"],
    )
    assert "Decrypt" in no_grant["Condition"]["ForAnyValue:StringEquals"]["kms:GrantOperations"]


def test_no_role_grants_wildcards(stack: Deployment) -> None:
    # Given every function role
    for service, statements in role_policies(stack).items():
        for statement in statements:
            if statement["Effect"] == "Deny":  # takes away, never grants (tested below)
                assert statement["Sid"] == "NoNetworkInterfacesFromCode", (service, statement)
                continue
            # Then no action is a wildcard, and only actions AWS cannot scope use Resource "*"
            assert statement["Effect"] == "Allow"
            assert not any("*" in action for action in statement["Action"]), (service, statement)
            if "*" in statement["Resource"]:
                assert set(statement["Action"]) <= UNSCOPED_ACTIONS, (service, statement)


def test_the_loaders_code_cannot_use_its_network_interface_grants(dev: Deployment) -> None:
    # Given the loader in its VPC (dev: RDS), whose role lets the Lambda service manage its
    # network interfaces (actions AWS cannot scope: Resource "*")
    statements = role_policies(dev)["loader"]
    allowed = {a for s in statements if s["Effect"] == "Allow" for a in s["Action"]}
    assert allowed >= VPC_NETWORK_INTERFACE_ACTIONS
    # Then the same policy denies every one of them to requests from the loader's own code:
    # those carry lambda:SourceFunctionArn, the service's requests for its ENIs do not
    loader_arn = functions(dev)["loader"].outputs["arn"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies == [
        {
            "Sid": "NoNetworkInterfacesFromCode",
            "Effect": "Deny",
            "Action": sorted(VPC_NETWORK_INTERFACE_ACTIONS),
            "Resource": ["*"],
            "Condition": {"ArnEquals": {"lambda:SourceFunctionArn": loader_arn}},
        }
    ]


def test_functions_outside_a_vpc_have_no_network_interface_statements(local: Deployment) -> None:
    # Given the local stack (external warehouse: no function in a VPC)
    for service, statements in role_policies(local).items():
        # Then no role mentions the network-interface actions, as a grant or a deny
        assert not any(set(s["Action"]) & VPC_NETWORK_INTERFACE_ACTIONS for s in statements), service


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Action -> resources it is granted on (Allow statements)."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in statement["Action"]:
            grants.setdefault(action, set()).update(statement["Resource"])
    return grants


def test_processor_role_is_exactly_what_it_uses(dev: Deployment) -> None:
    # Given the processor's role in dev
    grants = _grants(role_policies(dev)["processor"])
    arns = {
        r.name.removeprefix("headrace-dev-"): r.outputs["arn"] for r in dev.resources if "arn" in r.outputs
    }
    raw, processed = arns["data-raw"], arns["data-processed"]
    metadata, idempotency = arns["tables-metadata"], arns["tables-idempotency"]
    log_group = dev.named("headrace-dev-processor-logs").outputs["arn"]
    queue = dev.named("headrace-dev-processing", "aws:sqs/queue:Queue").outputs["arn"]
    glue = "arn:aws:glue:eu-west-1:111122223333"
    catalog = {f"{glue}:catalog", f"{glue}:database/headrace_dev", f"{glue}:table/headrace_dev/*"}
    # Then it may read raw uploads under the prefix only, write (and retire) processed
    # objects under the layout's two prefixes, use its two tables, publish on its bus, keep
    # its Glue database's tables, consume its queue (and put a poison message back at
    # once), log, and trace; nothing else
    outputs = {f"{processed}/parquet/*", f"{processed}/summaries/*"}
    assert grants == {
        "s3:GetObject": {f"{raw}/incoming/*"},
        "s3:ListBucket": {raw},
        "s3:PutObject": outputs,
        "s3:AbortMultipartUpload": outputs,
        "s3:DeleteObject": outputs,
        "dynamodb:GetItem": {metadata, idempotency},
        "dynamodb:PutItem": {idempotency},
        "dynamodb:UpdateItem": {metadata, idempotency},
        "dynamodb:DeleteItem": {metadata, idempotency},
        "dynamodb:Query": {metadata},
        "events:PutEvents": {arns["events-bus"]},
        "glue:GetTable": catalog,
        "glue:CreateTable": catalog,
        "glue:UpdateTable": catalog,
        "glue:CreatePartition": catalog,
        "glue:GetPartition": catalog,
        "glue:UpdatePartition": catalog,
        "sqs:ReceiveMessage": {queue},
        "sqs:DeleteMessage": {queue},
        "sqs:GetQueueAttributes": {queue},
        "sqs:GetQueueUrl": {queue},
        "sqs:ChangeMessageVisibility": {queue},
        "logs:CreateLogStream": {f"{log_group}:*"},
        "logs:PutLogEvents": {f"{log_group}:*"},
        "xray:PutTraceSegments": {"*"},
        "xray:PutTelemetryRecords": {"*"},
    }


def test_other_roles_reach_only_their_resources(dev: Deployment) -> None:
    # Given the other roles in dev
    policies = role_policies(dev)
    arns = {
        r.name.removeprefix("headrace-dev-"): r.outputs["arn"] for r in dev.resources if "arn" in r.outputs
    }
    loader, report = _grants(policies["loader"]), _grants(policies["report"])
    ingest, worker = _grants(policies["ingest"]), _grants(policies["ingest-worker"])
    # Then the loader reads the DB secret and the processed layout (and may list the bucket,
    # so a missing output is a 404), in its VPC
    assert loader["secretsmanager:GetSecretValue"] == {dev.outputs["db_secret_arn"]}
    processed = arns["data-processed"]
    assert loader["s3:GetObject"] == {f"{processed}/parquet/*", f"{processed}/summaries/*"}
    assert loader["s3:ListBucket"] == {processed}
    assert "ec2:CreateNetworkInterface" in loader and "s3:PutObject" not in loader
    # the report function queries the metadata indexes (the report by upload day, the
    # staleness signal by completion day), writes reports, publishes alerts
    assert report["dynamodb:Query"] == {
        f"{arns['tables-metadata']}/index/by_day",
        f"{arns['tables-metadata']}/index/by_completion",
    }
    assert "dynamodb:GetItem" not in report
    # (reports/ only: the bucket also holds Athena's query results)
    assert report["s3:PutObject"] == report["s3:GetObject"] == {f"{arns['data-reports']}/reports/*"}
    assert report["sns:Publish"] == {dev.outputs["alerts_topic_arn"]}
    assert report["kms:GenerateDataKey"] == {arns["reporting-alerts-key"]}
    # and reads the depths of the processing queue and of the processing and load DLQs, only
    assert report["sqs:GetQueueAttributes"] == {
        dev.named(f"headrace-dev-{name}", "aws:sqs/queue:Queue").outputs["arn"]
        for name in ("processing", "processing-dlq", "load-dlq")
    }
    assert {a for a in report if a.startswith("sqs:")} == {"sqs:GetQueueAttributes"}
    # the ingest function enqueues and reads keys, the worker writes logs; neither touches S3
    assert ingest["sqs:SendMessage"] == {
        dev.named("headrace-dev-ingest", "aws:sqs/queue:Queue").outputs["arn"]
    }
    assert ingest["dynamodb:GetItem"] == {arns["tables-tenant-keys"]}
    assert ingest["dynamodb:Query"] == {arns["tables-tenant-logs"]}
    assert {a for a in worker if a.startswith("dynamodb:")} == {"dynamodb:PutItem"}
    assert worker["dynamodb:PutItem"] == {arns["tables-tenant-logs"]}
    assert not any(action.startswith("s3:") for action in [*ingest, *worker])
    # and only the functions in the warehouse's network have network-interface rights
    assert {name for name, s in policies.items() if "ec2:CreateNetworkInterface" in _grants(s)} == {
        "loader",
        "warehouse-setup",
    }


def test_the_processed_grants_cover_the_layout_and_nothing_else(dev: Deployment) -> None:
    # Given the keys the processor writes for uploads of every shape, and the grants on them
    policies = role_policies(dev)
    bucket = dev.outputs["processed_bucket"]
    writes = _grants(policies["processor"])["s3:PutObject"]
    reads = _grants(policies["loader"])["s3:GetObject"]
    uploaded = datetime(2026, 3, 1, tzinfo=UTC)
    raws = (
        "incoming/sales/2026-03.csv",
        "incoming/top.json",
        "incoming/Über Sales/x.log.1",
        "incoming/東京/a",
    )
    written = [processed_keys(raw, "v1", "incoming/", uploaded) for raw in raws]
    keys = [key for k in written for key in (k.parquet, k.summary)]

    def covered(grants: set[str], key: str) -> bool:
        return any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", pattern) for pattern in grants)

    # Then the processor may write, and the loader read, every one of them
    for key in keys:
        assert covered(writes, key) and covered(reads, key), key
    # but nothing else in the bucket: not the top level, not another prefix, not a look-alike
    for key in ("x.parquet", "athena-results/q.csv", "parquet", "parquetx/a.parquet", "summaries.json"):
        assert not covered(writes, key) and not covered(reads, key), key


def test_least_privilege_check_refuses_wildcards() -> None:
    # Given statements a careless change could add
    # Then the component refuses them before anything is deployed
    with pytest.raises(PrivilegeError, match="wildcard action 's3:\\*'"):
        check_least_privilege([Allow("All", ("s3:*",), ("arn:aws:s3:::b/*",))])
    with pytest.raises(PrivilegeError, match="s3:GetObject on Resource"):
        check_least_privilege([Allow("Any", ("s3:GetObject",), ("*",))])
    with pytest.raises(PrivilegeError, match="no resources"):
        check_least_privilege([Allow("None", ("s3:GetObject",), ())])
    with pytest.raises(PrivilegeError, match="no actions"):
        check_least_privilege([Deny("Nothing", (), ("*",))])
    check_least_privilege([Allow("Trace", ("xray:PutTraceSegments",), ("*",))])


LOADER_ARN = "arn:aws:lambda:eu-west-1:111122223333:function:headrace-dev-loader"
ENI = tuple(sorted(VPC_NETWORK_INTERFACE_ACTIONS))


def test_a_deny_may_name_any_action_or_resource() -> None:
    # Given Deny statements as broad as IAM allows: they only take away what Allows grant
    check_least_privilege(
        [
            Allow("Read", ("s3:GetObject",), ("arn:aws:s3:::b/*",)),
            Deny("NoDeletes", ("s3:*",), ("*",)),
            Deny(
                "NotFromCode",
                ("dynamodb:*",),
                ("*",),
                {"ArnEquals": {"lambda:SourceFunctionArn": LOADER_ARN}},
            ),
        ]
    )


def test_network_interface_grants_need_a_deny_for_the_functions_code() -> None:
    # Given the grants Lambda needs for a function's network interfaces
    grant = Allow("VpcNetworkInterfaces", ENI, ("*",))
    # Then alone they are refused: the function's own code could create and delete ENIs
    with pytest.raises(PrivilegeError, match="not denied to the function's code"):
        check_least_privilege([grant])
    # and so with a deny that misses one of them
    with pytest.raises(PrivilegeError, match="ec2:UnassignPrivateIpAddresses"):
        check_least_privilege([grant, deny_to_function_code("Code", ENI[:-1], LOADER_ARN)])
    # or that does not apply to the function's code: another key, a negated operator (which
    # also matches the service's requests, lacking the key), or not every resource
    for condition in (
        {"StringEquals": {"aws:PrincipalTag/team": "data"}},
        {"ArnNotEquals": {"lambda:SourceFunctionArn": LOADER_ARN}},
    ):
        with pytest.raises(PrivilegeError, match="not denied"):
            check_least_privilege([grant, Deny("Other", ENI, ("*",), condition)])
    with pytest.raises(PrivilegeError, match="not denied"):
        check_least_privilege(
            [
                grant,
                Deny(
                    "Some",
                    ENI,
                    ("arn:aws:ec2:*:*:subnet/*",),
                    {"ArnEquals": {"lambda:SourceFunctionArn": LOADER_ARN}},
                ),
            ]
        )
    # while AWS's documented pattern passes, and so does a broader deny
    check_least_privilege([grant, deny_to_function_code("NoNetworkInterfacesFromCode", ENI, LOADER_ARN)])
    check_least_privilege(
        [grant, Deny("NoEc2FromCode", ("ec2:*",), ("*",), {"ArnLike": {"lambda:SourceFunctionArn": "*"}})]
    )


def test_a_function_in_a_vpc_needs_its_arn(tiny_archive: Path) -> None:
    args = PipelineFunctionArgs(
        service="loader",
        function_name="f",
        handler="handlers.loader.lambda_handler",
        code=FunctionCode(source_code_hash="x", archive=pulumi.FileArchive(str(tiny_archive))),
        runtime="python3.12",
        architecture="arm64",
        memory_mb=128,
        timeout_seconds=10,
        log_retention_days=7,
        stack="test",
        vpc=VpcPlacement(subnet_ids=["subnet-1"], security_group_ids=["sg-1"]),
    )
    with pytest.raises(ValueError, match="needs its arn"):
        function_statements(args, "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/f")


def test_log_groups_exist_first_with_retention(stack: Deployment) -> None:
    # Given each function
    groups = {r.outputs["name"]: r for r in stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    retention = 30 if stack.stack == "dev" else 7
    for function in functions(stack).values():
        # Then its log group is the one Lambda writes to, with the configured retention
        group = groups[f"/aws/lambda/{function.outputs['name']}"]
        assert group.inputs["retentionInDays"] == retention


def test_queue_consumers_report_batch_item_failures(stack: Deployment) -> None:
    # Given the event source mappings
    queues = {
        r.outputs["arn"]: r.name.removeprefix(f"headrace-{stack.stack}-")
        for r in stack.of_type("aws:sqs/queue:Queue")
    }
    mappings = {
        r.input("functionName").rsplit(":", 1)[-1].removeprefix(f"headrace-{stack.stack}-"): r
        for r in stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    }
    # Then the three consumers read their queue with partial batch responses
    assert {name: queues[m.inputs["eventSourceArn"]] for name, m in mappings.items()} == {
        "processor": "processing",
        "loader": "load",
        "ingest-worker": "ingest",
    }
    for mapping in mappings.values():
        assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    # with batching and concurrency from config
    processor = mappings["processor"].inputs
    assert processor["batchSize"] == 5 and processor["maximumBatchingWindowInSeconds"] == 5
    expected_concurrency = 10 if stack.stack == "dev" else 2
    assert processor["scalingConfig"] == {"maximumConcurrency": expected_concurrency}


def test_event_source_settings_follow_config(tiny_archive: Path) -> None:
    # Given dev with other loader settings
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "headrace:functions": {
                "loader": {"batch_size": 50, "batching_window_seconds": 20, "max_concurrency": 3}
            }
        },
    )
    (mapping,) = [
        m
        for m in stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
        if m.input("functionName").endswith("-loader")
    ]
    # Then the mapping carries them
    assert mapping.inputs["batchSize"] == 50
    assert mapping.inputs["maximumBatchingWindowInSeconds"] == 20
    assert mapping.inputs["scalingConfig"] == {"maximumConcurrency": 3}


def test_loader_runs_in_the_vpc_only_with_rds(dev: Deployment, local: Deployment) -> None:
    # Given the loader on both stacks
    dev_loader, local_loader = functions(dev)["loader"], functions(local)["loader"]
    subnets = [s.id for s in dev.of_type("aws:ec2/subnet:Subnet")]
    loader_sg = dev.named("headrace-dev-warehouse-net-loader", "aws:ec2/securityGroup:SecurityGroup")
    # Then on dev it sits in the private subnets with its security group; on LocalStack outside any VPC
    vpc = dev_loader.input("vpcConfig")
    assert vpc["subnetIds"] == subnets and len(subnets) == 2
    assert vpc["securityGroupIds"] == [loader_sg.id]
    assert local_loader.inputs.get("vpcConfig") is None


def test_tracing_on_aws_and_off_on_localstack(dev: Deployment, local: Deployment) -> None:
    for function in functions(dev).values():
        assert function.input("tracingConfig") == {"mode": "Active"}
    for function in functions(local).values():
        assert function.input("tracingConfig") == {"mode": "PassThrough"}
        assert env(function)["POWERTOOLS_TRACE_DISABLED"] == "true"


def test_every_function_ships_the_one_archive(stack: Deployment, tiny_archive: Path) -> None:
    # Given HEADRACE_LAMBDA_ARCHIVE pointing at a zip
    archive = LambdaArchive.from_file(tiny_archive)
    # Then every function's code is that file, with its hash (no S3 staging needed)
    for function in functions(stack).values():
        assert function.inputs["code"].path == str(tiny_archive)
        assert function.inputs["sourceCodeHash"] == archive.source_code_hash
    assert "aws:s3/bucketObjectv2:BucketObjectv2" not in stack.types()


def test_large_archives_are_staged_through_s3(tiny_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an archive above the direct-upload limit (the limit lowered for the test)
    monkeypatch.setattr(lambda_archive, "DIRECT_UPLOAD_LIMIT", 10)
    stack = deploy("dev", tiny_archive)
    # Then it is uploaded once to a private artifacts bucket...
    (staged,) = stack.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    artifacts = stack.named("headrace-dev-package-artifacts", "aws:s3/bucket:Bucket")
    assert staged.inputs["bucket"] == artifacts.outputs["bucket"]
    archive = LambdaArchive.from_file(tiny_archive)
    assert staged.inputs["key"] == f"lambda/{archive.sha256}.zip"
    # ...that is as locked down as the data buckets
    policies = {p.input("bucket") for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy")}
    assert artifacts.outputs["bucket"] in policies
    # and every function points at that object version instead of an inline archive
    for function in functions(stack).values():
        assert function.inputs.get("code") is None
        assert function.inputs["s3Bucket"] == artifacts.outputs["bucket"]
        assert function.inputs["s3Key"] == staged.inputs["key"]
        assert function.inputs["s3ObjectVersion"] == "v1"
        assert function.inputs["sourceCodeHash"] == archive.source_code_hash


@pulumi.runtime.test
def test_function_component_outputs_and_guards(component_mocks: PipelineMocks, tiny_archive: Path) -> Any:
    # Given a minimal function without a queue
    archive = LambdaArchive.from_file(tiny_archive)
    package = LambdaPackage("pkg", LambdaPackageArgs(archive=archive))
    args = PipelineFunctionArgs(
        service="probe",
        function_name="probe-fn",
        handler="handlers.probe.lambda_handler",
        code=package.code,
        runtime="python3.12",
        architecture="arm64",
        memory_mb=128,
        timeout_seconds=3,
        log_retention_days=1,
        stack="test",
        tracing=False,
    )
    function = PipelineFunction("probe", args)
    # Then it has no event source mapping, and refuses an over-long name
    assert function.event_source_mapping is None
    with pytest.raises(ValueError, match="64 characters"):
        PipelineFunction("long", PipelineFunctionArgs(**{**args.__dict__, "function_name": "x" * 65}))
    assert isinstance(package.code, FunctionCode) and package.artifacts is None

    def check(values: list[Any]) -> None:
        name, arn, log_group = values
        assert name == "probe-fn" and arn.endswith(":function:probe-fn")
        assert log_group == "/aws/lambda/probe-fn"

    return pulumi.Output.all(function.name, function.arn, function.log_group.name).apply(check)


# The longest stack name the program accepts: every generated name at its longest.
LONGEST_STACK = "s" * (MAX_NAME_PREFIX_CHARS - len("headrace-"))


def _json_bytes(variables: dict[str, str]) -> int:
    """A function's environment as Lambda counts it toward its 4 KB (JSON, like config's)."""
    return len(json.dumps(variables, separators=(",", ":"), ensure_ascii=False).encode())


def test_the_generated_part_of_the_processor_environment_fits_its_budget(tiny_archive: Path) -> None:
    # Given the longest stack name, the query catalog on under its default database name, and
    # the originals kept (the worker's key ARN)
    stack = deploy(
        "dev", tiny_archive, {"headrace:ingest": {"keep_original": True}}, stack_name=LONGEST_STACK
    )
    config = parse_config({"environment": "dev", "region": "eu-west-1", "ingest": {"keep_original": True}})
    variables = env(functions(stack)["processor"])
    configured = processor_configured_environment(config)
    # Then what the config does not set (names, Powertools) is within the budget the config
    # check keeps for it, and the configured part is what the check counts
    assert {k for part in configured.values() for k in part} <= set(variables)
    generated = _json_bytes(variables) - sum(environment_bytes(part) for part in configured.values())
    assert generated <= PROCESSOR_GENERATED_ENVIRONMENT_BYTES, generated


def _largest_accepted(values: dict[str, Any], key: str, make: Any) -> dict[str, Any]:
    """``values`` with ``key`` set to ``make(n)`` for the largest n the config accepts."""
    low, high = 0, 4096
    while low < high:
        n = (low + high + 1) // 2
        try:
            parse_config({**values, key: make(n)})
            low = n
        except ConfigError:
            high = n - 1
    return {**values, key: make(low)}


def test_every_environment_the_config_check_accepts_fits_lambda(tiny_archive: Path) -> None:
    # Given configured values that each stay within their own limit and together fill the
    # processor's environment to the last byte the config check accepts, at the longest stack name
    # (quotes in the patterns: escaped twice in the environment's JSON)
    rules = [{"name": f"r{i}", "pattern": '"[0-9]{4}"' + "x" * 140, "column_hint": "^x"} for i in range(10)]
    values: dict[str, Any] = {
        "environment": "dev",
        "region": "eu-west-1",
        "raw_prefix": "p" * 255 + "/",
        "pii": {"extra_rules": rules, "disabled_rules": ["phone"]},
        "catalog": {"database": "d" * 255},
        "faults": {"crash_rate": 0.001},
        "ingest": {"keep_original": True},
    }
    values = _largest_accepted(
        values, "raw_suffixes", lambda n: [f".s{i}" + "x" * 40 for i in range(n // 44)]
    )
    values = _largest_accepted(values, "raw_suffixes", lambda n: [*values["raw_suffixes"], ".y" + "y" * n])
    with pytest.raises(
        ConfigError, match=r"headrace:pii\.extra_rules: the processor's environment would take"
    ):
        parse_config({**values, "raw_suffixes": [*values["raw_suffixes"], ".z"]})
    # When it is deployed
    stack = deploy(
        "dev", tiny_archive, {f"headrace:{k}": v for k, v in values.items()}, stack_name=LONGEST_STACK
    )
    # Then every function's environment is within Lambda's 4 KB
    sizes = {name: _json_bytes(env(function)) for name, function in functions(stack).items()}
    assert max(sizes.values()) <= LAMBDA_ENVIRONMENT_BYTES, sizes
    # (and the test does fill it: all but what the budget keeps beyond the names it holds)
    assert sizes["processor"] > LAMBDA_ENVIRONMENT_BYTES - PROCESSOR_GENERATED_ENVIRONMENT_BYTES, sizes
