"""The explicit AWS provider of each stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.config import AwsSettings, parse_config
from components.provider import provider_args, services_used

from .conftest import Deployment, deploy


def _provider(stack: Deployment) -> dict[str, Any]:
    (provider,) = stack.of_type("pulumi:providers:aws")
    return provider.inputs


def _used_services(stack: Deployment) -> set[str]:
    """AWS services of the resources the stack creates (by provider endpoint name)."""
    module_to_service = {
        "s3": "s3",
        "sqs": "sqs",
        "dynamodb": "dynamodb",
        "iam": "iam",
        "kms": "kms",
        "lambda": "lambda",
        "sns": "sns",
        "secretsmanager": "secretsmanager",
        "apigatewayv2": "apigatewayv2",
        "ec2": "ec2",
        "vpc": "ec2",
        "rds": "rds",
        "glue": "glue",
        "athena": "athena",
    }
    services = {"sts"}  # the caller-identity data source
    for resource in stack.resources:
        if not resource.type.startswith("aws:"):
            continue
        module, name = resource.type.split(":")[1].split("/")
        if module == "cloudwatch":
            services.add(
                "logs" if name == "logGroup" else "events" if name.startswith("event") else "cloudwatch"
            )
        else:
            services.add(module_to_service[module])
    return services


def test_local_provider_points_only_used_services_at_localstack(local: Deployment) -> None:
    # Given the local stack's provider
    provider = _provider(local)
    (endpoints,) = json.loads(provider["endpoints"])
    # Then exactly the services the stack uses go to LocalStack
    assert set(endpoints) == _used_services(local)
    assert set(endpoints.values()) == {"http://localhost:4566"}
    # with path-style S3, LocalStack's test credentials and no validation calls
    assert provider["s3UsePathStyle"] == "true"
    for flag in ("skipCredentialsValidation", "skipMetadataApiCheck", "skipRegionValidation"):
        assert provider[flag] == "true", flag
    # but the account ID is asked of LocalStack's STS (and IAM): skipping it leaves the
    # account out of ARNs the provider builds (an HTTP API's execution ARN, Glue's, Athena's)
    assert provider["skipRequestingAccountId"] == "false"
    assert {"sts", "iam"} <= set(endpoints)
    assert provider["accessKey"]["value"] == provider["secretKey"]["value"] == "test"
    assert provider["region"] == "us-east-1"


def test_dev_provider_is_the_real_region_with_ambient_credentials(dev: Deployment) -> None:
    provider = _provider(dev)
    assert provider["region"] == "eu-west-1"
    assert not {"endpoints", "accessKey", "secretKey", "s3UsePathStyle"} & set(provider)
    assert provider["skipCredentialsValidation"] == "false"
    assert json.loads(provider["defaultTags"]) == {
        "tags": {"project": "headrace", "stack": "dev", "environment": "dev"}
    }


def test_endpoints_follow_the_services_in_use(tiny_archive: Path) -> None:
    # Given LocalStack Pro users who keep the HTTP API
    stack = deploy(
        "local",
        tiny_archive,
        {"headrace:ingest": {"endpoint": "http_api"}, "headrace:localstack_endpoint": "http://ls:4566/"},
    )
    (endpoints,) = json.loads(_provider(stack)["endpoints"])
    # Then API Gateway v2 gets an endpoint too (and the configured URL is used)
    assert "apigatewayv2" in endpoints and set(endpoints) == _used_services(stack)
    assert set(endpoints.values()) == {"http://ls:4566"}


def test_services_used_by_an_rds_warehouse() -> None:
    config = parse_config({"environment": "dev", "region": "eu-west-1"})
    assert {"ec2", "rds", "apigatewayv2"} <= set(services_used(config))


def test_a_query_catalog_on_localstack_gets_endpoints_too(tiny_archive: Path) -> None:
    # Given LocalStack Pro users who turn the Glue/Athena catalog on (docs/query.md)
    stack = deploy("local", tiny_archive, {"headrace:catalog": {"enabled": True}})
    (endpoints,) = json.loads(_provider(stack)["endpoints"])
    # Then Glue and Athena go to LocalStack too, not to AWS with LocalStack's test keys
    assert {"glue", "athena"} <= set(endpoints) == _used_services(stack)


def test_the_stack_aws_account_guards_reach_the_provider(tiny_archive: Path) -> None:
    # Given a dev stack that pins its profile and account in the aws: namespace, which
    # only Pulumi's default provider would read
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "aws:profile": "headrace-dev",
            "aws:allowedAccountIds": ["111122223333"],
            "aws:region": "eu-west-1",
        },
    )
    # Then the program's explicit provider gets them: it refuses another account's credentials
    provider = _provider(stack)
    assert provider["profile"] == "headrace-dev"
    assert json.loads(provider["allowedAccountIds"]) == ["111122223333"]
    assert provider["region"] == "eu-west-1"


def test_a_forbidden_account_reaches_the_provider_but_not_on_localstack() -> None:
    settings = AwsSettings.model_validate({"forbiddenAccountIds": ["111122223333"], "profile": "p"})
    dev = parse_config({"environment": "dev", "region": "eu-west-1"})
    assert provider_args(dev, "headrace", "dev", settings)["forbidden_account_ids"] == ["111122223333"]
    local = parse_config(
        {
            "environment": "local",
            "target": "localstack",
            "warehouse": {"mode": "external", "external": {"host": "h"}},
        }
    )
    assert not {"profile", "forbidden_account_ids"} & set(provider_args(local, "headrace", "local", settings))


def test_an_aws_region_other_than_the_stack_region_fails_the_preview(tiny_archive: Path) -> None:
    with pytest.raises(
        Exception, match=r"aws:region: is us-west-2, but this stack deploys to headrace:region"
    ):
        deploy("dev", tiny_archive, {"aws:region": "us-west-2"})
