"""Operating a DLQ end to end (issue 8): a poison file lands in the processing DLQ, is
inspected, fixed in place, and its dead letter is redriven and acknowledged."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from headrace.cli import main

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"
POISON = bytes(range(256)) * 8


def dlq(stack, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main(["dlq", *args, "--outputs", str(stack.outputs_path), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def dead_letters_of(stack, capsys, key: str) -> list[dict[str, Any]]:
    # --prefix: the whole DLQ is looked through (a listing shows the first 1000 of a shared
    # stack's dead letters, which need not include this run's)
    letters = dlq(stack, capsys, "inspect", "--queue", "processing", "--prefix", key)
    return [x for x in letters if x["subject"] == key]


def test_a_poison_file_fixed_in_place_is_redriven_and_acknowledged(stack, capsys):
    # Given a poison file that failed every retry and sits in the processing DLQ
    key = stack.key("redrive", "fixme.csv")
    poison = stack.upload(key, POISON)
    _, budget, why = stack.retries("processing")
    deadline = time.monotonic() + budget
    while not (letters := dead_letters_of(stack, capsys, key)):
        assert time.monotonic() < deadline, (
            f"the poison message did not reach the DLQ within {budget:.0f} s ({why})"
        )
        time.sleep(1)
    # Then inspect shows it with the failure the processor recorded
    [letter] = letters
    assert letter["version"] == poison
    assert letter["status"] == "failed"
    assert "binary content" in letter["reason"]

    # When the file is fixed in place (a good file under the same key: a new version)
    fixed = stack.upload(key, SALES)
    # Then the new version is processed on its own
    assert stack.wait_for(key, fixed)["status"] == "completed"
    # and the dead letter now says a redrive will only acknowledge it
    assert "superseded" in (dead_letters_of(stack, capsys, key)[0]["note"] or "")

    # When a dry run is asked for, nothing moves
    dlq(stack, capsys, "redrive", "--queue", "processing", "--prefix", key)
    assert len(dead_letters_of(stack, capsys, key)) == 1

    # When this key's dead letter is redriven for real (by receive, send and delete on the
    # embedded runtime, whose emulator has no move task)
    result = dlq(stack, capsys, "redrive", "--queue", "processing", "--prefix", key, "--execute")
    assert result["moved"] >= 1 and result["left"] == 0
    if stack.embedded:
        assert result["method"] == "receive-send-delete"
    # Then the old version's message is received and acknowledged without work
    deadline = time.monotonic() + 120
    while stack.queue_depth(stack.outputs.processing_queue_url):
        assert time.monotonic() < deadline, "the redriven message was not consumed"
        time.sleep(0.5)
    # and the version keeps the failure it had ("skipped" is for versions never processed)
    old = stack.item(key, poison)
    assert old["status"] == "failed" and old["error"].startswith("binary content")
    assert "skip_reason" not in old
    # and it does not come back to the DLQ
    time.sleep(3)
    assert dead_letters_of(stack, capsys, key) == []
    # and the key's latest version is the completed one
    head = stack.s3.head_object(Bucket=stack.outputs.raw_bucket, Key=key)
    assert head["VersionId"] == fixed
    assert stack.item(key, fixed)["status"] == "completed"
