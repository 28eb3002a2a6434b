"""Least privilege, proven by running (issue 10): the embedded runtime enforces IAM.

Every function runs with its own execution role's credentials, and every AWS call is
checked against the policies the Pulumi program attached. So:

- the rest of the e2e suite passing proves each function has what it needs;
- removing one action a function needs from its policy makes its step fail with an
  AccessDenied that names the action and the resource (the mutation tests below);
- a function's credentials cannot reach a resource outside its grant.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.slow

SALES = "order_id,region,amount\n1,north,10.5\n2,south,3.25\n"


# Module scope: set up before the module's other fixtures (an autouse fixture of a narrower
# scope comes after them), so a deployed stack gets no tenants for tests that skip.
@pytest.fixture(autouse=True, scope="module")
def _embedded_only(stack):
    if not stack.embedded:
        pytest.skip("changes IAM policies and reads function logs: embedded runtime only")


def denial(action: str) -> str:
    """The start of AWS's AccessDenied message for ``action``."""
    return f"is not authorized to perform: {action} on resource: "


# ------------------------------------------------------------------------------ mutations
@contextlib.contextmanager
def without_action(stack, function: str, action: str) -> Iterator[None]:
    """The program's policies for ``function``'s role, minus ``action`` — put in place of
    the deployed ones, and the deployed ones restored afterwards."""
    iam = stack.outputs.client("iam")
    name = stack.outputs.get("function_names")[function]
    role = stack.lam.get_function_configuration(FunctionName=name)["Role"].rsplit("/", 1)[-1]
    deployed = {
        policy: _document(iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    removed = 0
    for policy, document in deployed.items():
        statements = []
        for statement in document["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            kept = [a for a in actions if a != action]
            removed += len(actions) - len(kept)
            if kept:
                statements.append({**statement, "Action": kept})
        iam.put_role_policy(
            RoleName=role, PolicyName=policy, PolicyDocument=json.dumps({**document, "Statement": statements})
        )
    try:
        assert removed, f"the program grants {function} no {action}: nothing to remove"
        yield
    finally:
        for policy, document in deployed.items():
            iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document))


def _document(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(unquote(value))


def function_log(stack, function: str) -> str:
    name = stack.outputs.get("function_names")[function]
    path = Path(stack.runtime.state_dir) / "logs" / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_log(stack, function: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = function_log(stack, function)
        if text in log:
            return log
        time.sleep(0.5)
    raise AssertionError(
        f"{function}'s log never said {text!r}; it ends with: {function_log(stack, function)[-2000:]}"
    )


def test_processor_without_put_object_fails_the_file_naming_the_action(stack):
    with without_action(stack, "processor", "s3:PutObject"):
        key = stack.key("iam", "no-put.csv")
        version = stack.upload(key, SALES)
        item = stack.wait_for(key, version, lambda item: item.get("status") == "failed")
    assert denial("s3:PutObject") in item["error"], item
    assert f"arn:aws:s3:::{stack.outputs.processed_bucket}/" in item["error"]
    # logged just after the item is written: read the log once the line is there
    wait_for_log(stack, "processor", denial("s3:PutObject"))


def test_loader_without_get_object_fails_the_load_naming_the_action(stack):
    with without_action(stack, "loader", "s3:GetObject"):
        key = stack.key("iam", "no-read.csv")
        version = stack.upload(key, SALES)
        item = stack.wait_for(key, version, lambda item: item.get("load_status") == "failed")
    assert item["status"] == "completed"  # the processor's own role was untouched
    assert denial("s3:GetObject") in item["load_error"], item
    assert f"arn:aws:s3:::{stack.outputs.processed_bucket}/" in item["load_error"]


def test_ingest_without_send_message_answers_503_and_logs_the_action(stack, tenants):
    tenant, key = next(iter(tenants.items()))
    with without_action(stack, "ingest", "sqs:SendMessage"):
        status, body = stack.api(
            "/ingest",
            json.dumps({"tenant_id": tenant, "log_id": "iam-1", "text": "hello"}).encode(),
            {"content-type": "application/json", "x-api-key": key},
        )
    assert status == 503 and body["failed_log_ids"] == ["iam-1"], body
    assert "not authorized" not in json.dumps(body)  # clients are not told about the role
    log = wait_for_log(stack, "ingest", denial("sqs:SendMessage"))
    assert f"arn:aws:sqs:{stack.outputs.region}:" in log


def test_ingest_worker_without_put_item_logs_the_action(stack, tenants):
    tenant, key = next(iter(tenants.items()))
    with without_action(stack, "ingest-worker", "dynamodb:PutItem"):
        status, _ = stack.api(
            "/ingest",
            json.dumps({"tenant_id": tenant, "log_id": "iam-2", "text": "hello"}).encode(),
            {"content-type": "application/json", "x-api-key": key},
        )
        assert status == 202
        log = wait_for_log(stack, "ingest-worker", denial("dynamodb:PutItem"))
    assert f"table/{stack.outputs.get('tenant_logs_table')}" in log


def test_report_without_put_object_fails_naming_the_action(stack):
    with without_action(stack, "report", "s3:PutObject"), pytest.raises(AssertionError) as failure:
        stack.invoke("report", {"date": time.strftime("%Y-%m-%d", time.gmtime())})
    assert denial("s3:PutObject") in str(failure.value)
    assert f"arn:aws:s3:::{stack.outputs.get('reports_bucket')}/" in str(failure.value)


# ------------------------------------------------------------------------------ boundaries
def as_function(stack, function: str) -> Callable[[str], Any]:
    """``client(service)`` with the credentials ``function``'s sandboxes run with."""
    spec = stack.runtime.executor.pools[stack.outputs.get("function_names")[function]].spec
    credentials = stack.runtime.role_credentials(spec)
    return lambda service: boto3.client(
        service,
        endpoint_url=stack.outputs.aws_endpoint_url,
        region_name=stack.outputs.region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )


def test_the_ingest_function_cannot_read_the_processed_bucket(stack):
    # Given a processed file
    key = stack.key("iam", "boundary.csv")
    item = stack.wait_for(key, stack.upload(key, SALES))
    client = as_function(stack, "ingest")
    # When the ingest function's role reads it
    with pytest.raises(ClientError) as denied:
        client("s3").get_object(Bucket=stack.outputs.processed_bucket, Key=item["parquet_key"])
    # Then S3 refuses, naming the action and the object
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denial("s3:GetObject") in str(denied.value)
    assert f"arn:aws:s3:::{stack.outputs.processed_bucket}/{item['parquet_key']}" in str(denied.value)
    # while the same credentials do what the role is for: look up API keys
    client("dynamodb").get_item(
        TableName=stack.outputs.get("tenant_keys_table"), Key={"key_hash": {"S": "no-such-key"}}
    )


OUTSIDE_THE_GRANT: list[tuple[str, str, Callable[[Callable[[str], Any], Any], Any]]] = [
    (
        "processor",
        "dynamodb:GetItem",
        lambda client, o: client("dynamodb").get_item(
            TableName=o.get("tenant_logs_table"), Key={"tenant_id": {"S": "t"}, "log_id": {"S": "l"}}
        ),
    ),
    (
        # the processed bucket is its to write under parquet/ and summaries/ only
        "processor",
        "s3:PutObject",
        lambda client, o: client("s3").put_object(
            Bucket=o.processed_bucket, Key="elsewhere/x.parquet", Body=b""
        ),
    ),
    (
        "loader",
        "s3:PutObject",
        lambda client, o: client("s3").put_object(
            Bucket=o.raw_bucket, Key=f"{o.raw_prefix}x.csv", Body=b"a\n"
        ),
    ),
    (
        "report",
        "secretsmanager:GetSecretValue",
        lambda client, o: client("secretsmanager").get_secret_value(SecretId=o.db_secret_arn),
    ),
    (
        "ingest-worker",
        "sqs:SendMessage",
        lambda client, o: client("sqs").send_message(QueueUrl=o.processing_queue_url, MessageBody="{}"),
    ),
]


@pytest.mark.parametrize(
    ("function", "action", "call"), OUTSIDE_THE_GRANT, ids=[f"{f[0]}-{f[1]}" for f in OUTSIDE_THE_GRANT]
)
def test_no_function_reaches_outside_its_grant(stack, function, action, call):
    with pytest.raises(ClientError) as denied:
        call(as_function(stack, function), stack.outputs)
    assert denial(action) in str(denied.value)
