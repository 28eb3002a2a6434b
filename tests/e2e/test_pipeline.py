"""The pipeline end to end (issue 4): uploads in, metadata, Parquet and DLQ out."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time

import pytest

from headrace.cli import main

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"
POISON = bytes(range(256)) * 8


def test_an_uploaded_file_is_processed_and_its_parquet_reads_back(stack):
    # Given the seed file uploaded to the raw bucket
    key = stack.key("sales", "seed.csv")
    version = stack.upload(key, SALES)
    # When the pipeline has run
    item = stack.wait_for(key, version)
    # Then the metadata item holds the summary and the Parquet holds the typed rows
    assert item["status"] == "completed"
    assert item["schema"] == {"date": "date", "product": "string", "quantity": "int", "price": "float"}
    assert int(item["row_count"]) == 3
    assert float(item["quality_issues"]["missing_values"]["quantity"]["percentage"]) == 33.33
    assert stack.parquet_rows(item, "product, quantity, price") == [
        ("Widget", 10, 29.99),
        ("Gadget", 5, 49.99),
        ("Widget", None, 39.99),
    ]


def test_the_runtime_keeps_its_logs_and_scratch_space_to_this_user(stack):
    # scratch space holds raw files before their PII is redacted; they were world-readable
    if not stack.embedded:
        pytest.skip("the embedded runtime's own directories")
    for private in ("logs", "scratch"):
        assert stat.S_IMODE((stack.runtime.state_dir / private).stat().st_mode) == 0o700, private


def test_a_rotated_log_is_routed_and_read_as_a_log(stack):
    # the stack's raw_suffixes route it (the stack files once lacked the default's .log.*)
    key = stack.key("app_logs", "app.log.1")
    version = stack.upload(key, "2024-01-15T10:00:00Z ERROR disk full\n2024-01-15T10:00:01Z INFO ok\n")
    item = stack.wait_for(key, version)
    assert (item["status"], item["format"], int(item["log_stats"]["error_count"])) == ("completed", "log", 1)


def test_replaying_a_completed_file_is_acknowledged_without_work(stack, capsys):
    # Given a completed file
    key = stack.key("sales", "replayed.csv")
    version = stack.upload(key, SALES)
    completed_at = stack.wait_for(key, version)["completed_at"]
    # When it is replayed (as an operator would, through the stack's outputs)
    assert main(["replay", key, "--outputs", str(stack.outputs_path)]) == 0
    # Then the processor recognises the version it already did: the replay's idempotency
    # key (bucket, key, version, ETag from S3) is the one the S3 event gave it
    assert "acknowledged without work" in capsys.readouterr().out
    time.sleep(5)
    assert stack.item(key, version)["completed_at"] == completed_at


def test_replay_names_a_raw_bucket_that_does_not_exist(stack, capsys, tmp_path):
    # over HTTP, HEAD of a key in a missing bucket is a bare 404, like a missing key
    bogus = tmp_path / "outputs.json"
    document = json.loads(stack.outputs_path.read_text())
    bogus.write_text(json.dumps({**document, "raw_bucket": f"headrace-no-such-bucket-{stack.run_id}"}))
    assert main(["replay", stack.key("sales", "x.csv"), "--outputs", str(bogus)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_poison_file_ends_in_the_dlq_after_its_retries_and_blocks_nothing(stack):
    # Given a poison file and a good one uploaded together (they share a batch)
    poison_key, good_key = stack.key("junk", "poison.csv"), stack.key("sales", "good.csv")
    poison, good = stack.upload(poison_key, POISON), stack.upload(good_key, SALES)
    # Then the good file completes
    assert stack.wait_for(good_key, good)["status"] == "completed"
    # and the poison file is failed with its reason after maxReceiveCount attempts (each
    # handed back at once: bounded by the stack's own queue and event source settings)
    attempts, budget, why = stack.retries("processing")
    item = stack.wait_for(
        poison_key, poison, lambda i: int(i.get("attempts", 0)) >= attempts, timeout=budget, why=why
    )
    assert item["status"] == "failed"
    assert "binary content" in item["error"]
    # and its message is in the processing DLQ (found among any others a shared stack's holds)
    stack.wait_for_dead_letter("processing", poison_key)


def test_an_empty_upload_is_failed_with_its_reason(stack):
    # (boto3 sends an empty PUT with "Expect: 100-continue": the embedded runtime's server
    # once answered "100 Continue" and then nothing, so the upload itself hung)
    key = stack.key("junk", "empty.csv")
    version = stack.upload(key, b"")
    item = stack.wait_for(key, version, lambda i: i.get("status") == "failed")
    assert item["error"] == "the file is empty (0 bytes)"


def _until_in_effect(stack, function: str, environment: dict[str, str]) -> None:
    """Wait until invocations of ``function`` run with ``environment``: the embedded
    runtime's executor has taken it (new sandboxes), or Lambda's update is done."""
    if not stack.embedded:
        stack.lam.get_waiter("function_updated_v2").wait(FunctionName=function)
        return
    deadline = time.monotonic() + 30
    while stack.runtime.executor.pools[function].spec.environment != environment:
        assert time.monotonic() < deadline, "the executor never took the new configuration"
        time.sleep(0.2)


def test_a_crash_mid_batch_loses_nothing_and_duplicates_nothing(stack):
    # A crashed batch comes back after the queue's visibility timeout. For this test it is
    # lowered to the least SQS event sources allow, the function's timeout (5 s more, for a
    # busy CI host): what is tested is that a redelivery completes once, not how late it comes.
    function = stack.outputs.get("function_names")["processor"]
    config = stack.lam.get_function_configuration(FunctionName=function)
    queue = stack.outputs.processing_queue_url
    visibility = stack.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])[
        "Attributes"
    ]["VisibilityTimeout"]
    short = min(int(visibility), config["Timeout"] + 5)
    # (on a stack with AWS-sized timeouts, 300 s, two returns are longer than a CI job waits)
    wait = 2 * short + 120
    if wait > 600:
        pytest.skip(f"crashed batches return after {short} s here: run it on a stack with short timeouts")
    environment = dict(config["Environment"]["Variables"])
    # (what is restored afterwards must be the stack's own settings)
    stack.check_own_settings(function, queue)
    # Given the processor's crash switch on (first deliveries crash half the time)
    crashing = {**environment, "HEADRACE_CRASH_RATE": "0.5"}
    stack.lam.update_function_configuration(FunctionName=function, Environment={"Variables": crashing})
    stack.sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": str(short)})
    try:
        _until_in_effect(stack, function, crashing)
        # When twelve files arrive at once
        keys = {stack.key("crash", f"f{i:02d}.csv"): None for i in range(12)}
        for key in keys:
            keys[key] = stack.upload(key, SALES)
        # Then every one of them completes (crashed batches come back after the visibility timeout)
        items = [stack.wait_for(key, version, timeout=wait) for key, version in keys.items()]
    finally:
        # in effect before the next test's files arrive: one that crashed waited out a
        # visibility timeout
        stack.sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": visibility})
        stack.lam.update_function_configuration(FunctionName=function, Environment={"Variables": environment})
        _until_in_effect(stack, function, environment)
    assert {item["status"] for item in items} == {"completed"}
    # and each has exactly one output, however often its message was delivered
    # (every page: earlier runs' outputs stay in the dataset on a long-lived stack)
    pages = stack.s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.outputs.processed_bucket, Prefix="parquet/dataset=crash/"
    )
    mine = [o["Key"] for page in pages for o in page.get("Contents", []) if f"/{stack.run_id}-" in o["Key"]]
    assert len(mine) == 12
    assert {item["parquet_key"] for item in items} == set(mine)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_aws_cli_uploads_into_the_pipeline(stack, tmp_path):
    # Given the AWS CLI, configured as the README says
    source = tmp_path / "sales.csv"
    source.write_text(SALES)
    key = stack.key("sales", "from-cli.csv")
    env = dict(os.environ, AWS_DEFAULT_REGION=stack.outputs.region)
    command = ["aws"]
    if stack.outputs.aws_endpoint_url:
        command += ["--endpoint-url", stack.outputs.aws_endpoint_url]
        env.update(
            AWS_ACCESS_KEY_ID=stack.outputs.aws_access_key_id or "",
            AWS_SECRET_ACCESS_KEY=stack.outputs.aws_secret_access_key or "",
        )
    # When it copies a file into the raw bucket
    subprocess.run(
        [*command, "s3", "cp", str(source), f"s3://{stack.outputs.raw_bucket}/{key}"], check=True, env=env
    )
    version = stack.s3.head_object(Bucket=stack.outputs.raw_bucket, Key=key)["VersionId"]
    stack.track(key, version)  # removed at the end, as the other uploads
    # Then the pipeline processes it
    assert stack.wait_for(key, version)["status"] == "completed"
