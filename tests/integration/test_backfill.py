"""``headrace backfill-failures`` against a moto stack: failures recorded before the
``by_failure`` index get its keys, so ``headrace status`` lists them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers.dal.metadata import MetadataStore, iso, set_failure_keys
from headrace import backfill
from headrace.cli import main
from tests.integration.conftest import REGION
from tests.integration.test_status import listed, object_ref, write_outputs


def legacy(key: str, uploaded: datetime, **fields: Any) -> dict[str, Any]:
    """An item as a version before the by_failure index wrote it: no failure_day/failure_at."""
    item = {
        "object_key": key,
        "version": "v1",
        "day": uploaded.date().isoformat(),
        "uploaded_at": iso(uploaded),
        **{k: iso(v) if isinstance(v, datetime) else v for k, v in fields.items()},
    }
    metadata().put_item(Item=item)
    return item


def metadata() -> Any:
    return boto3.resource("dynamodb", region_name=REGION).Table("metadata")


def keys_of(key: str) -> tuple[Any, Any]:
    item = metadata().get_item(Key={"object_key": key, "version": "v1"})["Item"]
    return item.get("failure_day"), item.get("failure_at")


@pytest.fixture
def stack(pipeline: Any, tmp_path: Any) -> Any:
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    # Given failures recorded before the upgrade: a processing failure, a load failure
    legacy(
        "incoming/poison.csv",
        yesterday,
        status="failed",
        failed_at=now - timedelta(minutes=30),
        error="binary",
    )
    legacy(
        "incoming/unloaded.csv",
        yesterday,
        status="completed",
        completed_at=yesterday,
        load_status="failed",
        load_failed_at=now - timedelta(minutes=20),
        load_error="connection refused",
    )
    # and what is no failure, or no failure to index: a skip, a completed file, a failure
    # fixed since (it completed), a failure of an upload older than the days read
    legacy("incoming/skipped.csv", yesterday, status="failed", failed_at=yesterday, skip_reason="superseded")
    legacy("incoming/good.csv", yesterday, status="completed", completed_at=yesterday)
    legacy("incoming/fixed.csv", yesterday, status="completed", failed_at=yesterday, load_status="loaded")
    legacy("incoming/old.csv", now - timedelta(days=20), status="failed", failed_at=now - timedelta(days=19))
    return outputs, now


def test_a_dry_run_counts_and_writes_nothing(stack, capsys):
    outputs, now = stack
    # When the operator runs it without --execute
    assert main(["backfill-failures", "--outputs", str(outputs)]) == 0
    out = capsys.readouterr().out
    # Then it says what it would do, per day, and nothing changed
    assert f"{(now - timedelta(days=1)).date()}: 2 failed item(s) without the keys, would set 2" in out
    assert "Dry run: would set the keys of 2 failed item(s)" in out and "--execute writes them" in out
    assert keys_of("incoming/poison.csv") == (None, None)


def test_execute_sets_the_keys_from_the_failure_time_and_status_lists_them(stack, capsys):
    outputs, now = stack
    # Before: status does not see the failures recorded before the index
    assert listed(outputs, now)["failures"] == []
    # When the operator backfills
    assert main(["backfill-failures", "--outputs", str(outputs), "--execute"]) == 0
    assert "Done: set the keys of 2 failed item(s)" in capsys.readouterr().out
    # Then each failed item is keyed by when it failed, and status lists both, newest first
    failed_at = now - timedelta(minutes=30)
    assert keys_of("incoming/poison.csv") == (failed_at.date().isoformat(), iso(failed_at))
    assert [(f["object_key"], f["stage"]) for f in listed(outputs, now)["failures"]] == [
        ("incoming/unloaded.csv", "load"),
        ("incoming/poison.csv", "processing"),
    ]
    # and what is no failure to index is left alone
    for key in ("incoming/skipped.csv", "incoming/good.csv", "incoming/fixed.csv", "incoming/old.csv"):
        assert keys_of(key) == (None, None), key
    # When it runs again: nothing is left to do
    assert main(["backfill-failures", "--outputs", str(outputs), "--execute"]) == 0
    assert "Done: set the keys of 0 failed item(s)" in capsys.readouterr().out
    # and more days reach the older upload
    assert main(["backfill-failures", "--outputs", str(outputs), "--execute", "--days", "30"]) == 0
    assert keys_of("incoming/old.csv")[0] == (now - timedelta(days=19)).date().isoformat()


def test_a_failure_recorded_meanwhile_is_not_overwritten(stack, capsys, monkeypatch):
    outputs, now = stack
    # Given the processor records a new failure of a file after the backfill read it
    newer = now - timedelta(minutes=1)
    read = backfill.iter_unindexed_failures_on_day

    def racing(table: Any, day: str) -> Iterator[dict[str, Any]]:
        for item in read(table, day):
            if item["object_key"] == "incoming/poison.csv":
                ref = object_ref("incoming/poison.csv", now - timedelta(days=1))
                MetadataStore("metadata").mark_failed(ref, newer, "still binary")
            yield item

    monkeypatch.setattr(backfill, "iter_unindexed_failures_on_day", racing)
    # When the backfill writes
    assert main(["backfill-failures", "--outputs", str(outputs), "--execute"]) == 0
    # Then the newer failure's keys stay, and it says so
    assert keys_of("incoming/poison.csv") == (newer.date().isoformat(), iso(newer))
    assert "1 had them meanwhile (a newer failure) or expired" in capsys.readouterr().out
    # and an item gone (expired) is not brought back
    assert set_failure_keys(metadata(), "incoming/gone.csv", "v1", now) is False
    assert "Item" not in metadata().get_item(Key={"object_key": "incoming/gone.csv", "version": "v1"})


def test_a_stopped_run_says_where_to_go_on(stack, capsys, monkeypatch):
    outputs, _now = stack
    done = backfill.backfill_day
    # Given DynamoDB refuses the third day's read (after its retries)
    calls: list[str] = []

    def refusing(table: Any, day: str, execute: bool) -> backfill.Counts:
        calls.append(day)
        if len(calls) == 3:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")
        return done(table, day, execute)

    monkeypatch.setattr(backfill, "backfill_day", refusing)
    # When it runs
    code = main(["backfill-failures", "--outputs", str(outputs), "--execute", "--until", "2026-12-07"])
    # Then it stops with exit 2, naming the day to go on from and the days left
    assert code == 2
    assert (
        "stopped at upload day 2026-12-05 (the days after it are done): go on with --until 2026-12-05 --days 6"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "0"], "--days: must be a whole number from 1 to 366, not 0"),
        (["--days", "400"], "--days: must be a whole number from 1 to 366, not 400"),
        (["--until", "yesterday"], "--until: must be a day as YYYY-MM-DD, not yesterday"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        main(["backfill-failures", "--outputs", str(tmp_path / "outputs.json"), *argv])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_outputs_file_is_a_clear_error(tmp_path, capsys):
    assert main(["backfill-failures", "--outputs", str(tmp_path / "missing.json")]) == 2
    assert "headrace: error:" in capsys.readouterr().err


def test_a_load_rejected_for_good_is_a_failure_to_index_as_one_given_up_on(pipeline, tmp_path, capsys):
    # Given an item without the keys whose load was rejected (status and the report count
    # rejected loads as failed ones)
    outputs = tmp_path / "outputs.json"
    write_outputs(pipeline, outputs)
    now = datetime.now(UTC)
    legacy(
        "incoming/wide.csv",
        now - timedelta(hours=1),
        status="completed",
        load_status="rejected",
        load_failed_at=now - timedelta(minutes=10),
        load_error="LoadRejected: too many columns",
    )
    # When the failures are backfilled
    assert main(["backfill-failures", "--outputs", str(outputs), "--execute"]) == 0
    # Then it has the keys, from when its load was rejected
    at = now - timedelta(minutes=10)
    assert keys_of("incoming/wide.csv") == (at.date().isoformat(), iso(at))
