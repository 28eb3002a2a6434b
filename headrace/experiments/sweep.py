"""Configuration sweep: the processor's event source mapping (batch size, batching
window, maximum concurrency) against throughput and latency.

Each point changes the mapping with ``UpdateEventSourceMapping`` (on AWS it takes effect
once the mapping is ``Enabled`` again; the embedded runtime's executor follows within
~2 s), then sends a burst of files with 8 upload threads. The original mapping is
restored at the end, however the sweep ends.
"""

from __future__ import annotations

import time
from typing import Any

from .common import Context, Recorder
from .stack import Changes
from .throughput import burst

UPLOAD_THREADS = 8


def run(ctx: Context) -> dict[str, Any]:
    suite, stack = ctx.suite, ctx.stack
    recorder = Recorder(ctx.out, "sweep")
    deadline = ctx.deadline("sweep")
    advance = ctx.progress("config sweep", len(suite.sweep) * suite.sweep_files)
    points: list[dict[str, Any]] = []
    complete = True
    mapping = stack.mapping("processor", stack.outputs.processing_queue_url)
    with Changes(stack.unrestored) as changes:
        for point in suite.sweep:
            if time.monotonic() >= deadline:
                complete = False
                break
            stack.update_mapping(
                changes, mapping, point.batch_size, point.window_seconds, point.max_concurrency
            )
            records = burst(
                ctx,
                f"sw-b{point.batch_size}-w{point.window_seconds}-c{point.max_concurrency}",
                suite.sweep_files,
                UPLOAD_THREADS,
                suite.sweep_rows,
                deadline,
                advance,
                batch_size=point.batch_size,
                window_seconds=point.window_seconds,
                max_concurrency=point.max_concurrency,
                point=point.label,
            )
            recorder.write_all(records)
            points += [r for r in records if r["type"] == "run"]
    summary = {
        "complete": complete and not any(p["lost_or_late"] for p in points),
        "original": {
            "batch_size": mapping.get("BatchSize"),
            "window_seconds": mapping.get("MaximumBatchingWindowInSeconds", 0),
            "max_concurrency": (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"),
        },
        "points": [
            {
                "point": p["point"],
                "batch_size": p["batch_size"],
                "window_seconds": p["window_seconds"],
                "max_concurrency": p["max_concurrency"],
                "files": p["files"],
                "completed": p["completed"],
                "lost_or_late": p["lost_or_late"],
                "files_per_minute": p.get("files_per_minute"),
                "e2e_ms": p["e2e_ms"],
            }
            for p in points
        ],
    }
    recorder.summary(summary)
    return summary
