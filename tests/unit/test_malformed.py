"""Naming the records of an SQS batch that failed before their record handler saw them."""

from __future__ import annotations

from typing import Any

from handlers.logic.malformed import HandledRecords, Malformed


def batch(*ids_and_receives: tuple[str, str]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": i, "attributes": {"ApproximateReceiveCount": n}} for i, n in ids_and_receives
        ]
    }


def failed(*ids: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


def test_failures_the_handler_never_saw_are_malformed():
    # Given a batch of three failed records, one of which reached the record handler
    handled = HandledRecords(max_receive_count=3)
    handled.start()
    handled.seen("a")
    event = batch(("a", "1"), ("b", "2"), ("c", "3"), ("d", "1"))

    # Then the two it never saw are malformed, each with its attempt and fate
    found = handled.malformed(event, failed("a", "b", "c"))
    assert found == [Malformed("b", 2, False), Malformed("c", 3, True)]
    assert [m.fate() for m in found] == ["will be retried", "moves to the DLQ"]


def test_start_forgets_the_ids_of_an_earlier_invocation():
    # Given a warm container whose earlier invocation's handler saw message "a"
    handled = HandledRecords(max_receive_count=5)
    handled.start()
    handled.seen("a")

    # When a later invocation redelivers "a" and it fails before its handler sees it
    handled.start()

    # Then it is named malformed, not taken for one the handler saw
    assert handled.malformed(batch(("a", "2")), failed("a")) == [Malformed("a", 2, False)]
