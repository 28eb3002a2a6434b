"""A sandbox's output in the emulator's CloudWatch Logs (headrace.local.logs), as Lambda
writes it: the runbook's log searches read it there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from headrace.local.emulator import REGION, Emulator, free_port
from headrace.local.logs import LogForwarder
from headrace.local.sandbox import FunctionSpec, Sandbox

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_STREAM = re.compile(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}")

HANDLER = """
import json, time


def handler(event, context):
    print(json.dumps({"level": "INFO", "message": "working on", "item": event["item"]}))
    if event.get("fail"):
        raise ValueError(f"item {event['item']} is broken")
    time.sleep(event.get("sleep", 0))
    return {"done": event["item"]}
"""


@pytest.fixture(scope="module")
def logs() -> Iterator[Any]:
    emulator = Emulator(port=free_port())
    emulator.start()
    yield boto3.client(
        "logs",
        endpoint_url=emulator.endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    emulator.stop()


def _sandbox(tmp_path: Path, forwarder: LogForwarder, group: str = "") -> Sandbox:
    (tmp_path / "fn.py").write_text(HANDLER)
    spec = FunctionSpec(
        name="fn",
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:fn",
        handler="fn.handler",
        timeout_seconds=1,
        log_group=group,
    )
    # PYTHONUNBUFFERED as the executor sets it (sandbox_environment)
    env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    sandbox = Sandbox(spec, env, tmp_path, tmp_path / "fn.log", forwarder)
    assert sandbox.init_error is None, sandbox.init_error
    return sandbox


def _messages(logs: Any, group: str) -> dict[str, list[str]]:
    """Each stream's messages, in order."""
    streams: dict[str, list[str]] = {}
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        for event in page["events"]:
            streams.setdefault(event["logStreamName"], []).append(event["message"])
    return streams


def test_a_sandboxs_lines_and_traceback_reach_its_log_group_in_order(tmp_path, logs):
    # Given the function's log group (the program creates it) and a sandbox
    logs.create_log_group(logGroupName="/aws/lambda/fn")
    forwarder = LogForwarder(lambda: logs, flush_seconds=3600)  # only the stop sends
    forwarder.start()
    sandbox = _sandbox(tmp_path, forwarder)
    # When it runs an invocation that logs, one that fails and one that times out
    assert sandbox.invoke({"item": 1}).ok
    assert sandbox.invoke({"item": 2, "fail": True}).error_type == "ValueError"
    assert sandbox.invoke({"item": 3, "sleep": 30}).error_type == "Sandbox.Timedout"
    forwarder.stop()  # stopping sends what is buffered
    # Then its stream, named as Lambda names it, holds each line as an event, in order
    streams = _messages(logs, "/aws/lambda/fn")
    assert list(streams) == [sandbox.log_stream_name] and LAMBDA_STREAM.fullmatch(sandbox.log_stream_name)
    lines = streams[sandbox.log_stream_name]
    starts = [i for i, line in enumerate(lines) if line.startswith("START RequestId: ")]
    assert len(starts) == 3, lines
    first, second, third = lines[: starts[1]], lines[starts[1] : starts[2]], lines[starts[2] :]
    request_id = first[0].split()[2]
    assert first[1:3] == [
        '{"level": "INFO", "message": "working on", "item": 1}',
        f"END RequestId: {request_id}",
    ]
    assert first[3].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "\tMemory Size: 128 MB\tMax Memory Used: " in first[3] and "\tInit Duration: " in first[3]
    # the error, then its traceback line by line, ending with the exception
    assert second[1:4] == [
        '{"level": "INFO", "message": "working on", "item": 2}',
        "[ERROR] ValueError: item 2 is broken",
        "Traceback (most recent call last):",
    ]
    assert second[-3:-1] == ["ValueError: item 2 is broken", f"END RequestId: {second[0].split()[2]}"]
    # the timeout as Lambda reports it
    request_id = third[0].split()[2]
    assert third[2].endswith(f"{request_id} Task timed out after 1.00 seconds"), third
    assert third[3:4] == [f"END RequestId: {request_id}"] and third[4].endswith("\tStatus: timeout")
    # And the function's log file keeps the same lines
    assert (tmp_path / "fn.log").read_text().splitlines() == [line for line in lines if line]


def test_a_sandbox_logs_to_the_group_its_logging_config_names(tmp_path, logs):
    logs.create_log_group(logGroupName="shared-functions")
    forwarder = LogForwarder(lambda: logs, flush_seconds=3600)
    sandbox = _sandbox(tmp_path, forwarder, group="shared-functions")
    assert sandbox.invoke({"item": 7}).ok
    sandbox.kill()
    forwarder.stop()
    lines = _messages(logs, "shared-functions")[sandbox.log_stream_name]
    assert '{"level": "INFO", "message": "working on", "item": 7}' in lines


def test_without_its_log_group_the_output_is_only_in_the_file_and_says_so(tmp_path, logs, caplog):
    forwarder = LogForwarder(lambda: logs, flush_seconds=3600)
    sandbox = _sandbox(tmp_path, forwarder, group="/aws/lambda/never-created")
    assert sandbox.invoke({"item": 9}).ok
    sandbox.kill()
    forwarder.stop()
    assert "its log group /aws/lambda/never-created does not exist" in caplog.text
    assert '"item": 9' in (tmp_path / "fn.log").read_text()
