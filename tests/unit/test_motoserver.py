"""The emulator's SQS adjustment: queue attributes computed per key, with moto's own values."""

from __future__ import annotations

import json

import pytest
from moto.sqs.models import Queue

from headrace.local.motoserver import _LazyQueueAttributes

ACCOUNT = "123456789012"
REDRIVE = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq", "maxReceiveCount": 5})
QUEUES = {
    "plain": ("plain", {}),
    "kms, policy and redrive": (
        "encrypted",
        {"KmsMasterKeyId": "alias/headrace", "Policy": '{"Version": "2012-10-17"}', "RedrivePolicy": REDRIVE},
    ),
    "fifo": ("ordered.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
}


def _queue(name: str, attributes: dict[str, str]) -> Queue:
    return Queue(name, region="us-east-1", account_id=ACCOUNT, **attributes)


@pytest.mark.parametrize("kind", QUEUES)
def test_same_keys_and_values_as_moto(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sqs import models

    # moto resolves a redrive policy's target queue in its backend
    dlq = Queue("dlq", region="us-east-1", account_id=ACCOUNT)
    monkeypatch.setattr(models.sqs_backends[ACCOUNT]["us-east-1"], "queues", {"dlq": dlq})
    name, attributes = QUEUES[kind]
    queue = _queue(name, attributes)
    lazy = _LazyQueueAttributes(queue)

    assert dict(lazy) == queue.attributes
    assert list(lazy) == list(queue.attributes)
    assert lazy.get("NotAnAttribute") is None
    assert "NotAnAttribute" not in lazy


def test_reading_one_attribute_does_not_count_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue("busy", {})

    def counted(_: Queue) -> int:
        raise AssertionError("counted every message to read one attribute")

    monkeypatch.setattr(Queue, "approximate_number_of_messages", property(counted))
    lazy = _LazyQueueAttributes(queue)

    assert lazy["MessageRetentionPeriod"] == 345600
    assert lazy.get("ContentBasedDeduplication") is None  # not a FIFO queue: no such key
    with pytest.raises(AssertionError, match="counted"):
        lazy["ApproximateNumberOfMessages"]
