"""A deadline stops processing (the processor Lambda passes the time its invocation has)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from handlers.logic.processing import OutOfTime, ProcessingOptions, process_file

ROWS = 100_000  # 0.2-0.3 s of work on a fast machine: far longer than the deadlines below


def _csv(path: Path) -> Path:
    path.write_text(
        "id,name,email,score\n" + "".join(f"{i},user {i},u{i}@example.com,{i / 2}\n" for i in range(ROWS))
    )
    return path


def _json(path: Path) -> Path:
    path.write_text(json.dumps([{"id": i, "name": f"user {i}", "score": i / 2} for i in range(ROWS)]))
    return path


def _ndjson(path: Path) -> Path:
    path.write_text("\n".join(json.dumps({"id": i, "level": "INFO", "path": f"/p/{i}"}) for i in range(ROWS)))
    return path


def _log(path: Path) -> Path:
    path.write_text(
        "".join(f"2025-01-01T00:00:{i % 60:02d}Z ERROR request {i} failed\n" for i in range(ROWS))
    )
    return path


@pytest.mark.parametrize("make", [_csv, _json, _ndjson, _log], ids=["csv", "json", "ndjson", "log"])
def test_a_query_running_at_the_deadline_is_stopped(tmp_path, make):
    # Given a file that takes far longer to process than the time left
    path = make(tmp_path / f"big.{make.__name__[1:]}")
    # When it is processed with a deadline 50 ms away
    started = time.monotonic()
    with pytest.raises(OutOfTime, match="stopped at its deadline"):
        process_file(path, parquet_path=tmp_path / "out.parquet", deadline=started + 0.05)
    # Then it stops there (not a malformed-file error: the file is fine), and the watcher ends
    assert [t.name for t in threading.enumerate() if t.name == "processing-deadline"] == []


def test_a_passed_deadline_stops_before_any_work(tmp_path):
    # an empty file would be refused as empty if its content were looked at
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(OutOfTime, match="no time was left to start processing"):
        process_file(path, deadline=time.monotonic() - 1)


def test_python_phases_stop_at_the_deadline_too(tmp_path):
    # Given a log file, whose lines are parsed in Python before DuckDB reads them
    path = _log(tmp_path / "big.log")
    # When it is processed with a deadline 50 ms away
    with pytest.raises(OutOfTime) as stopped:
        process_file(path, deadline=time.monotonic() + 0.05)
    # Then the line conversion itself stops (DuckDB cannot interrupt Python code)
    assert "write_records" in [entry.name for entry in stopped.traceback]


def test_the_next_file_in_the_same_process_is_unaffected(tmp_path):
    # Given a file stopped at its deadline (the database is shared within a process, as
    # in a warm Lambda sandbox)
    big = _csv(tmp_path / "big.csv")
    with pytest.raises(OutOfTime):
        process_file(big, deadline=time.monotonic() + 0.05)
    # When the next file has time enough, it completes
    summary = process_file(big, options=ProcessingOptions(), deadline=time.monotonic() + 600)
    assert summary.row_count == ROWS
