"""EventBridge routing: raw uploads -> processing queue, "File Processed" -> load queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.models.events import FILE_PROCESSED_DETAIL_TYPE, FILE_PROCESSED_SOURCE

from .policies import deny_insecure_transport, resource_policy
from .queues import QueueWithDlq


def raw_object_created_pattern(bucket: str, prefix: str) -> str:
    """Object Created in ``bucket`` under ``prefix``. The suffixes (``raw_suffixes``) are
    the processor's to check (``RAW_SUFFIXES``): a wildcard ``<prefix>*<suffix>`` per suffix,
    the only way to match both in one rule, makes the pattern too complex for EventBridge
    (it refuses a rule whose wildcards an input may match more than about ten of at once;
    the 14 default suffixes score 32)."""
    return json.dumps(
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}},
        }
    )


def file_processed_pattern() -> str:
    return json.dumps({"source": [FILE_PROCESSED_SOURCE], "detail-type": [FILE_PROCESSED_DETAIL_TYPE]})


@dataclass(frozen=True)
class EventRouteArgs:
    description: str
    event_pattern: pulumi.Input[str]
    queue: QueueWithDlq
    # None: the account's default bus (where S3 publishes).
    event_bus_name: pulumi.Input[str] | None = None
    max_event_age_seconds: int = 86_400
    max_retry_attempts: int = 185


class EventRoute(pulumi.ComponentResource):
    """A rule whose matches go to an SQS queue. EventBridge retries a failed delivery
    under the retry policy, then sends the event to the queue's DLQ. The queue and the
    DLQ accept messages from this rule only (and over TLS only)."""

    def __init__(self, name: str, args: EventRouteArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:routing:EventRoute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.rule = aws.cloudwatch.EventRule(
            name,
            description=args.description,
            event_bus_name=args.event_bus_name,
            event_pattern=args.event_pattern,
            opts=child,
        )
        self.target = aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.rule.name,
            event_bus_name=args.event_bus_name,
            arn=args.queue.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=args.max_event_age_seconds,
                maximum_retry_attempts=args.max_retry_attempts,
            ),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=args.queue.dlq_arn),
            opts=child,
        )
        for suffix, url, arn in (
            ("queue-policy", args.queue.url, args.queue.arn),
            ("dlq-policy", args.queue.dlq_url, args.queue.dlq_arn),
        ):
            aws.sqs.QueuePolicy(
                f"{name}-{suffix}",
                queue_url=url,
                policy=resource_policy(
                    [
                        {
                            "Sid": "AllowThisRuleOnly",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": self.rule.arn}},
                        },
                        deny_insecure_transport("sqs:*", [arn]),
                    ]
                ),
                opts=child,
            )
        self.rule_arn: pulumi.Output[str] = self.rule.arn
        self.register_outputs({"rule_arn": self.rule_arn})


@dataclass(frozen=True)
class RoutingArgs:
    raw_bucket_name: pulumi.Input[str]
    raw_prefix: str
    processing_queue: QueueWithDlq
    load_queue: QueueWithDlq
    max_event_age_seconds: int = 86_400
    max_retry_attempts: int = 185


class Routing(pulumi.ComponentResource):
    """The pipeline's custom event bus and its two routes."""

    def __init__(self, name: str, args: RoutingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:routing:Routing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bus = aws.cloudwatch.EventBus(f"{name}-bus", opts=child)
        self.raw_route = EventRoute(
            f"{name}-raw-created",
            EventRouteArgs(
                description="Raw uploads (S3 Object Created under the raw prefix) -> processing queue",
                event_pattern=pulumi.Output.from_input(args.raw_bucket_name).apply(
                    lambda bucket: raw_object_created_pattern(bucket, args.raw_prefix)
                ),
                queue=args.processing_queue,
                max_event_age_seconds=args.max_event_age_seconds,
                max_retry_attempts=args.max_retry_attempts,
            ),
            opts=child,
        )
        self.processed_route = EventRoute(
            f"{name}-file-processed",
            EventRouteArgs(
                description="File Processed events from the processor -> load queue",
                event_pattern=file_processed_pattern(),
                queue=args.load_queue,
                event_bus_name=self.bus.name,
                max_event_age_seconds=args.max_event_age_seconds,
                max_retry_attempts=args.max_retry_attempts,
            ),
            opts=child,
        )
        self.bus_name: pulumi.Output[str] = self.bus.name
        self.bus_arn: pulumi.Output[str] = self.bus.arn
        self.register_outputs({"bus_name": self.bus_name, "bus_arn": self.bus_arn})
