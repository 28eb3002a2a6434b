"""File-size scaling: processing time and memory against file size, with a fitted slope.

One file per size, smallest first, each in a fresh sandbox (the processor's configuration
is touched before it), so the peak RSS the processor records (``max_rss_mb``: the
process's high-water mark, interpreter and libraries included) is that file's. Processing
time is the handler's own (download, process, write); the fit is processing seconds
against MB (10^6 bytes).

Large files need more than the embedded stack's 10-second processor timeout: before each
size the time is predicted from the points so far (three times the prediction); when the
function's timeout is shorter it is raised to Lambda's maximum (900 s), together with the
queue's visibility timeout (6x, as the program sets it), and likewise the loader's timeout
and the load queue's for the file's rows — all restored afterwards. Sizes above
``--max-size-mb`` are skipped (default: none on the embedded runtime, 100 MB elsewhere:
upload time and cost).
"""

from __future__ import annotations

import time
from typing import Any

from . import data
from .common import Context, Recorder, drain_loads, file_record
from .stack import Changes, Upload
from .stats import linear_fit

MAX_TIMEOUT = 900  # Lambda's ceiling
LOAD_ROWS_PER_SECOND = 100_000  # conservative (BENCHMARKS.md measures 200,000-300,000)


def run(ctx: Context) -> dict[str, Any]:
    suite, stack = ctx.suite, ctx.stack
    recorder = Recorder(ctx.out, "filesize")
    deadline = ctx.deadline("filesize")
    sizes = sorted(suite.filesize_mb)
    advance = ctx.progress("file size", len(sizes))
    uploads: list[Upload] = []
    items: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[dict[str, Any]] = []
    complete = True
    try:
        with Changes(stack.unrestored) as changes:
            for mb in sizes:
                if mb > ctx.max_size_mb:
                    skipped.append({"mb": mb, "reason": f"above --max-size-mb {ctx.max_size_mb:g}"})
                    advance(1)
                    continue
                if time.monotonic() >= deadline:
                    complete = False
                    break
                path = ctx.scratch / f"size-{mb:g}mb.csv"
                rows, size = data.write_csv_of_size(path, int(mb * 1_000_000), ctx.scratch)
                try:
                    need = _predicted_seconds(mb, uploads, items)
                    _make_room(ctx, changes, need, rows)
                    stack.touch(changes, "processor")
                    upload = stack.upload(path.name, path, rows=rows, mb=size / 1e6)
                finally:
                    path.unlink(missing_ok=True)
                uploads.append(upload)
                items.update(stack.wait([upload], min(deadline, time.monotonic() + max(120.0, need * 3))))
                advance(1)
            # the loads too (time into the warehouse), bounded by their size
            rows = sum(int(u.label.get("rows", 0)) for u in uploads)
            loads = [u for u in uploads if items.get((u.key, u.version))]
            items.update(drain_loads(ctx, loads, min(deadline - time.monotonic(), 60 + rows / 50_000)))
    finally:
        records = [file_record(u, items.get((u.key, u.version))) for u in uploads]
        records += [{"type": "skipped", **s} for s in skipped]
        recorder.write_all(records)
    summary = summarise(records)
    # a file that did not complete (lost, failed, or late) is a gap in what was measured
    summary["complete"] = complete and not summary["not_completed"]
    recorder.summary(summary)
    return summary


def _processing_seconds(record: dict[str, Any]) -> float:
    return sum(record.get(f"{k}_ms") or 0.0 for k in ("download", "process", "write")) / 1000


def _predicted_seconds(
    mb: float, uploads: list[Upload], items: dict[tuple[str, str], dict[str, Any]]
) -> float:
    points = [file_record(u, items.get((u.key, u.version))) for u in uploads]
    points = [p for p in points if p.get("handler_total_ms") is not None]
    if len({p["mb"] for p in points}) >= 2:
        fit = linear_fit([p["mb"] for p in points], [_processing_seconds(p) for p in points])
        predicted = fit.predict(mb)
    else:
        predicted = 1.0 + 0.05 * mb  # before two points (about 0.03 s/MB measured on 2 cores)
    return 3 * predicted


def _make_room(ctx: Context, changes: Changes, seconds: float, rows: int) -> None:
    """Raise the timeouts to Lambda's maximum when the next file may not fit them (the
    prediction is rough: the emulator's download speed, for one, falls with size)."""
    stack = ctx.stack
    processor = int(stack.function_configuration("processor")["Timeout"])
    if processor < seconds:
        stack.set_timeout(changes, "processor", MAX_TIMEOUT)
        stack.set_visibility_timeout(changes, stack.outputs.processing_queue_url, 6 * MAX_TIMEOUT)
        ctx.notes.append(
            f"processor timeout raised from {processor} s to {MAX_TIMEOUT} s for the large files"
        )
    load_seconds = 3 * (2 + rows / LOAD_ROWS_PER_SECOND)
    loader = int(stack.function_configuration("loader")["Timeout"])
    if loader < load_seconds:
        stack.set_timeout(changes, "loader", MAX_TIMEOUT)
        stack.set_visibility_timeout(changes, stack.outputs.load_queue_url, 6 * MAX_TIMEOUT)
        ctx.notes.append(f"loader timeout raised from {loader} s to {MAX_TIMEOUT} s for the large files")


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if r.get("type") == "file" and r.get("handler_total_ms") is not None]
    points = [
        {
            "mb": r["mb"],
            "rows": r["rows"],
            "processing_s": _processing_seconds(r),
            "process_s": (r.get("process_ms") or 0) / 1000,
            "download_s": (r.get("download_ms") or 0) / 1000,
            "write_s": (r.get("write_ms") or 0) / 1000,
            "max_rss_mb": r.get("max_rss_mb"),
            "load_s": r["load_ms"] / 1000 if r.get("load_ms") is not None else None,
        }
        for r in sorted(done, key=lambda r: r["mb"])
    ]
    summary: dict[str, Any] = {
        "points": points,
        "skipped": [r for r in records if r.get("type") == "skipped"],
        "not_completed": [
            r["key"] for r in records if r.get("type") == "file" and r.get("handler_total_ms") is None
        ],
    }
    if len({p["mb"] for p in points}) >= 2:
        summary["fit_processing_s_per_mb"] = linear_fit(
            [p["mb"] for p in points], [p["processing_s"] for p in points]
        ).as_dict()
        memory = [p for p in points if p["max_rss_mb"] is not None]
        if len({p["mb"] for p in memory}) >= 2:
            summary["fit_memory_mb_per_mb"] = linear_fit(
                [p["mb"] for p in memory], [float(p["max_rss_mb"]) for p in memory]
            ).as_dict()
    return summary
