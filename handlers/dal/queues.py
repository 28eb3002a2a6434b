"""SQS operations the handlers perform on their own messages."""

from __future__ import annotations

from functools import cache
from typing import Any

from .aws import client


@cache
def queue_url(queue_arn: str) -> str:
    *_, account, name = queue_arn.split(":", 5)
    return str(client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def retry_now(queue_arn: str, receipt_handle: str) -> None:
    """Make a failed message visible again at once instead of after the visibility timeout
    (its receive count still grows, so it reaches the DLQ after maxReceiveCount)."""
    client("sqs").change_message_visibility(
        QueueUrl=queue_url(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=0
    )


def message_counts(queue_url: str, sqs: Any = None) -> tuple[int, int]:
    """(waiting, in flight) messages of a queue: SQS's approximate counts."""
    attributes = (sqs or client("sqs")).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)), int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )
