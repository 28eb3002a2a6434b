"""What every experiment shares: its context, the JSON-lines recorder, and the record of
one file built from its metadata item.

Timing of one file (all in milliseconds):

- ``upload_ms``: the client's PUT (client clock);
- ``queue_wait_ms``: upload finished -> the processor started on it (``started_at`` of the
  item): S3 -> EventBridge -> SQS -> the Lambda poller -> a sandbox. The handler's own
  ``timings_ms.queue_wait`` counts from the S3 event time, which has 1-second precision, so
  it overstates the wait by up to a second; it is kept as ``handler_queue_wait_ms``;
- ``download_ms``, ``process_ms``, ``write_ms``: the handler's own timings;
- ``other_ms``: the rest of the handler's work on the file (metadata writes, version checks);
- ``e2e_ms``: ``completed_at`` minus the client's upload start = upload + queue wait +
  handler total. Client and Lambda clocks: the same clock on the embedded runtime; on AWS
  NTP-synchronised clocks, good to a few milliseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stack import ExperimentStack, Upload, parse_time
from .suites import Suite

Advance = Callable[[int], None]


class Recorder:
    """Raw results of one experiment: ``<name>.jsonl`` (one record a line) and
    ``<name>.summary.json``."""

    def __init__(self, out: Path, name: str):
        self.name = name
        self.path = out / f"{name}.jsonl"
        self.summary_path = out / f"{name}.summary.json"
        self.path.unlink(missing_ok=True)
        self.summary_path.unlink(missing_ok=True)
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"experiment": self.name, **record}, default=str, sort_keys=True) + "\n")
        self.count += 1

    def write_all(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def summary(self, summary: dict[str, Any]) -> None:
        self.summary_path.write_text(json.dumps(summary, indent=2, default=str, sort_keys=True) + "\n")


@dataclass
class Context:
    stack: ExperimentStack
    suite: Suite
    out: Path
    scratch: Path
    started: float  # epoch seconds: the run's start (the timeline's origin)
    max_size_mb: float
    advance_factory: Callable[[str, int], Advance] = lambda name, total: lambda n: None
    notes: list[str] = field(default_factory=list)

    def deadline(self, experiment: str) -> float:
        return time.monotonic() + self.suite.limit(experiment)

    def progress(self, description: str, total: int) -> Advance:
        return self.advance_factory(description, total)


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def file_record(upload: Upload, item: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """One uploaded file and what became of it (see the module docstring)."""
    item = item or {}
    timings = {k: float(v) for k, v in (item.get("timings_ms") or {}).items()}
    started = parse_time(item.get("started_at"))
    completed = parse_time(item.get("completed_at"))
    received = parse_time(item.get("received_at"))
    loaded = parse_time(item.get("loaded_at"))
    record: dict[str, Any] = {
        "type": "file",
        "key": upload.key,
        "version": upload.version,
        "size_bytes": upload.size,
        "upload_start": upload.start,
        "upload_end": upload.end,
        "upload_ms": upload.upload_ms,
        "status": item.get("status", "missing"),
        "attempts": int(item["attempts"]) if item.get("attempts") is not None else None,
        "row_count": int(item["row_count"]) if item.get("row_count") is not None else None,
        "error": item.get("error"),
        "started_at": item.get("started_at"),
        "completed_at": item.get("completed_at"),
        "max_rss_mb": _num(item.get("max_rss_mb")),
        "load_status": item.get("load_status"),
        "load_attempts": int(item["load_attempts"]) if item.get("load_attempts") is not None else None,
        "parquet_key": item.get("parquet_key"),
        "item_bytes": len(json.dumps(item, default=str)) if item else None,
    }
    if completed is not None and item.get("status") == "completed":
        record["e2e_ms"] = (completed - upload.start) * 1000
        if started is not None:
            record["queue_wait_ms"] = (started - upload.end) * 1000
        if received is not None:
            record["handler_ms"] = (completed - received) * 1000
        if loaded is not None:
            record["load_ms"] = (loaded - completed) * 1000
            record["warehouse_e2e_ms"] = (loaded - upload.start) * 1000
    for name in ("download", "process", "write"):
        if name in timings:
            record[f"{name}_ms"] = timings[name]
    if "queue_wait" in timings:
        record["handler_queue_wait_ms"] = timings["queue_wait"]
    if "total" in timings:
        record["handler_total_ms"] = timings["total"]
        parts = sum(timings.get(k, 0.0) for k in ("download", "process", "write"))
        record["other_ms"] = max(0.0, timings["total"] - parts)
    record.update(upload.label)
    record.update(extra)
    return record


def loaded_or_final(item: dict[str, Any]) -> bool:
    """The file's journey is over: failed, or completed and its load finished either way."""
    status = item.get("status")
    return status == "failed" or (
        status == "completed" and item.get("load_status") in ("loaded", "failed", "rejected", "superseded")
    )


def drain_loads(ctx: Context, uploads: list[Upload], timeout: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Wait (bounded) until the completed files are loaded into the warehouse; the items."""
    return ctx.stack.wait(uploads, time.monotonic() + timeout, done=loaded_or_final, interval=1.0)
