"""The security rules of the headrace program, as pure functions over resource properties.

Nothing here imports ``pulumi_policy``: ``headrace_pack.py`` wraps each rule in a CrossGuard
policy, and ``tests/infra/test_policy_pack.py`` runs the same functions on the resources the
real program registers under Pulumi mocks (every rule must pass on both stacks and fail on a
deliberately broken resource).

Property names are the engine's (camelCase, as in the provider schema). Resource rules see
a resource's inputs (``pulumi preview``/``up`` check each resource before it is created or
updated); stack rules see every resource's outputs at the end, which is where relations
between resources (a bucket and its policy, a queue and its DLQ) can be checked. A value
that is unknown during a preview makes ``pulumi_policy`` skip the rule with an advisory
note; it is enforced on ``pulumi up``, when the values are known.

Dead-letter queues are identified by what they are, not by their name: a queue is a DLQ
when another queue's redrive policy, or an EventBridge target's dead-letter config, points
at it. Every other queue must have a redrive policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Actions AWS does not scope to a resource (Resource "*" is required): X-Ray, and the
# network interfaces of a function in a VPC. Same list as components/policies.py
# UNSCOPED_ACTIONS (a test keeps them equal; this pack must stand alone).
UNSCOPED_ACTIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)

BUCKETS = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
BUCKET_ENCRYPTION = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_ACLS = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
TABLE = "aws:dynamodb/table:Table"
KMS_KEY = "aws:kms/key:Key"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
IAM_POLICIES = frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/policy:Policy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
IAM_ROLE = "aws:iam/role:Role"
IAM_ATTACHMENTS = frozenset(
    {
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
        "aws:iam/policyAttachment:PolicyAttachment",
    }
)
# AWS managed policies that grant (nearly) everything.
BROAD_MANAGED_POLICIES = ("/AdministratorAccess", "/PowerUserAccess", "/IAMFullAccess")
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)

Check = Callable[[str, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    types: frozenset[str]
    check: Check  # (resource type, inputs) -> violation messages


@dataclass(frozen=True)
class Resource:
    """One resource of a stack, as a stack rule sees it (its outputs)."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    # resources -> (message, urn of the offending resource)
    check: Callable[[Sequence[Resource]], list[tuple[str, str]]]


# ------------------------------------------------------------------------------ helpers
def _as_list(value: Any) -> list[Any]:
    """A list of ``value``'s items, or ``[value]`` for a single item. Any sequence counts
    (the engine hands lists over as pulumi_policy's read-only sequence proxies)."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return [value]


def _document(value: Any) -> Mapping[str, Any]:
    """A policy document given as JSON text or as an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, Mapping)]


def _denies_insecure_transport(document: Mapping[str, Any]) -> bool:
    for statement in _statements(document):
        if statement.get("Effect") != "Deny":
            continue
        condition = _document(statement.get("Condition"))
        secure = _document(condition.get("Bool")).get("aws:SecureTransport")
        if any(str(v).lower() == "false" for v in _as_list(secure)):
            return True
    return False


def _is_public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any("*" in _as_list(v) for v in principal.values())
    return False


def _sid(statement: Mapping[str, Any]) -> str:
    return str(statement.get("Sid") or "a statement")


# ------------------------------------------------------------------------------ resource rules
def s3_default_encryption(kind: str, props: Mapping[str, Any]) -> list[str]:
    if kind in BUCKET_ENCRYPTION:
        rules = _as_list(props.get("rules"))
    else:  # a bucket's own (older, inline) encryption settings, if it has any
        inline = props.get("serverSideEncryptionConfiguration")
        if not inline:
            return []
        rules = [
            _document(r) for r in _as_list(_document(inline).get("rule") or _document(inline).get("rules"))
        ]
    if not rules:
        return ["no default encryption rule"]
    problems = []
    for rule in rules:
        default = _document(_document(rule).get("applyServerSideEncryptionByDefault"))
        algorithm = default.get("sseAlgorithm")
        if algorithm not in SSE_ALGORITHMS:
            problems.append(
                f"default encryption {algorithm!r}: must be one of {', '.join(sorted(SSE_ALGORITHMS))}"
            )
    return problems


def s3_public_access_blocked(kind: str, props: Mapping[str, Any]) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [flag for flag in flags if props.get(flag) is not True]
    return [f"public access not fully blocked: {', '.join(off)} must be true"] if off else []


def s3_no_public_acl(kind: str, props: Mapping[str, Any]) -> list[str]:
    acl = props.get("acl")
    problems = [f"canned ACL {acl!r} makes the bucket public"] if acl in PUBLIC_ACLS else []
    policy = _document(props.get("accessControlPolicy"))
    for grant in _as_list(policy.get("grants")):
        uri = _document(_document(grant).get("grantee")).get("uri")
        if uri in PUBLIC_GROUPS:
            problems.append(f"grants {_document(grant).get('permission')} to {uri}")
    return problems


def tls_only_policy(kind: str, props: Mapping[str, Any]) -> list[str]:
    if _denies_insecure_transport(_document(props.get("policy"))):
        return []
    return ["the policy does not deny requests without TLS (Deny when aws:SecureTransport is false)"]


def resource_policy_not_public(kind: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    for statement in _statements(_document(props.get("policy"))):
        if statement.get("Effect") != "Allow":
            continue
        if _is_public_principal(statement.get("Principal")) and not statement.get("Condition"):
            problems.append(f"{_sid(statement)}: allows anyone (Principal '*') without a condition")
        wild = [a for a in _as_list(statement.get("Action")) if "*" in str(a)]
        if wild:
            problems.append(f"{_sid(statement)}: allows wildcard actions {', '.join(map(str, wild))}")
        if "NotAction" in statement or "NotPrincipal" in statement:
            problems.append(f"{_sid(statement)}: an Allow with NotAction/NotPrincipal grants everything else")
    return problems


def sqs_encrypted(kind: str, props: Mapping[str, Any]) -> list[str]:
    if props.get("sqsManagedSseEnabled") is True or props.get("kmsMasterKeyId"):
        return []
    return ["not encrypted at rest: set sqsManagedSseEnabled or kmsMasterKeyId"]


def sns_encrypted(kind: str, props: Mapping[str, Any]) -> list[str]:
    return [] if props.get("kmsMasterKeyId") else ["not encrypted at rest: set kmsMasterKeyId"]


def dynamodb_encrypted_and_recoverable(kind: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    if _document(props.get("serverSideEncryption")).get("enabled") is not True:
        problems.append("serverSideEncryption.enabled must be true (a KMS key, not the AWS owned default)")
    if _document(props.get("pointInTimeRecovery")).get("enabled") is not True:
        problems.append("pointInTimeRecovery.enabled must be true")
    return problems


def kms_key_rotation(kind: str, props: Mapping[str, Any]) -> list[str]:
    spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec != "SYMMETRIC_DEFAULT" or props.get("enableKeyRotation") is True:
        return []
    return ["enableKeyRotation must be true"]


def _identity_statement_problems(document: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        sid = f"{where}{_sid(statement)}"
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: an Allow with NotAction/NotResource grants everything else")
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        wild = [a for a in actions if "*" in a]
        if wild:
            problems.append(f"{sid}: wildcard action {', '.join(wild)}")
        if "*" in _as_list(statement.get("Resource")):
            broad = sorted(set(actions) - UNSCOPED_ACTIONS - set(wild))
            if broad:
                problems.append(
                    f"{sid}: {', '.join(broad)} on Resource '*' (only actions AWS cannot scope may be)"
                )
    return problems


def iam_least_privilege(kind: str, props: Mapping[str, Any]) -> list[str]:
    if kind in IAM_POLICIES:
        return _identity_statement_problems(_document(props.get("policy")), "")
    if kind in IAM_ATTACHMENTS:
        arn = str(props.get("policyArn") or "")
        return (
            [f"attaches {arn}: far more than any function needs"]
            if arn.endswith(BROAD_MANAGED_POLICIES)
            else []
        )
    problems = []  # a role: its inline policies and managed policy ARNs
    for inline in _as_list(props.get("inlinePolicies")):
        inline = _document(inline)
        problems += _identity_statement_problems(
            _document(inline.get("policy")), f"{inline.get('name', 'inline')}: "
        )
    for arn in _as_list(props.get("managedPolicyArns")):
        if str(arn).endswith(BROAD_MANAGED_POLICIES):
            problems.append(f"attaches {arn}: far more than any function needs")
    return problems


def rds_private_and_encrypted(kind: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    if props.get("publiclyAccessible") is True:
        problems.append("publiclyAccessible must be false: the database is reached from the VPC only")
    if props.get("storageEncrypted") is not True:
        problems.append("storageEncrypted must be true")
    return problems


def queue_targets_have_dlq(kind: str, props: Mapping[str, Any]) -> list[str]:
    if ":sqs:" not in str(props.get("arn") or ""):
        return []  # schedules invoking a function: a missed run shows as staleness, not loss
    if _document(props.get("deadLetterConfig")).get("arn"):
        return []
    return ["an EventBridge target queue without deadLetterConfig: undeliverable events would be dropped"]


RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule(
        "s3-default-encryption",
        "S3 buckets encrypt every object by default (SSE-S3 or SSE-KMS).",
        BUCKET_ENCRYPTION | BUCKETS,
        s3_default_encryption,
    ),
    ResourceRule(
        "s3-public-access-blocked",
        "Every S3 public access block setting is on.",
        frozenset({PUBLIC_ACCESS_BLOCK}),
        s3_public_access_blocked,
    ),
    ResourceRule(
        "s3-no-public-acl",
        "No S3 bucket is made public by an ACL.",
        BUCKETS | BUCKET_ACLS,
        s3_no_public_acl,
    ),
    ResourceRule(
        "tls-only-resource-policies",
        "Bucket, queue and topic policies deny requests made without TLS.",
        frozenset({BUCKET_POLICY, QUEUE_POLICY, TOPIC_POLICY}),
        tls_only_policy,
    ),
    ResourceRule(
        "resource-policies-not-public",
        "Resource policies allow no one unconditionally and no wildcard actions.",
        frozenset({BUCKET_POLICY, QUEUE_POLICY, TOPIC_POLICY, KMS_KEY}),
        resource_policy_not_public,
    ),
    ResourceRule("sqs-encrypted", "SQS queues are encrypted at rest.", frozenset({QUEUE}), sqs_encrypted),
    ResourceRule(
        "sns-encrypted", "SNS topics are encrypted with a KMS key.", frozenset({TOPIC}), sns_encrypted
    ),
    ResourceRule(
        "dynamodb-encrypted-and-recoverable",
        "DynamoDB tables use KMS encryption and point-in-time recovery.",
        frozenset({TABLE}),
        dynamodb_encrypted_and_recoverable,
    ),
    ResourceRule(
        "kms-key-rotation", "Symmetric KMS keys rotate yearly.", frozenset({KMS_KEY}), kms_key_rotation
    ),
    ResourceRule(
        "iam-least-privilege",
        "IAM grants name their actions (no wildcards) and their resources (Resource '*' only for "
        "actions AWS cannot scope: X-Ray, a VPC function's network interfaces); no administrator policies.",
        IAM_POLICIES | IAM_ATTACHMENTS | {IAM_ROLE},
        iam_least_privilege,
    ),
    ResourceRule(
        "rds-private-and-encrypted",
        "Databases are not publicly accessible and encrypt their storage.",
        frozenset({RDS_INSTANCE, RDS_CLUSTER}),
        rds_private_and_encrypted,
    ),
    ResourceRule(
        "eventbridge-queue-targets-have-dlq",
        "EventBridge rules that deliver to a queue send undeliverable events to a dead-letter queue.",
        frozenset({EVENT_TARGET}),
        queue_targets_have_dlq,
    ),
)


# ------------------------------------------------------------------------------ stack rules
def _of(resources: Iterable[Resource], types: str | frozenset[str]) -> list[Resource]:
    wanted = {types} if isinstance(types, str) else types
    return [r for r in resources if r.type in wanted]


def queues_have_dlqs(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    queues = _of(resources, QUEUE)
    arns = {str(q.props.get("arn")) for q in queues}
    dead_letter_arns = {
        str(_document(q.props.get("redrivePolicy")).get("deadLetterTargetArn")) for q in queues
    } | {str(_document(t.props.get("deadLetterConfig")).get("arn")) for t in _of(resources, EVENT_TARGET)}
    problems = []
    for queue in queues:
        redrive = _document(queue.props.get("redrivePolicy"))
        if redrive:
            target = redrive.get("deadLetterTargetArn")
            if target not in arns:
                problems.append(
                    (
                        f"{queue.name}: its dead-letter queue {target!r} is not a queue of this stack",
                        queue.urn,
                    )
                )
            try:
                count = int(redrive.get("maxReceiveCount", 0))
            except (TypeError, ValueError):
                count = 0
            if count < 1:
                problems.append((f"{queue.name}: maxReceiveCount must be at least 1", queue.urn))
        elif str(queue.props.get("arn")) not in dead_letter_arns:
            problems.append(
                (
                    f"{queue.name}: no redrive policy, and it is no queue's or rule's dead-letter queue: "
                    "a message that always fails would be retried until it expires",
                    queue.urn,
                )
            )
    return problems


def buckets_encrypted_and_private(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    encrypted = {
        str(r.props.get("bucket"))
        for r in _of(resources, BUCKET_ENCRYPTION)
        if not s3_default_encryption(r.type, r.props)
    }
    blocked = {
        str(r.props.get("bucket"))
        for r in _of(resources, PUBLIC_ACCESS_BLOCK)
        if not s3_public_access_blocked(r.type, r.props)
    }
    problems = []
    for bucket in _of(resources, BUCKETS):
        name = str(bucket.props.get("bucket"))
        inline = bool(bucket.props.get("serverSideEncryptionConfiguration")) and not s3_default_encryption(
            bucket.type, bucket.props
        )
        if name not in encrypted and not inline:
            problems.append((f"bucket {name}: no default encryption configuration", bucket.urn))
        if name not in blocked:
            problems.append((f"bucket {name}: no public access block with every setting on", bucket.urn))
    return problems


def tls_only_policies_attached(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    def tls_only(types: str, key: str) -> set[str]:
        return {str(r.props.get(key)) for r in _of(resources, types) if not tls_only_policy(r.type, r.props)}

    buckets = tls_only(BUCKET_POLICY, "bucket")
    queues = tls_only(QUEUE_POLICY, "queueUrl")
    topics = tls_only(TOPIC_POLICY, "arn")
    problems = []
    for kind, key, covered, what in (
        (BUCKETS, "bucket", buckets, "bucket"),
        (frozenset({QUEUE}), "url", queues, "queue"),
        (frozenset({TOPIC}), "arn", topics, "topic"),
    ):
        for resource in _of(resources, kind):
            if str(resource.props.get(key)) not in covered:
                problems.append(
                    (f"{what} {resource.name}: no attached policy denies requests without TLS", resource.urn)
                )
    return problems


def databases_require_tls(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    forcing = set()
    for group in _of(resources, RDS_PARAMETER_GROUP):
        for parameter in _as_list(group.props.get("parameters")):
            parameter = _document(parameter)
            if parameter.get("name") == "rds.force_ssl" and str(parameter.get("value")) == "1":
                forcing.add(str(group.props.get("name")))
    problems = []
    for instance in _of(resources, RDS_INSTANCE):
        if "postgres" not in str(instance.props.get("engine")):
            continue
        if str(instance.props.get("parameterGroupName")) not in forcing:
            problems.append(
                (
                    f"database {instance.name}: its parameter group does not set rds.force_ssl = 1",
                    instance.urn,
                )
            )
    return problems


STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "sqs-dead-letter-queues",
        "Every queue has a redrive policy to a dead-letter queue of the stack, or is one.",
        queues_have_dlqs,
    ),
    StackRule(
        "s3-buckets-encrypted-and-private",
        "Every bucket has a default encryption configuration and a full public access block.",
        buckets_encrypted_and_private,
    ),
    StackRule(
        "tls-only-policies-attached",
        "Every bucket, queue and topic has a policy that denies requests without TLS.",
        tls_only_policies_attached,
    ),
    StackRule(
        "rds-tls-only",
        "PostgreSQL databases refuse connections without TLS (rds.force_ssl = 1).",
        databases_require_tls,
    ),
)
