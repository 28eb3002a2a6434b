"""The emulator's SQS adjustments: attributes computed per key (moto's own values), and
message operations atomic per queue."""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import pytest
from moto.sqs.models import Queue, SQSBackend

from headrace.local.motoserver import QUEUE_MESSAGE_OPERATIONS, _holding_queue_lock, _LazyQueueAttributes

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


def _backend(locked: bool) -> SQSBackend:
    backend = SQSBackend("us-east-1", ACCOUNT)
    if locked:  # adjustment 6, on this backend only
        for name in QUEUE_MESSAGE_OPERATIONS:
            operation = _holding_queue_lock(getattr(SQSBackend, name))
            setattr(backend, name, types.MethodType(operation, backend))
    backend.create_queue("work", VisibilityTimeout="60")
    return backend


def test_a_delete_waits_for_the_queue_lock() -> None:
    backend = _backend(locked=True)
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


def test_overlapping_deletes_and_sends_keep_every_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two consumers deleting while a producer sends, as the ingest worker and API do.
    Without adjustment 6 (``_backend(locked=False)``) moto's deletes overwrite each other's
    message lists: about 900 of the 1,000 deleted messages come back, and a message sent in
    between can vanish."""
    from moto.sqs import models

    monkeypatch.setattr(models, "unix_time", lambda dt=None: time.time())  # adjustment 1: fast enough
    monkeypatch.setattr(models, "unix_time_millis", lambda dt=None: time.time() * 1000)
    monkeypatch.setattr(Queue, "attributes", property(_LazyQueueAttributes))
    backend = _backend(locked=True)
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
