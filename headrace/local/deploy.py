"""Deploy the real Pulumi program (``__main__.py``) onto the emulator, without the engine.

The program runs under ``pulumi.runtime.set_mocks`` with ``EmulatorMocks``, whose
``new_resource`` creates each resource in the emulator through its AWS API and returns
the emulator's own identifiers (queue URLs, ARNs, API endpoints), so every cross-reference
and every stack output is real. Types with no local effect are listed in ``NO_LOCAL_EFFECT``
(with the reason); any other type the program uses without a handler here stops the
deployment with an error naming it — nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import runpy
import secrets
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks, rpc, set_mocks
from pulumi.runtime.stack import Stack, get_root_resource, run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.config import AWS_NAMESPACE, NAMESPACE, SECRET_KEYS, load_aws_settings, load_config

from .emulator import ACCOUNT_ID
from .iam import ADMIN_USER, evaluable

Handler = Callable[["EmulatorMocks", MockResourceArgs, dict[str, Any]], tuple[str, dict[str, Any]]]

# Resource types that exist only for AWS and have nothing to create locally.
NO_LOCAL_EFFECT: dict[str, str] = {
    "pulumi:providers:aws": "the emulator is the provider",
    "pulumi:providers:random": "random values are generated in the mock",
    "aws:lambda/permission:Permission": "the local executor invokes functions itself",
    "aws:apigatewayv2/stage:Stage": "the local HTTP port serves the $default stage",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "object ownership has no local effect",
    "aws:cloudwatch/logStream:LogStream": "sandboxes log to .headrace/local/logs",
}


# Condition keys about the connection itself: meaningless on the plain-HTTP local endpoint.
TRANSPORT_CONDITION_KEYS = frozenset({"aws:SecureTransport", "s3:TlsVersion"})

# headrace's own ComponentResources only group their children.
COMPONENT_PREFIX = "headrace:"


class DeployError(Exception):
    pass


def physical_name(name: str, max_length: int = 63) -> str:
    """Pulumi-style auto-name (``<name>-<7 hex>``), deterministic so names are stable
    across runs of the embedded runtime."""
    suffix = hashlib.sha256(name.encode()).hexdigest()[:7]
    return f"{name[: max_length - 8]}-{suffix}"


def stub_archive() -> bytes:
    """The code uploaded for every function: the executor runs the repository's handlers,
    so the emulator only needs a valid zip. It says what it is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(
            "PLACEHOLDER.txt",
            "Placeholder package: the headrace embedded runtime runs the handlers from the repository.\n",
        )
    return buffer.getvalue()


class EmulatorMocks(Mocks):
    def __init__(self, client: Callable[[str], Any], region: str):
        self.client = client
        self.region = region
        self.created: list[tuple[str, str]] = []
        # Policy statements the emulator cannot honour locally, and why (printed at start).
        self.relaxed: list[str] = []

    def local_policy(self, owner: str, policy: Any) -> str:
        """``policy`` without the Deny statements that depend on transport security, which
        the plain-HTTP local endpoint cannot satisfy: ``aws:SecureTransport`` is false for
        every request, and moto applies an ``s3:TlsVersion`` comparison even though it
        supplies no such key (AWS skips a condition whose key is absent). Each removal is
        recorded; nothing is relaxed silently."""
        document = json.loads(_json(policy))
        statements = document.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        kept = []
        for statement in statements:
            keys = {key for block in (statement.get("Condition") or {}).values() for key in block}
            transport = sorted(keys & TRANSPORT_CONDITION_KEYS)
            if statement.get("Effect") == "Deny" and transport:
                self.relaxed.append(
                    f"{owner}: Deny statement {statement.get('Sid', '(no Sid)')} on {', '.join(transport)} "
                    "removed — the local endpoint is plain HTTP"
                )
                continue
            kept.append(statement)
        document["Statement"] = kept
        return json.dumps(document)

    def note_conditions(self, owner: str, policy: Any) -> str:
        """``policy`` (an identity policy) unchanged; each statement with a ``Condition`` the
        emulator cannot evaluate is recorded: it is taken in the direction that denies
        (headrace.local.iam, point 5)."""
        document = json.loads(_json(policy))
        statements = document.get("Statement", [])
        for statement in [statements] if isinstance(statements, dict) else statements:
            if statement.get("Condition") and not (
                statement.get("Effect", "Allow") == "Allow" and evaluable(statement["Condition"])
            ):
                keys = ", ".join(sorted({key for block in statement["Condition"].values() for key in block}))
                effect = statement.get("Effect", "Allow")
                self.relaxed.append(
                    f"{owner}: {effect} statement {statement.get('Sid', '(no Sid)')} "
                    f"{'never' if effect == 'Allow' else 'always'} applies locally (stricter than AWS) — "
                    f"the emulator cannot evaluate its condition keys ({keys})"
                )
        return json.dumps(document)

    # ------------------------------------------------------------------ engine hooks
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        inputs = unwrap(dict(args.inputs))
        if args.typ in NO_LOCAL_EFFECT or args.typ.startswith(COMPONENT_PREFIX):
            return f"{args.name}-local", inputs
        handler = HANDLERS.get(args.typ)
        if handler is None:
            raise DeployError(
                f"resource type {args.typ} ({args.name}) has no handler in headrace/local/deploy.py; add one, "
                "or list it in NO_LOCAL_EFFECT with the reason it needs nothing locally"
            )
        resource_id, state = handler(self, args, inputs)
        self.created.append((args.typ, args.name))
        return resource_id, {**inputs, **state}

    def call(self, args: MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        # pulumi 3.272's mock monitor needs a list of failures, not None
        return self._answer(args.token, unwrap(dict(args.args))), []

    def _answer(self, token: str, inputs: dict[str, Any]) -> dict[Any, Any]:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{ADMIN_USER}"
            return {"accountId": ACCOUNT_ID, "arn": arn, "userId": "AIDALOCAL", "id": ACCOUNT_ID}
        if token in ("aws:index/getRegion:getRegion", "aws:index/region:Region"):
            return {"name": self.region, "region": self.region, "id": self.region, "description": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{z}" for z in "abc"]
            return {"names": names, "zoneIds": names, "id": self.region}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": policy_document(inputs), "id": "policy"}
        if token == "aws:iam/getPolicy:getPolicy":
            return {"arn": inputs.get("arn", ""), "name": inputs.get("name", "")}
        raise DeployError(f"data source {token} has no answer in headrace/local/deploy.py")


def unwrap(value: Any) -> Any:
    """``value`` with Pulumi's secret wrappers removed, at any depth."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def policy_document(inputs: dict[str, Any]) -> str:
    """``aws.iam.get_policy_document`` computed locally (the same JSON AWS returns)."""
    statements = []
    for s in inputs.get("statements", []):
        statement: dict[str, Any] = {"Effect": s.get("effect", "Allow")}
        if s.get("sid"):
            statement["Sid"] = s["sid"]
        for key, field in (
            ("Action", "actions"),
            ("NotAction", "notActions"),
            ("Resource", "resources"),
            ("NotResource", "notResources"),
        ):
            if s.get(field):
                values = list(s[field])
                statement[key] = values[0] if len(values) == 1 else values
        for key, field in (("Principal", "principals"), ("NotPrincipal", "notPrincipals")):
            if s.get(field):
                principal: dict[str, Any] = {}
                for p in s[field]:
                    ids = list(p["identifiers"])
                    principal[p["type"]] = ids[0] if len(ids) == 1 else ids
                statement[key] = principal
        if s.get("conditions"):
            condition: dict[str, dict[str, Any]] = {}
            for c in s["conditions"]:
                values = list(c["values"])
                condition.setdefault(c["test"], {})[c["variable"]] = values[0] if len(values) == 1 else values
            statement["Condition"] = condition
        statements.append(statement)
    return json.dumps({"Version": inputs.get("version", "2012-10-17"), "Statement": statements})


# ---------------------------------------------------------------------- handlers
HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn

    return register


def _name(args: MockResourceArgs, inputs: dict[str, Any], key: str = "name", max_length: int = 63) -> str:
    return str(inputs.get(key) or physical_name(args.name, max_length))


def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"


# S3 ------------------------------------------------------------------------------
@handles("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
def _bucket(m: EmulatorMocks, args: MockResourceArgs, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = _name(args, inputs, "bucket").lower()
    m.client("s3").create_bucket(Bucket=name)
    return name, {
        "bucket": name,
        "arn": f"arn:aws:s3:::{name}",
        "bucketDomainName": f"{name}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{name}.s3.{m.region}.amazonaws.com",
        "region": m.region,
    }


@handles("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
def _versioning(m, args, inputs):
    status = inputs.get("versioningConfiguration", {}).get("status", "Enabled")
    m.client("s3").put_bucket_versioning(Bucket=inputs["bucket"], VersioningConfiguration={"Status": status})
    return inputs["bucket"], {}


@handles(
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
def _encryption(m, args, inputs):
    rules = []
    for rule in inputs.get("rules", []):
        default = rule.get("applyServerSideEncryptionByDefault", {})
        by_default = {"SSEAlgorithm": default.get("sseAlgorithm", "AES256")}
        if default.get("kmsMasterKeyId"):
            by_default["KMSMasterKeyID"] = default["kmsMasterKeyId"]
        rules.append(
            {
                "ApplyServerSideEncryptionByDefault": by_default,
                "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled")),
            }
        )
    m.client("s3").put_bucket_encryption(
        Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
    )
    return inputs["bucket"], {}


@handles("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
def _public_access(m, args, inputs):
    m.client("s3").put_public_access_block(
        Bucket=inputs["bucket"],
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": bool(inputs.get("blockPublicAcls")),
            "IgnorePublicAcls": bool(inputs.get("ignorePublicAcls")),
            "BlockPublicPolicy": bool(inputs.get("blockPublicPolicy")),
            "RestrictPublicBuckets": bool(inputs.get("restrictPublicBuckets")),
        },
    )
    return inputs["bucket"], {}


@handles("aws:s3/bucketPolicy:BucketPolicy")
def _bucket_policy(m, args, inputs):
    policy = m.local_policy(f"bucket policy of {inputs['bucket']}", inputs["policy"])
    m.client("s3").put_bucket_policy(Bucket=inputs["bucket"], Policy=policy)
    return inputs["bucket"], {}


@handles(
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)
def _lifecycle(m, args, inputs):
    rules = []
    for r in inputs.get("rules", []):
        rule: dict[str, Any] = {"ID": r.get("id", "rule"), "Status": r.get("status", "Enabled")}
        flt = r.get("filter") or {}
        rule["Filter"] = {"Prefix": flt.get("prefix", "")} if "prefix" in flt else {"Prefix": ""}
        if r.get("expiration", {}).get("days"):
            rule["Expiration"] = {"Days": int(r["expiration"]["days"])}
        nce = r.get("noncurrentVersionExpiration") or {}
        if nce.get("noncurrentDays"):
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(nce["noncurrentDays"])}
        if r.get("abortIncompleteMultipartUpload", {}).get("daysAfterInitiation"):
            rule["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": int(r["abortIncompleteMultipartUpload"]["daysAfterInitiation"])
            }
        rules.append(rule)
    m.client("s3").put_bucket_lifecycle_configuration(
        Bucket=inputs["bucket"], LifecycleConfiguration={"Rules": rules}
    )
    return inputs["bucket"], {}


@handles("aws:s3/bucketNotification:BucketNotification")
def _notification(m, args, inputs):
    configuration: dict[str, Any] = {}
    if inputs.get("eventbridge"):
        configuration["EventBridgeConfiguration"] = {}
    m.client("s3").put_bucket_notification_configuration(
        Bucket=inputs["bucket"], NotificationConfiguration=configuration
    )
    return inputs["bucket"], {}


@handles("aws:s3/bucketObjectv2:BucketObjectv2", "aws:s3/bucketObject:BucketObject")
def _object(m, args, inputs):
    body = inputs.get("content") or ""
    source = inputs.get("source")
    if source is not None and getattr(source, "path", None):
        body = Path(source.path).read_bytes()
    m.client("s3").put_object(Bucket=inputs["bucket"], Key=inputs["key"], Body=body)
    return f"{inputs['bucket']}/{inputs['key']}", {"versionId": "local", "etag": "local"}


# SQS -----------------------------------------------------------------------------
@handles("aws:sqs/queue:Queue")
def _queue(m, args, inputs):
    name = _name(args, inputs, max_length=80)
    if inputs.get("fifoQueue") and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {
        attr: str(int(inputs[key]) if isinstance(inputs[key], float) else inputs[key]).lower()
        if isinstance(inputs[key], bool)
        else str(int(inputs[key]) if isinstance(inputs[key], float) else inputs[key])
        for key, attr in (
            ("visibilityTimeoutSeconds", "VisibilityTimeout"),
            ("messageRetentionSeconds", "MessageRetentionPeriod"),
            ("delaySeconds", "DelaySeconds"),
            ("receiveWaitTimeSeconds", "ReceiveMessageWaitTimeSeconds"),
            ("maxMessageSize", "MaximumMessageSize"),
            ("redrivePolicy", "RedrivePolicy"),
            ("redriveAllowPolicy", "RedriveAllowPolicy"),
            ("kmsMasterKeyId", "KmsMasterKeyId"),
            ("sqsManagedSseEnabled", "SqsManagedSseEnabled"),
            ("fifoQueue", "FifoQueue"),
            ("policy", "Policy"),
        )
        if inputs.get(key) not in (None, "")
    }
    url = m.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, {"name": name, "url": url, "arn": _arn("sqs", m.region, name)}


@handles("aws:sqs/queuePolicy:QueuePolicy")
def _queue_policy(m, args, inputs):
    policy = m.local_policy(f"queue policy of {inputs['queueUrl'].rsplit('/', 1)[-1]}", inputs["policy"])
    m.client("sqs").set_queue_attributes(QueueUrl=inputs["queueUrl"], Attributes={"Policy": policy})
    return inputs["queueUrl"], {}


@handles("aws:sqs/redrivePolicy:RedrivePolicy")
def _redrive(m, args, inputs):
    m.client("sqs").set_queue_attributes(
        QueueUrl=inputs["queueUrl"], Attributes={"RedrivePolicy": _json(inputs["redrivePolicy"])}
    )
    return inputs["queueUrl"], {}


@handles("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
def _redrive_allow(m, args, inputs):
    queue = inputs["queueUrl"]
    m.client("sqs").set_queue_attributes(
        QueueUrl=queue, Attributes={"RedriveAllowPolicy": _json(inputs["redriveAllowPolicy"])}
    )
    m.relaxed.append(
        f"redrive allow policy of {queue.rsplit('/', 1)[-1]}: not kept or enforced by the emulator "
        "(any queue may name it as its DLQ)"
    )
    return queue, {}


# DynamoDB ------------------------------------------------------------------------
@handles("aws:dynamodb/table:Table")
def _table(m, args, inputs):
    name = _name(args, inputs)
    keys = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
    if inputs.get("rangeKey"):
        keys.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs.get("attributes", [])
        ],
        "BillingMode": inputs.get("billingMode", "PAY_PER_REQUEST"),
    }
    if inputs.get("globalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": g["name"],
                "KeySchema": [
                    {"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in g["keySchemas"]
                ]
                if g.get("keySchemas")
                else [{"AttributeName": g["hashKey"], "KeyType": "HASH"}]
                + ([{"AttributeName": g["rangeKey"], "KeyType": "RANGE"}] if g.get("rangeKey") else []),
                "Projection": {"ProjectionType": g.get("projectionType", "ALL")}
                | ({"NonKeyAttributes": list(g["nonKeyAttributes"])} if g.get("nonKeyAttributes") else {}),
            }
            for g in inputs["globalSecondaryIndexes"]
        ]
    sse = inputs.get("serverSideEncryption") or {}
    if sse.get("enabled"):
        request["SSESpecification"] = {
            "Enabled": True,
            "SSEType": "KMS",
            **({"KMSMasterKeyId": sse["kmsKeyArn"]} if sse.get("kmsKeyArn") else {}),
        }
    ddb = m.client("dynamodb")
    ddb.create_table(**request)
    ttl = inputs.get("ttl") or {}
    if ttl.get("enabled"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]}
        )
    if (inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return name, {"name": name, "arn": _arn("dynamodb", m.region, f"table/{name}"), "streamArn": ""}


# IAM / KMS -------------------------------------------------------------------------
@handles("aws:iam/role:Role")
def _role(m, args, inputs):
    name = _name(args, inputs, max_length=64)
    role = m.client("iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=_json(inputs.get("assumeRolePolicy", "{}")),
        Path=inputs.get("path", "/"),
    )["Role"]
    for policy in inputs.get("inlinePolicies") or []:
        if policy.get("name") and policy.get("policy"):
            m.client("iam").put_role_policy(
                RoleName=name,
                PolicyName=policy["name"],
                PolicyDocument=m.note_conditions(f"role {name}, policy {policy['name']}", policy["policy"]),
            )
    return name, {"name": name, "arn": role["Arn"], "uniqueId": role["RoleId"]}


@handles("aws:iam/rolePolicy:RolePolicy")
def _role_policy(m, args, inputs):
    name = _name(args, inputs, max_length=128)
    m.client("iam").put_role_policy(
        RoleName=inputs["role"],
        PolicyName=name,
        PolicyDocument=m.note_conditions(f"role {inputs['role']}, policy {name}", inputs["policy"]),
    )
    return f"{inputs['role']}:{name}", {"name": name}


@handles("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
def _role_policy_attachment(m, args, inputs):
    m.client("iam").attach_role_policy(RoleName=inputs["role"], PolicyArn=inputs["policyArn"])
    return f"{inputs['role']}-{physical_name(inputs['policyArn'])}", {}


@handles("aws:iam/policy:Policy")
def _policy(m, args, inputs):
    name = _name(args, inputs, max_length=128)
    document = m.note_conditions(f"policy {name}", inputs["policy"])
    arn = m.client("iam").create_policy(PolicyName=name, PolicyDocument=document)["Policy"]["Arn"]
    return arn, {"name": name, "arn": arn}


@handles("aws:kms/key:Key")
def _kms_key(m, args, inputs):
    key = m.client("kms").create_key(Description=inputs.get("description", args.name))["KeyMetadata"]
    if inputs.get("enableKeyRotation"):
        m.client("kms").enable_key_rotation(KeyId=key["KeyId"])
    return key["KeyId"], {"keyId": key["KeyId"], "arn": key["Arn"]}


@handles("aws:kms/alias:Alias")
def _kms_alias(m, args, inputs):
    name = inputs.get("name") or f"alias/{physical_name(args.name)}"
    m.client("kms").create_alias(AliasName=name, TargetKeyId=inputs["targetKeyId"])
    return name, {"name": name, "arn": _arn("kms", m.region, name), "targetKeyArn": inputs["targetKeyId"]}


# Lambda ----------------------------------------------------------------------------
@handles("aws:lambda/function:Function")
def _function(m, args, inputs):
    name = _name(args, inputs, max_length=64)
    variables = (inputs.get("environment") or {}).get("variables") or {}
    config = m.client("lambda").create_function(
        FunctionName=name,
        Runtime=inputs.get("runtime", "python3.12"),
        Role=inputs["role"],
        Handler=inputs["handler"],
        Code={"ZipFile": stub_archive()},
        Timeout=int(inputs.get("timeout", 3)),
        MemorySize=int(inputs.get("memorySize", 128)),
        Environment={"Variables": {k: str(v) for k, v in variables.items()}},
        Architectures=list(inputs.get("architectures") or ["arm64"]),
    )
    arn = config["FunctionArn"]
    return name, {
        "name": name,
        "arn": arn,
        "qualifiedArn": f"{arn}:$LATEST",
        "invokeArn": f"arn:aws:apigateway:{m.region}:lambda:path/2015-03-31/functions/{arn}/invocations",
        "version": "$LATEST",
    }


@handles("aws:lambda/functionUrl:FunctionUrl")
def _function_url(m, args, inputs):
    config = m.client("lambda").create_function_url_config(
        FunctionName=inputs["functionName"], AuthType=inputs.get("authorizationType", "NONE")
    )
    return inputs["functionName"], {
        "functionUrl": config["FunctionUrl"],
        "urlId": config["FunctionUrl"].split("/")[2],
    }


@handles("aws:lambda/eventSourceMapping:EventSourceMapping")
def _mapping(m, args, inputs):
    request: dict[str, Any] = {
        "EventSourceArn": inputs["eventSourceArn"],
        "FunctionName": inputs["functionName"],
    }
    if inputs.get("batchSize"):
        request["BatchSize"] = int(inputs["batchSize"])
    if inputs.get("maximumBatchingWindowInSeconds") is not None:
        request["MaximumBatchingWindowInSeconds"] = int(inputs["maximumBatchingWindowInSeconds"])
    if inputs.get("functionResponseTypes"):
        request["FunctionResponseTypes"] = list(inputs["functionResponseTypes"])
    scaling = inputs.get("scalingConfig") or {}
    if scaling.get("maximumConcurrency"):
        request["ScalingConfig"] = {"MaximumConcurrency": int(scaling["maximumConcurrency"])}
    if inputs.get("enabled") is False:
        request["Enabled"] = False
    esm = m.client("lambda").create_event_source_mapping(**request)
    return esm["UUID"], {
        "uuid": esm["UUID"],
        "functionArn": esm["FunctionArn"],
        "arn": esm.get("EventSourceMappingArn", ""),
    }


# Logs, metrics, events, notifications ----------------------------------------------
@handles("aws:cloudwatch/logGroup:LogGroup")
def _log_group(m, args, inputs):
    name = _name(args, inputs, max_length=512)
    logs = m.client("logs")
    logs.create_log_group(logGroupName=name)
    if inputs.get("retentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(inputs["retentionInDays"]))
    return name, {"name": name, "arn": _arn("logs", m.region, f"log-group:{name}")}


@handles("aws:cloudwatch/metricAlarm:MetricAlarm")
def _alarm(m, args, inputs):
    name = _name(args, inputs, max_length=255)
    request: dict[str, Any] = {
        "AlarmName": name,
        "ComparisonOperator": inputs["comparisonOperator"],
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "Threshold": float(inputs.get("threshold", 0)),
        "AlarmActions": list(inputs.get("alarmActions") or []),
        "OKActions": list(inputs.get("okActions") or []),
        "TreatMissingData": inputs.get("treatMissingData", "missing"),
        "AlarmDescription": inputs.get("alarmDescription", ""),
    }
    if inputs.get("metricQueries"):
        request["Metrics"] = [_metric_query(q) for q in inputs["metricQueries"]]
    else:
        request.update(
            MetricName=inputs["metricName"],
            Namespace=inputs["namespace"],
            Period=int(inputs.get("period", 60)),
            Dimensions=[{"Name": k, "Value": str(v)} for k, v in (inputs.get("dimensions") or {}).items()],
        )
        if inputs.get("statistic"):
            request["Statistic"] = inputs["statistic"]
        if inputs.get("extendedStatistic"):
            request["ExtendedStatistic"] = inputs["extendedStatistic"]
    if inputs.get("datapointsToAlarm"):
        request["DatapointsToAlarm"] = int(inputs["datapointsToAlarm"])
    m.client("cloudwatch").put_metric_alarm(**request)
    return name, {"name": name, "arn": _arn("cloudwatch", m.region, f"alarm:{name}")}


def _metric_query(q: dict[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {"Id": q["id"], "ReturnData": bool(q.get("returnData", False))}
    if q.get("expression"):
        query["Expression"] = q["expression"]
    if q.get("label"):
        query["Label"] = q["label"]
    metric = q.get("metric")
    if metric:
        query["MetricStat"] = {
            "Metric": {
                "Namespace": metric["namespace"],
                "MetricName": metric["metricName"],
                "Dimensions": [
                    {"Name": k, "Value": str(v)} for k, v in (metric.get("dimensions") or {}).items()
                ],
            },
            "Period": int(metric.get("period", 60)),
            "Stat": metric["stat"],
        }
    return query


@handles("aws:cloudwatch/dashboard:Dashboard")
def _dashboard(m, args, inputs):
    name = _name(args, inputs, "dashboardName", max_length=255)
    m.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=_json(inputs["dashboardBody"]))
    return name, {"dashboardName": name, "dashboardArn": _arn("cloudwatch", "", f"dashboard/{name}")}


@handles("aws:cloudwatch/eventBus:EventBus")
def _bus(m, args, inputs):
    name = _name(args, inputs, max_length=256)
    arn = m.client("events").create_event_bus(Name=name)["EventBusArn"]
    return name, {"name": name, "arn": arn}


@handles("aws:cloudwatch/eventRule:EventRule")
def _rule(m, args, inputs):
    name = _name(args, inputs, max_length=64)
    request: dict[str, Any] = {"Name": name, "State": inputs.get("state", "ENABLED")}
    for key, field in (
        ("EventPattern", "eventPattern"),
        ("ScheduleExpression", "scheduleExpression"),
        ("EventBusName", "eventBusName"),
        ("Description", "description"),
    ):
        if inputs.get(field):
            request[key] = inputs[field]
    arn = m.client("events").put_rule(**request)["RuleArn"]
    return name, {"name": name, "arn": arn}


@handles("aws:cloudwatch/eventTarget:EventTarget")
def _target(m, args, inputs):
    target: dict[str, Any] = {
        "Id": inputs.get("targetId") or physical_name(args.name, 64),
        "Arn": inputs["arn"],
    }
    if inputs.get("input"):
        target["Input"] = inputs["input"]
    if inputs.get("roleArn"):
        target["RoleArn"] = inputs["roleArn"]
    if inputs.get("retryPolicy"):
        rp = inputs["retryPolicy"]
        target["RetryPolicy"] = {
            k: int(rp[f])
            for k, f in (
                ("MaximumRetryAttempts", "maximumRetryAttempts"),
                ("MaximumEventAgeInSeconds", "maximumEventAgeInSeconds"),
            )
            if rp.get(f) is not None
        }
    if (inputs.get("deadLetterConfig") or {}).get("arn"):
        target["DeadLetterConfig"] = {"Arn": inputs["deadLetterConfig"]["arn"]}
    request: dict[str, Any] = {"Rule": inputs["rule"], "Targets": [target]}
    if inputs.get("eventBusName"):
        request["EventBusName"] = inputs["eventBusName"]
    m.client("events").put_targets(**request)
    return f"{inputs['rule']}-{target['Id']}", {"targetId": target["Id"]}


@handles("aws:sns/topic:Topic")
def _topic(m, args, inputs):
    name = _name(args, inputs, max_length=256)
    attributes = {"KmsMasterKeyId": inputs["kmsMasterKeyId"]} if inputs.get("kmsMasterKeyId") else {}
    arn = m.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return arn, {"name": name, "arn": arn}


@handles("aws:sns/topicSubscription:TopicSubscription")
def _subscription(m, args, inputs):
    arn = m.client("sns").subscribe(
        TopicArn=inputs["topic"], Protocol=inputs["protocol"], Endpoint=inputs["endpoint"]
    )["SubscriptionArn"]
    return arn, {"arn": arn}


@handles("aws:sns/topicPolicy:TopicPolicy")
def _topic_policy(m, args, inputs):
    policy = m.local_policy(f"topic policy of {inputs['arn'].rsplit(':', 1)[-1]}", inputs["policy"])
    m.client("sns").set_topic_attributes(
        TopicArn=inputs["arn"], AttributeName="Policy", AttributeValue=policy
    )
    return inputs["arn"], {}


@handles("aws:scheduler/schedule:Schedule")
def _schedule(m, args, inputs):
    name = _name(args, inputs, max_length=64)
    target = inputs["target"]
    request_target: dict[str, Any] = {"Arn": target["arn"], "RoleArn": target["roleArn"]}
    if target.get("input"):
        request_target["Input"] = target["input"]
    arn = m.client("scheduler").create_schedule(
        Name=name,
        ScheduleExpression=inputs["scheduleExpression"],
        FlexibleTimeWindow={"Mode": (inputs.get("flexibleTimeWindow") or {}).get("mode", "OFF")},
        Target=request_target,
        State=inputs.get("state", "ENABLED"),
    )["ScheduleArn"]
    return name, {"name": name, "arn": arn}


# Secrets -----------------------------------------------------------------------------
@handles("aws:secretsmanager/secret:Secret")
def _secret(m, args, inputs):
    name = _name(args, inputs, max_length=256)
    request: dict[str, Any] = {"Name": name, "Description": inputs.get("description", "")}
    if inputs.get("kmsKeyId"):
        request["KmsKeyId"] = inputs["kmsKeyId"]
    arn = m.client("secretsmanager").create_secret(**request)["ARN"]
    return arn, {"name": name, "arn": arn}


@handles("aws:secretsmanager/secretVersion:SecretVersion")
def _secret_version(m, args, inputs):
    version = m.client("secretsmanager").put_secret_value(
        SecretId=inputs["secretId"], SecretString=str(inputs["secretString"])
    )
    return f"{inputs['secretId']}|{version['VersionId']}", {
        "versionId": version["VersionId"],
        "arn": inputs["secretId"],
    }


@handles("random:index/randomPassword:RandomPassword")
def _random_password(m, args, inputs):
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    result = "".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length", 32))))
    return args.name, {"result": result, "bcryptHash": ""}


# HTTP API ----------------------------------------------------------------------------
@handles("aws:apigatewayv2/api:Api")
def _api(m, args, inputs):
    name = _name(args, inputs, max_length=128)
    api = m.client("apigatewayv2").create_api(Name=name, ProtocolType=inputs.get("protocolType", "HTTP"))
    return api["ApiId"], {
        "name": name,
        "apiEndpoint": api["ApiEndpoint"],
        "executionArn": f"arn:aws:execute-api:{m.region}:{ACCOUNT_ID}:{api['ApiId']}",
        "arn": f"arn:aws:apigateway:{m.region}::/apis/{api['ApiId']}",
    }


@handles("aws:apigatewayv2/integration:Integration")
def _integration(m, args, inputs):
    integration = m.client("apigatewayv2").create_integration(
        ApiId=inputs["apiId"],
        IntegrationType=inputs.get("integrationType", "AWS_PROXY"),
        IntegrationUri=inputs["integrationUri"],
        PayloadFormatVersion=inputs.get("payloadFormatVersion", "2.0"),
        IntegrationMethod=inputs.get("integrationMethod", "POST"),
    )
    return integration["IntegrationId"], {"integrationId": integration["IntegrationId"]}


@handles("aws:apigatewayv2/route:Route")
def _route(m, args, inputs):
    route = m.client("apigatewayv2").create_route(
        ApiId=inputs["apiId"], RouteKey=inputs["routeKey"], Target=inputs.get("target", "")
    )
    return route["RouteId"], {}


# Glue / Athena (the query catalog) ---------------------------------------------------
@handles("aws:glue/catalogDatabase:CatalogDatabase")
def _glue_database(m, args, inputs):
    name = _name(args, inputs, max_length=255)
    m.client("glue").create_database(
        DatabaseInput={"Name": name, "Description": inputs.get("description") or ""}
    )
    return name, {"name": name, "arn": _arn("glue", m.region, f"database/{name}"), "catalogId": ACCOUNT_ID}


@handles("aws:athena/workgroup:Workgroup")
def _workgroup(m, args, inputs):
    """The workgroup as configured; moto stores it but runs no SQL (``headrace query`` uses
    DuckDB on the embedded runtime)."""
    name = _name(args, inputs, max_length=128)
    config = inputs.get("configuration") or {}
    results = config.get("resultConfiguration") or {}
    configuration: dict[str, Any] = {
        "EnforceWorkGroupConfiguration": bool(config.get("enforceWorkgroupConfiguration", True)),
        "PublishCloudWatchMetricsEnabled": bool(config.get("publishCloudwatchMetricsEnabled", True)),
    }
    if config.get("bytesScannedCutoffPerQuery"):
        configuration["BytesScannedCutoffPerQuery"] = int(config["bytesScannedCutoffPerQuery"])
    if results:
        result: dict[str, Any] = {"OutputLocation": results.get("outputLocation", "")}
        if (results.get("encryptionConfiguration") or {}).get("encryptionOption"):
            result["EncryptionConfiguration"] = {
                "EncryptionOption": results["encryptionConfiguration"]["encryptionOption"]
            }
        if results.get("expectedBucketOwner"):
            result["ExpectedBucketOwner"] = str(results["expectedBucketOwner"])
        configuration["ResultConfiguration"] = result
    m.client("athena").create_work_group(
        Name=name, Description=inputs.get("description") or "", Configuration=configuration
    )
    return name, {"name": name, "arn": _arn("athena", m.region, f"workgroup/{name}")}


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------- running it
def load_stack_config(root: Path, stack: str) -> dict[str, Any]:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` (secure values cannot be decrypted here
    and must be overridden)."""
    path = root / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        # one line naming the file and the place (an edit saved while `local up` ran, then
        # a restart, was a yaml traceback naming "<unicode string>")
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DeployError(f"{path.name} is not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise DeployError(f"{path.name}: not a mapping with a config: section")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise DeployError(f"{path.name}: its config: is not a mapping of keys to values")
    return dict(config)


def stack_file_warnings(root: Path, stack: str) -> list[str]:
    """One line per key written twice in one mapping of ``Pulumi.<stack>.yaml`` (file, line,
    key). Pulumi reads stack files with go-yaml v2 in its lenient mode, which keeps the last
    value without a word, and so does this reader: the file is accepted, as ``pulumi up``
    accepts it, but an edit of the first one would change nothing. Call once the file reads."""
    path = root / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []  # load_stack_config says what is wrong with it
    return [
        f"{path.name}, line {line}: {key} is set again (first on line {first}); the last value is used, "
        "as Pulumi uses it"
        for key, line, first in _repeated_keys(document, ())
    ]


def _repeated_keys(node: yaml.Node | None, path: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(key, line, line first set) of each mapping key repeated under ``node``; a key in the
    ``config:`` section is named as Pulumi names it (``headrace:functions.loader``)."""
    found: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _repeated_keys(item, (*path, str(index)))
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            name, line = key_node.value, key_node.start_mark.line + 1
            inner = (*path, name)
            if name in first:
                found.append((".".join(inner[1:] if inner[0] == "config" else inner), line, first[name]))
            else:
                first[name] = line
            found += _repeated_keys(value_node, inner)
    return found


def merge_config(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied; nested objects are merged key by key."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def engine_config(
    root: Path, stack: str, region: str, overrides: dict[str, Any] | None = None
) -> dict[str, str]:
    """The configuration the program gets, as the engine hands it over (structured values
    as JSON text): ``Pulumi.<stack>.yaml`` with ``overrides`` applied, in ``region``."""
    config = merge_config(load_stack_config(root, stack), overrides or {})
    config["aws:region"] = region
    secure = [key for key, value in config.items() if isinstance(value, dict) and "secure" in value]
    if secure:
        raise DeployError(f"encrypted config values need local overrides: {', '.join(secure)}")
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def check_config(root: Path, stack: str, region: str, overrides: dict[str, Any] | None = None) -> None:
    """Validate the configuration :func:`deploy` would run the program with, as the program
    validates it (``components.config``), without running it; raise ``ConfigError``."""
    encoded = engine_config(root, stack, region, overrides)

    class Reader:
        def __init__(self, namespace: str):
            self.namespace = namespace

        def get(self, key: str) -> str | None:
            return encoded.get(f"{self.namespace}:{key}")

    config = load_config(Reader(NAMESPACE), present_keys=list(encoded))
    load_aws_settings(Reader(AWS_NAMESPACE), config)


def deploy(
    root: Path,
    client: Callable[[str], Any],
    region: str,
    stack: str = "local",
    overrides: dict[str, Any] | None = None,
    archive: Path | None = None,
    relaxed: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``root/__main__.py`` with mocks that create everything in the emulator; return
    the stack outputs. ``relaxed`` receives the policy statements relaxed locally."""
    encoded = engine_config(root, stack, region, overrides)
    mocks = EmulatorMocks(client, region)
    previous_env = {name: os.environ.get(name) for name in ("HEADRACE_LAMBDA_ARCHIVE", "PULUMI_CONFIG")}
    if archive is not None:
        os.environ["HEADRACE_LAMBDA_ARCHIVE"] = str(archive)
    # The engine passes a program its configuration in PULUMI_CONFIG too, and the program
    # finds the keys the stack sets there: without it, a top-level key it does not know
    # (`headrace:retension`) was ignored here, not refused as `pulumi up` refuses it.
    os.environ["PULUMI_CONFIG"] = json.dumps(encoded)
    set_mocks(mocks, project=_project_name(root), stack=stack, preview=False)
    # The runtime hands its own PostgreSQL's password over in memory, as a secret: the
    # engine marks values set with --secret so, and the program refuses a plain-text one.
    secret_keys = {f"{NAMESPACE}:{key}" for key in SECRET_KEYS}
    pulumi.runtime.set_all_config(encoded, [key for key in encoded if key in secret_keys])
    sys.path.insert(0, str(root))
    try:

        def program() -> None:
            runpy.run_path(str(root / "__main__.py"), run_name="__main__")

        _sync_await(run_pulumi_func(program))
        if relaxed is not None:
            relaxed.extend(mocks.relaxed)
        stack_resource = get_root_resource()
        assert isinstance(stack_resource, Stack)
        return {
            name: unwrap(_sync_await(pulumi.Output.from_input(value).future()))
            for name, value in stack_resource.outputs.items()
        }
    finally:
        sys.path.remove(str(root))
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _project_name(root: Path) -> str:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    return str(project.get("name", "headrace"))


__all__ = [
    "NO_LOCAL_EFFECT",
    "DeployError",
    "EmulatorMocks",
    "check_config",
    "deploy",
    "physical_name",
    "policy_document",
    "stack_file_warnings",
    "stub_archive",
]
