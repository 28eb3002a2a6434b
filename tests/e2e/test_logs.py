"""The functions' logs in their CloudWatch Logs groups, where the runbook reads them
(docs/operations.md: ``aws logs tail /aws/lambda/<name>``, ``filter-log-events``)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

# The name Lambda gives a sandbox's log stream.
LAMBDA_STREAM = re.compile(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}")
BAD_DATE = "date '2026-13-01' is not YYYY-MM-DD"


def _events(logs: Any, group: str, since_ms: int, pattern: str = "") -> list[dict[str, Any]]:
    request: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
    if pattern:
        request["filterPattern"] = pattern
    return [e for page in logs.get_paginator("filter_log_events").paginate(**request) for e in page["events"]]


def _request_ids(events: list[dict[str, Any]], word: str) -> list[str]:
    return [m.group(1) for e in events if (m := re.match(rf"{word} RequestId: (\S+)", e["message"]))]


def _invocation(events: list[dict[str, Any]], index: int) -> tuple[str, list[str]]:
    """The request id of the invocation that logged ``events[index]`` (the START before it
    in the same stream), and that stream's messages from its START on, in order."""
    stream = [e for e in events if e["logStreamName"] == events[index]["logStreamName"]]
    position = stream.index(events[index])
    start = max(i for i, e in enumerate(stream[:position]) if e["message"].startswith("START RequestId: "))
    request_id = _request_ids([stream[start]], "START")[0]
    return request_id, [e["message"] for e in stream[start:]]


def test_a_functions_log_line_and_its_traceback_are_in_its_log_group_in_order(stack):
    report = stack.outputs.get("function_names")["report"]
    group = f"/aws/lambda/{report}"
    logs = stack.outputs.client("logs")
    since = int(time.time() * 1000) - 1000
    # When the report function logs a line (Powertools JSON), then fails on a bad request
    assert stack.invoke("report", {"task": "signals"})["task"] == "signals"
    with pytest.raises(AssertionError, match="BadRequest"):
        stack.invoke("report", {"date": "2026-13-01"})
    # Then both reach its log group, as on Lambda (the runtime sends them every second)
    deadline = time.monotonic() + 60
    while True:
        events = _events(logs, group, since)
        signals = [i for i, e in enumerate(events) if '"message":"signals"' in e["message"].replace(" ", "")]
        failed = [i for i, e in enumerate(events) if BAD_DATE in e["message"]]
        reported = _request_ids(events, "REPORT")
        if (signals and failed and len(reported) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert signals and failed, [e["message"] for e in events]
    # each in a stream named as Lambda names a sandbox's
    assert all(LAMBDA_STREAM.fullmatch(e["logStreamName"]) for e in events), {
        e["logStreamName"] for e in events
    }
    # the log line within its invocation's START ... END, REPORT, with its request id
    request_id, lines = _invocation(events, signals[-1])
    assert (
        json.loads(next(line for line in lines if '"signals"' in line))["function_request_id"] == request_id
    )
    assert f"END RequestId: {request_id}" in lines and request_id in reported
    assert lines.index(f"END RequestId: {request_id}") > next(
        i for i, s in enumerate(lines) if '"signals"' in s
    )
    # the error with its traceback after it, in order, then the invocation's end
    request_id, lines = _invocation(events, failed[-1])
    error = next(i for i, line in enumerate(lines) if BAD_DATE in line)
    traceback = next(i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    assert error <= traceback < lines.index(f"END RequestId: {request_id}"), lines
    assert request_id in reported
    assert events[signals[-1]]["timestamp"] <= events[failed[-1]]["timestamp"]
    # and the runbook's search finds the error by a phrase
    assert any(BAD_DATE in e["message"] for e in _events(logs, group, since, '"2026-13-01"'))
