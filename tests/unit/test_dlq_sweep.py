"""``dlq.Sweep`` keeps the messages it passed over hidden: which it renews, and when (a fake
queue and clock; the integration tests run it against moto)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from headrace import dlq


class FakeQueue:
    def __init__(self, messages: int):
        self.waiting = [
            {"MessageId": f"m{i}", "ReceiptHandle": f"h{i}", "Body": "{}"} for i in range(messages)
        ]
        self.renewed: list[list[str]] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        taken, self.waiting = self.waiting[: kwargs["MaxNumberOfMessages"]], self.waiting[10:]
        return {"Messages": taken}

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.renewed.append([e["ReceiptHandle"] for e in kwargs["Entries"]])
        return {"Successful": [], "Failed": []}


def test_only_the_messages_about_to_show_are_renewed_and_not_those_deleted():
    now = [0.0]
    queue = FakeQueue(30)
    sweep = dlq.Sweep(queue, "url", visibility=10, clock=lambda: now[0])
    batches = sweep.batches()
    first = next(batches)  # m0-m9 received at 0 s: hidden until 10 s
    now[0] = 3.0
    next(batches)  # m10-m19 at 3 s (renew: nothing due yet)
    assert queue.renewed == []
    sweep.forget(first[0]["MessageId"])  # m0 moved: deleted from the queue
    now[0] = 6.0
    next(batches)  # renew at 6 s: m1-m9 show within half the timeout (at 10 s); m0 is gone
    assert queue.renewed == [[f"h{i}" for i in range(1, 10)]]
    now[0] = 7.0
    sweep.renew()  # renewed until 16 s, m10-m19 until 13 s: nothing due
    assert len(queue.renewed) == 1
    now[0] = 8.5
    sweep.renew()  # m10-m19 (13 s) are due now, m1-m9 not
    assert queue.renewed[1] == [f"h{i}" for i in range(10, 20)]


class FullQueue(FakeQueue):
    """A queue with as many messages in flight as SQS allows: the next receive is refused."""

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        if not self.waiting:
            raise ClientError(
                {"Error": {"Code": "OverLimit", "Message": "too many in flight"}}, "ReceiveMessage"
            )
        return super().receive_message(**kwargs)


def test_a_pass_that_sqs_refuses_to_hide_more_for_stops_and_says_it_is_incomplete():
    sweep = dlq.Sweep(FullQueue(20), "url", visibility=10)
    # Then the pass yields what it got, then ends incomplete rather than failing
    assert sum(len(batch) for batch in sweep.batches()) == 20
    assert (sweep.examined, sweep.complete) == (20, False)


def test_other_receive_errors_are_not_taken_for_the_end_of_the_queue():
    class Denied(FakeQueue):
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ReceiveMessage")

    with pytest.raises(ClientError):
        list(dlq.Sweep(Denied(1), "url", visibility=10).batches())
