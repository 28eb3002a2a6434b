"""SQL over the processed data (issue 9): ``headrace query`` on a running stack.

The demo's sales files go to a dataset named after the run, so counts on a shared stack
never include other runs' files. Athena on AWS stacks, DuckDB elsewhere (engine auto).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from headrace import cli
from headrace.query import execute

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ("sales.csv", "sales-2025-02.csv")  # 3 + 97 rows; February adds a region column


@pytest.fixture(scope="module")
def sales(stack) -> dict[str, Any]:
    """The demo's sales files, processed, in this run's own dataset."""
    dataset = f"query_{stack.run_id}"
    uploaded = []
    for name in SAMPLES:
        key = stack.key(dataset, name)
        uploaded.append((key, stack.upload(key, (ROOT / "samples" / name).read_bytes())))
    items = [stack.wait_for(key, version) for key, version in uploaded]
    assert [i["status"] for i in items] == ["completed", "completed"], items
    assert {i["dataset"] for i in items} == {dataset}
    return {"dataset": dataset, "items": items}


def query_json(stack, sql: str, capsys) -> list[dict[str, Any]]:
    status = cli.main(["query", sql, "--outputs", str(stack.outputs_path), "--format", "json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return list(json.loads(captured.out))


def test_count_equals_the_row_counts_of_the_datasets_files(stack, sales, capsys):
    # Given the demo's two sales files, completed
    expected = sum(int(item["row_count"]) for item in sales["items"])
    # When the dataset is counted with headrace query
    rows = query_json(stack, f"SELECT count(*) AS n FROM {sales['dataset']}", capsys)
    # Then the count is the sum of the files' row_count
    assert rows == [{"n": expected}] and expected == 100


def test_the_table_has_both_files_columns(stack, sales, capsys):
    # When grouped by the column only February's file has
    rows = query_json(
        stack,
        f"SELECT region, count(*) AS n FROM {sales['dataset']} GROUP BY region ORDER BY region NULLS FIRST",
        capsys,
    )
    # Then January's rows have no region and February's are counted by region
    assert rows[0] == {"region": None, "n": 3}
    assert sum(r["n"] for r in rows[1:]) == 97


def _copy_to_day(stack, item: dict[str, Any], day: str, copies: list[str]) -> str:
    """Place a copy of a processed file (Parquet + summary) in another ingest date of the
    layout: every upload of a run lands in today's partition."""
    s3, bucket = stack.s3, stack.outputs.processed_bucket
    today = f"ingest_date={item['ingest_date']}/"
    for source in (item["parquet_key"], item["summary_key"]):
        target = source.replace(today, f"ingest_date={day}/")
        s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
        copies.append(target)
    return str(item["parquet_key"]).replace(today, f"ingest_date={day}/")


@pytest.fixture
def copies(stack):
    """Keys this test placed in the processed bucket; removed afterwards."""
    placed: list[str] = []
    yield placed
    for key in placed:
        stack.s3.delete_object(Bucket=stack.outputs.processed_bucket, Key=key)


def test_a_partition_query_reads_only_that_partitions_files(stack, sales, copies):
    dataset, items = sales["dataset"], sales["items"]
    days = sorted({i["ingest_date"] for i in items})
    bucket = stack.outputs.processed_bucket
    today_files = sorted(f"s3://{bucket}/{i['parquet_key']}" for i in items if i["ingest_date"] == days[-1])
    today_rows = sum(int(i["row_count"]) for i in items if i["ingest_date"] == days[-1])
    probe = f"SELECT count(*) AS n FROM {dataset} WHERE ingest_date = '{{day}}'"
    # When one day is queried
    result = execute(stack.outputs, probe.format(day=days[-1]))
    # Then its rows are counted
    assert result.rows == [(today_rows,)]
    if result.stats.engine == "athena":
        # Athena reports bytes, not files: at most that day's files were read, and a day
        # with no files reads nothing (partition projection prunes the rest)
        sizes = {
            o["Key"]: o["Size"]
            for o in stack.s3.list_objects_v2(Bucket=bucket, Prefix=f"parquet/dataset={dataset}/")["Contents"]
        }
        assert (result.stats.bytes_scanned or 0) <= sum(sizes.values())
        empty = execute(stack.outputs, probe.format(day="2000-01-01"))
        assert (empty.rows, empty.stats.bytes_scanned) == ([(0,)], 0)
        return
    # Given also a copy of January's file on an earlier day (a second partition)
    earlier = (date.fromisoformat(days[0]) - timedelta(days=7)).isoformat()
    january = next(i for i in items if i["object_key"].endswith("-sales.csv"))
    copied = f"s3://{bucket}/{_copy_to_day(stack, january, earlier, copies)}"
    # Then today's query opened exactly today's files, never the earlier day's
    result = execute(stack.outputs, probe.format(day=days[-1]))
    assert result.stats.files_scanned == today_files and result.rows == [(today_rows,)]
    # and the earlier day's query opened only the copy
    result = execute(stack.outputs, probe.format(day=earlier))
    assert result.stats.files_scanned == [copied] and result.rows == [(3,)]
    # while the whole table opens every file
    result = execute(stack.outputs, f"SELECT count(*) FROM {dataset}")
    assert sorted(result.stats.files_scanned) == sorted([*today_files, copied])


def test_duckdb_tables_match_the_glue_catalog(stack, sales):
    # Given a stack with the query catalog (the embedded runtime and AWS stacks)
    if not (stack.outputs.model_extra or {}).get("glue_database"):
        pytest.skip("this stack has no query catalog (catalog.enabled off)")
    glue = stack.outputs.client("glue")
    table = glue.get_table(DatabaseName=stack.outputs.get("glue_database"), Name=sales["dataset"])["Table"]
    # When the DuckDB engine describes the same dataset
    described = execute(stack.outputs, f"DESCRIBE {sales['dataset']}", engine="duckdb").rows
    # Then the processor's Glue table and DuckDB's view have the same columns, in order,
    # the partition column last in both
    glue_columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    glue_columns += [k["Name"] for k in table["PartitionKeys"]]
    assert [str(r[0]).lower() for r in described] == glue_columns
    assert glue_columns[-2:] == ["_rescued_data", "ingest_date"] and "region" in glue_columns
    assert table["Parameters"]["projection.enabled"] == "true"
