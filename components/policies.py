"""IAM and resource-policy documents shared by the components.

Identity policies are lists of :class:`Allow` and :class:`Deny`;
:func:`check_least_privilege` refuses any Allow that would grant a wildcard action, or any
action on ``*`` other than the few AWS does not scope to a resource, and a grant of a VPC
function's network-interface actions that its code could use (see
:func:`deny_to_function_code`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import pulumi

# Lambda in a VPC: the function's network interfaces (AWSLambdaVPCAccessExecutionRole).
# The Lambda service manages them with the execution role; the function's code must not
# (deny_to_function_code).
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
# Actions that do not support resource-level permissions: AWS requires Resource "*".
UNSCOPED_ACTIONS = (
    frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}) | VPC_NETWORK_INTERFACE_ACTIONS
)

# The condition key Lambda sets on every request the function's code makes with the
# execution role's credentials; requests the Lambda service makes with the role outside the
# execution environment (its network interfaces, event source polling) do not carry it.
SOURCE_FUNCTION_ARN = "lambda:SourceFunctionArn"


@dataclass(frozen=True)
class _Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]
    condition: Mapping[str, Any] | None = field(default=None)

    effect: ClassVar[str]

    def render(self) -> dict[str, Any]:
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": self.effect,
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }
        if self.condition:
            statement["Condition"] = dict(self.condition)
        return statement


@dataclass(frozen=True)
class Allow(_Statement):
    """One Allow statement of an identity policy."""

    effect: ClassVar[str] = "Allow"


@dataclass(frozen=True)
class Deny(_Statement):
    """One Deny statement of an identity policy: it takes away what an Allow grants (when
    its condition holds) and never grants anything."""

    effect: ClassVar[str] = "Deny"


Statement: TypeAlias = Allow | Deny


def deny_to_function_code(sid: str, actions: Sequence[str], function_arn: pulumi.Input[str]) -> Deny:
    """Deny ``actions`` to the code of the function ``function_arn`` (unqualified) while
    leaving them to the Lambda service, which uses the same role: AWS's documented pattern
    for a VPC function's network-interface permissions (Lambda developer guide, "Giving
    Lambda functions access to resources in an Amazon VPC"; the lambda:SourceFunctionArn
    condition key)."""
    return Deny(
        sid,
        tuple(sorted(actions)),
        ("*",),
        condition={"ArnEquals": {SOURCE_FUNCTION_ARN: function_arn}},
    )


class PrivilegeError(ValueError):
    pass


def _denies_to_function_code(statement: Statement) -> bool:
    """Whether ``statement`` is a Deny on every resource that applies to requests from a
    function's code (a positive ARN operator on lambda:SourceFunctionArn, nothing else)."""
    if not isinstance(statement, Deny) or "*" not in statement.resources or not statement.condition:
        return False
    operators = {str(op).lower(): block for op, block in statement.condition.items()}
    if set(operators) - {"arnequals", "arnlike"}:
        return False
    keys = {str(key).lower() for block in operators.values() for key in block}
    return keys == {SOURCE_FUNCTION_ARN.lower()}


def check_least_privilege(statements: Sequence[Statement]) -> None:
    """Reject, before anything is deployed: a statement without actions or resources;
    an Allow of a wildcard action or of a scopable action on Resource '*'; and an Allow of
    a VPC function's network-interface actions that the same policy does not deny to the
    function's code. A Deny only ever narrows what the Allows grant, so it may name any
    action or resource."""
    for statement in statements:
        if not statement.actions:
            raise PrivilegeError(f"{statement.sid}: no actions")
        if not statement.resources:
            raise PrivilegeError(f"{statement.sid}: no resources")
        if isinstance(statement, Deny):
            continue
        for action in statement.actions:
            if "*" in action:
                raise PrivilegeError(f"{statement.sid}: wildcard action {action!r}")
        if "*" in statement.resources:
            broad = sorted(set(statement.actions) - UNSCOPED_ACTIONS)
            if broad:
                raise PrivilegeError(f"{statement.sid}: {', '.join(broad)} on Resource '*'")
    granted = {
        a for s in statements if not isinstance(s, Deny) for a in s.actions
    } & VPC_NETWORK_INTERFACE_ACTIONS
    denied = [a.lower() for s in statements if _denies_to_function_code(s) for a in s.actions]
    usable = sorted(a for a in granted if not any(fnmatch.fnmatchcase(a.lower(), d) for d in denied))
    if usable:
        raise PrivilegeError(
            f"{', '.join(usable)}: granted for the Lambda service's network interfaces, "
            f"but not denied to the function's code (a Deny on {SOURCE_FUNCTION_ARN}; deny_to_function_code)"
        )


def identity_policy(statements: Sequence[Statement]) -> pulumi.Output[str]:
    check_least_privilege(statements)
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [s.render() for s in statements]})


def resource_policy(statements: Sequence[Mapping[str, Any]]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_policy(service: str) -> str:
    import json

    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def service_source_condition(account_id: pulumi.Input[str], source_arns: pulumi.Input[str]) -> dict[str, Any]:
    """The condition that lets an AWS service principal act only for this account's
    resources whose ARNs match ``source_arns`` (the confused-deputy guard)."""
    return {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": source_arns},
    }


def deny_insecure_transport(
    action: str | list[str], resources: Sequence[pulumi.Input[str]]
) -> dict[str, Any]:
    """Deny every request that does not use TLS (``aws:SecureTransport`` false)."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": list(resources),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


# Key administration and IAM-delegated use, spelled out (no "kms:*"): IAM policies in the
# account can then grant use of the key, as they can with AWS's default key policy.
KMS_ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
KMS_USE_ACTIONS = (
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)


def kms_key_policy(
    partition: pulumi.Input[str],
    account_id: pulumi.Input[str],
    service_principals: Mapping[str, pulumi.Input[str]] | None = None,
    delegated_use: Sequence[str] = KMS_USE_ACTIONS,
    decrypters: Sequence[str] = (),
) -> pulumi.Output[str]:
    """A key policy: the account administers the key and delegates ``delegated_use`` to
    IAM; each AWS service in ``service_principals`` (e.g. CloudWatch alarms publishing to
    an encrypted topic) may use it on behalf of this account's resources whose ARNs match
    the pattern it maps to (aws:SourceAccount and aws:SourceArn); ``decrypters`` (IAM
    principal ARNs) may decrypt whether or not ``kms:Decrypt`` is delegated. When it is
    not, no grant may allow decryption either: a grant is authorized apart from the key
    policy's use statements."""
    root = pulumi.Output.concat("arn:", partition, ":iam::", account_id, ":root")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersKey",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": list(KMS_ADMIN_ACTIONS),
            "Resource": "*",
        },
        {
            "Sid": "AccountDelegatesUseToIam",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": list(delegated_use),
            "Resource": "*",
        },
    ]
    if "kms:Decrypt" not in delegated_use:
        statements.append(
            {
                "Sid": "NoGrantDecrypts",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": ["kms:CreateGrant"],
                "Resource": "*",
                "Condition": {
                    "ForAnyValue:StringEquals": {
                        "kms:GrantOperations": ["Decrypt", "ReEncryptFrom", "CreateGrant"]
                    }
                },
            }
        )
    if decrypters:
        statements.append(
            {
                "Sid": "NamedPrincipalsDecrypt",
                "Effect": "Allow",
                "Principal": {"AWS": list(decrypters)},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
            }
        )
    for service, sources in (service_principals or {}).items():
        statements.append(
            {
                "Sid": "ServiceUse" + service.split(".")[0].title(),
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": service_source_condition(account_id, sources),
            }
        )
    return resource_policy(statements)


def objects_under(bucket_arn: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    """The ARN pattern of a bucket's objects under ``prefix``."""
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")
