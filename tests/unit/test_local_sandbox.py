"""One Lambda execution environment (headrace.local.sandbox) against what Lambda's Python
runtime does, with tiny handler modules: what a handler returns, raises or sets, as the
code that invoked it sees it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headrace.local.sandbox import FunctionSpec, Invocation, Sandbox

ROOT = Path(__file__).resolve().parents[2]

HANDLER = """
import datetime, decimal


def handler(event, context):
    kind = event["return"]
    if kind == "datetime":  # a partial-batch response with a datetime in it
        return {"batchItemFailures": [{"itemIdentifier": "m1", "at": datetime.datetime(2026, 1, 1)}]}
    if kind == "set":
        return {"ids": {"m1"}}
    if kind == "large":
        return {"body": "\\u00e9" * 3_145_800}  # 6,291,600 bytes of UTF-8
    if kind == "fits":
        return {"body": "\\u00e9" * 3_145_600, "n": decimal.Decimal("1.5"), "t": ("a", 1)}
    return None
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """A sandbox of ``fn.handler`` written from ``source`` (HANDLER by default)."""
    started: list[Sandbox] = []

    def start(source: str = HANDLER, env: dict[str, str] | None = None, **spec: object) -> Sandbox:
        (tmp_path / "fn.py").write_text(source)
        fields = {
            "name": "fn",
            "arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "handler": "fn.handler",
        }
        box = Sandbox(
            FunctionSpec(**{**fields, **spec}),  # type: ignore[arg-type]
            {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})},
            tmp_path,
            tmp_path / "fn.log",
        )
        started.append(box)
        return box

    yield start
    for box in started:
        box.kill()


def _failure(result: Invocation) -> tuple[bool, str | None, str]:
    return result.ok, result.error_type, (result.error or "").splitlines()[0]


def test_a_response_lambda_cannot_marshal_fails_the_invocation_for_every_trigger(sandbox):
    # A handler that put a datetime in its batchItemFailures passed locally (the executor
    # got the Python objects) and failed on AWS, where the runtime returns JSON
    box = sandbox()
    assert _failure(box.invoke({"return": "datetime"})) == (
        False,
        "Runtime.MarshalError",
        "Unable to marshal response: Object of type datetime is not JSON serializable",
    )
    assert _failure(box.invoke({"return": "set"})) == (
        False,
        "Runtime.MarshalError",
        "Unable to marshal response: Object of type set is not JSON serializable",
    )
    # and the sandbox stays warm, as on AWS
    assert box.alive() and not box.invoke({"return": None}).cold
    assert "[ERROR] Runtime.MarshalError: Unable to marshal response" in (box.log_path.read_text())


def test_a_response_over_6_mb_fails_and_one_under_it_arrives_as_json(sandbox):
    box = sandbox()
    assert _failure(box.invoke({"return": "large"})) == (
        False,
        "Function.ResponseSizeTooLarge",
        "Response payload size (6291612 bytes) exceeded maximum allowed payload size (6291556 bytes).",
    )
    # what the caller gets is the JSON the runtime sent: a Decimal is its number, a tuple a list
    result = box.invoke({"return": "fits"})
    assert result.ok and result.response == {"body": "é" * 3_145_600, "n": 1.5, "t": ["a", 1]}
