"""Failure injection: poison files, processor crashes, the warehouse unavailable to the loader.

- **Poison**: binary junk. The processor records it ``failed`` and makes the message
  visible again at once; after ``maxReceiveCount`` receives SQS moves it to the processing
  DLQ. Measured: upload -> seen in the DLQ.
- **Crashes**: ``HEADRACE_CRASH_RATE`` on the processor (a message's first delivery
  crashes the whole invocation with that probability; redeliveries never crash). Crashed
  batches come back after the processing queue's visibility timeout. Measured: how long
  the crashed files took to complete against the others, and the time until every file
  completed.
- **Database outage** (full suite, or ``--db-outage``): the database secret points at a
  closed port and the loader's configuration is touched so fresh sandboxes read it (warm
  ones cache the secret for an hour). Files keep being processed; loads fail and are
  retried after the load queue's visibility timeout (6x the loader timeout: 180 s on the
  embedded runtime, which is why the quick suite skips it). After the outage the secret is
  restored and the loader touched again. Measured: restore -> every file loaded.

Every phase is verified: each good file completed exactly once (one metadata item for its
key, one Parquet object), its rows in the warehouse equal its ``row_count`` when the
database is reachable from here, each poison file in the DLQ, nothing lost.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from psycopg import sql

from . import data
from .common import Context, Recorder, drain_loads, file_record, loaded_or_final
from .stack import Changes, ExperimentStack, Upload
from .stats import summarize

UPLOAD_THREADS = 8


def run(ctx: Context) -> dict[str, Any]:
    suite = ctx.suite
    recorder = Recorder(ctx.out, "failure")
    deadline = ctx.deadline("failure")
    total = suite.poison_files + suite.crash_files + suite.db_outage_files
    advance = ctx.progress("failure injection", total)
    summary: dict[str, Any] = {"complete": True}
    phases = (
        ("poison", suite.poison_files, poison),
        ("crash", suite.crash_files, crash),
        ("db_outage", suite.db_outage_files, db_outage),
    )
    for name, count, phase in phases:
        if not count:
            summary[name] = {"skipped": "not in this suite"}
            continue
        if time.monotonic() >= deadline:
            summary["complete"] = False
            summary[name] = {"skipped": "the experiment's time limit was reached"}
            continue
        ctx.stack.quiesce(min(deadline, time.monotonic() + 60))
        records, result = phase(ctx, deadline, advance)
        recorder.write_all(records)
        summary[name] = result
        if not result.get("complete", True):
            summary["complete"] = False
    recorder.summary(summary)
    return summary


# ------------------------------------------------------------------------------ phases
def poison(ctx: Context, deadline: float, advance: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack = ctx.stack
    limit = stack.max_receive_count()
    uploads = [
        stack.upload(f"fail-poison-{i:02d}.csv", data.POISON, phase="poison", poison=True)
        for i in range(ctx.suite.poison_files)
    ]
    arrived: dict[str, float] = {}
    pending = {u.key for u in uploads}
    until = min(deadline, time.monotonic() + 120 + 10 * limit)
    while pending and time.monotonic() < until:
        for key, seen in stack.dlq_arrivals(stack.outputs.processing_dlq_url).items():
            if key in pending:
                arrived[key] = seen
                pending.discard(key)
                advance(1)
        if pending:
            time.sleep(0.5)
    items = stack.items(uploads)
    records = []
    for u in uploads:
        record = file_record(u, items.get((u.key, u.version)), in_dlq=u.key in arrived)
        if u.key in arrived:
            record["to_dlq_ms"] = (arrived[u.key] - u.start) * 1000
        records.append(record)
    result = {
        "files": len(uploads),
        "in_dlq": len(arrived),
        "max_receive_count": limit,
        "recorded_failed": sum(1 for r in records if r["status"] == "failed"),
        "to_dlq_ms": summarize(r["to_dlq_ms"] for r in records if "to_dlq_ms" in r),
        "complete": not pending,
        "checks": {
            "every_poison_file_in_dlq": not pending,
            "every_poison_file_recorded_failed": all(r["status"] == "failed" for r in records),
        },
    }
    return records, result


def crash(ctx: Context, deadline: float, advance: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack, suite = ctx.stack, ctx.suite
    visibility = int(stack.queue_attribute(stack.outputs.processing_queue_url, "VisibilityTimeout"))
    body = data.csv_bytes(100, ctx.scratch)
    with Changes(stack.unrestored) as changes:
        stack.set_environment(changes, "processor", {"HEADRACE_CRASH_RATE": str(suite.crash_rate)})
        started = time.time()
        uploads = stack.upload_many(
            [(f"fail-crash-{i:04d}.csv", body) for i in range(suite.crash_files)],
            UPLOAD_THREADS,
            label={"phase": "crash", "crash_rate": suite.crash_rate},
        )
        items = stack.wait(
            uploads,
            min(deadline, time.monotonic() + 3 * visibility + 60),
            on_done=lambda u, i: advance(1),
        )
    items.update(drain_loads(ctx, [u for u in uploads if (u.key, u.version) in items], 60))
    records = [file_record(u, items.get((u.key, u.version))) for u in uploads]
    done = [r for r in records if r.get("e2e_ms") is not None]
    redelivered = [r for r in done if (r.get("attempts") or 1) > 1]
    clean = [r for r in done if (r.get("attempts") or 1) == 1]
    last = max((r["upload_start"] + r["e2e_ms"] / 1000 for r in done), default=None)
    result = {
        "files": len(uploads),
        "crash_rate": suite.crash_rate,
        "visibility_timeout_seconds": visibility,
        "completed": len(done),
        "redelivered_files": len(redelivered),
        "clean_e2e_ms": summarize(r["e2e_ms"] for r in clean),
        "redelivered_e2e_ms": summarize(r["e2e_ms"] for r in redelivered),
        # as recovery_s: only when every file completed (None says some did not)
        "all_completed_after_s": (last - started) if last and len(done) == len(uploads) else None,
        "checks": verify(stack, uploads, items),
        "complete": len(done) == len(uploads),
    }
    return records, result


def db_outage(ctx: Context, deadline: float, advance: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack, suite = ctx.stack, ctx.suite
    visibility = int(stack.queue_attribute(stack.outputs.load_queue_url, "VisibilityTimeout"))
    body = data.csv_bytes(100, ctx.scratch)
    with Changes(stack.unrestored) as changes:
        stack.break_database(changes)
        stack.touch(changes, "loader")
        broken = time.time()
        uploads = stack.upload_many(
            [(f"fail-db-{i:04d}.csv", body) for i in range(suite.db_outage_files)],
            UPLOAD_THREADS,
            label={"phase": "db_outage"},
        )
        # processing goes on during the outage; loads fail and wait for their retry
        until = min(deadline, time.monotonic() + max(suite.db_outage_seconds, 60))
        processed = stack.wait(uploads, until)
        failed_loads = stack.wait(
            uploads,
            min(deadline, max(until, time.monotonic() + 5)),
            done=lambda i: i.get("status") == "failed" or bool(i.get("load_error") or i.get("load_status")),
        )
        remaining = suite.db_outage_seconds - (time.time() - broken)
        if remaining > 0:
            time.sleep(remaining)
    # the undo restored the secret; touch the loader again so new sandboxes read it
    with Changes(stack.unrestored) as changes:
        stack.touch(changes, "loader")
        restored = time.time()
        items = stack.wait(
            uploads,
            min(deadline, time.monotonic() + visibility + 120),
            done=loaded_or_final,
            on_done=lambda u, i: advance(1),
        )
    records = [
        file_record(u, items.get((u.key, u.version)) or processed.get((u.key, u.version))) for u in uploads
    ]
    loaded = [r for r in records if r.get("load_status") == "loaded"]
    loaded_at = [
        r["upload_start"] + r["warehouse_e2e_ms"] / 1000 for r in loaded if r.get("warehouse_e2e_ms")
    ]
    result = {
        "files": len(uploads),
        "outage_seconds": restored - broken,
        "load_visibility_timeout_seconds": visibility,
        "processed_during_outage": sum(1 for i in processed.values() if i.get("status") == "completed"),
        "processing_e2e_ms": summarize(r["e2e_ms"] for r in records if r.get("e2e_ms") is not None),
        "loads_failed_during_outage": sum(1 for i in failed_loads.values() if i.get("load_error")),
        "loaded": len(loaded),
        "recovery_s": (max(loaded_at) - restored) if loaded_at and len(loaded) == len(uploads) else None,
        "checks": verify(stack, uploads, items),
        "complete": len(loaded) == len(uploads),
    }
    return records, result


# ------------------------------------------------------------------------------ checks
def verify(
    stack: ExperimentStack, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, Any]:
    """Every good file completed exactly once, and nothing lost."""
    missing = [u.key for u in uploads if items.get((u.key, u.version), {}).get("status") != "completed"]
    versions = {}
    for u in uploads:
        response = stack.ddb.query(
            TableName=stack.outputs.metadata_table,
            KeyConditionExpression="object_key = :k",
            ExpressionAttributeValues={":k": {"S": u.key}},
            Select="COUNT",
        )
        versions[u.key] = int(response["Count"])
    parquet = _parquet_counts(stack, uploads, items)
    checks: dict[str, Any] = {
        "all_completed": not missing,
        "not_completed": missing,
        "one_metadata_item_per_key": all(n == 1 for n in versions.values()),
        "one_parquet_per_key": all(parquet.get(u.key, 0) == 1 for u in uploads),
        "parquet_counts_off": {k: n for k, n in parquet.items() if n != 1},
        "rows_match_warehouse": None,
    }
    db = stack.database()
    if db is not None:
        with contextlib.closing(db):
            checks.update(_warehouse_counts(stack, db, uploads, items))
    return checks


def _parquet_counts(
    stack: ExperimentStack, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, int]:
    """Parquet objects in the processed bucket per raw key (by the key's file stem)."""
    stems = {u.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]: u.key for u in uploads}
    prefixes = {
        item["parquet_key"].rsplit("/", 1)[0] + "/" for item in items.values() if item.get("parquet_key")
    }
    counts = dict.fromkeys(stems.values(), 0)
    paginator = stack.s3.get_paginator("list_objects_v2")
    for prefix in prefixes:
        for page in paginator.paginate(
            Bucket=stack.outputs.processed_bucket, Prefix=f"{prefix}{stack.run_id}-"
        ):
            for obj in page.get("Contents", []):
                stem = obj["Key"].rsplit("/", 1)[-1].split("--", 1)[0]
                if stem in stems:
                    counts[stems[stem]] += 1
    return counts


def _warehouse_counts(
    stack: ExperimentStack, db: Any, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, Any]:
    schema = stack.warehouse_schema()
    datasets = {item.get("dataset") for item in items.values() if item.get("dataset")}
    counts: dict[str, int] = {}
    for dataset in datasets:
        try:
            rows = db.execute(
                sql.SQL("SELECT object_key, count(*) FROM {} WHERE object_key = ANY(%s) GROUP BY 1").format(
                    sql.Identifier(schema, str(dataset))
                ),
                [[u.key for u in uploads]],
            ).fetchall()
        except Exception as exc:
            return {"rows_match_warehouse": None, "warehouse_error": f"{type(exc).__name__}: {exc}"}
        counts.update({k: int(n) for k, n in rows})
    off = {
        u.key: {"rows": counts.get(u.key, 0), "row_count": int(item.get("row_count", -1))}
        for u in uploads
        if (item := items.get((u.key, u.version), {})).get("status") == "completed"
        and counts.get(u.key, 0) != int(item.get("row_count", -1))
    }
    return {"rows_match_warehouse": not off, "warehouse_rows_off": off}
