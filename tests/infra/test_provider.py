"""The explicit AWS provider of each stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config import parse_config
from components.provider import services_used

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
    for flag in ("skipCredentialsValidation", "skipMetadataApiCheck", "skipRequestingAccountId"):
        assert provider[flag] == "true", flag
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
