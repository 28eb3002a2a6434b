"""A work queue with its dead-letter queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .policies import deny_insecure_transport, resource_policy

# The longest SQS keeps a message. A standard queue's dead letter keeps the time it was first
# sent: it waits two weeks minus its time in the work queue (at most its retention) for an operator.
DLQ_RETENTION_SECONDS = 14 * 86_400
# A queue's visibility timeout must cover every retry the Lambda service may make of a
# batch: AWS recommends at least six times the function timeout plus the batching window.
VISIBILITY_TIMEOUT_FACTOR = 6


def visibility_timeout(consumer_timeout_seconds: int, batching_window_seconds: int = 0) -> int:
    return VISIBILITY_TIMEOUT_FACTOR * consumer_timeout_seconds + batching_window_seconds


@dataclass(frozen=True)
class QueueWithDlqArgs:
    # Timeout and batching window of the function that consumes the queue.
    consumer_timeout_seconds: int
    consumer_batching_window_seconds: int = 0
    # Receives before a message moves to the DLQ.
    max_receive_count: int = 5
    message_retention_seconds: int = 4 * 86_400
    # Attach a TLS-only queue policy to both queues. A queue that an EventBridge rule
    # feeds gets its policy from the rule's route instead (one policy per queue).
    tls_only_policy: bool = True
    # Pulumi's protect on both queues (prod): what waits in them, dead letters above all,
    # is lost with a queue, so a plan that would delete or replace one fails at preview.
    protect: bool = False


class QueueWithDlq(pulumi.ComponentResource):
    """An SQS queue (SSE) whose messages move to a DLQ (SSE, 14 days) after
    ``max_receive_count`` receives; no other queue may use the DLQ."""

    def __init__(self, name: str, args: QueueWithDlqArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:queues:QueueWithDlq", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.max_receive_count < 1:
            raise ValueError("max_receive_count must be at least 1")

        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.visibility_timeout_seconds = visibility_timeout(
            args.consumer_timeout_seconds, args.consumer_batching_window_seconds
        )
        self.queue = aws.sqs.Queue(
            name,
            visibility_timeout_seconds=self.visibility_timeout_seconds,
            message_retention_seconds=args.message_retention_seconds,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count}
                )
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        # Only this queue may name the DLQ as its dead-letter target (a separate resource:
        # on the DLQ itself it would depend on the queue, which depends on the DLQ).
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-sources",
            queue_url=self.dlq.url,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        if args.tls_only_policy:
            for suffix, queue in (("policy", self.queue), ("dlq-policy", self.dlq)):
                aws.sqs.QueuePolicy(
                    f"{name}-{suffix}",
                    queue_url=queue.url,
                    policy=resource_policy([deny_insecure_transport("sqs:*", [queue.arn])]),
                    opts=child,
                )

        self.arn: pulumi.Output[str] = self.queue.arn
        self.url: pulumi.Output[str] = self.queue.url
        self.queue_name: pulumi.Output[str] = self.queue.name
        self.dlq_arn: pulumi.Output[str] = self.dlq.arn
        self.dlq_url: pulumi.Output[str] = self.dlq.url
        self.dlq_name: pulumi.Output[str] = self.dlq.name
        self.register_outputs({"url": self.url, "dlq_url": self.dlq_url})
