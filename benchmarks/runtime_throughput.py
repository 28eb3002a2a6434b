"""Embedded-runtime throughput (issue 4): many small files uploaded at once.

    .venv/bin/python benchmarks/runtime_throughput.py [--files 500] [--upload-threads 16]
    .venv/bin/python benchmarks/runtime_throughput.py --outputs stack.json   # any stack

Starts the embedded runtime (free ports) unless ``--outputs`` is given, then in one run:

1. baseline: ``--sequential`` files, each uploaded only after the previous one completed
   (one file in the pipeline at a time: the latency floor, the throughput of no overlap);
2. burst: ``--files`` small CSV files uploaded concurrently; reports files per minute
   (first upload to last completion) and upload-to-completed latency p50/p95/p99 (client
   clock at upload start to the handler's ``completed_at``).

Targets: >= 1,000 files/min and p95 <= 2 s for 500 files (comparable projects publish
~50 files/min on LocalStack). Record the figures in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.dal.queues import message_counts  # noqa: E402
from headrace.experiments.stats import percentile  # noqa: E402  (as the experiment reports)
from headrace.outputs import StackOutputs  # noqa: E402

CSV = "date,product,quantity,price\n" + "".join(f"2025-01-{d:02d},Widget,{d},{d}.99\n" for d in range(1, 21))


class Bench:
    def __init__(self, outputs: StackOutputs):
        self.outputs = outputs
        self.s3 = outputs.client("s3", max_pool_connections=64)
        self.ddb = outputs.client("dynamodb", max_pool_connections=64)
        self.sqs = outputs.client("sqs")
        self.run = uuid.uuid4().hex[:8]

    def upload(self, name: str) -> tuple[str, str, float]:
        key = f"{self.outputs.raw_prefix}bench/{self.run}-{name}.csv"
        started = time.time()
        response = self.s3.put_object(Bucket=self.outputs.raw_bucket, Key=key, Body=CSV.encode())
        return key, response["VersionId"], started

    def finished(self) -> dict[tuple[str, str], float]:
        """Completion time of every finished file of this run: one query of the metadata
        table's by_day index per poll (polling each item would load the stack more than
        the files do)."""
        done: dict[tuple[str, str], float] = {}
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.outputs.metadata_table,
            IndexName="by_day",
            KeyConditionExpression="#d = :d",
            FilterExpression="begins_with(object_key, :p) AND #s IN (:c, :f)",
            ExpressionAttributeNames={"#d": "day", "#s": "status"},
            ExpressionAttributeValues={
                ":d": {"S": datetime.now(UTC).strftime("%Y-%m-%d")},
                ":p": {"S": f"{self.outputs.raw_prefix}bench/{self.run}-"},
                ":c": {"S": "completed"},
                ":f": {"S": "failed"},
            },
            ProjectionExpression="object_key, version, #s, completed_at",
        )
        for page in pages:
            for item in page["Items"]:
                if item["status"]["S"] == "failed":
                    raise RuntimeError(f"{item['object_key']['S']} failed")
                finished = datetime.fromisoformat(
                    item["completed_at"]["S"].replace("Z", "+00:00")
                ).timestamp()
                done[(item["object_key"]["S"], item["version"]["S"])] = finished
        return done

    def wait(self, uploads: list[tuple[str, str, float]], timeout: float) -> dict[str, float]:
        wanted = {(key, version) for key, version, _ in uploads}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Latencies come from completed_at, not from when a poll sees it. A query of
            # hundreds of items loads the emulator (a 3-second poll took about a tenth of
            # its time), so a burst is watched through the processing queue's two counts
            # and the table is queried once the queue looks drained.
            if len(wanted) > 1 and any(message_counts(self.outputs.processing_queue_url, self.sqs)):
                time.sleep(1.0)
                continue
            done = self.finished()
            if wanted <= done.keys():
                return {key: done[key, version] for key, version in wanted}
            time.sleep(0.25 if len(wanted) == 1 else 1.0)
        raise RuntimeError(f"{len(wanted - done.keys())} files did not complete within {timeout:.0f} s")

    def cleanup(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(
                Bucket=self.outputs.raw_bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )


def run(outputs: StackOutputs, files: int, threads: int, sequential: int) -> dict[str, Any]:
    bench = Bench(outputs)
    keys: list[str] = []
    try:
        # warm up: one file, so sandboxes exist (cold starts are experiments' business)
        first = bench.upload("warmup")
        keys.append(first[0])
        bench.wait([first], 60)

        latencies = []
        clock = time.monotonic()
        for i in range(sequential):
            upload = bench.upload(f"seq-{i}")
            keys.append(upload[0])
            finished = bench.wait([upload], 60)[upload[0]]
            latencies.append(finished - upload[2])
        sequential_seconds = time.monotonic() - clock

        with ThreadPoolExecutor(threads) as pool:
            uploads = list(pool.map(bench.upload, [f"burst-{i:05d}" for i in range(files)]))
        keys.extend(u[0] for u in uploads)
        done = bench.wait(uploads, 600)
        first_upload = min(u[2] for u in uploads)
        last_done = max(done.values())
        burst = [done[key] - started for key, _, started in uploads]
        return {
            "sequential": {
                "files": sequential,
                "files_per_minute": sequential / sequential_seconds * 60,
                "p50": statistics.median(latencies),
            },
            "burst": {
                "files": files,
                "seconds": last_done - first_upload,
                "files_per_minute": files / (last_done - first_upload) * 60,
                "p50": percentile(burst, 0.50),
                "p95": percentile(burst, 0.95),
                "p99": percentile(burst, 0.99),
                "max": max(burst),
            },
        }
    finally:
        bench.cleanup(keys)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--upload-threads", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=20, help="files in the one-at-a-time baseline")
    parser.add_argument(
        "--outputs", type=Path, help="a stack's outputs file (default: start the embedded runtime)"
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    if args.outputs:
        result = run(StackOutputs.load(args.outputs), args.files, args.upload_threads, args.sequential)
    else:
        from headrace.local.emulator import free_port
        from headrace.local.runtime import LocalRuntime

        with LocalRuntime(ROOT, port=free_port(), api_port=free_port()) as runtime:
            concurrency = {
                m.function: m.max_concurrency
                for m in (runtime.executor.deployment.mappings if runtime.executor else [])
            }
            print(f"embedded runtime; maximum concurrency of the SQS mappings: {concurrency}")
            result = run(
                StackOutputs.model_validate(runtime.outputs), args.files, args.upload_threads, args.sequential
            )
    seq, burst = result["sequential"], result["burst"]
    print(
        f"\nbaseline, one file at a time ({seq['files']} files): {seq['files_per_minute']:.0f} files/min, "
        f"latency p50 {seq['p50']:.2f} s"
    )
    print(
        f"burst, {burst['files']} files uploaded with {args.upload_threads} threads: all completed in "
        f"{burst['seconds']:.1f} s = {burst['files_per_minute']:.0f} files/min "
        f"({burst['files_per_minute'] / seq['files_per_minute']:.1f}x the baseline)"
    )
    print(
        f"upload-to-completed latency: p50 {burst['p50']:.2f} s, p95 {burst['p95']:.2f} s, "
        f"p99 {burst['p99']:.2f} s, max {burst['max']:.2f} s"
    )
    met = burst["files_per_minute"] >= 1000 and burst["p95"] <= 2.0
    print(f"targets (>= 1,000 files/min, p95 <= 2 s): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
