"""The experiment suite against a running stack: the smoke suite end to end (issue 7)."""

from __future__ import annotations

import json

from rich.console import Console

from headrace.experiments.report import render
from headrace.experiments.run import run_suite


def test_smoke_suite_measures_restores_and_cleans_up(stack, tmp_path):
    # Given the processor's configuration before the run
    function = stack.outputs.get("function_names")["processor"]
    before = stack.lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    out = tmp_path / "results"
    # When the smoke suite runs against the stack
    status = run_suite(stack.outputs_path, "smoke", out, console=Console(quiet=True))
    # Then it succeeded and recorded one cold and one warm file, both completed
    info = json.loads((out / "run.json").read_text())
    assert status == 0, info
    assert info["experiments"]["latency"]["status"] == "ok"
    files = [json.loads(line) for line in (out / "latency.jsonl").read_text().splitlines()]
    assert [(f["cold"], f["status"]) for f in files] == [(True, "completed"), (False, "completed")]
    for f in files:
        parts = f["upload_ms"] + f["queue_wait_ms"] + f["handler_total_ms"]
        assert abs(parts - f["e2e_ms"]) < 5  # the breakdown adds up to the end-to-end time
        assert f["max_rss_mb"] > 0
    # and the function's configuration is as it was
    after = stack.lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    assert after == before
    # and nothing of the run is left in the raw bucket or the metadata table
    assert info["cleanup"]["raw_versions"] == info["cleanup"]["uploads"] == 3  # the warm-up file too
    left = stack.s3.list_object_versions(
        Bucket=stack.outputs.raw_bucket, Prefix=f"{stack.outputs.raw_prefix}experiments/{info['run_id']}-"
    )
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert all(not stack.item(f["key"], f["version"]) for f in files)
    # and no version (or delete marker) of its outputs in the versioned processed bucket
    for prefix in ("parquet/dataset=experiments/", "summaries/dataset=experiments/"):
        left = stack.s3.list_object_versions(Bucket=stack.outputs.processed_bucket, Prefix=prefix)
        versions = left.get("Versions", []) + left.get("DeleteMarkers", [])
        assert not [v["Key"] for v in versions if f"/{info['run_id']}-" in v["Key"]]
    # and the report renders from what it wrote
    written = {p.name for p in render(out, out)}
    assert {"summary.md", "latency_timeline.png", "summary_table.png"} <= written
