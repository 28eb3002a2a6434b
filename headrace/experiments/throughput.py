"""Parallel uploads and throughput: bursts of N files uploaded by C client threads.

Throughput is files completed per minute, from the first upload's start to the last
``completed_at``; a burst whose files did not all complete in time (lost, or late: the
time limit) has none and makes the experiment ``incomplete``. The processing and load
queues' depths (``ApproximateNumberOfMessages`` waiting, ``...NotVisible`` in flight) are
sampled every second during each burst. Before each burst the queues must be empty
(bounded wait), so bursts do not overlap.
"""

from __future__ import annotations

import time
from typing import Any

from . import data
from .common import Advance, Context, Recorder, file_record
from .stack import sampling
from .stats import per_minute, summarize


def burst(
    ctx: Context,
    label: str,
    files: int,
    concurrency: int,
    rows: int,
    deadline: float,
    advance: Advance,
    **tags: Any,
) -> list[dict[str, Any]]:
    """Upload ``files`` files at once and follow them; the records (files, the run, the
    queue depth samples)."""
    stack = ctx.stack
    body = data.csv_bytes(rows, ctx.scratch)
    stack.quiesce(min(deadline, time.monotonic() + 60))
    names = [(f"{label}-{i:04d}.csv", body) for i in range(files)]
    run_tags = {"run": label, "files": files, "concurrency": concurrency, "rows": rows, **tags}
    with sampling(stack, interval=1.0) as sampler:
        started = time.time()
        uploads = stack.upload_many(names, concurrency, label=run_tags)
        uploaded = time.time()
        items = stack.wait(
            uploads,
            min(deadline, time.monotonic() + max(60.0, files * 3.0)),
            on_done=lambda u, i: advance(1),
            interval=1.0,
        )
    records = [file_record(u, items.get((u.key, u.version))) for u in uploads]
    completed = [r for r in records if r.get("e2e_ms") is not None]
    run: dict[str, Any] = {
        "type": "run",
        **run_tags,
        "started": started,
        "uploads_done": uploaded,
        "upload_seconds": uploaded - started,
        "completed": len(completed),
        "lost_or_late": len(records) - len(completed),
        "e2e_ms": summarize(r["e2e_ms"] for r in completed),
    }
    if completed:
        last = max(r["upload_start"] + r["e2e_ms"] / 1000 for r in completed)
        run["last_completed"] = last
        if len(completed) == len(records):  # a burst cut short by the time limit has no rate
            run["files_per_minute"] = per_minute(len(completed), started, last)
    peaks = [s["visible"] + s["in_flight"] for s in sampler.samples if s["queue"] == "processing"]
    run["peak_processing_depth"] = max(peaks, default=0)
    depth = [{"type": "depth", "run": label, **s, "t_rel": s["t"] - started} for s in sampler.samples]
    return [*records, run, *depth]


def run(ctx: Context) -> dict[str, Any]:
    suite = ctx.suite
    recorder = Recorder(ctx.out, "throughput")
    deadline = ctx.deadline("throughput")
    advance = ctx.progress("throughput", sum(n for n, _ in suite.throughput))
    runs: list[dict[str, Any]] = []
    complete = True
    for files, concurrency in suite.throughput:
        if time.monotonic() >= deadline:
            complete = False
            break
        records = burst(
            ctx, f"tp-n{files}-c{concurrency}", files, concurrency, suite.throughput_rows, deadline, advance
        )
        recorder.write_all(records)
        runs += [r for r in records if r["type"] == "run"]
    summary = {
        "complete": complete and not any(r["lost_or_late"] for r in runs),
        "runs": [
            {
                k: r.get(k)
                for k in (
                    "run",
                    "files",
                    "concurrency",
                    "completed",
                    "lost_or_late",
                    "files_per_minute",
                    "upload_seconds",
                    "peak_processing_depth",
                    "e2e_ms",
                )
            }
            for r in runs
        ],
        "best_files_per_minute": max(
            (r["files_per_minute"] for r in runs if r.get("files_per_minute")), default=None
        ),
    }
    recorder.summary(summary)
    return summary
