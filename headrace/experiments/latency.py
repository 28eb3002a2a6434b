"""End-to-end latency: one file at a time, upload -> metadata ``completed``, per file size.

For each size the processor's configuration is touched first (an environment variable
``HEADRACE_EXPERIMENT_RUN``), which retires its warm sandboxes on any stack: the first file
is a cold start, the next ``latency_warm`` are warm. Each file is uploaded only when the
previous one has completed, so the files never queue behind each other. The loader runs
on its own queue meanwhile (on the embedded runtime it shares the machine's CPUs).
"""

from __future__ import annotations

import time
from typing import Any

from . import data
from .common import Context, Recorder, drain_loads, file_record, loaded_or_final
from .stack import Changes, Upload
from .stats import summarize

PER_FILE_TIMEOUT = 120.0
# Before the next file, wait this long at most for the previous one's load, so the loader
# does not compete with the next measurement (on AWS the loader's batching window may
# hold a load back longer than that).
LOAD_PAUSE = 1.5


def run(ctx: Context) -> dict[str, Any]:
    suite, stack = ctx.suite, ctx.stack
    recorder = Recorder(ctx.out, "latency")
    deadline = ctx.deadline("latency")
    advance = ctx.progress("latency", len(suite.latency_rows) * (1 + suite.latency_warm))
    uploads: list[Upload] = []
    items: dict[tuple[str, str], dict[str, Any]] = {}
    complete = True
    try:
        with Changes(stack.unrestored) as changes:
            for rows in suite.latency_rows:
                if time.monotonic() >= deadline:
                    complete = False
                    break
                body = data.csv_bytes(rows, ctx.scratch)
                stack.touch(changes, "processor")
                for i in range(1 + suite.latency_warm):
                    if time.monotonic() >= deadline:
                        complete = False
                        break
                    if uploads:  # let the previous file's load finish first (bounded: loads may be batched)
                        items.update(
                            stack.wait(uploads[-1:], time.monotonic() + LOAD_PAUSE, done=loaded_or_final)
                        )
                    upload = stack.upload(
                        f"lat-{rows}-{i:02d}.csv", body, rows=rows, iteration=i, cold=i == 0
                    )
                    uploads.append(upload)
                    seen = stack.wait([upload], min(deadline, time.monotonic() + PER_FILE_TIMEOUT))
                    items.update(seen)
                    advance(1)
        # the loads of these files, for the warehouse latency (bounded)
        items.update(drain_loads(ctx, [u for u in uploads if items.get((u.key, u.version))], 30))
    finally:
        records = [
            file_record(
                u,
                items.get((u.key, u.version)),
                parquet_bytes=_parquet_bytes(ctx, items.get((u.key, u.version))),
            )
            for u in uploads
        ]
        recorder.write_all(records)
    summary = summarise(records)
    # a file that did not complete (lost, failed, or late) is a gap in what was measured
    summary["complete"] = complete and not summary["not_completed"]
    recorder.summary(summary)
    return summary


def _parquet_bytes(ctx: Context, item: dict[str, Any] | None) -> int | None:
    """The size of the file's Parquet output (for the cost model's storage line)."""
    if not item or not item.get("parquet_key"):
        return None
    try:
        head = ctx.stack.s3.head_object(Bucket=ctx.stack.outputs.processed_bucket, Key=item["parquet_key"])
    except Exception:
        return None
    return int(head["ContentLength"])


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if r.get("e2e_ms") is not None]
    warm = [r for r in done if not r.get("cold")]
    cold = [r for r in done if r.get("cold")]
    by_size: dict[str, Any] = {}
    for rows in sorted({int(r["rows"]) for r in records}):
        mine = [r for r in warm if int(r["rows"]) == rows]
        firsts = [r for r in cold if int(r["rows"]) == rows]
        by_size[str(rows)] = {
            "size_bytes": next((r["size_bytes"] for r in records if int(r["rows"]) == rows), None),
            "warm_e2e_ms": summarize(r["e2e_ms"] for r in mine),
            "cold_e2e_ms": [r["e2e_ms"] for r in firsts],
            "breakdown_ms": {
                part: summarize(r.get(f"{part}_ms", 0.0) for r in mine)["mean"]
                for part in ("upload", "queue_wait", "download", "process", "write", "other")
            },
            "warehouse_e2e_ms": summarize(r["warehouse_e2e_ms"] for r in mine if r.get("warehouse_e2e_ms")),
        }
    return {
        "files": len(records),
        "completed": len(done),
        "not_completed": [r["key"] for r in records if r.get("e2e_ms") is None],
        "warm_e2e_ms": summarize(r["e2e_ms"] for r in warm),
        "cold_e2e_ms": summarize(r["e2e_ms"] for r in cold),
        "cold_penalty_ms": _cold_penalty(by_size),
        "by_rows": by_size,
    }


def _cold_penalty(by_size: dict[str, Any]) -> float | None:
    """Mean over sizes of (cold e2e - warm median e2e)."""
    penalties = [
        cold - size["warm_e2e_ms"]["p50"]
        for size in by_size.values()
        if size["warm_e2e_ms"]["p50"] is not None
        for cold in size["cold_e2e_ms"]
    ]
    return sum(penalties) / len(penalties) if penalties else None
