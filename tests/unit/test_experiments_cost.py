"""The AWS cost model: request counts per file and the monthly arithmetic."""

from __future__ import annotations

import pytest

from headrace.experiments import cost

MB = 1_000_000


def workload(**changes):
    base = {
        "monthly_files": 100_000,
        "file_bytes": 66_000,
        "processor_ms": 400.0,
        "processor_memory_mb": 1769,
        "loader_ms": 300.0,
        "loader_memory_mb": 512,
        "item_bytes": 2_500,
        "parquet_bytes": 20_000,
        "processor_architecture": "arm64",
        "loader_architecture": "arm64",
        "log_bytes_per_file": 2048,
    }
    return cost.Workload(**{**base, **changes})


def test_requests_of_a_small_file():
    r = cost.requests_per_file(workload())
    # PUT: upload + Parquet + summary; GET: GET + HEAD (processor), GET + GET (loader)
    assert (r.s3_put, r.s3_get) == (3, 4)
    # each queue: send + receive + delete, one file per batch
    assert r.sqs == 6
    # metadata: received 1 + processing 1 + completed 3 + loaded 3 (2.5 KB item), twice (by_day index),
    # + the by_completion entry 1, + idempotency 2
    assert r.ddb_wru == (1 + 1 + 3 + 3) * 2 + 1 + 2
    assert r.ddb_rru == 1.0  # two eventually consistent reads of a < 4 KB item
    assert (r.eventbridge_custom, r.lambda_invocations) == (1, 2)


def test_large_files_are_moved_in_8_mib_parts():
    r = cost.requests_per_file(workload(file_bytes=100 * 1024 * 1024, parquet_bytes=20 * 1024 * 1024))
    # upload: create + 13 parts + complete; Parquet: create + 3 parts + complete; summary 1
    assert r.s3_put == 15 + 5 + 1
    # reads stay single streamed GETs: processor GET + HEAD; loader Parquet and summary GETs
    assert r.s3_get == 4


def test_batches_cut_invocations_and_queue_requests():
    r = cost.requests_per_file(workload(processor_files_per_invocation=10, loader_files_per_invocation=5))
    assert r.lambda_invocations == pytest.approx(0.1 + 0.2)
    assert r.sqs == pytest.approx((1 + 2 / 10) + (1 + 2 / 5))


def test_monthly_lines_multiply_volume_by_unit_prices():
    prices = cost.Prices()
    e = cost.estimate(workload(), prices)
    lines = {line.item.split(" (")[0]: line for line in e.lines}
    compute = lines["processor compute"]
    assert compute.quantity == pytest.approx(100_000 * 0.4 * 1769 / 1024)
    assert compute.monthly_usd == pytest.approx(compute.quantity * prices.lambda_gb_second_arm)
    assert lines["requests"].monthly_usd == pytest.approx(200_000 * 0.20 / 1e6)
    assert lines["send, receive, delete"].monthly_usd == pytest.approx(600_000 * 0.40 / 1e6)
    put = next(line for line in e.lines if line.item.startswith("PUT class"))
    assert put.monthly_usd == pytest.approx(300_000 * 0.005 / 1000)
    writes = next(line for line in e.lines if line.item.startswith("on-demand writes"))
    assert writes.monthly_usd == pytest.approx(100_000 * 19 * 0.625 / 1e6)
    assert e.total == pytest.approx(sum(line.monthly_usd for line in e.lines))
    assert e.per_thousand_files == pytest.approx(e.total / 100)


def test_x86_compute_costs_more_than_arm_and_scales_with_volume():
    arm = cost.estimate(workload())
    x86 = cost.estimate(workload(processor_architecture="x86_64", loader_architecture="x86_64"))
    assert x86.total > arm.total
    double = cost.estimate(workload(monthly_files=200_000))
    assert double.total == pytest.approx(2 * arm.total)


def test_fixed_costs_of_the_dev_stack():
    lines = cost.fixed_monthly(cost.Prices(), az_count=2, rds_gb=20)
    by_service = {line.service + " " + line.item.split(" ")[0]: line.monthly_usd for line in lines}
    assert by_service["RDS db.t4g.micro"] == pytest.approx(730 * 0.016)
    assert by_service["RDS 20"] == pytest.approx(20 * 0.115)
    assert by_service["VPC Secrets"] == pytest.approx(730 * 2 * 0.01)
