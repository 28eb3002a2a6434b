"""The `local` stack against the LocalStack that docker-compose.yml starts (docs/localstack.md).

No Docker here: these read the compose file as Compose would interpolate it and compare it
with what the program deploys under mocks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, Deployment, deploy

# Resource types LocalStack's free image (4.14.0, the one docker-compose.yml pins) lacks:
# API Gateway v2, RDS, Glue, Athena and X-Ray are in its licensed editions only (as are
# Lambda layers, checked below).
LICENSED_ONLY = ("aws:apigatewayv2/", "aws:rds/", "aws:glue/", "aws:athena/", "aws:xray/")


def _interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:+replacement} (as docker compose does)."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, operand = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if operator == ":-":
            return current or operand
        if operator == ":+":
            return operand if current else ""
        return current

    return re.sub(r"\$\{([A-Z][A-Z0-9_]*)(?:(:[-+])([^}]*))?\}", substitute, value)


def _localstack(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["localstack"]
    environment = {k: _interpolate(str(v), env or {}) for k, v in service["environment"].items()}
    return {"service": service, "environment": environment, "compose": compose}


def _started(env: Mapping[str, str] | None = None) -> set[str]:
    return set(_localstack(env)["environment"]["SERVICES"].split(","))


def _endpoints(stack: Deployment) -> set[str]:
    (provider,) = stack.of_type("pulumi:providers:aws")
    (endpoints,) = json.loads(provider.inputs["endpoints"])
    return set(endpoints)


def test_localstack_starts_exactly_the_services_the_local_stack_points_at_it(local: Deployment) -> None:
    # Given the services the local stack's provider sends to LocalStack
    endpoints = _endpoints(local)
    # Then the compose file's LocalStack starts each of them (SERVICES disables all others)
    assert _started() == endpoints


@pytest.mark.parametrize(
    ("overrides", "extra"),
    [
        ({"headrace:ingest": {"endpoint": "http_api"}}, "apigatewayv2"),
        ({"headrace:catalog": {"enabled": True}}, "glue,athena"),
    ],
)
def test_a_licensed_feature_names_the_extra_services_it_needs(
    tiny_archive: Path, overrides: dict[str, Any], extra: str
) -> None:
    # Given a local stack with a feature of LocalStack's licensed image
    stack = deploy("local", tiny_archive, overrides)
    # Then the LOCALSTACK_EXTRA_SERVICES the guide names for it starts what it needs
    assert _endpoints(stack) - _started() == set(extra.split(","))
    assert _endpoints(stack) <= _started({"LOCALSTACK_EXTRA_SERVICES": extra})
    assert extra in (ROOT / "docs" / "localstack.md").read_text()


def test_localstack_expires_items_and_messages_as_aws_does() -> None:
    # Given the compose file's LocalStack settings
    environment = _localstack()["environment"]
    # Then DynamoDB deletes items past their TTL attribute (metadata.ttl_days, idempotency
    # records, tenant logs: off by default in LocalStack)
    assert environment["DYNAMODB_REMOVE_EXPIRED_ITEMS"] == "1"
    # and SQS drops messages past their queue's retention (queues.message_retention_seconds,
    # 14 days in the DLQs: off by default in LocalStack)
    assert environment["SQS_ENABLE_MESSAGE_RETENTION_PERIOD"] == "1"


def test_localstack_can_run_the_functions() -> None:
    # Given the compose file's LocalStack
    localstack = _localstack()
    # Then it reaches Docker (it starts each function in a container of its own)
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["service"]["volumes"]
    # and puts those containers on its own network, where they reach LocalStack and PostgreSQL
    network = localstack["compose"]["networks"]["localstack"]["name"]
    assert localstack["environment"]["LAMBDA_DOCKER_NETWORK"] == network
    assert "localstack" in localstack["service"]["networks"]


def test_the_local_stack_creates_nothing_the_free_image_lacks(local: Deployment) -> None:
    # Given the local stack as Pulumi.local.yaml configures it
    licensed = sorted(r.type for r in local.resources if r.type.startswith(LICENSED_ONLY))
    # Then none of its resources needs LocalStack's licensed image
    assert licensed == []
    functions = local.of_type("aws:lambda/function:Function")
    assert functions
    for function in functions:
        # no Lambda layers and no X-Ray active tracing (both licensed-only)
        assert not function.inputs.get("layers"), function.name
        assert function.inputs["tracingConfig"] == {"mode": "PassThrough"}, function.name
    # and the ingest API is a function URL, not an HTTP API
    assert local.of_type("aws:lambda/functionUrl:FunctionUrl")


def test_a_preview_warns_about_licensed_features_the_embedded_runtime_does_not(
    tiny_archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the local stack with the HTTP API (which the embedded runtime deploys too)
    overrides = {"headrace:ingest": {"endpoint": "http_api"}}
    # When it is previewed, as `pulumi preview` and `pulumi up` do first
    with caplog.at_level(logging.WARNING):
        deploy("local", tiny_archive, overrides, preview=True)
    # Then the preview says the free image would fail midway
    assert any("API Gateway v2 are only in LocalStack's licensed image" in m for m in caplog.messages)
    # but a deployment that is no preview (the embedded runtime's, on its emulator) does not
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        deploy("local", tiny_archive, overrides)
    assert not any("licensed image" in m for m in caplog.messages)
