"""Pieces of the experiment runner that need no stack: records, undo, suites, checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from headrace.experiments import cleanup as cleanup_module
from headrace.experiments.cleanup import _processed
from headrace.experiments.common import file_record, loaded_or_final
from headrace.experiments.run import _checks_pass, _clear_results, _terminate_as_interrupt
from headrace.experiments.stack import (
    Changes,
    ExperimentStack,
    Upload,
    closed_port,
    environment_kind,
    message_key,
)
from headrace.experiments.suites import EXPERIMENTS, SUITES
from headrace.outputs import StackOutputs

OUTPUTS = {
    "raw_bucket": "raw",
    "processed_bucket": "processed",
    "reports_bucket": "reports",
    "processing_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/processing",
    "processing_dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/processing-dlq",
    "load_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/load",
    "load_dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/load-dlq",
    "metadata_table": "metadata",
    "db_secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:db",
    "alerts_topic_arn": "arn:aws:sns:eu-west-1:1:alerts",
    "ingest_api_url": "https://example.invalid",
    "region": "eu-west-1",
}


def test_a_file_record_splits_end_to_end_time_into_its_parts():
    # Given an upload at t=100.000-100.050 and its completed item (handler clock = client clock)
    upload = Upload("incoming/experiments/r-a.csv", "v1", 6400, 100.0, 100.05, {"rows": 100, "cold": True})
    item = {
        "status": "completed",
        "attempts": 1,
        "row_count": 100,
        "received_at": "1970-01-01T00:01:40.100Z",
        "started_at": "1970-01-01T00:01:40.150Z",
        "completed_at": "1970-01-01T00:01:40.450Z",
        "loaded_at": "1970-01-01T00:01:41.450Z",
        "load_status": "loaded",
        "timings_ms": {
            "queue_wait": 1150.0,
            "download": 20.0,
            "process": 200.0,
            "write": 50.0,
            "total": 300.0,
        },
        "max_rss_mb": 270.5,
    }
    r = file_record(upload, item)
    # Then the parts add up to the end-to-end latency
    assert r["e2e_ms"] == pytest.approx(450.0)
    assert r["upload_ms"] == pytest.approx(50.0)
    assert r["queue_wait_ms"] == pytest.approx(100.0)  # client clock, not the 1-second S3 event time
    assert r["handler_queue_wait_ms"] == 1150.0
    assert r["upload_ms"] + r["queue_wait_ms"] + r["handler_total_ms"] == pytest.approx(r["e2e_ms"])
    assert r["other_ms"] == pytest.approx(30.0)
    assert r["handler_ms"] == pytest.approx(350.0)
    assert r["load_ms"] == pytest.approx(1000.0)
    assert r["warehouse_e2e_ms"] == pytest.approx(1450.0)
    assert (r["rows"], r["cold"], r["max_rss_mb"], r["status"]) == (100, True, 270.5, "completed")
    assert r["item_bytes"] == len(json.dumps(item))


def test_a_file_without_its_item_is_recorded_missing():
    r = file_record(Upload("k", "v", 1, 1.0, 2.0), None)
    assert r["status"] == "missing"
    assert "e2e_ms" not in r


@pytest.mark.parametrize(
    ("item", "over"),
    [
        ({"status": "failed"}, True),
        ({"status": "completed", "load_status": "loaded"}, True),
        ({"status": "completed", "load_status": "failed"}, True),
        ({"status": "completed", "load_status": "rejected"}, True),  # not retried: nothing to wait for
        ({"status": "completed"}, False),
        ({"status": "processing"}, False),
        ({}, False),
    ],
)
def test_a_files_journey_is_over_when_failed_or_load_finished(item, over):
    assert loaded_or_final(item) is over


def test_changes_are_undone_in_reverse_order_even_when_one_fails():
    done = []

    def fail():
        raise RuntimeError("throttled")

    with Changes() as changes:
        changes.push("first", lambda: done.append("first"))
        changes.push("second", fail)
        changes.push("third", lambda: done.append("third"))
        assert changes.has("second") and not changes.has("fourth")
    assert done == ["third", "first"]
    assert changes.failures == ["could not restore second: RuntimeError: throttled"]


def test_changes_are_undone_when_the_experiment_is_interrupted():
    done = []
    with pytest.raises(KeyboardInterrupt), Changes() as changes:
        changes.push("crash rate", lambda: done.append("restored"))
        raise KeyboardInterrupt
    assert done == ["restored"]


def test_a_second_interrupt_while_undoing_does_not_skip_the_other_undos():
    # Given two changes, the later one's undo interrupted by a second Ctrl-C, and the list
    # in which the run collects what it could not put back
    done = []
    unrestored: list[str] = []

    def interrupted():
        raise KeyboardInterrupt

    # When the experiment is interrupted
    with pytest.raises(KeyboardInterrupt), Changes(unrestored) as changes:
        changes.push("event source mapping", lambda: done.append("mapping"))
        changes.push("processor environment", interrupted)
        raise KeyboardInterrupt
    # Then the other undo still ran, and the one that did not finish is reported
    assert done == ["mapping"]
    assert unrestored == ["could not restore processor environment: KeyboardInterrupt: "]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_are_ignored_while_changes_are_undone(signum):
    # Given an undo during which the user presses Ctrl-C again (or the run gets SIGTERM,
    # which a run turns into an interrupt)
    done = []

    def restore_crash_rate():
        os.kill(os.getpid(), signum)
        done.append("crash rate")

    # When the experiment's changes are undone
    with _terminate_as_interrupt(), Changes() as changes:
        changes.push("event source mapping", lambda: done.append("mapping"))
        changes.push("processor environment", restore_crash_rate)
    # Then the signal was ignored: every undo ran to its end
    assert done == ["crash rate", "mapping"]
    assert changes.failures == []


def test_a_run_clears_only_the_results_of_known_experiments(tmp_path):
    # Given an --out directory with an earlier run's results and files of the user's
    ours = ["latency.jsonl", "latency.summary.json", "sweep.jsonl", "failure.summary.json"]
    theirs = ["notes.jsonl", "mine.summary.json", "summary.md", "run.json"]
    for name in ours + theirs:
        (tmp_path / name).write_text("{}")
    # When a run clears it
    _clear_results(tmp_path)
    # Then only the experiments' own files are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


def test_cleanup_waits_for_batches_still_in_flight_before_deleting(monkeypatch):
    # Given a run whose last file is unsettled (its batch crashed: invisible for 60 s)
    events: list[str] = []
    upload = Upload(key="incoming/experiments/run1-x.csv", version="v1", size=1, start=0.0, end=0.0)

    def quiesce(deadline: float) -> bool:
        events.append(f"quiesce {round(deadline - time.monotonic())}")
        return True

    stack = SimpleNamespace(
        uploads=[upload],
        outputs=SimpleNamespace(processing_queue_url="q"),
        wait=lambda *a, **k: {},
        queue_attribute=lambda url, name: "60",
        quiesce=quiesce,
    )
    for step in ("_raw", "_processed", "_warehouse", "_metadata", "_dead_letters"):
        monkeypatch.setattr(cleanup_module, step, lambda *a, step=step: events.append(step) or 0)
    # When it is cleaned up
    result = cleanup_module.cleanup(stack, drain_seconds=0)  # type: ignore[arg-type]
    # Then the queues are waited for (a visibility timeout and a margin) before anything is
    # deleted, so no redelivery re-creates a metadata item afterwards
    assert events[0] == "quiesce 90" and "_metadata" in events[1:]
    assert result["unsettled"] == 1 and result["queues_drained"] is True


def test_cleanup_removes_every_version_of_the_runs_outputs(monkeypatch):
    # Given a versioned processed bucket holding two versions and a delete marker of this
    # run's outputs, and another run's output
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="processed")
        s3.put_bucket_versioning(Bucket="processed", VersioningConfiguration={"Status": "Enabled"})
        partition = "parquet/dataset=experiments/ingest_date=2026-11-23"
        mine = f"{partition}/run1-lat-100-00--abc.parquet"
        summary = "summaries/dataset=experiments/ingest_date=2026-11-23/run1-lat-100-00--abc.json"
        other = f"{partition}/run2-lat-100-00--def.parquet"
        for key in (mine, mine, summary, other):
            s3.put_object(Bucket="processed", Key=key, Body=b"x")
        s3.delete_object(Bucket="processed", Key=summary)
        stack = SimpleNamespace(s3=s3, run_id="run1", outputs=SimpleNamespace(processed_bucket="processed"))
        items = {("k", "v"): {"parquet_key": mine, "summary_key": summary}}
        # When the clean-up removes the run's processed outputs
        removed = _processed(stack, [], items)  # type: ignore[arg-type]
        # Then no version or delete marker of them is left, and the other run's output stays
        left = s3.list_object_versions(Bucket="processed")
        keys = [v["Key"] for v in left.get("Versions", []) + left.get("DeleteMarkers", [])]
        assert keys == [other]
        assert removed == 2


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (json.dumps({"detail": {"object": {"key": "incoming/a.csv"}}}), "incoming/a.csv"),
        (json.dumps({"detail": {"object_key": "incoming/b.csv"}}), "incoming/b.csv"),
        (json.dumps({"detail": "x"}), None),
        ("not json", None),
        (json.dumps([1]), None),
    ],
)
def test_dead_letters_are_matched_by_object_key(body, key):
    assert message_key(body) == key


def test_the_closed_port_refuses_connections():
    port = closed_port("127.0.0.1", 5432)
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_environment_kind_from_the_outputs(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert environment_kind(StackOutputs.model_validate(OUTPUTS)) == "aws"
    local = {**OUTPUTS, "processing_queue_url": "http://sqs.us-east-1.localhost.localstack.cloud:4566/0/q"}
    assert environment_kind(StackOutputs.model_validate(local)) == "localstack"
    embedded = {**OUTPUTS, "aws_endpoint_url": "http://127.0.0.1:4566"}
    assert environment_kind(StackOutputs.model_validate(embedded)) == "embedded"
    embedded_queue = "http://127.0.0.1:4566/123456789012/headrace-local-processing-50bdb83"
    embedded = {**embedded, "processing_queue_url": embedded_queue}
    assert environment_kind(StackOutputs.model_validate(embedded)) == "embedded"
    # LocalStack's outputs as `make e2e-local` writes them (docs/localstack.md): the endpoint
    # and credentials added, as the embedded runtime's outputs have them
    e2e_local = {**local, "aws_endpoint_url": "http://localhost:4566", "warehouse_host": "127.0.0.1"}
    assert environment_kind(StackOutputs.model_validate(e2e_local)) == "localstack"
    path_style = {**e2e_local, "processing_queue_url": "http://localhost:4566/queue/us-east-1/000000000000/q"}
    assert environment_kind(StackOutputs.model_validate(path_style)) == "localstack"


def test_failed_checks_anywhere_in_a_summary_fail_the_run():
    assert _checks_pass({"crash": {"checks": {"all_completed": True, "rows_match_warehouse": None}}})
    assert not _checks_pass({"poison": {"checks": {"every_poison_file_in_dlq": False}}})
    assert _checks_pass({"points": [1, 2], "complete": True})


def test_suites_are_bounded_and_quick_covers_every_experiment():
    quick = SUITES["quick"]
    assert quick.experiments() == EXPERIMENTS
    assert quick.db_outage_files == 0  # the load queue's 180 s visibility timeout: full suite only
    assert sum(quick.limit(e) for e in EXPERIMENTS) + quick.drain_seconds <= 480
    assert set(quick.latency_rows) == {100, 1_000, 10_000, 100_000}
    full = SUITES["full"]
    assert 1000 in full.filesize_mb and full.db_outage_files > 0
    assert {n for n, _ in full.throughput} == {10, 100, 1_000}
    assert SUITES["smoke"].experiments() == ("latency",)
    for suite in SUITES.values():
        for name in suite.experiments():
            assert 0 < suite.limit(name) <= 2400


def test_the_runs_messages_are_found_in_a_dlq_that_holds_many_others(monkeypatch):
    # Given a DLQ holding 30 messages of other files before the run's 2
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="processing-dlq")["QueueUrl"]

        def send(key: str) -> None:
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"detail": {"object": {"key": key}}}))

        for i in range(30):
            send(f"incoming/other/{i}.csv")
        ours = {
            "incoming/experiments/run1-fail-poison-00.csv",
            "incoming/experiments/run1-fail-poison-01.csv",
        }
        for key in sorted(ours):
            send(key)
        stack = ExperimentStack(StackOutputs(**OUTPUTS), run_id="run1", kind="aws")
        # When the experiment looks for the run's messages in it
        keys = set(stack.dlq_arrivals(url))
        # Then it finds them among the others
        assert ours <= keys and len(keys) == 32
        # and leaves every message visible, as it found it
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == (
            "32",
            "0",
        )


def test_cleanup_removes_an_upload_interrupted_after_s3_stored_it(monkeypatch):
    # Given a run whose upload is interrupted (Ctrl-C) right after S3 stored the object,
    # before the run recorded it
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="raw", Key="incoming/experiments/run0-other.csv", Body=b"not ours")
        stack = ExperimentStack(StackOutputs(**OUTPUTS), run_id="run1", kind="aws")

        def interrupt(**_: object) -> None:
            raise KeyboardInterrupt

        stack.s3.meta.events.register("after-call.s3.PutObject", interrupt)
        with pytest.raises(KeyboardInterrupt):
            stack.upload("lat-100-00.csv", b"id\n1\n")
        assert stack.uploads == []
        # When the run cleans up
        result = cleanup_module.cleanup(stack, drain_seconds=0)
        # Then that object is removed too, and nothing else
        left = s3.list_object_versions(Bucket="raw")
        assert [v["Key"] for v in left.get("Versions", [])] == ["incoming/experiments/run0-other.csv"]
        assert (result["uploads"], result["raw_versions"]) == (1, 1)


def test_metadata_items_that_stay_unprocessed_are_not_counted_as_removed(monkeypatch):
    # Given a table that leaves one delete of every batch unprocessed, however often retried
    monkeypatch.setattr(cleanup_module.time, "sleep", lambda s: None)

    def batch_write_item(RequestItems: dict) -> dict:
        (requests,) = RequestItems.values()
        return {"UnprocessedItems": {"metadata": requests[:1]}}

    stack = SimpleNamespace(
        outputs=SimpleNamespace(metadata_table="metadata"),
        ddb=SimpleNamespace(batch_write_item=batch_write_item),
    )
    uploads = [Upload(f"incoming/experiments/run1-{i}.csv", "v1", 1, 0.0, 0.0) for i in range(30)]
    # When the clean-up deletes the run's 30 items (two batches)
    removed = cleanup_module._metadata(stack, uploads)  # type: ignore[arg-type]
    # Then the two left behind are not reported as removed
    assert removed == 28


def test_processed_outputs_whose_delete_failed_are_not_counted_as_removed():
    # Given two outputs of the run, one of which S3 refuses to delete
    prefix = "parquet/dataset=experiments/ingest_date=2026-11-23/"
    versions = [
        {"Key": f"{prefix}run1-a--x.parquet", "VersionId": "1"},
        {"Key": f"{prefix}run1-b--y.parquet", "VersionId": "2"},
    ]
    s3 = SimpleNamespace(
        get_paginator=lambda name: SimpleNamespace(paginate=lambda **_: [{"Versions": versions}]),
        delete_objects=lambda **_: {"Errors": [{"Key": versions[1]["Key"], "Code": "AccessDenied"}]},
    )
    stack = SimpleNamespace(s3=s3, run_id="run1", outputs=SimpleNamespace(processed_bucket="processed"))
    items = {("k", "v"): {"parquet_key": versions[0]["Key"]}}
    # When the clean-up removes them, then only the one deleted is counted
    assert _processed(stack, [], items) == 1  # type: ignore[arg-type]
