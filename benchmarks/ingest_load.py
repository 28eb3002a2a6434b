"""Ingest API load (issue 6): requests/s and latency, and not one record lost.

    .venv/bin/python benchmarks/ingest_load.py [--requests 3000] [--concurrency 8] [--max-seconds 60]
    .venv/bin/python benchmarks/ingest_load.py --outputs stack.json   # any stack

Starts the embedded runtime (loopback, free ports) unless ``--outputs`` is given, issues a
tenant key with `headrace tenants add`, then in one run:

1. baseline: the same load against a loopback HTTP server that answers 202 at once — the
   floor this client and HTTP on this machine impose;
2. ingest: ``--requests`` ``POST /ingest`` requests (one JSON record each, unique log ids)
   from ``--concurrency`` keep-alive connections, stopped after ``--max-seconds``;
3. every record answered 202 is then looked up in the tenant's log table: each must be
   there, and no other record of the run (the table's key is tenant + log id, so a record
   cannot be there twice; missing and unexpected records are counted).

Targets: >= 500 requests/s and p99 <= 50 ms on a 2-core machine, 0 records lost.
Record the figures in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import platform
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.dal.queues import message_counts  # noqa: E402
from headrace.experiments.stats import percentile  # noqa: E402  (as the experiment reports)
from headrace.outputs import StackOutputs  # noqa: E402


def load(
    url: str, headers: dict[str, str], bodies: list[bytes], concurrency: int, max_seconds: float
) -> dict[str, Any]:
    """Send every body as ``POST url`` over ``concurrency`` keep-alive connections."""
    parts = urlsplit(url)
    deadline = time.monotonic() + max_seconds
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted: list[int] = []

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                started = time.perf_counter()
                connection.request("POST", parts.path, body=bodies[index], headers=headers)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 202:
                        accepted.append(index)
        finally:
            connection.close()

    clock = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - clock
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "statuses": statuses,
        "accepted": accepted,
    }


@contextlib.contextmanager
def immediate_server() -> Any:
    """The baseline: a loopback HTTP/1.1 server that reads the body and answers 202."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as the runtime's API server: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b'{"status": "enqueued"}'
            self.send_response(202)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ingest"
    finally:
        server.shutdown()
        server.server_close()


def issue_key(outputs_path: Path, tenant: str) -> str:
    from headrace.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if main(["tenants", "add", tenant, "--outputs", str(outputs_path)]) != 0:
            raise SystemExit("could not issue an API key")
    return out.getvalue().strip().splitlines()[-1]


def stored(outputs: StackOutputs, tenant: str, wanted: set[str], timeout: float) -> set[str]:
    """The log ids stored for the tenant, once all ``wanted`` are (or at
    ``timeout``). Reads the table once the ingest queue is drained: a query of thousands
    of records is not cheap on an emulator."""
    table = outputs.client("dynamodb")
    deadline = time.monotonic() + timeout
    sqs = outputs.client("sqs")
    while time.monotonic() < deadline and any(message_counts(outputs.get("ingest_queue_url"), sqs)):
        time.sleep(1)
    while True:
        found: set[str] = set()
        pages = table.get_paginator("query").paginate(
            TableName=outputs.get("tenant_logs_table"),
            KeyConditionExpression="tenant_id = :t",
            ExpressionAttributeValues={":t": {"S": tenant}},
            ProjectionExpression="log_id",
        )
        for page in pages:
            for item in page["Items"]:
                found.add(item["log_id"]["S"])
        if wanted <= found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def run(
    outputs: StackOutputs, outputs_path: Path, requests: int, concurrency: int, max_seconds: float
) -> int:
    tenant = f"load{uuid.uuid4().hex[:8]}"
    key = issue_key(outputs_path, tenant)
    headers = {"content-type": "application/json", "x-api-key": key}
    log_ids = [f"load-{i:06d}" for i in range(requests)]
    bodies = [
        json.dumps(
            {
                "tenant_id": tenant,
                "log_id": log_id,
                "text": f"GET /api/items/{i} 200 user{i % 97}@example.com",
            }
        ).encode()
        for i, log_id in enumerate(log_ids)
    ]
    url = outputs.ingest_api_url.rstrip("/") + "/ingest"

    # warm up: sandboxes started, the key cached in each (not measured)
    load(
        url,
        headers,
        [json.dumps({"tenant_id": tenant, "text": "warm"}).encode()] * concurrency * 4,
        concurrency,
        60,
    )
    with immediate_server() as baseline_url:
        baseline = load(baseline_url, headers, bodies, concurrency, max_seconds)
    ingest = load(url, headers, bodies, concurrency, max_seconds)

    accepted = {log_ids[i] for i in ingest["accepted"]}
    found = stored(outputs, tenant, accepted, timeout=120)
    lost = len(accepted - found)
    unexpected = len({log_id for log_id in found if log_id.startswith("load-")} - accepted)

    print(f"\n{'':<34} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, result in (
        ("baseline: loopback server, 202", baseline),
        ("ingest API (embedded runtime)", ingest),
    ):
        print(
            f"{name:<34} {result['requests']:>8} {result['rps']:>8.0f} {result['p50_ms']:>8.1f} "
            f"{result['p99_ms']:>8.1f} {result['max_ms']:>8.1f}"
        )
    print(f"\ningest answers: {dict(sorted(ingest['statuses'].items()))}")
    print(
        f"records: {len(accepted)} accepted (202), {len(accepted) - lost} stored, {lost} lost, "
        f"{unexpected} stored without a 202"
    )
    if lost:
        dead, _ = message_counts(outputs.get("ingest_dlq_url"), outputs.client("sqs"))
        print(f"the ingest DLQ holds {dead} message(s): `headrace dlq inspect --queue ingest`")
    met = ingest["rps"] >= 500 and ingest["p99_ms"] <= 50 and lost == 0
    print(f"targets (>= 500 requests/s, p99 <= 50 ms, 0 lost): {'met' if met else 'NOT met'}")
    print(f"requests/s: {ingest['rps'] / baseline['rps']:.2f}x the baseline's")
    return 0 if lost == unexpected == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60, help="stop sending after this long")
    parser.add_argument(
        "--outputs", type=Path, help="a stack's outputs file (default: start the embedded runtime)"
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.outputs:
        return run(
            StackOutputs.load(args.outputs), args.outputs, args.requests, args.concurrency, args.max_seconds
        )
    from headrace.local.emulator import free_port
    from headrace.local.runtime import LocalRuntime

    with LocalRuntime(ROOT, port=free_port(), api_port=free_port()) as runtime:
        print("embedded runtime on loopback")
        return run(
            StackOutputs.model_validate(runtime.outputs),
            runtime.outputs_path,
            args.requests,
            args.concurrency,
            args.max_seconds,
        )


if __name__ == "__main__":
    raise SystemExit(main())
