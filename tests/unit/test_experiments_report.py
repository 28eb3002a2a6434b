"""Report rendering on recorded results (tests/fixtures/experiments: a real quick run on the
embedded runtime, its per-file records of the bursts left out)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from headrace.cli import main
from headrace.experiments import cost
from headrace.experiments.report import ReportError, cost_workloads, load_run, render
from headrace.experiments.stats import percentile

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "experiments" / "embedded-quick"
CHARTS = {
    "latency_distribution.png",
    "percentiles.png",
    "latency_by_filesize.png",
    "component_breakdown.png",
    "latency_timeline.png",
    "file_size_scaling.png",
    "throughput.png",
    "queue_depth.png",
    "sweep.png",
    "failure_recovery.png",
    "summary_table.png",
}


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / f"{name}.jsonl").read_text().splitlines()]


def ms_text(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 300 and height >= 100, (path, image.size)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    render(FIXTURE, out, monthly_files=100_000)
    return out


def test_every_chart_is_a_valid_png(rendered):
    # Then every chart of the issue is there, and each is a readable PNG
    assert {p.name for p in rendered.glob("*.png")} == CHARTS
    for chart in CHARTS:
        assert_png(rendered / chart)
    # and the charts stay small enough to commit
    assert sum((rendered / c).stat().st_size for c in CHARTS) < 1_500_000


def test_summary_shows_the_measured_percentiles(rendered):
    text = (rendered / "summary.md").read_text()
    warm = [
        r["e2e_ms"] for r in records("latency") if r["type"] == "file" and not r["cold"] and "e2e_ms" in r
    ]
    # Then the headline percentiles are those of the recorded warm files
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert f"| latency {name} (warm) | {ms_text(percentile(warm, q))} (n={len(warm)}) |" in text
    # and each size has its own row, with its cold start
    for rows in (100, 1_000, 10_000, 100_000):
        mine = [r for r in records("latency") if r["rows"] == rows and r["type"] == "file"]
        cold = next(r for r in mine if r["cold"])
        p50 = percentile([r["e2e_ms"] for r in mine if not r["cold"]], 0.5)
        assert f"| {rows:,} | {ms_text(p50)} |" in text
        assert ms_text(cold["e2e_ms"]) in text


def test_summary_shows_the_fit_throughput_failures_and_sweep(rendered):
    text = (rendered / "summary.md").read_text()
    fit = json.loads((FIXTURE / "filesize.summary.json").read_text())["fit_processing_s_per_mb"]
    assert f"{fit['slope']:.4f} s/MB" in text
    runs = [r for r in records("throughput") if r["type"] == "run"]
    best = max(runs, key=lambda r: r["files_per_minute"])
    assert (
        f"{best['files_per_minute']:.0f} files/min ({best['files']} files, {best['concurrency']} threads)"
        in text
    )
    failure = json.loads((FIXTURE / "failure.summary.json").read_text())
    assert f"{failure['poison']['in_dlq']}/{failure['poison']['files']} in the processing DLQ" in text
    assert (
        f"every file completed {failure['crash']['all_completed_after_s']:.0f} s after the burst started"
        in text
    )
    assert "crash.one_parquet_per_key: pass" in text
    assert "Database outage: skipped" in text
    for point in json.loads((FIXTURE / "sweep.summary.json").read_text())["points"]:
        assert f"| {point['point']} |" in text


def test_summary_states_the_cost_and_its_assumptions(rendered):
    text = (rendered / "summary.md").read_text()
    run = load_run(FIXTURE)
    estimates = {rows: cost.estimate(w) for rows, w in cost_workloads(run, 100_000)}
    assert set(estimates) == {100, 1_000, 10_000, 100_000}
    assert f"| AWS cost / month (est.) | ${estimates[1_000].total:,.2f} (1,000-row files) |" in text
    for rows, e in estimates.items():
        assert f"| {rows:,} |" in text and f"${e.total:,.2f}" in text
    assert "## AWS cost estimate: 100,000 files a month" in text
    assert "assumed list prices, us-east-1; verify" in text
    assert "$0.625 per million WRU" in text
    assert "db.t4g.micro" in text
    # and names the per-file charges it leaves out
    assert "Glue Data Catalog requests (a GetTable per file" in text
    assert "the INIT phase of cold starts (billed as duration since August 2025" in text


def test_compare_puts_two_environments_side_by_side(tmp_path):
    # Given a second run (a copy labelled as another environment, twice as slow)
    other = tmp_path / "aws"
    shutil.copytree(FIXTURE, other)
    info = json.loads((other / "run.json").read_text())
    info.update(label="aws (dev)", environment="aws")
    (other / "run.json").write_text(json.dumps(info))
    slow = []
    for r in records("latency"):
        if "e2e_ms" in r:
            r["e2e_ms"] *= 2
        slow.append(json.dumps(r))
    (other / "latency.jsonl").write_text("\n".join(slow) + "\n")
    # When the report compares them
    out = tmp_path / "report"
    render(FIXTURE, out, compare=other, monthly_files=50_000)
    # Then the summary has one column per environment, with each one's figures
    text = (out / "summary.md").read_text()
    assert "| metric | embedded (local) | aws (dev) |" in text
    warm = [r["e2e_ms"] for r in records("latency") if r["type"] == "file" and not r["cold"]]
    p50 = percentile(warm, 0.5)
    assert (
        f"| latency p50 (warm) | {ms_text(p50)} (n={len(warm)}) | {ms_text(2 * p50)} (n={len(warm)}) |"
        in text
    )
    assert "## AWS cost estimate: 50,000 files a month" in text
    assert "**From the durations measured on aws (dev)**" in text
    for chart in CHARTS:
        assert_png(out / chart)


def test_a_directory_without_results_is_refused(tmp_path):
    with pytest.raises(ReportError, match=r"no run\.json"):
        render(tmp_path, tmp_path / "out")
    assert main(["experiments", "report", "--in", str(tmp_path)]) == 2


def test_the_cli_renders_into_the_results_directory_by_default(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    assert main(["experiments", "report", "--in", str(results), "--monthly-files", "1000"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(results / "summary.md") in printed
    assert "1,000 files a month" in (results / "summary.md").read_text()


def copy_fixture(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    return results


def test_bursts_cut_short_by_the_time_limit_have_no_rate_and_are_never_best(rendered):
    text = (rendered / "summary.md").read_text()
    points = {p["point"]: p for p in json.loads((FIXTURE / "sweep.summary.json").read_text())["points"]}
    # Given the fixture's sweep: b10 w0 c2 completed 17/20, b10 w0 c4 4/20 before the limit
    assert (points["b10 w0 c2"]["completed"], points["b10 w0 c4"]["completed"]) == (17, 4)
    # Then those points show how many completed and no rate
    assert "| b10 w0 c2 | 17/20 | n/a |" in text
    assert "| b10 w0 c4 | 4/20 | n/a |" in text
    # and the best point is the only one whose every file completed
    best = points["b1 w0 c2"]
    assert best["completed"] == best["files"]
    assert f"| best sweep point | b1 w0 c2: {best['files_per_minute']:.0f} files/min |" in text


def test_crash_recovery_says_how_many_completed_when_some_did_not(tmp_path):
    # Given a crash phase in which 7 of the 20 files completed (its summary, as an older run
    # wrote it, still has the time of the last completion)
    results = copy_fixture(tmp_path)
    summary = json.loads((results / "failure.summary.json").read_text())
    summary["crash"]["completed"] = 7
    (results / "failure.summary.json").write_text(json.dumps(summary))
    # When the report is rendered
    render(results, results)
    # Then it says how many completed, never that all of them did
    text = (results / "summary.md").read_text()
    assert "| crash recovery | 7/20 done in time (10 redelivered) |" in text
    assert "13 did not complete within the time limit." in text
    assert "all 7 done" not in text and "every file completed" not in text


def test_an_embedded_run_is_priced_at_the_dev_stacks_architecture(rendered):
    # Given the fixture: an embedded run whose functions ran as x86_64 (this machine's)
    config = load_run(FIXTURE).info["configuration"]
    assert config["processor"]["architecture"] == config["loader"]["architecture"] == "x86_64"
    # Then both functions are priced at arm64, the dev stack's, and the report says so
    for _, w in cost_workloads(load_run(FIXTURE), 100_000):
        assert (w.processor_architecture, w.loader_architecture) == ("arm64", "arm64")
    text = (rendered / "summary.md").read_text()
    assert "Priced at arm64 for both functions, the dev stack's architecture (Pulumi.dev.yaml)" in text
    assert "they ran as processor x86_64, loader x86_64" in text
    assert "ms/file, x86_64)" not in text


def test_an_aws_run_prices_each_function_at_its_own_architecture(tmp_path):
    # Given a run on AWS with an arm64 processor and an x86_64 loader
    results = copy_fixture(tmp_path)
    info = json.loads((results / "run.json").read_text())
    info["environment"] = "aws"
    info["configuration"]["processor"]["architecture"] = "arm64"
    info["configuration"]["loader"]["architecture"] = "x86_64"
    (results / "run.json").write_text(json.dumps(info))
    # When it is priced
    run = load_run(results)
    workloads = cost_workloads(run, 100_000)
    # Then each function's compute is priced at its own architecture's rate
    prices = cost.Prices()
    for _, w in workloads:
        assert (w.processor_architecture, w.loader_architecture) == ("arm64", "x86_64")
        lines = {line.item.split(" (")[0]: line for line in cost.estimate(w).lines}
        assert lines["processor compute"].unit_price == prices.lambda_gb_second_arm
        assert lines["loader compute"].unit_price == prices.lambda_gb_second_x86
    render(results, results)
    assert (
        "Priced at each function's own architecture: processor arm64, loader x86_64."
        in (results / "summary.md").read_text()
    )


def test_a_run_json_that_is_not_an_object_is_refused(tmp_path, capsys):
    # Given results whose run.json is a JSON list
    results = copy_fixture(tmp_path)
    (results / "run.json").write_text("[]")
    # When the report is asked for, Then it is a one-line error, exit 2
    assert main(["experiments", "report", "--in", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json: not a run.json" in err


def test_an_unreadable_record_is_named_by_file_and_line(tmp_path, capsys):
    # Given results whose latency records end in a line cut short (a run killed mid-write)
    results = copy_fixture(tmp_path)
    raw = results / "latency.jsonl"
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join([*lines, '{"experiment": "lat']) + "\n")
    # When the report is asked for, Then the one-line error names the file and the line
    assert main(["experiments", "report", "--in", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"latency.jsonl, line {len(lines) + 1}: unreadable results" in err


def test_a_report_out_that_is_a_file_is_refused(tmp_path, capsys):
    # Given --out naming an existing file
    target = tmp_path / "afile"
    target.write_text("x")
    # When the report is asked for, Then it is a one-line error, exit 2
    assert main(["experiments", "report", "--in", str(FIXTURE), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the report there" in err


@pytest.mark.parametrize("monthly", ["-5", "0"])
def test_a_monthly_volume_below_one_is_refused(tmp_path, capsys, monthly):
    out = tmp_path / "out"
    assert (
        main(["experiments", "report", "--in", str(FIXTURE), "--out", str(out), "--monthly-files", monthly])
        == 2
    )
    assert "--monthly-files must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_label_with_markup_renders_as_text(tmp_path):
    # Given a run labelled with characters that mean something to Markdown tables, to
    # GitHub's math and to matplotlib's mathtext (an invalid formula among them)
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    info = json.loads((run / "run.json").read_text())
    label = r"aws | eu-west-1 $\frac$ <b>*x*</b>"
    info["label"] = label
    (run / "run.json").write_text(json.dumps(info))
    # When the report renders it
    written = render(run, tmp_path / "out")
    # Then every chart is drawn: the label's dollars are escaped for matplotlib (and only
    # the label's: the log axes' tick labels stay mathtext)
    assert {p.name for p in written if p.suffix == ".png"} == CHARTS
    assert load_run(run).chart_label == r"aws | eu-west-1 \$\frac\$ <b>*x*</b>"
    # and in summary.md the label is one escaped cell: every row of the summary table has
    # as many cells as its header
    text = (tmp_path / "out" / "summary.md").read_text()
    escaped = r"aws \| eu-west-1 \$\\frac\$ \<b\>\*x\*\</b\>"
    assert f"| metric | {escaped} |" in text
    assert f"**From the durations measured on {escaped}**" in text
    summary = text.split("## Summary", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    widths = {len(line.replace(r"\|", "").split("|")) for line in summary.strip().splitlines()}
    assert widths == {4}, summary


def test_an_interrupted_run_says_so_above_its_figures(tmp_path):
    # Given a run interrupted during the failure experiment, one of whose changes could
    # not be undone
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    info = json.loads((run / "run.json").read_text())
    info["interrupted"] = True
    info["experiments"]["failure"] = {"status": "interrupted", "seconds": 12.0}
    info["unrestored"] = ["could not restore processor environment: ClientError: throttled"]
    (run / "run.json").write_text(json.dumps(info))
    # When the report renders it
    render(run, tmp_path / "out")
    # Then summary.md says so before the summary table
    text = (tmp_path / "out" / "summary.md").read_text()
    caveat = text.split("## Summary", 1)[0].split("> **Read with care", 1)[1]
    assert "the run was interrupted (Ctrl-C or SIGTERM), its results are partial" in caveat
    assert "experiments not ok: failure interrupted" in caveat
    assert (
        "the stack was left changed (could not restore processor environment: ClientError: throttled)"
        in caveat
    )


def test_a_run_that_ended_well_has_no_caveat(rendered):
    assert "Read with care" not in (rendered / "summary.md").read_text()
