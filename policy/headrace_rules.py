"""The security rules of the headrace program, as pure functions over resource properties.

Nothing here imports ``pulumi_policy``: ``headrace_pack.py`` wraps each rule in a CrossGuard
policy, and ``tests/infra/test_policy_pack.py`` runs the same functions on the resources the
real program registers under Pulumi mocks (every rule must pass on both stacks and fail on a
deliberately broken resource).

Property names are the engine's (camelCase, as in the provider schema). Resource rules see
a resource's inputs (``pulumi preview``/``up`` check each resource before it is created or
updated); stack rules see every resource's outputs at the end, which is where relations
between resources (a bucket and its policy, a queue and its DLQ) can be checked. Reading a
value that is unknown during a preview makes ``pulumi_policy`` skip the whole rule (for a
stack rule: for every resource) with an advisory note. A resource rule is then enforced on
``pulumi up`` before the resource is created; a stack rule only after every resource has
been created or updated. So whatever can be checked on one resource's inputs is checked
there (a queue's redrive policy), and stack rules keep only the relations.

Dead-letter queues: at preview a queue without a redrive policy passes ``sqs-redrive-policy``
only if its resource name ends in ``-dlq`` (components/queues.py names them so); on update
``sqs-dead-letter-queues`` checks what it is: a queue without a redrive policy must be
the DLQ of another queue's redrive policy or of an EventBridge target.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# The network interfaces of a function in a VPC: the Lambda service manages them with the
# execution role, and the function's code must not (a Deny on lambda:SourceFunctionArn,
# which only requests from the function's code carry).
VPC_NETWORK_INTERFACE_ACTIONS = frozenset(
    {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)
# Actions AWS does not scope to a resource (Resource "*" is required): X-Ray, and the
# network interfaces of a function in a VPC. Same lists as components/policies.py
# UNSCOPED_ACTIONS and VPC_NETWORK_INTERFACE_ACTIONS (a test keeps them equal; this pack
# must stand alone).
UNSCOPED_ACTIONS = (
    frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}) | VPC_NETWORK_INTERFACE_ACTIONS
)
SOURCE_FUNCTION_ARN = "lambda:sourcefunctionarn"  # condition keys ignore case

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
SECRET = "aws:secretsmanager/secret:Secret"  # its inline ``policy``
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
TABLE = "aws:dynamodb/table:Table"
KMS_KEY = "aws:kms/key:Key"
KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"  # its storage is the cluster's
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
HTTP_API_STAGE = "aws:apigatewayv2/stage:Stage"
VPC_ENDPOINTS = frozenset({"aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy"})
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
# Managed policies that grant (nearly) everything: these, and every "...FullAccess" one.
BROAD_MANAGED_POLICIES = frozenset({"AdministratorAccess", "PowerUserAccess"})
# A TLS-only deny must cover every action of the policy's service. For topics AWS's own
# TLS-only example denies only sns:Publish (the call that carries message data), and so
# does this program (components/reporting.py), so that is accepted for topics.
TLS_DENY_ACTIONS = {
    BUCKET_POLICY: frozenset({"*", "s3:*"}),
    QUEUE_POLICY: frozenset({"*", "sqs:*"}),
    TOPIC_POLICY: frozenset({"*", "sns:*", "sns:publish"}),
}
# Condition keys that limit who is calling (or from where); any other condition (e.g.
# aws:SecureTransport) leaves Principal "*" open to everyone. Only under a positive
# operator: StringNotEquals, ...IfExists, Null or ForAllValues: would not restrict.
CALLER_CONDITION_KEYS = (
    "aws:SourceArn",
    "aws:SourceAccount",
    "aws:SourceOwner",
    "aws:PrincipalOrgID",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:SourceVpc",
    "aws:SourceVpce",
)
RESTRICTING_OPERATORS = frozenset(
    {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike"}
)
# Operators that read "*" and "?" in a value as wildcards (IAM: ArnEquals does too). Under
# them a value restricts only if it still names someone: see _pins.
WILDCARD_OPERATORS = frozenset({"stringlike", "arnequals", "arnlike"})
ARN_CONDITION_KEYS = frozenset({"aws:sourcearn", "aws:principalarn"})
ORG_PATH_CONDITION_KEYS = frozenset({"aws:resourceorgpaths"})
# Condition keys that confine an endpoint policy's Allow to the resources of named accounts
# or organizations (then its Resource may be "*").
RESOURCE_OWNER_KEYS = frozenset({"aws:resourceaccount", "aws:resourceorgid", "aws:resourceorgpaths"})
# Services whose ARNs name the resource without a type first (arn:aws:s3:::bucket/key,
# arn:aws:sqs:region:account:queue, arn:aws:execute-api:region:account:api/stage/...).
UNTYPED_ARN_SERVICES = frozenset({"s3", "sqs", "sns", "execute-api"})
# How components/queues.py names a dead-letter queue (resource name).
DLQ_NAME_SUFFIX = "-dlq"
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
    # Resources of these types the rule leaves alone, by the end of their resource name.
    skip_names_ending: str = ""

    def applies_to(self, kind: str, name: str) -> bool:
        return kind in self.types and not (self.skip_names_ending and name.endswith(self.skip_names_ending))


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


def _matches(pattern: str, arn: str) -> bool:
    """Whether an IAM resource pattern (``*`` and ``?`` wildcards) matches ``arn``, in any
    partition (a bucket's ARN is built here as arn:aws:..., the program's from its output)."""
    pattern, arn = (re.sub(r"^arn:[^:*?]+:", "arn:aws:", text) for text in (pattern, arn))
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn, re.DOTALL) is not None


def _queue_arn(url: str) -> str:
    """The ARN of the queue at ``url`` (https://sqs.<region>.amazonaws.com/<account>/<name>);
    "" if the URL does not name a region, account and queue."""
    parts = urlsplit(url)
    path = parts.path.strip("/").split("/")
    region = re.search(r"[a-z]{2}(?:-[a-z]+)+-\d+", parts.hostname or "")
    if len(path) != 2 or not all(path) or region is None:
        return ""
    host, name = parts.hostname or "", region.group()
    partition = "aws-cn" if host.endswith(".cn") else "aws-us-gov" if name.startswith("us-gov-") else "aws"
    return f"arn:{partition}:sqs:{name}:{path[0]}:{path[1]}"


def _own_arns(kind: str, props: Mapping[str, Any]) -> list[str]:
    """What a bucket, queue or topic policy must cover: the ARNs its inputs name ("" when
    they name none, which only a Resource of "*" covers)."""
    if kind == BUCKET_POLICY:
        bucket = str(props.get("bucket") or "")
        return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"] if bucket else [""]
    if kind == QUEUE_POLICY:
        return [_queue_arn(str(props.get("queueUrl") or ""))]
    return [str(props.get("arn") or "")]


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return (
        isinstance(principal, Mapping) and list(principal) == ["AWS"] and _as_list(principal["AWS"]) == ["*"]
    )


def _is_tls_deny(statement: Mapping[str, Any], actions: frozenset[str]) -> bool:
    """A Deny of ``actions`` to everyone whose only condition is aws:SecureTransport false
    (another condition would narrow the deny)."""
    if statement.get("Effect") != "Deny" or not _is_everyone(statement.get("Principal")):
        return False
    if not {str(a).lower() for a in _as_list(statement.get("Action"))} & actions:
        return False
    condition = _document(statement.get("Condition"))
    if [str(k).lower() for k in condition] != ["bool"]:
        return False
    clauses = _document(next(iter(condition.values())))
    if [str(k).lower() for k in clauses] != ["aws:securetransport"]:
        return False
    return all(str(v).lower() == "false" for v in _as_list(next(iter(clauses.values()))))


def _is_public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any("*" in _as_list(v) for v in principal.values())
    return False


def _restricts_caller(condition: Any) -> bool:
    """Whether a condition limits who calls (a source or principal account, ARN,
    organization, VPC or endpoint) to values that are not just "*"."""
    return _restricts_keys(condition, _CALLER_KEYS)


_CALLER_KEYS = frozenset(key.lower() for key in CALLER_CONDITION_KEYS)  # condition keys ignore case


def _restricts_keys(condition: Any, keys: frozenset[str]) -> bool:
    """Whether a condition limits one of ``keys`` (lower case) to values that each name an
    account, ARN, organization, VPC or endpoint (not "*", nor a pattern any of them matches)."""
    for operator, clauses in _document(condition).items():
        operator = str(operator).lower()
        if operator not in RESTRICTING_OPERATORS:
            continue
        for key, value in _document(clauses).items():
            key, values = str(key).lower(), [str(v) for v in _as_list(value)]
            if key in keys and values and all(_pins(key, v, operator) for v in values):
                return True
    return False


def _pins(key: str, value: str, operator: str) -> bool:
    """Whether ``value`` of condition key ``key`` singles out callers (or owners) under
    ``operator`` (lower case). Where ``*`` and ``?`` are wildcards, an ARN must name its
    account (or, without one, its resource: arn:aws:s3:::bucket), an organization path its
    organization, and any other value be literal (vpc-*, ?* or 1111* match accounts or VPCs
    of anyone)."""
    if value == "*":
        return False
    if operator not in WILDCARD_OPERATORS:
        return True
    if key in ARN_CONDITION_KEYS:
        fields = value.split(":", 5)
        if len(fields) < 6:
            return False  # arn:*, arn:aws:iam::*: no account to name
        # The ARN operators match each of the six parts apart; StringLike's "*" also matches
        # ":", so there a wildcard before the account could reach past it.
        before = fields[:3] if operator != "stringlike" else fields[:4]
        if any(c in "".join(before) for c in "*?"):
            return False
        account, resource = fields[4], fields[5]
        if account:
            return re.fullmatch(r"\d{12}", account) is not None
        return bool(resource) and not set(resource) & {"*", "?"}
    if key in ORG_PATH_CONDITION_KEYS:
        return re.match(r"o-[a-z0-9]+/", value) is not None
    return not set(value) & {"*", "?"}


def _is_wildcard_resource(resource: str) -> bool:
    """``*``, or an ARN whose account, region or resource name is a wildcard
    (arn:aws:s3:::*/*, arn:aws:dynamodb:eu-west-1:1:table/*), also when the wildcard follows
    the resource type without its separator (table*, which IAM matches against table/<name>).
    A wildcard after a name (a log group's streams, a bucket's objects, a Glue database's
    tables) is that resource's."""
    fields = resource.split(":", 5)
    if len(fields) < 6 or fields[0] != "arn":
        return "*" in resource
    _, partition, service, region, account, rest = fields
    if "*" in partition + service + region + account:
        return True
    if service not in UNTYPED_ARN_SERVICES:  # the resource type before the name: table/, key/
        kind = re.match(r"[^/:]*", rest)
        if kind is not None and "*" in kind.group():  # table*, secret*: table/<any name>, and more
            return True
        rest = re.sub(r"^[A-Za-z0-9-]+[/:]", "", rest)
    name = next((part for part in re.split(r"[/:]", rest) if part), "")
    return set(name) <= {"*", "?"}


def _is_broad_managed_policy(arn: Any) -> bool:
    name = str(arn).rsplit("/", 1)[-1]
    return name in BROAD_MANAGED_POLICIES or name.endswith("FullAccess")


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
    # A bucket's own (inline) grants: [{"type": "Group", "uri": ..., "permissions": [...]}]
    for grant in _as_list(props.get("grants")):
        grant = _document(grant)
        if grant.get("uri") in PUBLIC_GROUPS:
            permissions = ", ".join(str(p) for p in _as_list(grant.get("permissions")))
            problems.append(f"grants {permissions} to {grant.get('uri')}")
    return problems


def tls_only_policy(kind: str, props: Mapping[str, Any]) -> list[str]:
    actions = TLS_DENY_ACTIONS[kind]
    denies = [s for s in _statements(_document(props.get("policy"))) if _is_tls_deny(s, actions)]
    own = _own_arns(kind, props)
    if all(any(_matches(str(p), arn) for s in denies for p in _as_list(s.get("Resource"))) for arn in own):
        return []
    return [
        "the policy does not deny requests without TLS (a Deny to Principal '*' of "
        f"{' or '.join(sorted(actions))} on {', '.join(a or 'its resource' for a in own)}, "
        "with the sole condition aws:SecureTransport false)"
    ]


def resource_policy_not_public(kind: str, props: Mapping[str, Any]) -> list[str]:
    if kind == LAMBDA_PERMISSION:
        return _lambda_permission_problems(props)
    problems = []
    for statement in _statements(_document(props.get("policy"))):
        if statement.get("Effect") != "Allow":
            continue
        if _is_public_principal(statement.get("Principal")) and not _restricts_caller(
            statement.get("Condition")
        ):
            problems.append(
                f"{_sid(statement)}: allows anyone (Principal '*') without a condition on the caller "
                f"({', '.join(CALLER_CONDITION_KEYS)})"
            )
        wild = [a for a in _as_list(statement.get("Action")) if "*" in str(a)]
        if wild:
            problems.append(f"{_sid(statement)}: allows wildcard actions {', '.join(map(str, wild))}")
        if "NotAction" in statement or "NotPrincipal" in statement:
            problems.append(f"{_sid(statement)}: an Allow with NotAction/NotPrincipal grants everything else")
    return problems


def _lambda_permission_problems(props: Mapping[str, Any]) -> list[str]:
    if props.get("principal") != "*":
        return []
    # Lambda checks these two against account and organization id patterns (no wildcards).
    if props.get("sourceAccount") or props.get("principalOrgId"):
        return []
    # Lambda compares the source ARN with ArnLike, in which an empty account or a wildcard
    # one matches the resources of every account (arn:aws:sns:::*, arn:aws:events:*:*:rule/x).
    source_arn = props.get("sourceArn")
    if source_arn and _pins("aws:sourcearn", str(source_arn), "arnlike"):
        return []
    # A function URL's grants: whether the URL is public is its own authorization type
    # (the local stack's is, on purpose: README.md, "Not enforced").
    if props.get("action") == "lambda:InvokeFunctionUrl" or props.get("invokedViaFunctionUrl") is True:
        return []
    if source_arn:
        return [
            f"allows anyone (principal '*') to invoke the function: sourceArn {source_arn!r} names no "
            "account (or an S3 bucket): set sourceAccount, or a sourceArn of one account's resource"
        ]
    return [
        "allows anyone (principal '*') to invoke the function: set sourceArn, sourceAccount or principalOrgId"
    ]


def sqs_redrive_policy(kind: str, props: Mapping[str, Any]) -> list[str]:
    # Whether the input is set, not its value: at preview a new queue's redrive policy
    # names a DLQ not created yet, and reading that unknown value would skip the rule.
    if "redrivePolicy" in list(props):
        return []
    return [
        f"no redrivePolicy, and not a dead-letter queue (resource name ending {DLQ_NAME_SUFFIX!r}): "
        "a message that always fails would be retried until it expires"
    ]


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


def _denies_to_function_code(statement: Mapping[str, Any]) -> set[str]:
    """The actions (lower case, wildcards kept) ``statement`` denies to a function's code on every resource:
    a Deny on Resource "*" whose only condition is a positive ARN comparison of
    lambda:SourceFunctionArn (a negated operator would also match the Lambda service's own
    requests, which carry no such key, and another key would not single out the code)."""
    if statement.get("Effect") != "Deny" or "NotAction" in statement or "NotResource" in statement:
        return set()
    if "*" not in [str(r) for r in _as_list(statement.get("Resource"))]:
        return set()
    condition = _document(statement.get("Condition"))
    if not condition or {str(op).lower() for op in condition} - {"arnequals", "arnlike"}:
        return set()
    for clauses in condition.values():
        clauses = _document(clauses)
        if [str(k).lower() for k in clauses] != [SOURCE_FUNCTION_ARN]:
            return set()
        if not _as_list(next(iter(clauses.values()))):
            return set()
    return {str(a).lower() for a in _as_list(statement.get("Action"))}


def _identity_statement_problems(document: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    statements = _statements(document)
    denied_to_code = set().union(*(_denies_to_function_code(s) for s in statements))
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue  # a Deny only narrows what the Allows grant
        sid = f"{where}{_sid(statement)}"
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: an Allow with NotAction/NotResource grants everything else")
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        wild = [a for a in actions if "*" in a]
        if wild:
            problems.append(f"{sid}: wildcard action {', '.join(wild)}")
        wide = [str(r) for r in _as_list(statement.get("Resource")) if _is_wildcard_resource(str(r))]
        broad = sorted(set(actions) - UNSCOPED_ACTIONS - set(wild))
        if wide and broad:
            problems.append(
                f"{sid}: {', '.join(broad)} on Resource {', '.join(map(repr, wide))} (only actions AWS "
                "cannot scope may name every resource, account or region)"
            )
        usable = sorted(
            a
            for a in actions
            if a in VPC_NETWORK_INTERFACE_ACTIONS
            and not any(fnmatch.fnmatchcase(a.lower(), denied) for denied in denied_to_code)
        )
        if usable:
            problems.append(
                f"{sid}: {', '.join(usable)} are not denied to the function's code (a Deny on Resource '*' "
                "under ArnEquals lambda:SourceFunctionArn; the Lambda service keeps them)"
            )
    return problems


def iam_least_privilege(kind: str, props: Mapping[str, Any]) -> list[str]:
    if kind in IAM_POLICIES:
        return _identity_statement_problems(_document(props.get("policy")), "")
    if kind in IAM_ATTACHMENTS:
        arn = str(props.get("policyArn") or "")
        return [f"attaches {arn}: far more than any function needs"] if _is_broad_managed_policy(arn) else []
    problems = []  # a role: its inline policies and managed policy ARNs
    for inline in _as_list(props.get("inlinePolicies")):
        inline = _document(inline)
        problems += _identity_statement_problems(
            _document(inline.get("policy")), f"{inline.get('name', 'inline')}: "
        )
    for arn in _as_list(props.get("managedPolicyArns")):
        if _is_broad_managed_policy(arn):
            problems.append(f"attaches {arn}: far more than any function needs")
    return problems


def _confines_resource_owner(condition: Any) -> bool:
    return _restricts_keys(condition, RESOURCE_OWNER_KEYS)


def vpc_endpoint_policy(kind: str, props: Mapping[str, Any]) -> list[str]:
    """A VPC endpoint's policy lets through named actions on named resources (or on the
    resources of named accounts): AWS's default policy, which a missing one means, passes
    every request to every resource of every account."""
    policy = props.get("policy")
    if not policy:
        return ["no endpoint policy: AWS's default passes every action on every resource, in any account"]
    problems = []
    for statement in _statements(_document(policy)):
        if statement.get("Effect") != "Allow":
            continue
        sid = _sid(statement)
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: an Allow with NotAction/NotResource passes everything else")
            continue
        wild = [str(a) for a in _as_list(statement.get("Action")) if "*" in str(a)]
        if wild:
            problems.append(f"{sid}: wildcard action {', '.join(wild)}")
        wide = [str(r) for r in _as_list(statement.get("Resource")) if _is_wildcard_resource(str(r))]
        if wide and not _confines_resource_owner(statement.get("Condition")):
            problems.append(
                f"{sid}: Resource {', '.join(map(repr, wide))} without an aws:ResourceAccount (or "
                "aws:ResourceOrgID) condition: any account's resources pass"
            )
    return problems


def rds_private_and_encrypted(kind: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    if props.get("publiclyAccessible") is True:
        problems.append("publiclyAccessible must be false: the database is reached from the VPC only")
    # A cluster instance stores nothing of its own: its cluster's storageEncrypted counts.
    if kind != RDS_CLUSTER_INSTANCE and props.get("storageEncrypted") is not True:
        problems.append("storageEncrypted must be true")
    return problems


def queue_targets_have_dlq(kind: str, props: Mapping[str, Any]) -> list[str]:
    if ":sqs:" not in str(props.get("arn") or ""):
        return []  # schedules invoking a function: a missed run shows as staleness, not loss
    if _document(props.get("deadLetterConfig")).get("arn"):
        return []
    return ["an EventBridge target queue without deadLetterConfig: undeliverable events would be dropped"]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def log_group_retention(kind: str, props: Mapping[str, Any]) -> list[str]:
    if _positive(props.get("retentionInDays")):
        return []
    return ["retentionInDays not set: the log group keeps every event (and what it logs) forever"]


def http_api_stage_logged_and_throttled(kind: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    # Whether the destination is set, not its value: at preview a new log group's ARN is
    # unknown, and reading it would skip the rule.
    access_logs = props.get("accessLogSettings")
    if not isinstance(access_logs, Mapping) or not {"destinationArn", "format"} <= set(access_logs):
        problems.append(
            "no access logging (accessLogSettings.destinationArn and format): requests leave no trace"
        )
    route = _document(props.get("defaultRouteSettings"))
    unthrottled = [
        key for key in ("throttlingRateLimit", "throttlingBurstLimit") if not _positive(route.get(key))
    ]
    if unthrottled:
        problems.append(
            f"defaultRouteSettings.{' and '.join(unthrottled)} not set: one caller can use the account's "
            "whole API Gateway quota (and the function's concurrency)"
        )
    return problems


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
        "Bucket, queue and topic policies deny everyone every action on their resource without TLS.",
        frozenset({BUCKET_POLICY, QUEUE_POLICY, TOPIC_POLICY}),
        tls_only_policy,
    ),
    ResourceRule(
        "resource-policies-not-public",
        "Resource policies and Lambda permissions allow anyone only under a condition on the caller "
        "(source or principal account, ARN, organization, VPC), and no wildcard actions.",
        BUCKETS
        | {
            BUCKET_POLICY,
            QUEUE,
            QUEUE_POLICY,
            TOPIC,
            TOPIC_POLICY,
            KMS_KEY,
            KMS_KEY_POLICY,
            SECRET,
            SECRET_POLICY,
            LAMBDA_PERMISSION,
        },
        resource_policy_not_public,
    ),
    ResourceRule("sqs-encrypted", "SQS queues are encrypted at rest.", frozenset({QUEUE}), sqs_encrypted),
    ResourceRule(
        "sqs-redrive-policy",
        f"SQS queues have a redrive policy, unless they are dead-letter queues (named '*{DLQ_NAME_SUFFIX}').",
        frozenset({QUEUE}),
        sqs_redrive_policy,
        skip_names_ending=DLQ_NAME_SUFFIX,
    ),
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
        "IAM grants name their actions (no wildcards) and their resources (no '*', no ARN for every "
        "account, region or resource of a type, except for actions AWS cannot scope: X-Ray, a VPC "
        "function's network interfaces, which the same policy denies to the function's code); no "
        "administrator, power user or *FullAccess managed policies.",
        IAM_POLICIES | IAM_ATTACHMENTS | {IAM_ROLE},
        iam_least_privilege,
    ),
    ResourceRule(
        "vpc-endpoint-policies",
        "VPC endpoints have a policy that passes named actions on named resources (or on resources "
        "of named accounts), not AWS's default of everything.",
        VPC_ENDPOINTS,
        vpc_endpoint_policy,
    ),
    ResourceRule(
        "rds-private-and-encrypted",
        "Databases (instances, clusters and cluster instances) are not publicly accessible and "
        "encrypt their storage.",
        frozenset({RDS_INSTANCE, RDS_CLUSTER, RDS_CLUSTER_INSTANCE}),
        rds_private_and_encrypted,
    ),
    ResourceRule(
        "eventbridge-queue-targets-have-dlq",
        "EventBridge rules that deliver to a queue send undeliverable events to a dead-letter queue.",
        frozenset({EVENT_TARGET}),
        queue_targets_have_dlq,
    ),
    ResourceRule(
        "log-group-retention",
        "CloudWatch log groups expire their events (retentionInDays), not keep them forever.",
        frozenset({LOG_GROUP}),
        log_group_retention,
    ),
    ResourceRule(
        "http-api-stages-logged-and-throttled",
        "HTTP API stages write access logs and throttle their routes by default.",
        frozenset({HTTP_API_STAGE}),
        http_api_stage_logged_and_throttled,
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
