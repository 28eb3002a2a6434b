"""The one explicit AWS provider every resource uses, built from the stack config.

On ``target: aws`` it is the real region with the ambient credentials (environment,
profile, SSO). On ``target: localstack`` it points only the services the pipeline uses at
LocalStack, with path-style S3, LocalStack's test credentials and the validation calls
LocalStack cannot answer switched off.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from .config import StackConfig

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


def provider_args(config: StackConfig, project: str, stack: str) -> dict[str, Any]:
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
            skip_requesting_account_id=True,
            skip_region_validation=True,
            endpoints=[aws.ProviderEndpointArgs(**endpoints)],
        )
    return args


def create_provider(name: str, config: StackConfig, project: str, stack: str) -> aws.Provider:
    return aws.Provider(name, **provider_args(config, project, stack))


def provider_options(provider: pulumi.ProviderResource) -> pulumi.ResourceOptions:
    """Options for a top-level component: its whole subtree uses ``provider``."""
    return pulumi.ResourceOptions(providers=[provider])
