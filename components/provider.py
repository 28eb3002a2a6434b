"""The one explicit AWS provider every resource uses, built from the stack config.

On ``target: aws`` it is the real region with the ambient credentials (environment,
profile, SSO), and the stack's ``aws:profile``, ``aws:allowedAccountIds`` and
``aws:forbiddenAccountIds``: Pulumi reads the ``aws:`` namespace only for its default
provider, which this program never uses, so they are passed here (components/config.py
AwsSettings). On ``target: localstack`` it points only the services the pipeline uses at
LocalStack, with path-style S3, LocalStack's test credentials and the validation calls
LocalStack cannot answer switched off. It still asks LocalStack's STS for the account ID
(000000000000), as LocalStack's Terraform guide does: with ``skip_requesting_account_id``
the provider leaves the account out of the ARNs it builds itself, among them the HTTP API's
execution ARN (the ingest function's permission) and the Glue and Athena resources'.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from .config import AwsSettings, StackConfig

# LocalStack's documented credentials: any value works, "test" is the convention.
LOCALSTACK_CREDENTIALS = "test"

# Services the pipeline calls on every target (by their provider endpoint names).
CORE_SERVICES = (
    "cloudwatch",  # alarms, dashboard
    "dynamodb",
    "events",  # rules, targets, custom bus, schedules
    "iam",
    "kms",
    "lambda",
    "logs",
    "s3",
    "secretsmanager",
    "sns",
    "sqs",
    "sts",  # caller identity
)


def services_used(config: StackConfig) -> tuple[str, ...]:
    services = set(CORE_SERVICES)
    if config.ingest.endpoint == "http_api":
        services.add("apigatewayv2")
    if config.warehouse.mode == "rds":
        services |= {"ec2", "rds"}
    if config.catalog_enabled:
        services |= {"glue", "athena"}
    return tuple(sorted(services))


def provider_args(
    config: StackConfig, project: str, stack: str, aws_settings: AwsSettings | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``aws.Provider`` (a plain dict, so tests can read it)."""
    args: dict[str, Any] = {
        "region": config.aws_region,
        "default_tags": aws.ProviderDefaultTagsArgs(
            tags={"project": project, "stack": stack, "environment": config.environment}
        ),
    }
    if config.is_localstack:
        endpoint = config.localstack_endpoint.rstrip("/")
        # The Python SDK spells the lambda endpoint "lambda_" (a keyword).
        endpoints = {("lambda_" if s == "lambda" else s): endpoint for s in services_used(config)}
        args.update(
            access_key=LOCALSTACK_CREDENTIALS,
            secret_key=LOCALSTACK_CREDENTIALS,
            s3_use_path_style=True,
            skip_credentials_validation=True,
            skip_metadata_api_check=True,
            skip_requesting_account_id=False,  # answered by LocalStack's STS (sts endpoint)
            skip_region_validation=True,
            endpoints=[aws.ProviderEndpointArgs(**endpoints)],
        )
    elif aws_settings is not None:
        # What Pulumi's default provider would take from the stack's aws: keys: the
        # provider refuses to deploy with credentials of another account.
        if aws_settings.profile is not None:
            args["profile"] = aws_settings.profile
        if aws_settings.allowed_account_ids:
            args["allowed_account_ids"] = list(aws_settings.allowed_account_ids)
        if aws_settings.forbidden_account_ids:
            args["forbidden_account_ids"] = list(aws_settings.forbidden_account_ids)
    return args


def create_provider(
    name: str, config: StackConfig, project: str, stack: str, aws_settings: AwsSettings | None = None
) -> aws.Provider:
    return aws.Provider(name, **provider_args(config, project, stack, aws_settings))


def provider_options(provider: pulumi.ProviderResource) -> pulumi.ResourceOptions:
    """Options for a top-level component: its whole subtree uses ``provider``."""
    return pulumi.ResourceOptions(providers=[provider])
