"""Warehouse and daily report end to end (issue 5)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from headrace.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FILES = {
    "sales": "sales.csv",
    "orders": "orders.json",
    "events": "events.ndjson",
    "customers": "customers.csv",
}


@pytest.fixture(scope="module")
def loaded(stack):
    """The samples uploaded and processed and loaded (or failed to load)."""
    versions = {
        stack.key(dataset, name): stack.upload(stack.key(dataset, name), (SAMPLES / name).read_bytes())
        for dataset, name in FILES.items()
    }
    return {
        key: stack.wait_for(key, version, lambda i: i.get("status") == "failed" or bool(i.get("load_status")))
        for key, version in versions.items()
    }


def test_every_loaded_file_has_its_rows_in_the_warehouse_once(stack, loaded):
    with stack.database() as db:
        for key, item in loaded.items():
            assert item["status"] == "completed", key
            assert item["load_status"] == "loaded", item
            count = db.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE object_key = %s").format(
                    sql.Identifier("headrace", item["dataset"])
                ),
                [key],
            ).fetchone()
            assert count == (int(item["row_count"]),), key
            lines = db.execute(
                sql.SQL(
                    "SELECT min(line_number), count(DISTINCT line_number) FROM {} WHERE object_key = %s"
                ).format(sql.Identifier("headrace", item["dataset"])),
                [key],
            ).fetchone()
            assert lines[1] == int(item["row_count"]), f"{key}: every row has its own line number"


def test_todays_report_matches_the_metadata_table(stack, loaded):
    today = datetime.now(UTC).date().isoformat()
    # When the report is produced on demand for today
    result = stack.invoke("report", {"date": today})
    # Then report.json and the metadata agree on today's files
    body = stack.s3.get_object(Bucket=stack.outputs.reports_bucket, Key=f"reports/{today}/report.json")[
        "Body"
    ].read()
    report = json.loads(body)
    statuses: dict[str, int] = {}
    pages = stack.ddb.get_paginator("query").paginate(
        TableName=stack.outputs.metadata_table,
        IndexName="by_day",
        KeyConditionExpression="#d = :d",
        ExpressionAttributeNames={"#d": "day"},
        ExpressionAttributeValues={":d": {"S": today}},
    )
    for page in pages:
        for item in page["Items"]:
            # a version skipped (superseded or deleted first) is recorded failed, reported
            # skipped; a failed one a newer version replaced is reported fixed (in place)
            status = item["status"]["S"]
            if "skip_reason" in item:
                status = "skipped"
            elif status == "failed" and "superseded_by" in item:
                status = "fixed"
            statuses[status] = statuses.get(status, 0) + 1
    assert report["files"]["received"] == sum(statuses.values())
    assert report["files"]["completed"] == statuses.get("completed", 0)
    assert report["files"]["failed"] == statuses.get("failed", 0)
    assert report["files"]["fixed"] == statuses.get("fixed", 0)
    assert report["files"]["skipped"] == statuses.get("skipped", 0)
    # and the function's role could read the queue depths its verdict shows (None: unread)
    depths = ("processing_backlog", "processing_dlq_depth", "load_dlq_depth")
    assert all(isinstance(report[name], int) for name in depths), {name: report[name] for name in depths}
    assert result["report_html"].endswith(f"reports/{today}/report.html")
    page = stack.s3.get_object(Bucket=stack.outputs.reports_bucket, Key=f"reports/{today}/report.html")
    assert page["ContentType"].startswith("text/html")


def test_the_staleness_signal_reads_the_completion_index(stack, loaded):
    # Given the deployed metadata table: completions indexed by day, keys only
    table = stack.ddb.describe_table(TableName=stack.outputs.metadata_table)["Table"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert indexes["by_completion"]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    # Then each file the pipeline completed is in it, under the day it completed
    completed = [(key, item) for key, item in loaded.items() if item["status"] == "completed"]
    assert completed
    for key, item in completed:
        found = stack.ddb.query(
            TableName=stack.outputs.metadata_table,
            IndexName="by_completion",
            KeyConditionExpression="completed_day = :d AND completed_at = :at",
            ExpressionAttributeValues={
                ":d": {"S": item["completed_at"][:10]},
                ":at": {"S": item["completed_at"]},
            },
        )["Items"]
        assert (key, item["version"]) in {(i["object_key"]["S"], i["version"]["S"]) for i in found}, found
    # When the signals task runs with the report function's role
    result = stack.invoke("report", {"task": "signals"})
    # Then it finds a completion (the value is exact, not a lower bound)
    assert result["exact"] is True and result["last_completed"], result


def _invoke_report(stack: Any, payload: dict[str, Any]) -> int:
    """``headrace local invoke report`` on the stack, as the README runs it."""
    return main(
        ["local", "invoke", "report", "--outputs", str(stack.outputs_path), "--payload", json.dumps(payload)]
    )


def test_local_invoke_runs_the_report_and_says_when_it_fails(stack, loaded, capsys):
    if not stack.embedded:
        pytest.skip("headrace local invoke drives the embedded runtime")
    today = datetime.now(UTC).date().isoformat()
    # the README's command: the executor runs the report, in its sandbox, as its role
    assert _invoke_report(stack, {"date": today}) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["task"] == "report" and response["report_json"].endswith(f"reports/{today}/report.json")
    # A function error is the function's, one line, exit 1
    assert _invoke_report(stack, {"date": "2026-13-01"}) == 1
    assert capsys.readouterr().err.startswith(
        "headrace: error: BadRequest: date '2026-13-01' is not YYYY-MM-DD"
    )


def test_local_invoke_keeps_the_metric_lines_the_function_prints(stack, capsys):
    if not stack.embedded:
        pytest.skip("headrace local invoke drives the embedded runtime")
    # Given the log of the report function's sandboxes
    log = stack.outputs_path.parent / "logs" / f"{stack.outputs.get('function_names')['report']}.log"
    before = log.stat().st_size if log.exists() else 0
    # When the signals task is invoked that way
    assert _invoke_report(stack, {"task": "signals"}) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "signals"
    # Then the metric line Powertools printed (EMF) reached the log, as on Lambda
    deadline = time.monotonic() + 10  # the sandbox stays warm: its output is written as it goes
    while True:
        with log.open("rb") as lines:
            lines.seek(before)
            emf = [json.loads(line) for line in lines.read().decode().splitlines() if '"_aws"' in line]
        if emf or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [m["service"] for m in emf if "SecondsSinceLastCompletedFile" in m] == ["report"]
    # with the stack's name, the dimension its alarms select by (HEADRACE_STACK, as deployed)
    assert [m["stack"] for m in emf if "SecondsSinceLastCompletedFile" in m] == [stack.outputs.get("stack")]


def test_the_report_function_and_every_work_queue_have_an_alarm(stack):
    # Given the stack's alarms as deployed (named "<project>-<stack>-...", like its functions),
    # each with the metric dimensions it watches
    names = stack.outputs.get("function_names")
    prefix = names["report"].removesuffix("report")
    cloudwatch = stack.outputs.client("cloudwatch")
    watched: dict[tuple[str, str], dict] = {}
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmTypes=["MetricAlarm"], AlarmNamePrefix=prefix
    )
    for page in pages:
        for alarm in page["MetricAlarms"]:
            for dimension in alarm.get("Dimensions", []):
                watched[(alarm.get("MetricName", ""), dimension["Value"])] = alarm
    # Then the report function's errors raise one (a failed daily report is otherwise dropped)
    alarms = [watched[("Errors", names["report"])]]
    # and each work queue's oldest message does (load and ingest messages expire unseen)
    for output in ("processing_queue_url", "load_queue_url", "ingest_queue_url"):
        alarms.append(
            watched[("ApproximateAgeOfOldestMessage", str(stack.outputs.get(output)).rsplit("/", 1)[1])]
        )
    # and the ingest API's server errors do, whichever its endpoint
    api = [a for (metric, _), a in watched.items() if metric in ("5xx", "Url5xxCount")]
    assert len(api) == 1
    # and the staleness signal of this stack (service and stack, as the function publishes it)
    [stale] = {
        a["AlarmName"]: a for a in watched.values() if a.get("MetricName") == "SecondsSinceLastCompletedFile"
    }.values()
    assert {d["Name"]: d["Value"] for d in stale["Dimensions"]} == {
        "service": "report",
        "stack": stack.outputs.get("stack"),
    }
    alarms.append(stale)
    # and the processor's, the loader's and the ingest worker's failures: failed records
    # (for the processor, attempts handed back for a retry) and invocations
    for key, service, metric in (
        ("processor-failures", "processor", "FilesRetried"),
        ("loader-failures", "loader", "LoadFailures"),
        ("ingest-worker-failures", "ingest-worker", "LogsFailed"),
    ):
        [failures] = cloudwatch.describe_alarms(AlarmNames=[f"{prefix}{key}"])["MetricAlarms"]
        stats = {q["Id"]: q["MetricStat"]["Metric"] for q in failures["Metrics"] if "MetricStat" in q}
        assert (stats["records"]["MetricName"], stats["errors"]["MetricName"]) == (metric, "Errors")
        assert {d["Name"]: d["Value"] for d in stats["records"]["Dimensions"]} == {
            "service": service,
            "stack": stack.outputs.get("stack"),
        }
        assert stats["errors"]["Dimensions"] == [{"Name": "FunctionName", "Value": names[service]}]
        alarms.append(failures)
    # each notifying the alerts topic when it fires and when it recovers
    for alarm in [*alarms, *api]:
        assert alarm["AlarmActions"] == alarm["OKActions"] == [stack.outputs.alerts_topic_arn], alarm[
            "AlarmName"
        ]
