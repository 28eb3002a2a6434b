"""IAM and resource-policy documents shared by the components.

Identity policies are lists of :class:`Allow`; :func:`check_least_privilege` refuses any
statement that would grant a wildcard action, or any action on ``*`` other than the few
AWS does not scope to a resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

# Actions that do not support resource-level permissions: AWS requires Resource "*".
UNSCOPED_ACTIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        # Lambda in a VPC: the function's network interfaces (AWSLambdaVPCAccessExecutionRole).
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)


@dataclass(frozen=True)
class Allow:
    """One Allow statement of an identity policy."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]
    condition: Mapping[str, Any] | None = field(default=None)

    def render(self) -> dict[str, Any]:
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }
        if self.condition:
            statement["Condition"] = dict(self.condition)
        return statement


class PrivilegeError(ValueError):
    pass


def check_least_privilege(statements: Sequence[Allow]) -> None:
    """Reject wildcard actions and unscoped resources before anything is deployed."""
    for statement in statements:
        for action in statement.actions:
            if "*" in action:
                raise PrivilegeError(f"{statement.sid}: wildcard action {action!r}")
        if "*" in statement.resources:
            broad = sorted(set(statement.actions) - UNSCOPED_ACTIONS)
            if broad:
                raise PrivilegeError(f"{statement.sid}: {', '.join(broad)} on Resource '*'")
        if not statement.resources:
            raise PrivilegeError(f"{statement.sid}: no resources")


def identity_policy(statements: Sequence[Allow]) -> pulumi.Output[str]:
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
    service_principals: Sequence[str] = (),
    delegated_use: Sequence[str] = KMS_USE_ACTIONS,
    decrypters: Sequence[str] = (),
) -> pulumi.Output[str]:
    """A key policy: the account administers the key and delegates ``delegated_use`` to
    IAM; the given AWS services (e.g. CloudWatch alarms publishing to an encrypted topic)
    may use it on behalf of this account only; ``decrypters`` (IAM principal ARNs) may
    decrypt whether or not ``kms:Decrypt`` is delegated. When it is not, no grant may allow
    decryption either: a grant is authorized apart from the key policy's use statements."""
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
    for service in service_principals:
        statements.append(
            {
                "Sid": "ServiceUse" + service.split(".")[0].title(),
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        )
    return resource_policy(statements)
