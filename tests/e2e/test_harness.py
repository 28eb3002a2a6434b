"""The e2e harness itself (conftest ``Stack``), against moto in-process: what it does to a
shared, long-lived stack. It removes what its run put there and nothing else, finds its
own dead letters among many, and sizes its waits from the stack's settings. (No runtime:
these tests do not use the ``stack`` fixture.)"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from handlers.models import tables
from headrace.outputs import StackOutputs

from .conftest import ATTEMPT_SECONDS, Stack

REGION = "eu-west-1"  # not the embedded runtime's us-east-1


def s3_event(bucket: str, key: str, version: str) -> str:
    detail = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": {"key": key, "size": 10, "etag": "abc", "version-id": version, "sequencer": "00"},
        "request-id": "R",
        "requester": "210987654321",
        "reason": "PutObject",
    }
    return json.dumps(
        {
            "version": "0",
            "id": "e-1",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "210987654321",
            "time": "2026-01-02T03:04:05Z",
            "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": detail,
        }
    )


def file_processed(key: str, version: str) -> str:
    detail = {
        "bucket": "raw",
        "object_key": key,
        "version": version,
        "uploaded_at": "2026-01-02T03:04:05Z",
        "dataset": "sales",
        "ingest_date": "2026-01-02",
        "format": "csv",
        "row_count": 3,
        "columns": {"a": "int"},
        "processed_bucket": "processed",
        "parquet_key": "parquet/x.parquet",
        "summary_key": "summaries/x.json",
        "processed_at": "2026-01-02T03:04:06Z",
    }
    return json.dumps(
        {
            "version": "0",
            "id": "e-2",
            "detail-type": "File Processed",
            "source": "headrace.processor",
            "account": "210987654321",
            "time": "2026-01-02T03:04:05Z",
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    )


@pytest.fixture
def deployed(monkeypatch, tmp_path) -> Iterator[Stack]:
    """A stack as `pulumi stack output --json` describes it (no endpoint, no credentials),
    with its queues, buckets and tenant tables in moto."""
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        urls: dict[str, str] = {}
        for queue in ("processing", "load"):
            dlq = sqs.create_queue(QueueName=f"{queue}-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            urls[f"{queue}_dlq_url"] = dlq
            urls[f"{queue}_queue_url"] = sqs.create_queue(
                QueueName=queue,
                Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 7})},
            )["QueueUrl"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(**tables.TENANT_KEYS.boto3_create_args("tenant-keys"))
        ddb.create_table(**tables.TENANT_LOGS.boto3_create_args("tenant-logs"))
        document = {
            **urls,
            "raw_bucket": "raw",
            "processed_bucket": "processed",
            "reports_bucket": "reports",
            "metadata_table": "metadata",
            "db_secret_arn": f"arn:aws:secretsmanager:{REGION}:210987654321:secret:db",
            "alerts_topic_arn": f"arn:aws:sns:{REGION}:210987654321:alerts",
            "ingest_api_url": "https://abc123.execute-api.eu-west-1.amazonaws.com",
            "region": REGION,
            "raw_prefix": "incoming/",
            "tenant_keys_table": "tenant-keys",
            "tenant_logs_table": "tenant-logs",
            "function_names": {"processor": "p", "loader": "l"},
        }
        path = Path(tmp_path) / "dev-outputs.json"
        path.write_text(json.dumps(document))
        outputs = StackOutputs.load(path)
        yield Stack(outputs, path, lambda function, payload: None)


def _send(stack: Stack, queue: str, keys: list[str]) -> None:
    url = stack.outputs.get(f"{queue}_dlq_url")
    for key in keys:
        body = s3_event("raw", key, "v1") if queue == "processing" else file_processed(key, "v1")
        stack.sqs.send_message(QueueUrl=url, MessageBody=body)


def _subjects(stack: Stack, queue: str) -> list[str]:
    """Every message's key, by receiving them all (hidden for the rest of the test)."""
    url, keys = stack.outputs.get(f"{queue}_dlq_url"), []
    while messages := stack.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300
    ).get("Messages", []):
        details = [json.loads(m["Body"])["detail"] for m in messages]
        keys += [d["object"]["key"] if "object" in d else d["object_key"] for d in details]
    return sorted(keys)


def test_cleanup_removes_this_runs_dead_letters_uploads_and_tenants_only(deployed):
    # Given real dead letters, an earlier run's, and this run's, in both DLQs
    real = [f"incoming/sales/real-{i:02d}.csv" for i in range(15)]
    earlier = ["incoming/junk/0badc0de-poison.csv"]
    mine = [deployed.key("junk", "poison.csv"), deployed.key("junk", "empty.csv")]
    _send(deployed, "processing", [*real, *earlier, mine[0]])
    _send(deployed, "load", [*real[:3], mine[1]])
    # and a real upload beside this run's (one through the AWS CLI, tracked)
    s3 = deployed.s3
    s3.put_object(Bucket="raw", Key="incoming/sales/real.csv", Body=b"a\n1\n")
    deployed.upload(mine[0], b"x")
    cli = s3.put_object(Bucket="raw", Key=deployed.key("sales", "from-cli.csv"), Body=b"a\n1\n")
    deployed.track(deployed.key("sales", "from-cli.csv"), cli["VersionId"])
    # and a tenant of this run with a key
    tenant = f"acme{deployed.run_id}"
    api_key = deployed.add_tenant(tenant)
    assert api_key
    # Then the harness finds this run's dead letter behind the 16 others (one receive brings
    # at most ten), consuming none of them
    assert deployed.dead_letter("processing", mine[0])
    # When the run cleans up
    deployed.cleanup()
    # Then this run's dead letters are gone, every other one is still there
    assert _subjects(deployed, "processing") == sorted([*real, *earlier])
    assert _subjects(deployed, "load") == sorted(real[:3])
    # and only the real upload is left, with no version of this run's
    versions = s3.list_object_versions(Bucket="raw")
    assert [v["Key"] for v in versions.get("Versions", [])] == ["incoming/sales/real.csv"]
    assert not versions.get("DeleteMarkers")
    # and the tenant's key is revoked
    keys = boto3.resource("dynamodb", region_name=REGION).Table("tenant-keys").scan()["Items"]
    assert [(k["tenant_id"], bool(k.get("disabled"))) for k in keys] == [(tenant, True)]


def test_cleanup_goes_on_after_a_step_fails_and_raises_it(deployed, monkeypatch):
    deployed.upload(deployed.key("sales", "a.csv"), b"a\n1\n")
    swept = []

    def refused() -> None:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(deployed, "remove_tenants", refused)
    monkeypatch.setattr(deployed, "discard_dead_letters", lambda: swept.append(True))
    with pytest.raises(RuntimeError, match="AccessDenied"):
        deployed.cleanup()
    assert not deployed.s3.list_object_versions(Bucket="raw").get("Versions") and swept


def _function_with_mapping(
    stack: Stack, name: str, queue: str, window: int, environment: dict[str, str] | None = None
) -> None:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    stack.lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": package.getvalue()},
        Timeout=10,
        Environment={"Variables": environment or {}},
    )
    url = stack.outputs.get(f"{queue}_queue_url")
    arn = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, BatchSize=5, MaximumBatchingWindowInSeconds=window
    )


def test_the_wait_for_a_poison_file_follows_the_stacks_retry_settings(deployed):
    # Given a processing queue with maxReceiveCount 7, fed to the processor with a 20 s window
    _function_with_mapping(deployed, "p", "processing", 20)
    attempts, budget, why = deployed.retries("processing")
    # Then a poison file gets 7 attempts, each a batching window and an invocation
    assert attempts == 7
    assert budget == 7 * (20 + ATTEMPT_SECONDS) + 60
    assert "maxReceiveCount 7" in why and "batching window 20 s" in why
    # and a wait that runs out says how it was sized
    with pytest.raises(AssertionError, match=r"within 0 s \(maxReceiveCount 7 x"):
        deployed.wait_for("incoming/junk/x.csv", "v1", timeout=0, why=why)


@pytest.mark.parametrize(
    ("environment", "visibility", "refused"),
    [
        ({"LOG_LEVEL": "INFO"}, 65, False),  # 6 x its 10 s timeout + its 5 s batching window
        ({"HEADRACE_CRASH_RATE": "0.5"}, 65, True),  # another run's switch, or a leftover
        ({}, 15, True),  # the visibility timeout another run lowered
    ],
)
def test_a_test_that_changes_settings_refuses_to_start_from_changed_ones(
    deployed, environment, visibility, refused
):
    # Given the processor as found before the crash test changes (and restores) it
    _function_with_mapping(deployed, "p", "processing", 5, environment)
    queue = deployed.outputs.processing_queue_url
    deployed.sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": str(visibility)})
    # Then only the stack's own settings are taken for what to put back
    if not refused:
        deployed.check_own_settings("p", queue)
        return
    with pytest.raises(pytest.fail.Exception, match="another test run on this stack"):
        deployed.check_own_settings("p", queue)
