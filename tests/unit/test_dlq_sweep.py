"""``dlq.Sweep`` keeps the messages it passed over hidden: which it renews, and when (a fake
queue and clock; the integration tests run it against moto)."""

from __future__ import annotations

from typing import Any

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
