"""The CrossGuard policy pack (policy/) against the resources the real program registers.

Every rule must pass on every stack the repository ships (dev, local, prod) and must fail
on a resource broken on purpose (one negative test per rule). The rules are pure functions
(policy/headrace_rules.py) run here in the program's environment; the last test runs them
through ``pulumi_policy`` itself in the pack's own environment (policy/.venv).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from components.policies import UNSCOPED_ACTIONS, VPC_NETWORK_INTERFACE_ACTIONS

from .conftest import ROOT, Deployment, deploy

POLICY_DIR = ROOT / "policy"
POLICY_PYTHON = POLICY_DIR / ".venv" / "bin" / "python"


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("headrace_rules", POLICY_DIR / "headrace_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["headrace_rules"] = module
    spec.loader.exec_module(module)
    return module


rules = _load_rules()
RESOURCE_RULES = {rule.name: rule for rule in rules.RESOURCE_RULES}
STACK_RULES = {rule.name: rule for rule in rules.STACK_RULES}


@pytest.fixture(scope="session")
def prod(tiny_archive: Path) -> Deployment:
    return deploy("prod", tiny_archive)


@pytest.fixture(params=["dev", "local", "prod"])
def any_stack(request: pytest.FixtureRequest) -> Deployment:
    return request.getfixturevalue(request.param)


def inputs(resource: Any) -> dict[str, Any]:
    return {key: resource.input(key) for key in resource.inputs}


def urn(stack: Deployment, resource: Any) -> str:
    return f"urn:pulumi:{stack.stack}::headrace::{resource.type}::{resource.name}"


def stack_view(stack: Deployment) -> list[Any]:
    return [
        rules.Resource(r.type, r.name, urn(stack, r), dict(r.outputs)) for r in stack.resources if r.custom
    ]


def violations(rule: Any, kind: str, props: dict[str, Any]) -> list[str]:
    return list(rule.check(kind, props))


def first(stack: Deployment, kind: str, name_part: str = "") -> Any:
    """The resource of ``kind`` whose name ends with ``name_part``, else the first containing it."""
    candidates = stack.of_type(kind)
    exact = [r for r in candidates if r.name.endswith(name_part)]
    return (exact or [r for r in candidates if name_part in r.name])[0]


# ------------------------------------------------------------------ the program complies
def test_every_resource_rule_passes_on_the_program(any_stack):
    # Given the resources of a stack the repository ships
    # When every resource rule checks every resource of its types
    found = {
        (rule.name, r.name, message)
        for rule in rules.RESOURCE_RULES
        for r in any_stack.resources
        if r.custom and rule.applies_to(r.type, r.name)
        for message in rule.check(r.type, inputs(r))
    }
    # Then there is no violation
    assert found == set()


def test_every_stack_rule_passes_on_the_program(any_stack):
    view = stack_view(any_stack)
    assert {(rule.name, message) for rule in rules.STACK_RULES for message, _ in rule.check(view)} == set()


def test_every_rule_applies_to_resources_the_program_creates(dev, local):
    # Given both stacks, then every resource rule meets at least one of its resource types
    types = {r.type for stack in (dev, local) for r in stack.resources}
    assert {rule.name for rule in rules.RESOURCE_RULES if not (rule.types & types)} == set()


def test_the_pack_allows_exactly_the_unscoped_actions_the_program_documents():
    # The pack stands alone (it is published without the program), so it keeps its own copy
    assert rules.UNSCOPED_ACTIONS == UNSCOPED_ACTIONS
    assert rules.VPC_NETWORK_INTERFACE_ACTIONS == VPC_NETWORK_INTERFACE_ACTIONS


# ------------------------------------------------------------------ each rule bites
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = props
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return mutate


DELETE = object()


def _policy(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        document = json.loads(props["policy"])
        edit(document)
        props["policy"] = json.dumps(document)

    return mutate


def _drop_deny(document: dict[str, Any]) -> None:
    document["Statement"] = [s for s in document["Statement"] if s["Effect"] != "Deny"]


def _public_allow(document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow":
            statement["Principal"] = "*"
            statement.pop("Condition", None)


def _add_statement(statement: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["Statement"].append(statement)


def _edit_deny(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``key`` of the policy's TLS-only Deny statement (to ``value(current)`` if callable)."""

    def edit(document: dict[str, Any]) -> None:
        for statement in document["Statement"]:
            if statement["Effect"] == "Deny" and "aws:SecureTransport" in str(statement.get("Condition")):
                statement[key] = value(statement.get(key)) if callable(value) else value

    return edit


def _edit_code_deny(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Edit the Deny that keeps a VPC function's code from its network-interface grants."""

    def apply(document: dict[str, Any]) -> None:
        for statement in document["Statement"]:
            if statement["Effect"] == "Deny" and "lambda:SourceFunctionArn" in json.dumps(statement):
                edit(statement)

    return apply


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(props)

    return mutate


def _allow_anyone_if(condition: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Open the policy's Allow statements to Principal "*" under ``condition`` alone."""

    def edit(document: dict[str, Any]) -> None:
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow":
                statement["Principal"] = "*"
                statement["Condition"] = condition

    return edit


PUBLIC_SEND = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage"}],
    }
)
# AWS's default endpoint policy.
FULL_ACCESS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}],
    }
)
# Resource-specific actions on ARNs naming every bucket, table, secret or key.
ACCOUNT_WIDE_GRANTS = [
    ("s3:GetObject", "arn:aws:s3:::*/*"),
    ("dynamodb:DeleteItem", "arn:aws:dynamodb:*:*:table/*"),
    ("dynamodb:Scan", "arn:aws:dynamodb:eu-west-1:111122223333:table/*"),
    ("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:*:*:secret:*"),
    ("kms:Decrypt", "arn:aws:kms:*:*:key/*"),
    # the same without the type's separator: IAM matches table* against every table/<name>
    ("dynamodb:DeleteTable", "arn:aws:dynamodb:eu-west-1:111122223333:table*"),
    ("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:111122223333:secret*"),
    ("kms:Decrypt", "arn:aws:kms:eu-west-1:111122223333:key*"),
    ("lambda:UpdateFunctionCode", "arn:aws:lambda:eu-west-1:111122223333:function*"),
]


def _sse(algorithm: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        props["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = algorithm

    return mutate


# (rule, resource type, part of its name, how to break it, expected message)
NEGATIVE = [
    (
        "s3-default-encryption",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "raw",
        _sse(None),
        "default encryption None",
    ),
    (
        "s3-public-access-blocked",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "raw",
        _set("blockPublicPolicy", False),
        "blockPublicPolicy must be true",
    ),
    (
        "s3-no-public-acl",
        "aws:s3/bucket:Bucket",
        "raw",
        _set("acl", "public-read"),
        "makes the bucket public",
    ),
    (
        "s3-no-public-acl",
        "aws:s3/bucket:Bucket",
        "raw",
        # the bucket's own grants, not a canned ACL or a BucketAcl
        _set(
            "grants",
            [
                {
                    "type": "Group",
                    "uri": "http://acs.amazonaws.com/groups/global/AllUsers",
                    "permissions": ["READ"],
                }
            ],
        ),
        "grants READ to http://acs.amazonaws.com/groups/global/AllUsers",
    ),
    (
        "tls-only-resource-policies",
        "aws:sqs/queuePolicy:QueuePolicy",
        "ingest",
        _policy(_drop_deny),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:sqs/queuePolicy:QueuePolicy",
        "ingest",
        _policy(_edit_deny("Principal", {"AWS": "arn:aws:iam::111122223333:role/nobody"})),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:sqs/queuePolicy:QueuePolicy",
        "ingest",
        _policy(_edit_deny("Action", "sqs:ListQueueTags")),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:sqs/queuePolicy:QueuePolicy",
        "ingest",
        _policy(_edit_deny("Resource", "arn:aws:sqs:eu-west-1:111122223333:another-queue")),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:sqs/queuePolicy:QueuePolicy",
        "ingest",
        _policy(
            _edit_deny(
                "Condition",
                {
                    "Bool": {"aws:SecureTransport": "false"},
                    "StringEquals": {"aws:PrincipalAccount": "444455556666"},
                },
            )
        ),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:s3/bucketPolicy:BucketPolicy",
        "raw",
        # The bucket itself, not its objects
        _policy(_edit_deny("Resource", lambda resources: resources[:1])),
        "does not deny requests without TLS",
    ),
    (
        "tls-only-resource-policies",
        "aws:sns/topicPolicy:TopicPolicy",
        "alerts",
        _policy(_edit_deny("Action", "sns:GetTopicAttributes")),
        "does not deny requests without TLS",
    ),
    (
        "resource-policies-not-public",
        "aws:sns/topicPolicy:TopicPolicy",
        "alerts",
        _policy(_public_allow),
        "allows anyone (Principal '*') without a condition",
    ),
    (
        "resource-policies-not-public",
        "aws:sns/topicPolicy:TopicPolicy",
        "alerts",
        # TLS says nothing about who calls
        _policy(_allow_anyone_if({"Bool": {"aws:SecureTransport": "true"}})),
        "allows anyone (Principal '*') without a condition on the caller",
    ),
    (
        "resource-policies-not-public",
        "aws:sns/topicPolicy:TopicPolicy",
        "alerts",
        # Every account but one
        _policy(_allow_anyone_if({"StringNotEquals": {"aws:SourceAccount": "111122223333"}})),
        "allows anyone (Principal '*') without a condition on the caller",
    ),
    (
        "resource-policies-not-public",
        "aws:sqs/queue:Queue",
        "dev-ingest",
        _set("policy", PUBLIC_SEND),
        "Anyone: allows anyone (Principal '*')",
    ),
    *[
        (
            "resource-policies-not-public",
            "aws:sns/topicPolicy:TopicPolicy",
            "alerts",
            # a pattern every caller of every account matches restricts no one
            _policy(_allow_anyone_if(condition)),
            "allows anyone (Principal '*') without a condition on the caller",
        )
        for condition in (
            {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*"}},
            {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/admin"}},
            {"ArnLike": {"aws:PrincipalArn": "arn:*"}},
            {"ArnEquals": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:*:alarm:x"}},
            {"StringLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:111122223333:alarm:x"}},
            {"StringLike": {"aws:PrincipalAccount": "?*"}},
            {"StringLike": {"aws:SourceAccount": ["111122223333", "*5"]}},
            {"StringLike": {"aws:PrincipalOrgID": "o-*"}},
            {"StringLike": {"aws:SourceArn": "arn:aws:s3:::*"}},
        )
    ],
    (
        "resource-policies-not-public",
        "aws:secretsmanager/secret:Secret",
        "db-secret",
        # a policy written inline on the secret, not as a SecretPolicy
        _set("policy", PUBLIC_SEND.replace("sqs:SendMessage", "secretsmanager:GetSecretValue")),
        "Anyone: allows anyone (Principal '*')",
    ),
    (
        "resource-policies-not-public",
        "aws:sns/topic:Topic",
        "alerts",
        _set("policy", PUBLIC_SEND),
        "Anyone: allows anyone (Principal '*')",
    ),
    (
        "resource-policies-not-public",
        "aws:lambda/permission:Permission",
        "reporting-daily-invoke",
        _all(_set("principal", "*"), _set("sourceArn", DELETE)),
        "allows anyone (principal '*') to invoke the function",
    ),
    (
        "resource-policies-not-public",
        "aws:lambda/permission:Permission",
        "reporting-daily-invoke",
        # Lambda's ArnLike: every topic of every account
        _all(_set("principal", "*"), _set("sourceArn", "arn:aws:sns:::*")),
        "sourceArn 'arn:aws:sns:::*' names no account",
    ),
    (
        "resource-policies-not-public",
        "aws:lambda/permission:Permission",
        "reporting-daily-invoke",
        # a rule of that name in any account
        _all(_set("principal", "*"), _set("sourceArn", "arn:aws:events:eu-west-1:*:rule/daily")),
        "sourceArn 'arn:aws:events:eu-west-1:*:rule/daily' names no account",
    ),
    (
        "resource-policies-not-public",
        "aws:s3/bucketPolicy:BucketPolicy",
        "raw",
        _policy(
            _add_statement(
                {
                    "Sid": "Oops",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::1:root"},
                    "Action": "s3:*",
                    "Resource": "*",
                }
            )
        ),
        "Oops: allows wildcard actions s3:*",
    ),
    (
        "sqs-encrypted",
        "aws:sqs/queue:Queue",
        "processing",
        _set("sqsManagedSseEnabled", False),
        "not encrypted",
    ),
    (
        "sqs-redrive-policy",
        "aws:sqs/queue:Queue",
        "dev-ingest",
        _set("redrivePolicy", DELETE),
        "no redrivePolicy, and not a dead-letter queue",
    ),
    ("sns-encrypted", "aws:sns/topic:Topic", "alerts", _set("kmsMasterKeyId", DELETE), "not encrypted"),
    (
        "dynamodb-encrypted-and-recoverable",
        "aws:dynamodb/table:Table",
        "metadata",
        _set("pointInTimeRecovery.enabled", False),
        "pointInTimeRecovery.enabled must be true",
    ),
    (
        "dynamodb-encrypted-and-recoverable",
        "aws:dynamodb/table:Table",
        "idempotency",
        _set("serverSideEncryption", DELETE),
        "serverSideEncryption.enabled must be true",
    ),
    ("kms-key-rotation", "aws:kms/key:Key", "alerts", _set("enableKeyRotation", False), "enableKeyRotation"),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "processor",
        _policy(
            _add_statement(
                {"Sid": "Everything", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::x"}
            )
        ),
        "Everything: wildcard action s3:*",
    ),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "loader",
        _policy(
            _add_statement(
                {
                    "Sid": "AnyBucket",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "xray:PutTraceSegments"],
                    "Resource": "*",
                }
            )
        ),
        "AnyBucket: s3:GetObject on Resource '*'",
    ),
    *[
        (
            "iam-least-privilege",
            "aws:iam/rolePolicy:RolePolicy",
            "loader",
            _policy(_add_statement({"Sid": "Wide", "Effect": "Allow", "Action": [action], "Resource": arn})),
            f"Wide: {action} on Resource '{arn}'",
        )
        for action, arn in ACCOUNT_WIDE_GRANTS
    ],
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "loader",
        _policy(_drop_deny),
        "VpcNetworkInterfaces: ec2:AssignPrivateIpAddresses, ec2:CreateNetworkInterface",
    ),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "loader",
        # A negated operator also matches the Lambda service's requests (no such key): a
        # policy with it would break the function, and it does not count as the deny
        _policy(_edit_code_deny(lambda s: s.update(Condition={"ArnNotEquals": s["Condition"]["ArnEquals"]}))),
        "are not denied to the function's code",
    ),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "loader",
        _policy(_edit_code_deny(lambda s: s.update(Action=["ec2:CreateNetworkInterface"]))),
        "ec2:DeleteNetworkInterface",
    ),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        "loader",
        _policy(
            _edit_code_deny(lambda s: s.update(Condition={"StringEquals": {"aws:PrincipalTag/code": "yes"}}))
        ),
        "are not denied to the function's code",
    ),
    (
        "iam-least-privilege",
        "aws:iam/role:Role",
        "processor-role",
        _set("managedPolicyArns", ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]),
        "attaches arn:aws:iam::aws:policy/AmazonS3FullAccess",
    ),
    (
        "vpc-endpoint-policies",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "net-s3",
        _set("policy", DELETE),
        "no endpoint policy",
    ),
    (
        "vpc-endpoint-policies",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "net-secretsmanager",
        _set("policy", FULL_ACCESS),
        "Resource '*' without an aws:ResourceAccount",
    ),
    (
        "vpc-endpoint-policies",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "net-dynamodb",
        _policy(
            _add_statement(
                {
                    "Sid": "AnyTable",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "dynamodb:*",
                    "Resource": "arn:aws:dynamodb:eu-west-1:444455556666:table/*",
                }
            )
        ),
        "AnyTable: wildcard action dynamodb:*",
    ),
    (
        "vpc-endpoint-policies",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "net-dynamodb",
        _policy(
            _add_statement(
                {
                    "Sid": "EveryTable",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "dynamodb:Scan",
                    "Resource": "arn:aws:dynamodb:eu-west-1:444455556666:table*",
                }
            )
        ),
        "EveryTable: Resource 'arn:aws:dynamodb:eu-west-1:444455556666:table*' without an aws:ResourceAccount",
    ),
    (
        "rds-private-and-encrypted",
        "aws:rds/instance:Instance",
        "",
        _set("publiclyAccessible", True),
        "publiclyAccessible must be false",
    ),
    (
        "rds-private-and-encrypted",
        "aws:rds/instance:Instance",
        "",
        _set("storageEncrypted", False),
        "storageEncrypted must be true",
    ),
    (
        "eventbridge-queue-targets-have-dlq",
        "aws:cloudwatch/eventTarget:EventTarget",
        "raw-created",
        _set("deadLetterConfig", DELETE),
        "without deadLetterConfig",
    ),
    (
        "log-group-retention",
        "aws:cloudwatch/logGroup:LogGroup",
        "processor-logs",
        _set("retentionInDays", DELETE),
        "retentionInDays not set",
    ),
    (
        "log-group-retention",
        "aws:cloudwatch/logGroup:LogGroup",
        "access-logs",
        _set("retentionInDays", 0),  # the provider's "never expire"
        "retentionInDays not set",
    ),
    (
        "http-api-stages-logged-and-throttled",
        "aws:apigatewayv2/stage:Stage",
        "default",
        _set("accessLogSettings", DELETE),
        "no access logging",
    ),
    (
        "http-api-stages-logged-and-throttled",
        "aws:apigatewayv2/stage:Stage",
        "default",
        _set("defaultRouteSettings.throttlingRateLimit", DELETE),
        "defaultRouteSettings.throttlingRateLimit not set",
    ),
]


@pytest.mark.parametrize(
    ("rule", "kind", "name_part", "mutate", "expected"),
    NEGATIVE,
    ids=[f"{case[0]}:{case[4][:30]}" for case in NEGATIVE],
)
def test_each_resource_rule_fails_on_a_broken_resource(dev, rule, kind, name_part, mutate, expected):
    # Given a resource of the real program, broken on purpose
    resource = first(dev, kind, name_part)
    assert RESOURCE_RULES[rule].applies_to(kind, resource.name), "the rule must check this resource"
    props = copy.deepcopy(inputs(resource))
    assert violations(RESOURCE_RULES[rule], kind, props) == [], "the unbroken resource must comply"
    mutate(props)
    # When its rule checks it, then it reports the violation
    found = violations(RESOURCE_RULES[rule], kind, props)
    assert any(expected in message for message in found), found


def test_every_resource_rule_has_a_negative_test():
    assert {case[0] for case in NEGATIVE} == set(RESOURCE_RULES)


def test_a_public_secret_policy_is_refused():
    # Given a secret policy (the program has none) that lets anyone read the secret
    kind = "aws:secretsmanager/secretPolicy:SecretPolicy"
    policy = {
        "Statement": [
            {
                "Sid": "Anyone",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "secretsmanager:GetSecretValue",
            }
        ]
    }
    rule = RESOURCE_RULES["resource-policies-not-public"]
    # Then the rule checks it and reports it
    assert rule.applies_to(kind, "secret-policy")
    assert any("Anyone: allows anyone" in m for m in violations(rule, kind, {"policy": json.dumps(policy)}))


def test_a_public_key_policy_set_apart_from_its_key_is_refused():
    # Given a KeyPolicy resource (the program writes its keys' policies inline) open to anyone
    kind = "aws:kms/keyPolicy:KeyPolicy"
    policy = {"Statement": [{"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt"}]}
    rule = RESOURCE_RULES["resource-policies-not-public"]
    # Then the rule checks it and reports it
    assert rule.applies_to(kind, "key-policy")
    props = {"keyId": "k", "policy": json.dumps(policy)}
    assert any("Anyone: allows anyone" in m for m in violations(rule, kind, props))


def test_a_public_cluster_instance_is_refused():
    # Given an Aurora cluster instance (its storage is the cluster's) reachable from the internet
    kind = "aws:rds/clusterInstance:ClusterInstance"
    rule = RESOURCE_RULES["rds-private-and-encrypted"]
    assert rule.applies_to(kind, "db-1")
    # Then only its public access is reported, not the storage it does not have
    assert violations(rule, kind, {"publiclyAccessible": True}) == [
        "publiclyAccessible must be false: the database is reached from the VPC only"
    ]
    assert violations(rule, kind, {"publiclyAccessible": False}) == []


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}},
        {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:111122223333:alarm:headrace-dev-*"}},
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::headrace-dev-raw"}},
        {"StringEquals": {"aws:PrincipalAccount": "111122223333"}},
        {"StringLike": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
    ],
)
def test_a_wildcard_that_still_names_the_caller_restricts(dev, condition):
    # Given the topic policy opened to anyone under a pattern that keeps one account or bucket
    resource = first(dev, "aws:sns/topicPolicy:TopicPolicy", "alerts")
    props = copy.deepcopy(inputs(resource))
    _policy(_allow_anyone_if(condition))(props)
    # Then it counts as a condition on the caller
    assert violations(RESOURCE_RULES["resource-policies-not-public"], resource.type, props) == []


@pytest.mark.parametrize(
    ("condition", "confines"),
    [
        ({"StringLike": {"aws:ResourceOrgPaths": "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*"}}, True),
        ({"StringLike": {"aws:ResourceAccount": "111122223333"}}, True),
        ({"StringLike": {"aws:ResourceOrgPaths": "o-*/*"}}, False),
        ({"StringLike": {"aws:ResourceAccount": "?*"}}, False),
    ],
)
def test_an_endpoint_owner_condition_must_name_the_owner(dev, condition, confines):
    # Given the S3 endpoint's policy widened to every bucket under an owner condition
    resource = first(dev, "aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3")
    props = copy.deepcopy(inputs(resource))
    statement = {
        "Sid": "Owned",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["s3:GetObject"],
        "Resource": "*",
        "Condition": condition,
    }
    _policy(_add_statement(statement))(props)
    # Then a pattern that names an organization unit or account confines it; one any owner matches does not
    assert (violations(RESOURCE_RULES["vpc-endpoint-policies"], resource.type, props) == []) is confines


@pytest.mark.parametrize(
    "deny",
    [
        {"Principal": {"AWS": "*"}},
        {"Action": "*"},
        {"Resource": "*"},
        {"Resource": lambda resources: [resources[0] + "*"]},  # the bucket, its objects, and more
        {"Condition": {"Bool": {"AWS:SecureTransport": False}}},
        # a stack in China: the program's ARNs come from the bucket's own output
        {"Resource": lambda resources: [r.replace("arn:aws:", "arn:aws-cn:") for r in resources]},
    ],
    ids=[
        "principal-aws-star",
        "action-star",
        "resource-star",
        "resource-pattern",
        "condition-case",
        "other-partition",
    ],
)
def test_a_tls_deny_may_be_spelled_more_broadly(dev, deny):
    # Given the raw bucket's policy with its TLS-only Deny spelled differently, as broad
    props = copy.deepcopy(inputs(first(dev, "aws:s3/bucketPolicy:BucketPolicy", "raw")))
    for key, value in deny.items():
        _policy(_edit_deny(key, value))(props)
    # Then it still counts
    assert (
        violations(RESOURCE_RULES["tls-only-resource-policies"], "aws:s3/bucketPolicy:BucketPolicy", props)
        == []
    )


def test_a_broader_deny_keeps_the_network_interfaces_from_the_code(dev):
    # Given the loader's policy with its code's deny widened to every EC2 action of any function
    resource = first(dev, "aws:iam/rolePolicy:RolePolicy", "loader")
    props = copy.deepcopy(inputs(resource))
    wider = {"Action": "EC2:*", "Condition": {"ArnLike": {"Lambda:SourceFunctionArn": "arn:aws:lambda:*"}}}
    _policy(_edit_code_deny(lambda s: s.update(wider)))(props)
    # Then the network-interface grants are still denied to the code
    assert violations(RESOURCE_RULES["iam-least-privilege"], resource.type, props) == []


def test_an_endpoint_may_pass_any_resource_of_its_own_account(dev):
    # Given the S3 endpoint's policy widened to every bucket, but of this account only
    resource = first(dev, "aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3")
    props = copy.deepcopy(inputs(resource))
    own_account = {
        "Sid": "OwnBuckets",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["s3:GetObject"],
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceAccount": "111122223333"}},
    }
    _policy(_add_statement(own_account))(props)
    # Then the rule accepts it; with the condition negated it does not
    assert violations(RESOURCE_RULES["vpc-endpoint-policies"], resource.type, props) == []
    own_account["Condition"] = {"StringNotEquals": {"aws:ResourceAccount": "111122223333"}}
    props = copy.deepcopy(inputs(resource))
    _policy(_add_statement(own_account))(props)
    assert violations(RESOURCE_RULES["vpc-endpoint-policies"], resource.type, props)


def test_the_dead_letter_queues_are_left_to_the_stack_rule(dev):
    # The program's DLQs have no redrive policy; by name the resource rule leaves them alone
    dlqs = [q for q in dev.of_type("aws:sqs/queue:Queue") if "redrivePolicy" not in q.inputs]
    assert dlqs and all(q.name.endswith("-dlq") for q in dlqs)
    assert not any(RESOURCE_RULES["sqs-redrive-policy"].applies_to(q.type, q.name) for q in dlqs)


def _without(stack: Deployment, kind: str, name_part: str) -> list[Any]:
    dropped = first(stack, kind, name_part)
    return [r for r in stack_view(stack) if not (r.type == kind and r.name == dropped.name)]


def _edited(
    stack: Deployment, kind: str, name_part: str, mutate: Callable[[dict[str, Any]], None]
) -> list[Any]:
    target = first(stack, kind, name_part)
    view = []
    for r in stack_view(stack):
        if r.type == kind and r.name == target.name:
            props = copy.deepcopy(dict(r.props))
            mutate(props)
            r = rules.Resource(r.type, r.name, r.urn, props)
        view.append(r)
    return view


STACK_NEGATIVE = [
    (
        "sqs-dead-letter-queues",
        lambda s: _edited(s, "aws:sqs/queue:Queue", "dev-ingest", _set("redrivePolicy", DELETE)),
        "no redrive policy, and it is no queue's or rule's dead-letter queue",
    ),
    (
        "sqs-dead-letter-queues",
        lambda s: _edited(
            s,
            "aws:sqs/queue:Queue",
            "dev-load",
            _set(
                "redrivePolicy",
                json.dumps(
                    {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:1:elsewhere", "maxReceiveCount": 5}
                ),
            ),
        ),
        "is not a queue of this stack",
    ),
    (
        "s3-buckets-encrypted-and-private",
        lambda s: _without(s, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "reports"),
        "no public access block",
    ),
    (
        "s3-buckets-encrypted-and-private",
        lambda s: _without(
            s,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "processed",
        ),
        "no default encryption configuration",
    ),
    (
        "tls-only-policies-attached",
        lambda s: _without(s, "aws:sqs/queuePolicy:QueuePolicy", "ingest-policy"),
        "no attached policy denies requests without TLS",
    ),
    (
        "tls-only-policies-attached",
        # attached to the ingest queue, denying plain HTTP to another queue only
        lambda s: _edited(
            s,
            "aws:sqs/queuePolicy:QueuePolicy",
            "ingest-policy",
            _policy(_edit_deny("Resource", "arn:aws:sqs:eu-west-1:111122223333:another-queue")),
        ),
        "queue headrace-dev-ingest: no attached policy denies requests without TLS",
    ),
    (
        "rds-tls-only",
        lambda s: _edited(s, "aws:rds/parameterGroup:ParameterGroup", "", _set("parameters", [])),
        "does not set rds.force_ssl = 1",
    ),
]


@pytest.mark.parametrize(
    ("rule", "break_stack", "expected"), STACK_NEGATIVE, ids=[c[0] + ":" + c[2][:24] for c in STACK_NEGATIVE]
)
def test_each_stack_rule_fails_on_a_broken_stack(dev, rule, break_stack, expected):
    # Given the dev stack with one protection removed or altered
    view = break_stack(dev)
    # When the stack rule checks it, then it names the offending resource
    found = STACK_RULES[rule].check(view)
    assert any(expected in message for message, _ in found), found
    assert all(urn.startswith("urn:pulumi:dev::") for _, urn in found)


def test_every_stack_rule_has_a_negative_test():
    assert {case[0] for case in STACK_NEGATIVE} == set(STACK_RULES)


# ------------------------------------------------------------------ through pulumi_policy
def _through_pulumi_policy(resources: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """Run the pack's policies in its own environment on ``resources`` (policy_harness.py)."""
    assert POLICY_PYTHON.exists(), "the policy pack's environment is missing: run `make policy-venv`"
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources, default=str))
    result = subprocess.run(
        [str(POLICY_PYTHON), str(Path(__file__).with_name("policy_harness.py")), str(POLICY_DIR), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_pack_enforces_its_rules_through_pulumi_policy(dev, tmp_path):
    # Given the pack's own environment (make policy-venv) and the dev stack's resources,
    # plus one queue without encryption or DLQ
    assert POLICY_PYTHON.exists(), "the policy pack's environment is missing: run `make policy-venv`"
    resources = [
        {"type": r.type, "name": r.name, "urn": urn(dev, r), "inputs": inputs(r), "outputs": dict(r.outputs)}
        for r in dev.resources
        if r.custom
    ]
    resources.append(
        {
            "type": "aws:sqs/queue:Queue",
            "name": "rogue",
            "urn": "urn:pulumi:dev::headrace::aws:sqs/queue:Queue::rogue",
            "inputs": {},
            "outputs": {"arn": "arn:aws:sqs:eu-west-1:1:rogue", "url": "https://sqs/1/rogue"},
        }
    )
    # When the real PolicyPack's policies validate them (pulumi_policy's own argument types)
    report = _through_pulumi_policy(resources, tmp_path)
    # Then every policy is mandatory and only the rogue queue is reported, by four policies
    assert sorted(report["policies"]) == sorted([*RESOURCE_RULES, *STACK_RULES])
    assert set(report["levels"]) == {"mandatory"}
    assert {(v["policy"], v["name"]) for v in report["violations"]} == {
        ("sqs-encrypted", "rogue"),
        ("sqs-redrive-policy", "rogue"),
        ("sqs-dead-letter-queues", "rogue"),
        ("tls-only-policies-attached", "rogue"),
    }


def test_the_pack_refuses_what_its_rules_used_to_miss(tmp_path):
    # Given resources the pack let through: a public policy inline on a secret and on a
    # KeyPolicy, a grant on table* (every table), a queue policy open to any account's ARN
    # pattern, a public Aurora cluster instance, and a bucket whose own grants let any AWS
    # account read and write it
    def resource(kind: str, name: str, **props: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "name": name,
            "urn": f"urn:pulumi:dev::headrace::{kind}::{name}",
            "inputs": props,
            "outputs": {},
        }

    def policy(*statements: dict[str, Any]) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})

    anyone = {"Sid": "Anyone", "Effect": "Allow", "Principal": "*"}
    resources = [
        resource(
            "aws:secretsmanager/secret:Secret",
            "open-secret",
            policy=policy({**anyone, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}),
        ),
        resource(
            "aws:kms/keyPolicy:KeyPolicy",
            "open-key-policy",
            keyId="k",
            policy=policy({**anyone, "Action": "kms:Decrypt", "Resource": "*"}),
        ),
        resource(
            "aws:iam/rolePolicy:RolePolicy",
            "every-table",
            role="r",
            policy=policy(
                {
                    "Sid": "AllTables",
                    "Effect": "Allow",
                    "Action": ["dynamodb:DeleteTable"],
                    "Resource": "arn:aws:dynamodb:eu-west-1:111122223333:table*",
                }
            ),
        ),
        resource(
            "aws:sqs/queuePolicy:QueuePolicy",
            "any-account",
            queueUrl="https://sqs.eu-west-1.amazonaws.com/111122223333/q",
            policy=policy(
                {
                    **anyone,
                    "Action": "sqs:SendMessage",
                    "Resource": "arn:aws:sqs:eu-west-1:111122223333:q",
                    "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*"}},
                }
            ),
        ),
        resource("aws:rds/clusterInstance:ClusterInstance", "public-db", publiclyAccessible=True),
        resource(
            "aws:s3/bucket:Bucket",
            "granted-bucket",
            grants=[
                {
                    "type": "Group",
                    "uri": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
                    "permissions": ["READ", "WRITE"],
                }
            ],
        ),
    ]
    # When the real pack checks them
    report = _through_pulumi_policy(resources, tmp_path)
    found = {(v["policy"], v["name"]) for v in report["violations"] if v["policy"] in RESOURCE_RULES}
    # Then each is refused by its rule (the queue policy also lacks its TLS deny)
    assert found == {
        ("resource-policies-not-public", "open-secret"),
        ("resource-policies-not-public", "open-key-policy"),
        ("iam-least-privilege", "every-table"),
        ("resource-policies-not-public", "any-account"),
        ("tls-only-resource-policies", "any-account"),
        ("rds-private-and-encrypted", "public-db"),
        ("s3-no-public-acl", "granted-bucket"),
    }


# pulumi_policy's sentinel for a string not known until the update (proxy.UNKNOWN_STRING_VALUE)
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def test_a_queue_without_a_dead_letter_queue_fails_the_preview(tmp_path):
    # Given a preview that adds three queues: one whose redrive policy names a DLQ not
    # created yet (unknown), one without a redrive policy, and the new DLQ itself
    def queue(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "aws:sqs/queue:Queue",
            "name": name,
            "urn": f"urn:pulumi:dev::headrace::aws:sqs/queue:Queue::{name}",
            "inputs": {"sqsManagedSseEnabled": True, **extra},
            "outputs": {},
        }

    resources = [queue("work", redrivePolicy=UNKNOWN), queue("orphan"), queue("work-dlq")]
    # When the pack's resource policies check their inputs as the engine does at preview
    # (reading an unknown value would raise, and fail the harness)
    report = _through_pulumi_policy(resources, tmp_path)
    # Then only the queue without a redrive policy is reported by a resource policy
    assert {(v["policy"], v["name"]) for v in report["violations"] if v["policy"] in RESOURCE_RULES} == {
        ("sqs-redrive-policy", "orphan")
    }


@pytest.mark.parametrize(
    ("url", "arn"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/111122223333/q", "arn:aws:sqs:eu-west-1:111122223333:q"),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q",
            "arn:aws-cn:sqs:cn-north-1:111122223333:q",
        ),
        (
            "https://sqs.us-gov-west-1.amazonaws.com/111122223333/q",
            "arn:aws-us-gov:sqs:us-gov-west-1:111122223333:q",
        ),
        ("http://localhost:4566/000000000000/q", ""),
    ],
)
def test_a_queue_policy_must_cover_its_queue_in_any_partition(url: str, arn: str) -> None:
    # Given a queue's URL, Then its TLS deny is checked against the ARN in the URL's partition
    assert rules._queue_arn(url) == arn


@pytest.mark.parametrize(
    ("source_arn", "public"),
    [
        ("arn:aws:events:eu-west-1:111122223333:rule/daily", False),
        ("arn:aws:execute-api:eu-west-1:111122223333:abc123/*/*", False),
        ("arn:aws:s3:::one-bucket", False),  # an S3 ARN names no account: its bucket is the source
        ("arn:aws:s3:::*", True),
        ("arn:aws:execute-api:eu-west-1::abc123/*/*", True),
        ("arn:aws:events:*:111122223333:rule/daily", False),  # any region, one account
    ],
)
def test_a_lambda_permission_for_anyone_needs_a_source_of_one_account(source_arn: str, public: bool) -> None:
    # Given a permission for principal "*" whose only restriction is its source ARN
    props = {"action": "lambda:InvokeFunction", "function": "f", "principal": "*", "sourceArn": source_arn}
    # Then it is refused exactly when that ARN (ArnLike) matches resources of every account
    found = violations(
        RESOURCE_RULES["resource-policies-not-public"], "aws:lambda/permission:Permission", props
    )
    assert bool(found) is public, found


def test_log_retention_and_api_stage_settings_fail_the_preview(tmp_path):
    # Given a preview that adds an access log group without retention and two HTTP API
    # stages logging to a log group not created yet (its ARN unknown): one throttled, one not
    def resource(kind: str, resource_name: str, **props: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "name": resource_name,
            "urn": f"urn:pulumi:dev::headrace::{kind}::{resource_name}",
            "inputs": props,
            "outputs": {},
        }

    logs = {"destinationArn": UNKNOWN, "format": "$context.requestId"}
    throttled = {"throttlingRateLimit": 50, "throttlingBurstLimit": 100}
    resources = [
        resource("aws:cloudwatch/logGroup:LogGroup", "forever"),
        resource(
            "aws:apigatewayv2/stage:Stage", "open", apiId=UNKNOWN, name="$default", accessLogSettings=logs
        ),
        resource(
            "aws:apigatewayv2/stage:Stage",
            "guarded",
            apiId=UNKNOWN,
            accessLogSettings=logs,
            defaultRouteSettings=throttled,
        ),
    ]
    # When the pack checks their inputs as the engine does at preview
    report = _through_pulumi_policy(resources, tmp_path)
    # Then the log group and the unthrottled stage are refused already, the other stage passes
    assert {(v["policy"], v["name"]) for v in report["violations"] if v["policy"] in RESOURCE_RULES} == {
        ("log-group-retention", "forever"),
        ("http-api-stages-logged-and-throttled", "open"),
    }
