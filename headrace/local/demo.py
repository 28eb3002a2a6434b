"""``headrace local demo``: start the runtime, push the bundled samples, show what happened,
stop. Exits non-zero when any file does not reach the outcome ``samples/manifest.json``
expects for it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from headrace.outputs import StackOutputs

from .runtime import LocalRuntime

TERMINAL = ("completed", "failed")


@dataclass
class Expectation:
    file: Path
    key: str
    expect: str
    rows: int | None = None
    dlq: bool = False


def load_manifest(samples: Path) -> list[Expectation]:
    manifest = json.loads((samples / "manifest.json").read_text())
    return [
        Expectation(samples / f["file"], f["key"], f["expect"], f.get("rows"), bool(f.get("dlq")))
        for f in manifest["files"]
    ]


def upload(runtime: LocalRuntime, expectations: list[Expectation]) -> None:
    s3 = runtime.client("s3")
    for e in expectations:
        s3.upload_file(str(e.file), runtime.outputs["raw_bucket"], e.key)


def wait_for_outcomes(
    runtime: LocalRuntime, expectations: list[Expectation], timeout: float
) -> dict[str, dict[str, Any]]:
    """Latest metadata item per key once every file is terminal, every completed file is
    loaded into the warehouse, and the expected DLQ entries have arrived — or whatever is
    there at the deadline."""
    table = runtime.client("dynamodb")
    sqs = runtime.client("sqs")
    dlq_expected = sum(e.dlq for e in expectations)
    deadline = time.monotonic() + timeout
    items: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        items = latest_items(table, runtime.outputs["metadata_table"], [e.key for e in expectations])
        settled = all(
            items.get(e.key, {}).get("status") == "failed"
            or (items.get(e.key, {}).get("status") == "completed" and items[e.key].get("load_status"))
            for e in expectations
        )
        in_dlq = int(
            sqs.get_queue_attributes(
                QueueUrl=runtime.outputs["processing_dlq_url"], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        if settled and in_dlq >= dlq_expected:
            break
        time.sleep(0.5)
    return items


def latest_items(ddb: Any, table: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    items: dict[str, dict[str, Any]] = {}
    for key in keys:
        response = ddb.query(
            TableName=table,
            KeyConditionExpression="object_key = :k",
            ExpressionAttributeValues={":k": {"S": key}},
        )
        versions = [{k: deserialize(v) for k, v in item.items()} for item in response.get("Items", [])]
        if versions:
            items[key] = max(versions, key=lambda i: i.get("uploaded_at", ""))
    return items


def _issues(item: dict[str, Any]) -> str:
    if item.get("status") == "failed":
        return str(item.get("error", "")).split(";")[0][:48]
    q = item.get("quality_issues") or {}
    parts = []
    if q.get("missing_values"):
        parts.append(f"{sum(int(v['count']) for v in q['missing_values'].values())} missing")
    if q.get("type_mismatches"):
        parts.append(f"{sum(int(v['count']) for v in q['type_mismatches'].values())} mismatched")
    if q.get("malformed_rows"):
        parts.append(f"{int(q['malformed_rows']['count'])} malformed")
    if q.get("duplicate_rows"):
        parts.append(f"{int(q['duplicate_rows']['count'])} duplicate")
    if item.get("pii_redactions"):
        parts.append(f"PII {'+'.join(item['pii_redactions'])}")
    return ", ".join(parts) or "-"


def run(root: Path, console: Console, port: int, api_port: int, timeout: float = 120.0) -> int:
    expectations = load_manifest(root / "samples")
    started = time.monotonic()
    problems: list[str] = []
    with LocalRuntime(root, port=port, api_port=api_port) as runtime:
        console.print(
            f"[bold]headrace[/] embedded runtime up in {time.monotonic() - started:.1f} s (AWS API {runtime.emulator.endpoint})"
        )
        console.print(
            "IAM enforced: each function runs as its own role; what the emulator cannot evaluate "
            f"({len(runtime.relaxed)} items) is listed in {runtime.state_dir.relative_to(root) / 'relaxed-policies.txt'}"
        )
        upload(runtime, expectations)
        console.print(f"uploaded {len(expectations)} sample files to s3://{runtime.outputs['raw_bucket']}/")
        items = wait_for_outcomes(runtime, expectations, timeout)
        console.print(_files_table(expectations, items, runtime.outputs.get("raw_prefix", "")))
        for e in expectations:
            status = items.get(e.key, {}).get("status", "missing")
            if status != e.expect:
                problems.append(f"{e.key}: expected {e.expect}, got {status}")
            elif e.rows is not None and int(items[e.key].get("row_count", -1)) != e.rows:
                problems.append(f"{e.key}: expected {e.rows} rows, got {items[e.key].get('row_count')}")
            elif status == "completed" and items[e.key].get("load_status") != "loaded":
                problems.append(f"{e.key}: not loaded into the warehouse ({items[e.key].get('load_status')})")
        processed = runtime.outputs["processed_bucket"]
        console.print(f"Parquet    s3://{processed}/parquet/dataset=<dataset>/ingest_date=<date>/")
        console.print(f"summaries  s3://{processed}/summaries/dataset=<dataset>/ingest_date=<date>/")
        console.print(f"warehouse  {_warehouse(runtime)}")
        report = _report(runtime)
        if report:
            console.print(f"report     {report}")
        else:
            problems.append("the daily report was not produced")
        dlq = int(
            runtime.client("sqs").get_queue_attributes(
                QueueUrl=runtime.outputs["processing_dlq_url"], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        console.print(
            f"DLQ        {dlq} message(s) in the processing DLQ (the poison file, after its retries)"
        )
        if dlq != sum(e.dlq for e in expectations):
            problems.append(
                f"processing DLQ holds {dlq} messages, expected {sum(e.dlq for e in expectations)}"
            )
    console.print(f"stopped; {time.monotonic() - started:.1f} s in all")
    for problem in problems:
        console.print(f"[red]✗ {problem}[/]")
    if not problems:
        console.print("[green]✓ every sample reached its expected outcome[/]")
    return 1 if problems else 0


def _files_table(expectations: list[Expectation], items: dict[str, dict[str, Any]], prefix: str) -> Table:
    table = Table(title="Files", title_justify="left")
    for column, justify in (
        ("file", "left"),
        ("status", "left"),
        ("rows", "right"),
        ("cols", "right"),
        ("loaded", "right"),
        ("issues", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for e in expectations:
        item = items.get(e.key, {})
        table.add_row(
            e.key.removeprefix(prefix),
            item.get("status", "missing"),
            str(item.get("row_count", "")),
            str(item.get("column_count", "")),
            str(item.get("load_rows", "")),
            _issues(item),
        )
    return table


def _warehouse(runtime: LocalRuntime) -> str:
    """Rows per dataset table, read from PostgreSQL with the pipeline's own DB secret."""
    with StackOutputs.model_validate(runtime.outputs).connect_warehouse() as conn:
        rows = conn.execute(
            "SELECT dataset, count(*), sum(row_count) FROM headrace._files GROUP BY dataset ORDER BY dataset"
        ).fetchall()
        address = f"postgresql://{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    tables = ", ".join(
        f"headrace.{d} ({int(n)} file{'s' if n > 1 else ''}, {int(r)} rows)" for d, n, r in rows
    )
    return f"{address}: {tables}"


def _report(runtime: LocalRuntime) -> str | None:
    """Today's report, as `headrace local invoke report` produces it."""
    assert runtime.executor is not None
    function = runtime.outputs["function_names"]["report"]
    result = runtime.executor.invoke(function, {"date": "today"})
    if not result.ok or not isinstance(result.response, dict):
        return None
    return result.response.get("report_html")
