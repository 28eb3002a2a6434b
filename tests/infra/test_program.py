"""The whole program on both stacks: outputs, provider, naming, resource set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import DB_PASSWORD, ROOT, Deployment

DOCUMENTED = {
    "raw_bucket",
    "processed_bucket",
    "reports_bucket",
    "processing_queue_url",
    "processing_dlq_url",
    "load_queue_url",
    "load_dlq_url",
    "metadata_table",
    "db_secret_arn",
    "alerts_topic_arn",
    "ingest_api_url",
    "region",
    "raw_prefix",
}
ADDITIONAL = {
    "ingest_queue_url",
    "ingest_dlq_url",
    "idempotency_table",
    "tenant_keys_table",
    "tenant_logs_table",
    "event_bus_name",
    "function_names",
    "raw_suffixes",
    "stack",
}
# Only with the query catalog (on for AWS stacks, off on LocalStack).
CATALOG = {"glue_database", "athena_workgroup", "query_policy_arn"}
# Only with the warehouse on RDS (dev).
RDS = {"db_admin_secret_arn"}


def test_outputs_are_exactly_the_documented_ones(stack: Deployment) -> None:
    # Given a stack deployed with its Pulumi.<stack>.yaml
    # When its outputs are listed
    # Then they are the README's names plus the documented additional ones, nothing else
    # (the catalog's and the RDS administrator secret's on the AWS stack only)
    aws_only = CATALOG | RDS if stack.stack == "dev" else set()
    assert set(stack.outputs) == DOCUMENTED | ADDITIONAL | aws_only
    assert stack.outputs["stack"] == stack.stack
    assert stack.outputs["raw_prefix"] == "incoming/"
    assert ".csv" in stack.outputs["raw_suffixes"]
    assert set(stack.outputs["function_names"]) == {
        "processor",
        "loader",
        "report",
        "ingest",
        "ingest-worker",
    }


def test_outputs_match_the_resources_they_name(dev: Deployment) -> None:
    # Given the dev stack
    # Then each output is the attribute of the resource it names
    buckets = {r.name: r.outputs["bucket"] for r in dev.of_type("aws:s3/bucket:Bucket")}
    assert dev.outputs["raw_bucket"] == buckets["headrace-dev-data-raw"]
    assert dev.outputs["processed_bucket"] == buckets["headrace-dev-data-processed"]
    queues = {r.name: r.outputs["url"] for r in dev.of_type("aws:sqs/queue:Queue")}
    assert dev.outputs["processing_queue_url"] == queues["headrace-dev-processing"]
    assert dev.outputs["processing_dlq_url"] == queues["headrace-dev-processing-dlq"]
    assert dev.outputs["load_dlq_url"] == queues["headrace-dev-load-dlq"]
    assert dev.outputs["db_secret_arn"] == dev.named("headrace-dev-warehouse-db-secret").outputs["arn"]
    functions = {r.outputs["name"] for r in dev.of_type("aws:lambda/function:Function")}
    # (every function but the one the deployment itself runs, on RDS)
    assert set(dev.outputs["function_names"].values()) == functions - {"headrace-dev-warehouse-setup"}
    assert dev.outputs["region"] == "eu-west-1"


def test_no_output_is_or_contains_a_secret(stack: Deployment) -> None:
    # Given a stack whose database password is a secret (generated, or from config)
    # Then no output is secret and none carries the password; the secret is an ARN only
    assert stack.secret_outputs == set()
    password = (
        stack.named("headrace-dev-warehouse-db-password").outputs["result"]
        if stack.stack == "dev"
        else DB_PASSWORD
    )
    for name, value in stack.outputs.items():
        assert password not in str(value), name
    assert stack.outputs["db_secret_arn"].startswith("arn:aws:secretsmanager:")


def test_every_resource_uses_the_explicit_provider(stack: Deployment) -> None:
    # Given a stack
    # Then every AWS resource is registered with the one explicit provider (never the default)
    expected = f"pulumi:providers:aws::headrace-{stack.stack}-aws::"
    aws_resources = [r for r in stack.resources if r.custom and r.type.startswith("aws:")]
    assert aws_resources
    for resource in aws_resources:
        assert expected in resource.provider, (resource.type, resource.name, resource.provider)


def test_every_resource_is_a_child_of_the_pipeline(stack: Deployment) -> None:
    # Given a stack
    # Then only the provider and the Pipeline component hang off the stack; every other
    # resource's parent is a headrace component, and every name derives from the stack
    for urn in stack.urns:
        types, name = urn.split("::")[2], urn.split("::")[3]
        assert name.startswith(f"headrace-{stack.stack}"), urn
        if types in (
            "pulumi:pulumi:Stack$pulumi:providers:aws",
            "pulumi:pulumi:Stack$headrace:pipeline:Pipeline",
        ):
            continue
        parent_type = types.split("$")[0]
        assert parent_type.startswith("headrace:"), urn


def test_dev_resource_set(dev: Deployment) -> None:
    # Given the dev stack (RDS warehouse, HTTP API)
    # Then it creates the VPC, database and HTTP API, and no function URL
    types = dev.types()
    for kind in (
        "aws:ec2/vpc:Vpc",
        "aws:rds/instance:Instance",
        "random:index/randomPassword:RandomPassword",
        "aws:apigatewayv2/api:Api",
        "aws:cloudwatch/dashboard:Dashboard",
    ):
        assert kind in types
    assert "aws:lambda/functionUrl:FunctionUrl" not in types
    assert "aws:ec2/natGateway:NatGateway" not in types


def test_local_resource_set(local: Deployment) -> None:
    # Given the local stack (LocalStack free tier)
    # Then nothing needs a service outside it: no RDS, no VPC, no HTTP API
    types = local.types()
    for kind in types:
        assert not kind.startswith(("aws:rds/", "aws:ec2/", "aws:vpc/", "aws:apigatewayv2/")), kind
    assert "random:index/randomPassword:RandomPassword" not in types
    assert "aws:lambda/functionUrl:FunctionUrl" in types
    assert local.outputs["ingest_api_url"].startswith("https://") and not local.outputs[
        "ingest_api_url"
    ].endswith("/")


def _inputs_json(deployment: Deployment) -> str:
    """Every resource's inputs, by type and name (an archive by its file)."""
    inputs = {f"{r.type}::{r.name}": r.inputs for r in deployment.resources}
    return json.dumps(inputs, sort_keys=True, default=lambda value: getattr(value, "path", repr(value)))


# Run the program as the dev fixture does, in another interpreter, and print its inputs.
_AGAIN = """
import sys
from pathlib import Path
from tests.infra.conftest import deploy
from tests.infra.test_program import _inputs_json
print(_inputs_json(deploy("dev", Path(sys.argv[1]))))
"""


def test_a_second_run_sends_the_same_inputs(dev: Deployment, tiny_archive: Any) -> None:
    # Given the dev stack's program run once here, and again in a fresh interpreter whose
    # string hashing differs (the order of sets and of anything built from them)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "4242"}
    again = subprocess.run(
        [sys.executable, "-c", _AGAIN, str(Path(tiny_archive))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    # Then every resource gets the same inputs: a second `pulumi up` with nothing changed
    # has nothing to change (no timestamps, random names or ordering in them)
    assert again.stdout.strip().splitlines()[-1] == _inputs_json(dev)
