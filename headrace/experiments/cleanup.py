"""Remove everything a run left in the stack: the raw object versions it uploaded, their
processed outputs, their metadata items, their warehouse rows (when the database is
reachable from here), and their messages in the dead-letter queues.

First it waits (bounded) until the files' journeys are over — processed, and loaded or
failed — so that no late write recreates an output after it was removed. Idempotency
records (keyed by a hash of the object version) are left to expire with their TTL.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from psycopg import sql

from .common import loaded_or_final
from .stack import ExperimentStack, Upload, message_key

log = logging.getLogger("headrace.experiments")
# The longest the clean-up waits for messages still in flight (a stack on AWS has a
# visibility timeout of half an hour: its stray items then expire with their TTL).
MAX_QUIESCE_SECONDS = 300


def cleanup(stack: ExperimentStack, drain_seconds: float = 60.0) -> dict[str, Any]:
    uploads = list(stack.uploads)
    try:
        uploads += _unrecorded(stack)
    except Exception as exc:  # keep going with the recorded ones
        log.error("could not look for unrecorded uploads: %s: %s", type(exc).__name__, exc)
    result: dict[str, Any] = {"uploads": len(uploads)}
    if not uploads:
        return result
    items: dict[tuple[str, str], dict[str, Any]] = {}
    with contextlib.suppress(Exception):
        items = stack.wait(uploads, time.monotonic() + drain_seconds, done=loaded_or_final, interval=1.0)
    result["unsettled"] = sum(1 for u in uploads if not loaded_or_final(items.get((u.key, u.version), {})))
    if result["unsettled"]:
        # A batch that crashed is invisible for the queue's visibility timeout; deleted now,
        # its files' metadata would come back with the redelivery, after the clean-up.
        with contextlib.suppress(Exception):
            visibility = int(stack.queue_attribute(stack.outputs.processing_queue_url, "VisibilityTimeout"))
            wait = min(MAX_QUIESCE_SECONDS, visibility + 30)
            result["queues_drained"] = stack.quiesce(time.monotonic() + wait)
    steps = (
        ("raw_versions", lambda: _raw(stack, uploads)),
        ("processed_objects", lambda: _processed(stack, uploads, items)),
        ("warehouse_rows", lambda: _warehouse(stack, uploads, items)),
        ("metadata_items", lambda: _metadata(stack, uploads)),
        ("dlq_messages", lambda: _dead_letters(stack, {u.key for u in uploads})),
    )
    for name, step in steps:
        try:
            result[name] = step()
        except Exception as exc:  # keep going: remove as much as possible
            log.error("cleanup of %s failed: %s: %s", name, type(exc).__name__, exc)
            result[name] = f"failed: {type(exc).__name__}: {exc}"
    return result


def _unrecorded(stack: ExperimentStack) -> list[Upload]:
    """The objects of uploads that were interrupted (Ctrl-C, SIGTERM) after S3 stored them
    but before the run recorded them: they are processed like any other file."""
    recorded = {u.key for u in stack.uploads}
    found: list[Upload] = []
    for key in dict.fromkeys(k for k in stack.attempted if k not in recorded):
        response = stack.s3.list_object_versions(Bucket=stack.outputs.raw_bucket, Prefix=key)
        for v in response.get("Versions", []):
            if v["Key"] != key:
                continue
            version_id = v.get("VersionId") if v.get("VersionId") not in (None, "null") else None
            version = version_id or str(v["ETag"]).strip('"')
            found.append(Upload(key, version, int(v.get("Size", 0)), 0.0, 0.0, {}, version_id))
    return found


def _raw(stack: ExperimentStack, uploads: list[Upload]) -> int:
    objects = [{"Key": u.key, **({"VersionId": u.version_id} if u.version_id else {})} for u in uploads]
    removed = 0
    for start in range(0, len(objects), 1000):
        response = stack.s3.delete_objects(
            Bucket=stack.outputs.raw_bucket, Delete={"Objects": objects[start : start + 1000], "Quiet": True}
        )
        removed += len(objects[start : start + 1000]) - len(response.get("Errors", []))
    return removed


def _processed(
    stack: ExperimentStack, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> int:
    """Every version (and delete marker) of the run's outputs: the processed bucket is
    versioned, so deleting by key alone would only hide them behind delete markers. The
    run's outputs are named after its raw keys, so they share the prefix ``<dir>/<run id>-``
    (those no item points to any more included)."""
    keys = {k for item in items.values() for k in (item.get("parquet_key"), item.get("summary_key")) if k}
    prefixes = {k.rsplit("/", 1)[0] + "/" for k in keys}
    versions: list[dict[str, str]] = []
    paginator = stack.s3.get_paginator("list_object_versions")
    for prefix in prefixes:
        for page in paginator.paginate(
            Bucket=stack.outputs.processed_bucket, Prefix=f"{prefix}{stack.run_id}-"
        ):
            versions += [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
            ]
    failed: set[str] = set()
    for start in range(0, len(versions), 1000):
        response = stack.s3.delete_objects(
            Bucket=stack.outputs.processed_bucket,
            Delete={"Objects": versions[start : start + 1000], "Quiet": True},
        )
        failed |= {e["Key"] for e in response.get("Errors", [])}
    if failed:
        log.error(
            "%d processed outputs of this run could not be deleted: %s", len(failed), sorted(failed)[:5]
        )
    return len({v["Key"] for v in versions} - failed)


def _warehouse(
    stack: ExperimentStack, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> int | str:
    db = stack.database()
    if db is None:
        return "not reachable from here (rows of the experiments dataset stay in the warehouse)"
    schema = stack.warehouse_schema()
    keys = [u.key for u in uploads]
    removed = 0
    with contextlib.closing(db):
        for dataset in sorted({str(i["dataset"]) for i in items.values() if i.get("dataset")}):
            with contextlib.suppress(Exception):
                removed += db.execute(
                    sql.SQL("DELETE FROM {} WHERE object_key = ANY(%s)").format(
                        sql.Identifier(schema, dataset)
                    ),
                    [keys],
                ).rowcount
        with contextlib.suppress(Exception):
            db.execute(
                sql.SQL("DELETE FROM {} WHERE object_key = ANY(%s)").format(sql.Identifier(schema, "_files")),
                [keys],
            )
    return removed


def _metadata(stack: ExperimentStack, uploads: list[Upload]) -> int:
    """Delete the items by (key, version): the run's keys carry its run id, so no other
    version of them exists."""
    keys = [{"object_key": {"S": u.key}, "version": {"S": u.version}} for u in uploads]
    table = stack.outputs.metadata_table
    removed = 0
    for start in range(0, len(keys), 25):
        batch = keys[start : start + 25]
        request: dict[str, Any] = {table: [{"DeleteRequest": {"Key": k}} for k in batch]}
        for _ in range(10):
            request = stack.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not request:
                break
            time.sleep(0.2)
        left = len(request.get(table, []))  # still unprocessed after the retries: not removed
        if left:
            log.error("%d metadata items of this run could not be deleted (throttled)", left)
        removed += len(batch) - left
    return removed


def _dead_letters(stack: ExperimentStack, keys: set[str]) -> int:
    """Delete this run's messages from the DLQs; others are made visible again at once."""
    removed = 0
    for url in (stack.outputs.processing_dlq_url, stack.outputs.load_dlq_url):
        others: list[str] = []
        for _ in range(50):  # bounded: 500 messages per DLQ at most
            messages = stack.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                break
            for m in messages:
                if message_key(m["Body"]) in keys:
                    stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    removed += 1
                else:
                    others.append(m["ReceiptHandle"])
        for handle in others:
            with contextlib.suppress(Exception):
                stack.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return removed
