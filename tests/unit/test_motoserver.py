"""The emulator's SQS adjustments (``patch_sqs``): attributes computed per key, with moto's
own values, and message operations atomic per queue."""

from __future__ import annotations

import json
import sys
import threading

import pytest
from moto.sqs.models import Queue, SQSBackend

from headrace.local.motoserver import QUEUE_MESSAGE_OPERATIONS, _LazyQueueAttributes, patch_sqs

ACCOUNT = "123456789012"
REDRIVE = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq", "maxReceiveCount": 5})
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"}],
    }
)
QUEUES = {
    "plain": ("plain", {}),
    "kms, policy and redrive": (
        "encrypted",
        {"KmsMasterKeyId": "alias/headrace", "Policy": POLICY, "RedrivePolicy": REDRIVE},
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
    if kind != "plain":
        assert lazy["Policy" if "Policy" in attributes else "ContentBasedDeduplication"] is not None


def test_reading_one_attribute_does_not_count_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = _queue("busy", {})

    def counted(_: Queue) -> int:
        raise AssertionError("counted every message to read one attribute")

    monkeypatch.setattr(Queue, "approximate_number_of_messages", property(counted))
    lazy = _LazyQueueAttributes(queue)

    assert lazy["MessageRetentionPeriod"] == 345600
    assert "ApproximateNumberOfMessages" in lazy  # membership does not compute the value
    assert lazy.get("ContentBasedDeduplication") is None  # not a FIFO queue: no such key
    with pytest.raises(AssertionError, match="counted"):
        lazy["ApproximateNumberOfMessages"]


@pytest.fixture
def patched_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``patch_sqs`` as the emulator applies it, undone after the test."""
    from moto.sqs import models

    for name in ("unix_time", "unix_time_millis"):
        monkeypatch.setattr(models, name, getattr(models, name))
    monkeypatch.setattr(Queue, "attributes", Queue.attributes)
    for name in QUEUE_MESSAGE_OPERATIONS:
        monkeypatch.setattr(SQSBackend, name, getattr(SQSBackend, name))
    patch_sqs()


def _backend() -> SQSBackend:
    backend = SQSBackend("us-east-1", ACCOUNT)
    backend.create_queue("work", VisibilityTimeout="60")
    return backend


@pytest.mark.usefixtures("patched_sqs")
def test_a_delete_waits_for_the_queue_lock() -> None:
    backend = _backend()
    backend.send_message("work", "a")
    [message] = backend.receive_message("work", 1, 0, 60)
    queue = backend.get_queue("work")
    deleted = threading.Event()

    def delete() -> None:
        backend.delete_message("work", message.receipt_handle)
        deleted.set()

    with queue._messages_lock:  # a send in progress on another thread
        worker = threading.Thread(target=delete)
        worker.start()
        assert not deleted.wait(0.3)
    assert deleted.wait(5)
    worker.join()
    assert queue._messages == []


@pytest.mark.usefixtures("patched_sqs")
def test_overlapping_deletes_and_sends_keep_every_message_once() -> None:
    """Two consumers deleting while a producer sends, as the ingest worker and API do.
    Without the lock moto's deletes overwrite each other's message lists: about 900 of the
    1,000 deleted messages come back, and a message sent in between can vanish."""
    backend = _backend()
    for i in range(1000):
        backend.send_message("work", f"old-{i}")
    in_flight = list(backend.get_queue("work")._messages)
    for message in in_flight:  # received, as a consumer's receive marks them
        message.mark_received(visibility_timeout=60)

    def send() -> None:
        for i in range(500):
            backend.send_message("work", f"new-{i}")

    def delete(messages: list) -> None:
        for message in messages:
            backend.delete_message("work", message.receipt_handle)

    threads = [
        threading.Thread(target=send),
        threading.Thread(target=delete, args=(in_flight[0::2],)),
        threading.Thread(target=delete, args=(in_flight[1::2],)),
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often, as a busy server does
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    bodies = sorted(m.body for m in backend.get_queue("work")._messages)
    assert bodies == sorted(f"new-{i}" for i in range(500))
