"""Every operator command, run under exactly the operator policy docs/operations.md
documents (parsed from the doc, so the two cannot drift), on an embedded runtime that
enforces IAM: a call the policy does not allow fails the command with AccessDenied. And
the converse: every documented action is one a command calls (least privilege)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from headrace.cli import main
from headrace.local.emulator import free_port
from headrace.local.runtime import LocalRuntime

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
# What a command calls -> the IAM action it needs, where the names differ.
ACTION_OF = {
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Documented, but not callable here: the embedded runtime's SQS has no message move task,
# so `dlq redrive --execute` takes its receive-send-delete path (also tested here).
NOT_HERE = {"sqs:StartMessageMoveTask"}


def documented_policy(outputs: dict[str, Any]) -> dict[str, Any]:
    """The JSON policy of docs/operations.md's "Permissions for operators", its
    placeholders replaced as the doc says."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Permissions for operators", 1)[1].split("\n## ", 1)[0]
    [document] = re.findall(r"```json\n(.*?)```", section, re.S)
    values = {"region": outputs["region"], "account": ACCOUNT}
    for name, value in outputs.items():
        if name.endswith(("_table", "_bucket")):
            values[name] = value
        elif name.endswith(("_queue_url", "_dlq_url")):
            values[name.removesuffix("_url")] = value.rsplit("/", 1)[-1]
    document = document.replace("incoming/", outputs["raw_prefix"])
    unknown = set(re.findall(r"<([a-z_]+)>", document)) - set(values)
    assert not unknown, f"placeholders the doc does not explain: {unknown}"
    return json.loads(re.sub(r"<([a-z_]+)>", lambda m: values[m.group(1)], document))


class Stack:
    def __init__(self, runtime: LocalRuntime, tmp: Path):
        self.outputs = json.loads(runtime.outputs_path.read_text())
        self.admin = runtime.client
        iam = runtime.client("iam")
        iam.create_user(UserName="operator")
        iam.put_user_policy(
            UserName="operator",
            PolicyName="operator",
            PolicyDocument=json.dumps(documented_policy(self.outputs)),
        )
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        self.access_key = key["AccessKeyId"]
        self.iam = iam
        self.tmp = tmp
        self.path = tmp / "operator-outputs.json"
        self.path.write_text(
            json.dumps(
                dict(
                    self.outputs,
                    aws_access_key_id=key["AccessKeyId"],
                    aws_secret_access_key=key["SecretAccessKey"],
                )
            )
        )

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str, expect: int = 0) -> str:
        """The command's output (and its errors unless ``expect`` is 0); ``expect``: its exit code
        (status: 1 with dead letters; 2 a refusal)."""
        code = main([*argv, "--outputs", str(self.path)])
        out, err = capsys.readouterr()
        assert "not authorized" not in out + err, f"headrace {' '.join(argv)}: {err or out}"
        assert code == expect, f"headrace {' '.join(argv)} exited {code}: {err}"
        return out if expect == 0 else out + err

    def wait_for(self, key: str, status: str) -> None:
        table = boto3.resource(
            "dynamodb",
            endpoint_url=self.outputs["aws_endpoint_url"],
            region_name=self.outputs["region"],
            aws_access_key_id=self.outputs["aws_access_key_id"],
            aws_secret_access_key=self.outputs["aws_secret_access_key"],
        ).Table(self.outputs["metadata_table"])
        for _ in range(240):
            items = table.query(
                KeyConditionExpression="object_key = :k", ExpressionAttributeValues={":k": key}
            )
            if any(i.get("status") == status for i in items["Items"]):
                return
            time.sleep(0.25)
        raise AssertionError(f"{key} never reached {status}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("operator")
    runtime = LocalRuntime(ROOT, state_dir=tmp / "state", port=free_port(), api_port=free_port()).start()
    try:
        yield Stack(runtime, tmp)
    finally:
        runtime.stop()


@pytest.fixture
def calls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every AWS operation the commands call with the operator's credentials (not the
    runtime's own, in this process too), as service:Operation."""
    seen: set[str] = set()
    original = BaseClient._make_api_call

    def record(self: BaseClient, operation: str, params: Any) -> Any:
        credentials = self._request_signer._credentials
        if credentials is not None and credentials.access_key == stack.access_key:
            seen.add(f"{self.meta.service_model.signing_name}:{operation}")
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    return seen


def test_every_operator_command_runs_under_the_documented_policy_and_needs_all_of_it(stack, capsys, calls):
    s3, sqs = stack.admin("s3"), stack.admin("sqs")
    out = stack.outputs
    raw = out["raw_bucket"]
    # Given a processed file, a failed one, dead letters in every DLQ, a tenant's records
    good, bad = f"{out['raw_prefix']}sales/good.csv", f"{out['raw_prefix']}sales/bad.json"
    s3.put_object(Bucket=raw, Key=good, Body=b"id,amount\n1,2.5\n")
    s3.put_object(Bucket=raw, Key=bad, Body=b"{not json")
    for queue in ("processing_dlq_url", "load_dlq_url"):
        for _ in range(3):
            sqs.send_message(QueueUrl=out[queue], MessageBody="not an event")
    for i in range(3):
        sqs.send_message(
            QueueUrl=out["ingest_dlq_url"], MessageBody=json.dumps({"tenant_id": "t", "log_id": f"l{i}"})
        )
    logs = stack.admin("dynamodb")
    for i in range(30):  # more than one BatchWriteItem of 25
        logs.put_item(
            TableName=out["tenant_logs_table"], Item={"tenant_id": {"S": "acme"}, "log_id": {"S": f"l{i:02}"}}
        )
    stack.wait_for(good, "completed")
    stack.wait_for(bad, "failed")
    # and a failure recorded before the by_failure index (no failure_day: to backfill)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    logs.put_item(
        TableName=out["metadata_table"],
        Item={
            "object_key": {"S": f"{out['raw_prefix']}sales/legacy.csv"},
            "version": {"S": "v1"},
            "day": {"S": today},
            "uploaded_at": {"S": f"{today}T00:00:00.000Z"},
            "status": {"S": "failed"},
            "failed_at": {"S": f"{today}T00:00:01.000Z"},
            "error": {"S": "binary content"},
        },
    )

    # When the operator runs every command, every path, under the documented policy
    assert "bad.json" in stack.run(capsys, "status", expect=1)
    stack.run(capsys, "status", "--json", "--limit", "1", expect=1)
    assert "bad.json" in stack.run(capsys, "status", "--by-upload-day", expect=1)
    assert "would set 1" in stack.run(capsys, "backfill-failures", "--days", "1")
    assert "set the keys of 1" in stack.run(capsys, "backfill-failures", "--days", "1", "--execute")
    for queue in ("processing", "load", "ingest"):
        stack.run(capsys, "dlq", "inspect", "--queue", queue, "--json")
        stack.run(capsys, "dlq", "inspect", "--queue", queue, "--limit", "1")
        stack.run(capsys, "dlq", "redrive", "--queue", queue, "--prefix", "nothing/")
    stack.run(capsys, "dlq", "redrive", "--queue", "load", "--execute", "--limit", "1", "--json")
    stack.run(capsys, "dlq", "redrive", "--queue", "ingest", "--execute")
    stack.run(capsys, "replay", good, "--dry-run")
    stack.run(capsys, "replay", good)
    stack.run(capsys, "replay", good, "--force")
    # a missing key: 404, not 403, thanks to s3:ListBucket; then HeadBucket tells it from a missing bucket
    missing = f"{out['raw_prefix']}sales/missing.csv"
    assert "no such object" in stack.run(capsys, "replay", missing, expect=2)
    key = stack.run(capsys, "tenants", "add", "acme").splitlines()[-1]
    assert key.startswith("hr_")
    stack.run(capsys, "tenants", "list")
    key_id = json.loads(stack.run(capsys, "tenants", "list", "--json"))[0]["key_id"]
    stack.run(capsys, "tenants", "revoke", key_id)
    stack.run(capsys, "tenants", "add", "acme", "--reactivate")  # its only key was revoked
    assert "active key" in stack.run(capsys, "tenants", "purge", "acme", expect=2)  # refused: a key is active
    stack.run(capsys, "tenants", "purge", "acme", "--revoke-keys")
    assert "Deleted 30 records" in stack.run(capsys, "tenants", "purge", "acme", "--execute", "--revoke-keys")

    # Then each passed (run asserts it), and every documented action was called
    used = {ACTION_OF.get(call, call) for call in calls}
    documented = {a for s in documented_policy(out)["Statement"] for a in s["Action"]}
    assert documented - used - NOT_HERE == set(), "documented, used by no command"
    assert used - documented == set(), "used, not documented"


def test_query_runs_under_the_stacks_query_policy(stack, capsys):
    # Given a processed file, and an analyst with only the query_policy_arn policy (docs/query.md)
    out = stack.outputs
    key = f"{out['raw_prefix']}orders/one.csv"
    stack.admin("s3").put_object(Bucket=out["raw_bucket"], Key=key, Body=b"id,amount\n1,2.5\n2,4\n")
    stack.wait_for(key, "completed")
    stack.iam.create_user(UserName="analyst")
    stack.iam.attach_user_policy(UserName="analyst", PolicyArn=out["query_policy_arn"])
    access = stack.iam.create_access_key(UserName="analyst")["AccessKey"]
    path = stack.tmp / "analyst-outputs.json"
    path.write_text(
        json.dumps(
            dict(
                out, aws_access_key_id=access["AccessKeyId"], aws_secret_access_key=access["SecretAccessKey"]
            )
        )
    )
    # When they query (DuckDB: the embedded runtime's Athena runs no SQL)
    code = main(
        ["query", "SELECT sum(amount) AS total FROM orders", "--format", "json", "--outputs", str(path)]
    )
    captured = capsys.readouterr()
    # Then the listing grants (conditioned on s3:prefix) and the reads suffice
    assert code == 0, captured.err
    assert json.loads(captured.out) == [{"total": 6.5}]
