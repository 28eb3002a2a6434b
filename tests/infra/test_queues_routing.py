"""Queues (redrive, visibility timeout, SSE) and EventBridge routes (pattern, retry, DLQ,
queue policies)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from moto.events.models import EventPattern

from components.queues import DLQ_RETENTION_SECONDS, QueueWithDlq, QueueWithDlqArgs, visibility_timeout
from components.routing import raw_object_created_pattern
from handlers.logic.layout import has_raw_suffix

from .conftest import Deployment, deploy, stack_file_config
from .mocks import PipelineMocks

QUEUES = {"processing": "processor", "load": "loader", "ingest": "ingest_worker"}


def _queues(stack: Deployment) -> dict[str, Any]:
    prefix = f"headrace-{stack.stack}-"
    return {r.name.removeprefix(prefix): r for r in stack.of_type("aws:sqs/queue:Queue")}


def test_every_queue_has_a_dlq_with_redrive_from_config(stack: Deployment) -> None:
    # Given a stack's queues (max_receive_count 5 by default)
    queues = _queues(stack)
    assert set(queues) == {*QUEUES, *(f"{q}-dlq" for q in QUEUES)}
    for name in QUEUES:
        queue, dlq = queues[name], queues[f"{name}-dlq"]
        # Then each work queue redrives to its own DLQ after 5 receives
        redrive = json.loads(queue.input("redrivePolicy"))
        assert redrive == {"deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": 5}
        # and the DLQ keeps messages 14 days; both are encrypted
        assert dlq.inputs["messageRetentionSeconds"] == DLQ_RETENTION_SECONDS == 14 * 86_400
        assert queue.inputs["sqsManagedSseEnabled"] is True and dlq.inputs["sqsManagedSseEnabled"] is True
    # and no other queue may name a DLQ as its dead-letter target
    allowed = {
        r.inputs["queueUrl"]: json.loads(r.input("redriveAllowPolicy"))
        for r in stack.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    }
    assert allowed == {
        queues[f"{name}-dlq"].outputs["url"]: {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [queues[name].outputs["arn"]],
        }
        for name in QUEUES
    }


def test_visibility_timeout_covers_six_times_the_consumer_timeout(stack: Deployment) -> None:
    # Given each queue and the function that consumes it
    config = json.loads(json.dumps(stack_functions(stack)))
    queues = _queues(stack)
    for name, consumer in QUEUES.items():
        timeout, window = config[consumer]
        # Then the visibility timeout is at least 6 x the function timeout (+ batching window)
        assert queues[name].inputs["visibilityTimeoutSeconds"] >= 6 * timeout + window


def stack_functions(stack: Deployment) -> dict[str, tuple[int, int]]:
    """Consumer -> (function timeout, batching window) as deployed."""
    timeouts = {r.outputs["name"]: r.inputs["timeout"] for r in stack.of_type("aws:lambda/function:Function")}
    windows = {
        r.input("functionName").rsplit(":", 1)[-1]: r.inputs.get("maximumBatchingWindowInSeconds", 0)
        for r in stack.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    }
    prefix = f"headrace-{stack.stack}-"
    return {name.removeprefix(prefix).replace("-", "_"): (timeouts[name], windows[name]) for name in windows}


def test_config_drives_redrive_and_visibility(tiny_archive: Any) -> None:
    # Given dev with 3 receives and a 600 s processor
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "headrace:queues": {"max_receive_count": 3},
            "headrace:functions": {"processor": {"timeout_seconds": 600}},
        },
    )
    processing = _queues(stack)["processing"]
    # Then the processing queue follows
    assert json.loads(processing.input("redrivePolicy"))["maxReceiveCount"] == 3
    assert processing.inputs["visibilityTimeoutSeconds"] == 6 * 600 + 5
    # and the processor is told the same receive count (it marks the last attempt failed)
    processor = stack.named("headrace-dev-processor", "aws:lambda/function:Function")
    assert processor.input("environment")["variables"]["MAX_RECEIVE_COUNT"] == "3"


@pytest.mark.parametrize(("timeout", "window", "expected"), [(300, 5, 1805), (30, 0, 180), (900, 300, 5700)])
def test_visibility_timeout_rule(timeout: int, window: int, expected: int) -> None:
    assert visibility_timeout(timeout, window) == expected


def _rules(stack: Deployment) -> dict[str, Any]:
    prefix = f"headrace-{stack.stack}-"
    return {r.name.removeprefix(prefix): r for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")}


def test_raw_uploads_route_to_the_processing_queue(stack: Deployment) -> None:
    # Given the rule for raw uploads
    rule = _rules(stack)["events-raw-created"]
    target = stack.named(f"headrace-{stack.stack}-events-raw-created-target")
    queues = _queues(stack)
    # Then it listens on the default bus (where S3 publishes) for the raw bucket's "Object Created"
    assert rule.inputs.get("eventBusName") is None
    pattern = json.loads(rule.input("eventPattern"))
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [stack.outputs["raw_bucket"]]
    # and targets the processing queue, retrying, then dead-lettering to its DLQ
    assert target.inputs["arn"] == queues["processing"].outputs["arn"]
    routing = stack_file_config(stack.stack)["headrace:routing"]
    assert target.input("retryPolicy") == {
        "maximumEventAgeInSeconds": routing["max_event_age_seconds"],
        "maximumRetryAttempts": routing["max_retry_attempts"],
    }
    assert target.input("deadLetterConfig") == {"arn": queues["processing-dlq"].outputs["arn"]}


def test_file_processed_events_route_to_the_load_queue(stack: Deployment) -> None:
    # Given the rule for "File Processed"
    rule = _rules(stack)["events-file-processed"]
    target = stack.named(f"headrace-{stack.stack}-events-file-processed-target")
    bus = stack.of_type("aws:cloudwatch/eventBus:EventBus")[0]
    queues = _queues(stack)
    # Then it matches the processor's events on the pipeline's own bus
    assert rule.inputs["eventBusName"] == bus.outputs["name"] == stack.outputs["event_bus_name"]
    assert json.loads(rule.input("eventPattern")) == {
        "source": ["headrace.processor"],
        "detail-type": ["File Processed"],
    }
    assert target.inputs["arn"] == queues["load"].outputs["arn"]
    assert target.input("deadLetterConfig") == {"arn": queues["load-dlq"].outputs["arn"]}


def test_routed_queues_accept_messages_from_their_rule_only(stack: Deployment) -> None:
    # Given the queue policies
    queues = {r.outputs["url"]: name for name, r in _queues(stack).items()}
    rules = {name: r.outputs["arn"] for name, r in _rules(stack).items()}
    expected_rule = {
        "processing": rules["events-raw-created"],
        "processing-dlq": rules["events-raw-created"],
        "load": rules["events-file-processed"],
        "load-dlq": rules["events-file-processed"],
    }
    policies = {
        queues[p.input("queueUrl")]: p.json_input("policy")
        for p in stack.of_type("aws:sqs/queuePolicy:QueuePolicy")
    }
    # Then every queue has a policy
    assert set(policies) == set(queues.values())
    for name, policy in policies.items():
        allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
        denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        # every policy denies requests without TLS
        assert denies and denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        if name in expected_rule:
            # a routed queue lets EventBridge send only on behalf of its rule
            (allow,) = allows
            assert allow["Principal"] == {"Service": "events.amazonaws.com"}
            assert allow["Action"] == "sqs:SendMessage"
            assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": expected_rule[name]}}
        else:
            # the ingest queues grant nothing (their producer and consumer use IAM)
            assert allows == []


# ---------------------------------------------------------------------------- the pattern
def _s3_event(bucket: str, key: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "account": "111122223333",
        "region": "eu-west-1",
        "time": "2025-01-01T00:00:00Z",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
    }


@pytest.mark.parametrize(
    ("key", "routed", "taken"),
    [
        ("incoming/sales.csv", True, True),
        ("incoming/export.tsv", True, True),  # the README's "CSV/TSV"
        ("incoming/2025/01/app.log.gz", True, True),
        ("incoming/app.log.1", True, True),
        ("incoming/app.log.2.gz", True, True),
        ("incoming/app.log-20261206", True, True),
        ("incoming/app.logs/readme.md", True, False),
        ("incoming/x.log.d/readme.md", True, False),  # a '*' stays within one name
        ("incoming/a*b.json", True, True),
        ("incoming/readme.md", True, False),
        ("incoming/SALES.CSV", True, True),  # in any case: an upper-case export is data too
        ("other/sales.csv", False, True),
        ("incoming.csv", False, True),
        ("processed/incoming/sales.csv", False, True),
    ],
)
def test_the_rule_routes_the_prefix_and_the_processor_takes_the_suffixes(
    key: str, routed: bool, taken: bool
) -> None:
    # Given the deployed pattern for prefix incoming/, evaluated by moto's EventBridge
    # matcher (the embedded runtime's emulator), and the processor's suffix check
    from components.config import StackConfig

    suffixes = StackConfig.model_fields["raw_suffixes"].default
    pattern = EventPattern.load(raw_object_created_pattern("raw-bkt", "incoming/"))
    # When an S3 event for the key arrives
    # Then the rule routes it when it is under the prefix, and the processor takes it when
    # it ends in one of the suffixes
    assert pattern.matches_event(_s3_event("raw-bkt", key)) is routed
    assert has_raw_suffix(key, suffixes) is taken
    # and the rule never routes another bucket's
    assert pattern.matches_event(_s3_event("other-bkt", "incoming/sales.csv")) is False


def test_the_rule_has_no_wildcard_for_eventbridge_to_refuse_as_too_complex() -> None:
    # a wildcard "<prefix>*<suffix>" per default suffix scored 32 where EventBridge refuses
    # more than about ten simultaneously reachable wildcards ("Rule is too complex")
    pattern = json.loads(raw_object_created_pattern("raw-bkt", "incoming/"))
    assert pattern["detail"]["object"]["key"] == [{"prefix": "incoming/"}]
    assert has_raw_suffix("incoming/anything", ())  # no suffixes: every key


@pulumi.runtime.test
def test_queue_component_outputs(component_mocks: PipelineMocks) -> Any:
    # Given a queue for a 60 s consumer with a 10 s window and 2 receives
    queue = QueueWithDlq(
        "jobs",
        QueueWithDlqArgs(
            consumer_timeout_seconds=60, consumer_batching_window_seconds=10, max_receive_count=2
        ),
    )

    # Then it exposes its and its DLQ's URLs, and redrives after 2 receives
    def check(values: list[Any]) -> None:
        url, dlq_url, dlq_arn, redrive, visibility = values
        assert url.endswith("/jobs-" + url.rsplit("-", 1)[-1]) and "jobs-dlq" in dlq_url
        assert json.loads(redrive) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
        assert visibility == 370

    return pulumi.Output.all(
        queue.url,
        queue.dlq_url,
        queue.dlq_arn,
        queue.queue.redrive_policy,
        queue.queue.visibility_timeout_seconds,
    ).apply(check)


def test_queue_component_rejects_zero_receives(component_mocks: PipelineMocks) -> None:
    with pytest.raises(ValueError, match="max_receive_count"):
        QueueWithDlq("bad", QueueWithDlqArgs(consumer_timeout_seconds=60, max_receive_count=0))
