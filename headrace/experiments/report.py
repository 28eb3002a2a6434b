"""``headrace experiments report``: PNG charts and ``summary.md`` from a results directory.

With ``--compare OTHER_DIR`` every chart shows both runs, labelled by environment (from
each run's ``run.json``), and the summary puts them in side-by-side columns. Charts are
drawn with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from . import cost
from .stats import PERCENTILE_METHOD, summarize
from .suites import EXPERIMENTS

DPI = 100
NA = "n/a"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c")
PARTS = (
    ("upload", "upload", "#9ecae1"),
    ("queue_wait", "queue wait", "#fdae6b"),
    ("processing", "processing (download + process)", "#74c476"),
    ("write", "write (Parquet + summary)", "#9e9ac8"),
    ("other", "other handler work", "#bdbdbd"),
)
TAIL_MS = 50.0  # processor work after completed_at (publish the event, save the idempotency record)
# The dev stack's architecture (Pulumi.dev.yaml), priced for runs that did not measure AWS:
# the embedded runtime and LocalStack run the functions as this machine's CPU type.
AWS_ARCHITECTURE = "arm64"


class ReportError(Exception):
    pass


@dataclass
class Run:
    path: Path
    info: dict[str, Any]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.info.get("label") or self.info.get("environment") or self.path.name)

    @property
    def chart_label(self) -> str:
        """The label for matplotlib: its "$" are text, not mathtext (which would render
        "$0.02 vs $0.03" garbled, and stop the report on "$\\frac$")."""
        return self.label.replace("$", r"\$")

    def files(self, experiment: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(experiment, []) if r.get("type") == "file"]

    def of_type(self, experiment: str, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(experiment, []) if r.get("type") == kind]


def load_run(path: Path) -> Run:
    run_json = path / "run.json"
    if not run_json.is_file():
        raise ReportError(f"{path}: no run.json (is this the --out directory of `headrace experiments run`?)")
    run = Run(path=path, info=_json(run_json))
    if not isinstance(run.info, dict):
        raise ReportError(f"{run_json}: not a run.json of `headrace experiments run` (not a JSON object)")
    for name in EXPERIMENTS:
        raw = path / f"{name}.jsonl"
        if raw.is_file():
            run.records[name] = [
                _json(raw, line, number)
                for number, line in enumerate(_text(raw).splitlines(), start=1)
                if line.strip()
            ]
        summary = path / f"{name}.summary.json"
        if summary.is_file():
            run.summaries[name] = _json(summary)
    return run


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, ValueError) as exc:  # no permission, not UTF-8
        raise ReportError(f"{path}: unreadable results: {exc}") from exc


def _json(path: Path, text: str | None = None, line: int | None = None) -> Any:
    """The JSON of ``path`` (or of its line ``line``, ``text``); an error naming the file and line."""
    try:
        return json.loads(_text(path) if text is None else text)
    except ValueError as exc:
        where = f"{path}, line {line}" if line else str(path)
        raise ReportError(f"{where}: unreadable results: {exc}") from exc


def render(
    input_dir: Path, out: Path, compare: Path | None = None, monthly_files: int = 100_000
) -> list[Path]:
    runs = [load_run(input_dir)]
    if compare is not None:
        runs.append(load_run(compare))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report there: {exc.strerror or exc}") from exc
    charts: list[tuple[str, Callable[[list[Run], Path], bool]]] = [
        ("latency_distribution.png", chart_latency_distribution),
        ("percentiles.png", chart_percentiles),
        ("latency_by_filesize.png", chart_latency_by_size),
        ("component_breakdown.png", chart_breakdown),
        ("latency_timeline.png", chart_timeline),
        ("file_size_scaling.png", chart_file_size),
        ("throughput.png", chart_throughput),
        ("queue_depth.png", chart_queue_depth),
        ("sweep.png", chart_sweep),
        ("failure_recovery.png", chart_failure),
    ]
    written: list[Path] = []
    figures = [headline(run, monthly_files) for run in runs]
    table = out / "summary_table.png"
    for name, draw in charts:
        path = out / name
        if draw(runs, path):
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    chart_summary_table(runs, figures, table)
    written.append(table)
    summary = out / "summary.md"
    summary.write_text(markdown(runs, figures, [p.name for p in written], monthly_files))
    written.append(summary)
    return written


# ------------------------------------------------------------------------------ figures
def _warm(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.files("latency") if r.get("e2e_ms") is not None and not r.get("cold")]


def _cold(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.files("latency") if r.get("e2e_ms") is not None and r.get("cold")]


def _median(values: list[float]) -> float | None:
    return summarize(values)["p50"] if values else None  # type: ignore[return-value]


def priced_architectures(run: Run) -> dict[str, tuple[str, str]]:
    """Per function: (the architecture priced, the one it ran as). A run on AWS is priced at
    each function's own; any other at the dev stack's."""
    config = run.info.get("configuration") or {}
    priced = {}
    for logical in ("processor", "loader"):
        ran = str((config.get(logical) or {}).get("architecture") or "unknown")
        aws = run.info.get("environment") == "aws" and ran in ("arm64", "x86_64")
        priced[logical] = (ran if aws else AWS_ARCHITECTURE, ran)
    return priced


def cost_workloads(run: Run, monthly_files: int) -> list[tuple[int, cost.Workload]]:
    """One workload per file size of the latency experiment, from what was measured."""
    config = run.info.get("configuration") or {}
    processor = config.get("processor") or {}
    loader = config.get("loader") or {}
    window_ms = float((loader.get("mapping") or {}).get("window_seconds") or 0) * 1000
    architectures = priced_architectures(run)
    workloads = []
    for rows in sorted({int(r["rows"]) for r in _warm(run)}):
        mine = [r for r in _warm(run) if int(r["rows"]) == rows]
        handler = _median([r["handler_ms"] for r in mine if r.get("handler_ms") is not None])
        if handler is None:
            handler = _median([r["handler_total_ms"] for r in mine if r.get("handler_total_ms") is not None])
        load = _median([r["load_ms"] for r in mine if r.get("load_ms") is not None])
        workloads.append(
            (
                rows,
                cost.Workload(
                    monthly_files=monthly_files,
                    file_bytes=float(mine[0]["size_bytes"]),
                    processor_ms=(handler or 0.0) + TAIL_MS,
                    processor_memory_mb=int(processor.get("memory_mb") or 1769),
                    loader_ms=max(100.0, (load or 0.0) - window_ms),
                    loader_memory_mb=int(loader.get("memory_mb") or 512),
                    item_bytes=float(_median([r["item_bytes"] for r in mine if r.get("item_bytes")]) or 2048),
                    parquet_bytes=float(
                        _median([r["parquet_bytes"] for r in mine if r.get("parquet_bytes")]) or 0
                    ),
                    processor_architecture=architectures["processor"][0],
                    loader_architecture=architectures["loader"][0],
                ),
            )
        )
    return workloads


def headline(run: Run, monthly_files: int) -> dict[str, Any]:
    """The figures of one run that the summary table and summary.md show."""
    figures: dict[str, Any] = {}
    warm = _warm(run)
    if warm:
        figures["latency_warm"] = summarize(r["e2e_ms"] for r in warm)
        figures["latency_by_rows"] = {
            rows: summarize(r["e2e_ms"] for r in warm if int(r["rows"]) == rows)
            for rows in sorted({int(r["rows"]) for r in warm})
        }
    cold = _cold(run)
    if cold:
        figures["latency_cold"] = summarize(r["e2e_ms"] for r in cold)
        penalties = []
        for r in cold:
            p50 = figures.get("latency_by_rows", {}).get(int(r["rows"]), {}).get("p50")
            if p50 is not None:
                penalties.append(r["e2e_ms"] - p50)
        figures["cold_penalty_ms"] = sum(penalties) / len(penalties) if penalties else None
    fs = run.summaries.get("filesize") or {}
    if fs.get("fit_processing_s_per_mb"):
        figures["slope_s_per_mb"] = fs["fit_processing_s_per_mb"]
        figures["largest_mb"] = max(p["mb"] for p in fs["points"])
        figures["largest_processing_s"] = max(fs["points"], key=lambda p: p["mb"])["processing_s"]
    if fs.get("fit_memory_mb_per_mb"):
        figures["memory_mb_per_mb"] = fs["fit_memory_mb_per_mb"]
        figures["peak_rss_mb"] = max(p["max_rss_mb"] or 0 for p in fs["points"])
    bursts = run.of_type("throughput", "run")
    rated = [(rate, r) for r in bursts if (rate := _rate(r)) is not None]
    if rated:
        rate, best = max(rated, key=lambda pair: pair[0])
        figures["throughput_best"] = {
            "files_per_minute": rate,
            "files": best["files"],
            "concurrency": best["concurrency"],
        }
    if bursts:
        figures["throughput_runs"] = [
            {
                **{k: r.get(k) for k in ("files", "concurrency", "peak_processing_depth", "completed")},
                "files_per_minute": _rate(r),
            }
            for r in bursts
        ]
    failure = run.summaries.get("failure") or {}
    if failure:
        figures["failure"] = failure
    points = run.of_type("sweep", "run")
    rated = [(rate, p) for p in points if (rate := _rate(p)) is not None]
    if rated:
        rate, best = max(rated, key=lambda pair: pair[0])
        figures["sweep_best"] = {"point": best["point"], "files_per_minute": rate}
    if points:
        figures["sweep"] = [
            {
                "point": p["point"],
                "files_per_minute": _rate(p),
                "p50": (p.get("e2e_ms") or {}).get("p50"),
                "p95": (p.get("e2e_ms") or {}).get("p95"),
                "completed": p.get("completed"),
                "files": p.get("files"),
            }
            for p in points
        ]
    estimates = [(rows, cost.estimate(w)) for rows, w in cost_workloads(run, monthly_files)]
    if estimates:
        figures["cost"] = estimates
    return figures


def _rate(burst: dict[str, Any]) -> float | None:
    """Files per minute of a burst (throughput or sweep), or None unless every file of it
    completed in time: a burst cut short by the time limit has no meaningful rate."""
    rate = burst.get("files_per_minute")
    return float(rate) if rate and burst.get("completed") == burst.get("files") else None


def _crash_done_after_s(crash: dict[str, Any]) -> float | None:
    """Seconds from the crash burst's start until every file completed; None unless every
    file did."""
    done = crash.get("all_completed_after_s")
    return float(done) if done is not None and crash.get("completed") == crash.get("files") else None


# ------------------------------------------------------------------------------ charts
def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> bool:
    fig.savefig(path, dpi=DPI)
    return True


def _seconds(ms: float) -> float:
    return ms / 1000


def chart_latency_distribution(runs: list[Run], path: Path) -> bool:
    sizes = sorted({int(r["rows"]) for run in runs for r in _warm(run)})
    if not sizes:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        data = [[_seconds(r["e2e_ms"]) for r in _warm(run) if int(r["rows"]) == rows] for rows in sizes]
        positions = [k + (i - (len(runs) - 1) / 2) * width for k in range(len(sizes))]
        present = [(p, d) for p, d in zip(positions, data, strict=True) if d]
        if not present:
            continue
        box = ax.boxplot(
            [d for _, d in present],
            positions=[p for p, _ in present],
            widths=width * 0.8,
            patch_artist=True,
            showfliers=True,
        )
        for patch in box["boxes"]:
            patch.set_facecolor(RUN_COLORS[i])
            patch.set_alpha(0.5)
        for p, d in present:
            ax.scatter([p] * len(d), d, s=10, color=RUN_COLORS[i], zorder=3, label=None)
        ax.plot([], [], color=RUN_COLORS[i], linewidth=8, alpha=0.5, label=run.chart_label)
    ax.set_xticks(range(len(sizes)), [f"{s:,} rows" for s in sizes])
    ax.set_ylabel("end-to-end latency (s)")
    ax.set_title("Latency distribution (warm invocations): upload start -> metadata completed")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def chart_percentiles(runs: list[Run], path: Path) -> bool:
    stats = [
        (run, summarize(r["e2e_ms"] for r in _warm(run)), [r["e2e_ms"] for r in _cold(run)]) for run in runs
    ]
    if not any(s["n"] for _, s, _ in stats):
        return False
    fig = _figure()
    ax = fig.add_subplot()
    labels = ["p50", "p95", "p99", "cold (mean)"]
    width = 0.8 / len(runs)
    for i, (run, s, cold) in enumerate(stats):
        values = [s["p50"], s["p95"], s["p99"], sum(cold) / len(cold) if cold else None]
        xs = [k + (i - (len(runs) - 1) / 2) * width for k in range(len(labels))]
        heights = [_seconds(v) if v is not None else 0 for v in values]
        bars = ax.bar(
            xs,
            heights,
            width * 0.9,
            color=RUN_COLORS[i],
            label=f"{run.chart_label} (n={s['n']} warm, {len(cold)} cold)",
        )
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(
                    f"{_seconds(v):.2f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("end-to-end latency (s)")
    ax.set_title("Latency percentiles, all file sizes (warm) and cold starts")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def chart_latency_by_size(runs: list[Run], path: Path) -> bool:
    if not any(_warm(run) for run in runs):
        return False
    fig = _figure()
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        sizes = sorted({int(r["rows"]) for r in _warm(run)})
        s = [summarize(r["e2e_ms"] for r in _warm(run) if int(r["rows"]) == rows) for rows in sizes]
        p50 = [_seconds(x["p50"]) for x in s]  # type: ignore[arg-type]
        p95 = [_seconds(x["p95"]) for x in s]  # type: ignore[arg-type]
        ax.plot(sizes, p50, "o-", color=RUN_COLORS[i], label=f"{run.chart_label} p50")
        ax.fill_between(sizes, p50, p95, color=RUN_COLORS[i], alpha=0.15, label=f"{run.chart_label} p50-p95")
        cold = _cold(run)
        if cold:
            ax.scatter(
                [int(r["rows"]) for r in cold],
                [_seconds(r["e2e_ms"]) for r in cold],
                marker="*",
                s=120,
                color=RUN_COLORS[i],
                edgecolor="black",
                zorder=4,
                label=f"{run.chart_label} cold start",
            )
    ax.set_xscale("log")
    ax.set_xlabel("rows per file (about 70 bytes a row)")
    ax.set_ylabel("end-to-end latency (s)")
    ax.set_title("Latency by file size")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _parts(records: list[dict[str, Any]]) -> dict[str, float]:
    def avg(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {
        "upload": avg([r.get("upload_ms") or 0.0 for r in records]),
        "queue_wait": avg([r.get("queue_wait_ms") or 0.0 for r in records]),
        "processing": avg([(r.get("download_ms") or 0.0) + (r.get("process_ms") or 0.0) for r in records]),
        "write": avg([r.get("write_ms") or 0.0 for r in records]),
        "other": avg([r.get("other_ms") or 0.0 for r in records]),
    }


def chart_breakdown(runs: list[Run], path: Path) -> bool:
    sizes = sorted({int(r["rows"]) for run in runs for r in _warm(run)})
    if not sizes:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(runs)
    ticks, labels = [], []
    for i, run in enumerate(runs):
        for k, rows in enumerate(sizes):
            mine = [r for r in _warm(run) if int(r["rows"]) == rows]
            if not mine:
                continue
            x = k + (i - (len(runs) - 1) / 2) * width
            bottom = 0.0
            for part, name, color in PARTS:
                value = _seconds(_parts(mine)[part])
                ax.bar(
                    x,
                    value,
                    width * 0.9,
                    bottom=bottom,
                    color=color,
                    edgecolor=RUN_COLORS[i],
                    label=name if (i, k) == (0, 0) else None,
                )
                bottom += value
    for k, rows in enumerate(sizes):
        ticks.append(k)
        labels.append(f"{rows:,} rows")
    ax.set_xticks(ticks, labels)
    if len(runs) > 1:  # which bar is which environment: the outline's colour
        for i, run in enumerate(runs):
            ax.bar(
                [0],
                [0],
                0,
                color="white",
                edgecolor=RUN_COLORS[i],
                linewidth=2,
                label=f"outline: {run.chart_label}",
            )
    ax.set_ylabel("mean time per file (s)")
    ax.set_title("Where the time goes (warm, handler timings + client clock)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def chart_timeline(runs: list[Run], path: Path) -> bool:
    with_data = [run for run in runs if run.files("latency")]
    if not with_data:
        return False
    fig = _figure(8.0, 3.2 * len(with_data))
    axes = fig.subplots(len(with_data), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, with_data, strict=True):
        records = [r for r in run.files("latency") if r.get("e2e_ms") is not None]
        origin = min(r["upload_start"] for r in records) if records else 0
        sizes = sorted({int(r["rows"]) for r in records})
        cmap = matplotlib.colormaps["viridis"]
        for j, rows in enumerate(sizes):
            mine = [r for r in records if int(r["rows"]) == rows]
            color = cmap(j / max(1, len(sizes) - 1))
            ax.plot(
                [r["upload_start"] - origin for r in mine],
                [_seconds(r["e2e_ms"]) for r in mine],
                "o-",
                color=color,
                markersize=4,
                label=f"{rows:,} rows",
            )
        cold = [r for r in records if r.get("cold")]
        ax.scatter(
            [r["upload_start"] - origin for r in cold],
            [_seconds(r["e2e_ms"]) for r in cold],
            marker="*",
            s=160,
            color="#d62728",
            zorder=4,
            label="cold start (first file after a configuration change)",
        )
        ax.set_title(f"Latency over time: {run.chart_label}")
        ax.set_ylabel("end-to-end (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("seconds since the experiment's first upload")
    return _save(fig, path)


def chart_file_size(runs: list[Run], path: Path) -> bool:
    with_data = [
        (i, run, (run.summaries.get("filesize") or {}).get("points") or []) for i, run in enumerate(runs)
    ]
    if not any(points for _, _, points in with_data):
        return False
    fig = _figure(9.0, 4.2)
    time_ax, memory_ax = fig.subplots(1, 2)
    for i, run, points in with_data:
        if not points:
            continue
        mb = [p["mb"] for p in points]
        time_ax.scatter(
            mb, [p["processing_s"] for p in points], color=RUN_COLORS[i], zorder=3, label=run.chart_label
        )
        fit = (run.summaries.get("filesize") or {}).get("fit_processing_s_per_mb")
        if fit:
            xs = [min(mb), max(mb)]
            time_ax.plot(
                xs,
                [fit["slope"] * x + fit["intercept"] for x in xs],
                "--",
                color=RUN_COLORS[i],
                label=f"fit: {fit['slope']:.3f} s/MB + {fit['intercept']:.2f} s (R² {fit['r_squared']:.3f})",
            )
        memory = [p for p in points if p.get("max_rss_mb") is not None]
        memory_ax.plot(
            [p["mb"] for p in memory],
            [p["max_rss_mb"] for p in memory],
            "o-",
            color=RUN_COLORS[i],
            label=run.chart_label,
        )
    time_ax.set_xlabel("file size (MB)")
    time_ax.set_ylabel("processing: download + process + write (s)")
    time_ax.set_title("Processing time vs size")
    memory_ax.set_xlabel("file size (MB)")
    memory_ax.set_ylabel("processor peak RSS (MB)")
    memory_ax.set_title("Memory vs size (fresh sandbox per file)")
    memory_ax.set_ylim(bottom=0)
    time_ax.set_ylim(bottom=0)
    for ax in (time_ax, memory_ax):
        if (
            max((p["mb"] for _, _, pts in with_data for p in pts), default=1)
            / max(1e-9, min((p["mb"] for _, _, pts in with_data for p in pts), default=1))
            > 50
        ):
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def chart_throughput(runs: list[Run], path: Path) -> bool:
    if not any(_rate(r) for run in runs for r in run.of_type("throughput", "run")):
        return False
    fig = _figure()
    ax = fig.add_subplot()
    styles = ("-", "--", ":")
    for i, run in enumerate(runs):
        tp = [r for r in run.of_type("throughput", "run") if _rate(r)]
        for j, files in enumerate(sorted({r["files"] for r in tp})):
            mine = sorted((r for r in tp if r["files"] == files), key=lambda r: r["concurrency"])
            ax.plot(
                [r["concurrency"] for r in mine],
                [_rate(r) or 0.0 for r in mine],
                "o" + styles[i % len(styles)],
                color=matplotlib.colormaps["tab10"](j),
                label=f"{run.chart_label}: {files:,} files",
            )
    ax.set_xscale("log", base=2)
    threads = sorted({r["concurrency"] for run in runs for r in run.of_type("throughput", "run")})
    ax.set_xticks(threads, [str(t) for t in threads])
    ax.minorticks_off()
    ax.set_xlabel("client upload threads")
    ax.set_ylabel("files completed per minute")
    ax.set_title("Throughput vs upload concurrency (first upload -> last completed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def chart_queue_depth(runs: list[Run], path: Path) -> bool:
    with_data = [run for run in runs if run.of_type("throughput", "depth")]
    if not with_data:
        return False
    fig = _figure(8.0, 3.2 * len(with_data))
    axes = fig.subplots(len(with_data), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, with_data, strict=True):
        samples = [s for s in run.of_type("throughput", "depth") if s["queue"] == "processing"]
        for j, label in enumerate(dict.fromkeys(s["run"] for s in samples)):
            mine = [s for s in samples if s["run"] == label]
            color = matplotlib.colormaps["tab10"](j)
            ax.plot(
                [s["t_rel"] for s in mine],
                [s["visible"] + s["in_flight"] for s in mine],
                color=color,
                label=f"{label} total",
            )
            ax.plot(
                [s["t_rel"] for s in mine],
                [s["in_flight"] for s in mine],
                ":",
                color=color,
                label=f"{label} in flight",
            )
        ax.set_title(f"Processing queue depth during the bursts: {run.chart_label}")
        ax.set_ylabel("messages")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("seconds since the burst's first upload")
    return _save(fig, path)


def chart_sweep(runs: list[Run], path: Path) -> bool:
    points = sorted({p["point"] for run in runs for p in run.of_type("sweep", "run")}, key=_point_order)
    if not points:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    latency_ax = ax.twinx()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        by_point = {p["point"]: p for p in run.of_type("sweep", "run")}
        xs = [k + (i - (len(runs) - 1) / 2) * width for k in range(len(points))]
        ax.bar(
            xs,
            [_rate(by_point.get(p) or {}) or 0 for p in points],
            width * 0.9,
            color=RUN_COLORS[i],
            alpha=0.6,
            label=f"{run.chart_label} files/min",
        )
        for q, marker in (("p50", "o"), ("p95", "^")):
            ys = [_seconds(((by_point.get(p) or {}).get("e2e_ms") or {}).get(q) or math.nan) for p in points]
            latency_ax.plot(
                xs,
                ys,
                marker,
                color="black" if i == 0 else RUN_COLORS[i],
                label=f"{run.chart_label} latency {q}",
            )
    ax.set_xticks(range(len(points)), points)
    ax.set_xlabel("event source mapping: batch size, batching window (s), max concurrency")
    ax.set_ylabel("files completed per minute")
    latency_ax.set_ylabel("end-to-end latency (s)")
    ax.set_title("Configuration sweep (bursts of files, 8 upload threads)")
    handles = ax.get_legend_handles_labels()
    more = latency_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _point_order(label: str) -> tuple[int, ...]:
    return tuple(int(part[1:]) for part in label.split() if part[1:].isdigit())


def chart_failure(runs: list[Run], path: Path) -> bool:
    rows: list[tuple[str, list[float | None]]] = []
    per_run = [run.summaries.get("failure") or {} for run in runs]
    if not any(per_run):
        return False

    def value(summary: dict[str, Any], *keys: str) -> float | None:
        node: Any = summary
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return float(node) if isinstance(node, (int, float)) else None

    rows = [
        ("poison -> DLQ (median)", [(_s(value(f, "poison", "to_dlq_ms", "p50"))) for f in per_run]),
        ("crash: clean files p50", [_s(value(f, "crash", "clean_e2e_ms", "p50")) for f in per_run]),
        ("crash: redelivered p50", [_s(value(f, "crash", "redelivered_e2e_ms", "p50")) for f in per_run]),
        ("crash: all completed after", [_crash_done_after_s(f.get("crash") or {}) for f in per_run]),
        ("DB restored -> all loaded", [value(f, "db_outage", "recovery_s") for f in per_run]),
    ]
    rows = [(name, values) for name, values in rows if any(v is not None for v in values)]
    if not rows:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    height = 0.8 / len(runs)
    for i, run in enumerate(runs):
        ys = [k + (i - (len(runs) - 1) / 2) * height for k in range(len(rows))]
        widths = [values[i] or 0 for _, values in rows]
        bars = ax.barh(ys, widths, height * 0.9, color=RUN_COLORS[i], label=run.chart_label)
        for bar, (_, values) in zip(bars, rows, strict=True):
            if values[i] is not None:
                ax.annotate(
                    f" {values[i]:.1f} s",
                    (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    va="center",
                    fontsize=8,
                )
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Failure injection: time to the DLQ and to recover")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _s(ms: float | None) -> float | None:
    return ms / 1000 if ms is not None else None


def _ms_text(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def summary_rows(runs: list[Run], figures: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The headline table: (metric, one value per run)."""

    def cell(f: dict[str, Any], getter: Callable[[dict[str, Any]], str | None]) -> str:
        try:
            return getter(f) or NA
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return NA

    def lat(q: str) -> Callable[[dict[str, Any]], str | None]:
        return lambda f: _ms_text(f["latency_warm"][q]) + f" (n={f['latency_warm']['n']})"

    def failure(f: dict[str, Any], *keys: str) -> Any:
        node: Any = f["failure"]
        for key in keys:
            node = node[key]
        return node

    def checks(f: dict[str, Any]) -> str:
        results = []
        for phase in ("poison", "crash", "db_outage"):
            c = (f["failure"].get(phase) or {}).get("checks")
            if c:
                results.append(f"{phase}: {'pass' if all(v is not False for v in c.values()) else 'FAIL'}")
        return ", ".join(results) or NA

    def crash_recovery(f: dict[str, Any]) -> str:
        c = failure(f, "crash")
        after = _crash_done_after_s(c)
        done = (
            f"all {c['files']} done after {after:.0f} s"
            if after is not None
            else (f"{c['completed']}/{c['files']} done in time")
        )
        return f"{done} ({c['redelivered_files']} redelivered)"

    def cost_line(f: dict[str, Any]) -> str | None:
        estimates = dict(f["cost"])
        rows = 1_000 if 1_000 in estimates else min(estimates)
        e = estimates[rows]
        return f"${e.total:,.2f} ({rows:,}-row files)"

    metrics: list[tuple[str, Callable[[dict[str, Any]], str | None]]] = [
        ("latency p50 (warm)", lat("p50")),
        ("latency p95 (warm)", lat("p95")),
        ("latency p99 (warm)", lat("p99")),
        ("cold start (mean e2e)", lambda f: _ms_text(f["latency_cold"]["mean"])),
        ("cold-start penalty", lambda f: _ms_text(f["cold_penalty_ms"])),
        (
            "best throughput",
            lambda f: (
                f"{f['throughput_best']['files_per_minute']:.0f} files/min ({f['throughput_best']['files']} files, {f['throughput_best']['concurrency']} threads)"
            ),
        ),
        (
            "processing slope",
            lambda f: f"{f['slope_s_per_mb']['slope']:.4f} s/MB (R² {f['slope_s_per_mb']['r_squared']:.3f})",
        ),
        ("largest file", lambda f: f"{f['largest_mb']:.0f} MB in {f['largest_processing_s']:.1f} s"),
        ("peak processor RSS", lambda f: f"{f['peak_rss_mb']:.0f} MB"),
        ("poison -> DLQ (median)", lambda f: _ms_text(failure(f, "poison", "to_dlq_ms", "p50"))),
        ("crash recovery", crash_recovery),
        ("DB outage recovery", lambda f: f"{failure(f, 'db_outage', 'recovery_s'):.0f} s after restore"),
        ("exactly once / DLQ checks", checks),
        (
            "best sweep point",
            lambda f: f"{f['sweep_best']['point']}: {f['sweep_best']['files_per_minute']:.0f} files/min",
        ),
        ("AWS cost / month (est.)", cost_line),
    ]
    return [(name, [cell(f, getter) for f in figures]) for name, getter in metrics]


def chart_summary_table(runs: list[Run], figures: list[dict[str, Any]], path: Path) -> None:
    rows = summary_rows(runs, figures)
    fig = _figure(4.5 + 3.8 * len(runs), 0.3 + 0.24 * (len(rows) + 1))
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(
        cellText=[[name, *values] for name, values in rows],
        colLabels=["metric", *[run.chart_label for run in runs]],
        loc="center",
        cellLoc="left",
        colLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    for (r, _), c in table.get_celld().items():
        if r == 0:
            c.set_text_props(weight="bold")
            c.set_facecolor("#e6e6e6")
    _save(fig, path)


# ------------------------------------------------------------------------------ markdown
def _tables_per_run(
    runs: list[Run],
    figures: list[dict[str, Any]],
    header: list[str],
    rows: Callable[[dict[str, Any]], list[list[str]]],
) -> list[str]:
    """One table per environment that has rows, under its label."""
    out: list[str] = []
    for run, f in zip(runs, figures, strict=True):
        if body := rows(f):
            out += [f"\n**{_md(run.label)}**\n", _table(header, body)]
    return out


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~&#!])")


def _md(text: str) -> str:
    """``text`` (a label given by the user) as literal Markdown on one line: GitHub's markup
    characters (table pipes and math dollars included) backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n" + "\n".join(lines) + "\n"


def _environment(run: Run) -> str:
    i = run.info
    m = i.get("machine") or {}
    cfg = i.get("configuration") or {}
    p, lo = cfg.get("processor") or {}, cfg.get("loader") or {}
    pm = p.get("mapping") or {}
    git = i.get("git") or {}
    experiments = ", ".join(
        f"{k} {v.get('status')} ({v.get('seconds')} s)" for k, v in (i.get("experiments") or {}).items()
    )
    return (
        f"- **{_md(run.label)}**: stack `{i.get('stack')}`, {i.get('environment')} in {i.get('region')}; suite "
        f"`{i.get('suite')}`, run `{i.get('run_id')}` started {i.get('started_at')}, {i.get('duration_seconds')} s in all"
        + (
            f" (+ {i['runtime_startup_seconds']} s to start the embedded runtime)"
            if i.get("runtime_startup_seconds")
            else ""
        )
        + f"; git `{git.get('commit')}`{' (uncommitted changes)' if git.get('dirty') else ''}.\n"
        f"  Client machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memory_gb')} GB, {m.get('platform')}, "
        f"load average at start {m.get('load_average')}.\n"
        f"  Processor: {p.get('memory_mb')} MB, timeout {p.get('timeout_seconds')} s, {p.get('architecture')}; mapping batch "
        f"{pm.get('batch_size')}, window {pm.get('window_seconds')} s, max concurrency {pm.get('max_concurrency')}; queue "
        f"visibility timeout {p.get('queue_visibility_timeout_seconds')} s. Loader: {lo.get('memory_mb')} MB, timeout "
        f"{lo.get('timeout_seconds')} s; load queue visibility timeout {lo.get('queue_visibility_timeout_seconds')} s. "
        f"maxReceiveCount {cfg.get('max_receive_count')}.\n"
        f"  Experiments: {experiments or 'none'}."
        + (f" Notes: {'; '.join(i['notes'])}." if i.get("notes") else "")
        + "\n"
    )


def _caveats(run: Run) -> list[str]:
    """What makes a run's figures partial: an interrupt, a failed warm-up, experiments that
    did not end ``ok``, changes to the stack that could not be undone."""
    i = run.info
    caveats = []
    if i.get("interrupted"):
        caveats.append("the run was interrupted (Ctrl-C or SIGTERM), its results are partial")
    if i.get("warm_up"):
        caveats.append(f"the warm-up {i['warm_up']}, nothing was measured")
    not_ok = [
        f"{k} {v.get('status')}" for k, v in (i.get("experiments") or {}).items() if v.get("status") != "ok"
    ]
    if not_ok:
        caveats.append("experiments not ok: " + ", ".join(not_ok))
    caveats += [f"the stack was left changed ({message})" for message in i.get("unrestored") or []]
    return caveats


def markdown(runs: list[Run], figures: list[dict[str, Any]], charts: list[str], monthly_files: int) -> str:
    labels = [_md(run.label) for run in runs]
    out = ["# Experiment results\n\n"]
    out.append(
        "Measured by `headrace experiments run`, rendered by `headrace experiments report` "
        "(how and what: [docs/experiments.md](../experiments.md)).\n"
    )
    out.append("\n## Environment\n\n")
    out += [_environment(run) for run in runs]
    for run in runs:
        if caveats := _caveats(run):
            out.append(f"\n> **Read with care ({_md(run.label)})**: " + "; ".join(caveats) + ".\n")
    out.append("\n## Summary\n\n")
    out.append("![summary table](summary_table.png)\n")
    out.append(_table(["metric", *labels], [[name, *values] for name, values in summary_rows(runs, figures)]))
    out.append(
        f"\nPercentiles: {PERCENTILE_METHOD}; with few samples p95/p99 sit close to the maximum (n is given).\n"
    )

    # latency
    if any(f.get("latency_by_rows") for f in figures):
        out.append("\n## End-to-end latency\n\n")
        out.append(
            "One file at a time, upload start (client clock) -> `completed_at` of its metadata item. "
            "The first file of each size runs right after a configuration change (a cold start).\n"
        )
        header = ["rows", *[f"{label} {q}" for label in labels for q in ("p50", "p95", "p99", "cold")]]
        sizes = sorted({rows for f in figures for rows in f.get("latency_by_rows", {})})
        body = []
        for rows in sizes:
            cells = [f"{rows:,}"]
            for run, f in zip(runs, figures, strict=True):
                s = f.get("latency_by_rows", {}).get(rows) or {}
                cold = [r["e2e_ms"] for r in _cold(run) if int(r["rows"]) == rows]
                cells += [
                    _ms_text(s.get("p50")),
                    _ms_text(s.get("p95")),
                    _ms_text(s.get("p99")),
                    _ms_text(cold[0] if cold else None),
                ]
            body.append(cells)
        out.append(_table(header, body))
        for chart in (
            "latency_distribution.png",
            "percentiles.png",
            "latency_by_filesize.png",
            "latency_timeline.png",
        ):
            if chart in charts:
                out.append(f"\n![{chart[:-4]}]({chart})\n")
        out.append("\n### Where the time goes\n\n")
        out.append(
            "Mean per warm file. Upload: the client's PUT. Queue wait: upload finished -> handler started "
            "(S3 -> EventBridge -> SQS -> poller -> sandbox). Processing: the handler's download + process. "
            "Write: Parquet + summary to S3. Other: the handler's metadata writes and version checks.\n"
        )
        header = ["rows", *[f"{label} {name}" for label in labels for _, name, _ in PARTS]]
        body = []
        for rows in sizes:
            cells = [f"{rows:,}"]
            for run in runs:
                mine = [r for r in _warm(run) if int(r["rows"]) == rows]
                parts = _parts(mine) if mine else {}
                cells += [_ms_text(parts.get(key)) if mine else NA for key, _, _ in PARTS]
            body.append(cells)
        out.append(_table(header, body))
        if "component_breakdown.png" in charts:
            out.append("\n![component breakdown](component_breakdown.png)\n")

    # file size
    if any(run.summaries.get("filesize") for run in runs):
        out.append("\n## File-size scaling\n\n")
        out.append(
            "One file per size in a fresh sandbox. Processing = download + process + write (handler timings); "
            "peak RSS = the processor process's high-water mark (`max_rss_mb`), interpreter and libraries included.\n"
        )
        for run in runs:
            fs = run.summaries.get("filesize") or {}
            body = [
                [
                    f"{p['mb']:.1f}",
                    f"{p['rows']:,}",
                    f"{p['download_s']:.2f}",
                    f"{p['process_s']:.2f}",
                    f"{p['write_s']:.2f}",
                    f"{p['processing_s']:.2f}",
                    f"{p['max_rss_mb']:.0f}" if p.get("max_rss_mb") is not None else NA,
                    f"{p['load_s']:.1f}" if p.get("load_s") is not None else NA,
                ]
                for p in fs.get("points", [])
            ]
            out.append(f"\n**{_md(run.label)}**\n")
            out.append(
                _table(
                    [
                        "MB",
                        "rows",
                        "download s",
                        "process s",
                        "write s",
                        "processing s",
                        "peak RSS MB",
                        "to warehouse s",
                    ],
                    body,
                )
            )
            fit = fs.get("fit_processing_s_per_mb")
            if fit:
                out.append(
                    f"\nFit (least squares): processing = {fit['slope']:.4f} s/MB x size + {fit['intercept']:.2f} s "
                    f"(R² {fit['r_squared']:.3f}, n={fit['n']}).\n"
                )
            mem = fs.get("fit_memory_mb_per_mb")
            if mem:
                out.append(
                    f"Memory: {mem['slope']:.2f} MB of peak RSS per MB of file + {mem['intercept']:.0f} MB (R² {mem['r_squared']:.3f}).\n"
                )
            for s in fs.get("skipped", []):
                out.append(f"Skipped {s['mb']:g} MB: {s['reason']}.\n")
        if "file_size_scaling.png" in charts:
            out.append("\n![file size scaling](file_size_scaling.png)\n")

    # throughput
    if any(f.get("throughput_runs") for f in figures):
        out.append("\n## Parallel uploads and throughput\n\n")
        out.append(
            "Bursts of files (100 rows each) uploaded by N client threads; throughput = files completed per "
            "minute from the first upload to the last completion. Queue depth sampled every second. A burst "
            "whose files did not all complete within the time limit has no rate (n/a) and is never the best.\n"
        )
        out += _tables_per_run(
            runs,
            figures,
            ["files", "upload threads", "completed", "files/min", "peak queue depth"],
            lambda f: [
                [
                    f"{r['files']:,}",
                    str(r["concurrency"]),
                    f"{r['completed']}/{r['files']}",
                    f"{r['files_per_minute']:.0f}" if r.get("files_per_minute") else NA,
                    str(r.get("peak_processing_depth")),
                ]
                for r in f.get("throughput_runs", [])
            ],
        )
        for chart in ("throughput.png", "queue_depth.png"):
            if chart in charts:
                out.append(f"\n![{chart[:-4]}]({chart})\n")

    # failure
    if any(f.get("failure") for f in figures):
        out.append("\n## Failure injection\n\n")
        for run, f in zip(runs, figures, strict=True):
            fl = f.get("failure") or {}
            if not fl:
                continue
            out.append(f"\n**{_md(run.label)}**\n")
            out.append(_failure_text(fl))
        if "failure_recovery.png" in charts:
            out.append("\n![failure recovery](failure_recovery.png)\n")

    # sweep
    if any(f.get("sweep") for f in figures):
        out.append("\n## Configuration sweep\n\n")
        out.append(
            "The processor's event source mapping: batch size (b), batching window in seconds (w), maximum "
            "concurrency (c); a burst of files with 8 upload threads per point; the original mapping restored afterwards. "
            "A point whose files did not all complete within the time limit has no rate (n/a) and is never the best.\n"
        )
        out += _tables_per_run(
            runs,
            figures,
            ["mapping", "completed", "files/min", "latency p50", "latency p95"],
            lambda f: [
                [
                    p["point"],
                    f"{p['completed']}/{p['files']}",
                    f"{p['files_per_minute']:.0f}" if p.get("files_per_minute") else NA,
                    _ms_text(p.get("p50")),
                    _ms_text(p.get("p95")),
                ]
                for p in f.get("sweep", [])
            ],
        )
        if "sweep.png" in charts:
            out.append("\n![configuration sweep](sweep.png)\n")

    # cost
    if any(f.get("cost") for f in figures):
        out.append(f"\n## AWS cost estimate: {monthly_files:,} files a month\n\n")
        out.append(_cost_text(runs, figures))
    return "".join(out)


def _failure_text(fl: dict[str, Any]) -> str:
    lines = []
    poison = fl.get("poison") or {}
    if poison.get("files"):
        lines.append(
            f"- Poison files: {poison['in_dlq']}/{poison['files']} in the processing DLQ after maxReceiveCount "
            f"{poison.get('max_receive_count')} receives, median {_ms_text(poison['to_dlq_ms'].get('p50'))} after upload; "
            f"{poison.get('recorded_failed')} recorded `failed`."
        )
    elif poison.get("skipped"):
        lines.append(f"- Poison files: skipped ({poison['skipped']}).")
    c = fl.get("crash") or {}
    if c.get("files"):
        lines.append(
            f"- Crash rate {c['crash_rate']:.0%}: {c['completed']}/{c['files']} completed; {c['redelivered_files']} "
            f"were redelivered after a crash (visibility timeout {c['visibility_timeout_seconds']} s) and took "
            f"{_ms_text(c['redelivered_e2e_ms'].get('p50'))} (median, max {_ms_text(c['redelivered_e2e_ms'].get('max'))}) "
            f"against {_ms_text(c['clean_e2e_ms'].get('p50'))} for the others; "
            + (
                f"every file completed {after:.0f} s after the burst started."
                if (after := _crash_done_after_s(c)) is not None
                else f"{c['files'] - c['completed']} did not complete within the time limit."
            )
        )
    elif c.get("skipped"):
        lines.append(f"- Crashes: skipped ({c['skipped']}).")
    d = fl.get("db_outage") or {}
    if d.get("files"):
        recovery = f"{d['recovery_s']:.0f} s" if d.get("recovery_s") is not None else "not within the limit"
        lines.append(
            f"- Database unavailable to the loader for {d['outage_seconds']:.0f} s: {d['processed_during_outage']}/"
            f"{d['files']} files still processed meanwhile (processing p50 {_ms_text(d['processing_e2e_ms'].get('p50'))}), "
            f"{d['loads_failed_during_outage']} loads failed and were retried; {d['loaded']}/{d['files']} loaded, "
            f"the last {recovery} after the database came back (load queue visibility timeout "
            f"{d['load_visibility_timeout_seconds']} s)."
        )
    elif d.get("skipped"):
        lines.append(f"- Database outage: skipped ({d['skipped']}).")
    checks = []
    for phase in ("poison", "crash", "db_outage"):
        for name, value in ((fl.get(phase) or {}).get("checks") or {}).items():
            if isinstance(value, bool) or value is None:
                checks.append(
                    f"{phase}.{name}: {'n/a (database not reachable)' if value is None else ('pass' if value else 'FAIL')}"
                )
    if checks:
        lines.append("- Checks: " + "; ".join(checks) + ".")
    return "\n".join(lines) + "\n"


def _usd(value: float) -> str:
    """A price without scientific notation: 0.0000166667, 0.4, 11.68."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _price(line: cost.CostLine) -> str:
    if line.unit_price < 0.001:
        return f"${_usd(round(line.unit_price * 1e6, 6))} per million {line.unit}"
    return (
        f"${_usd(line.unit_price)} per {line.unit.removesuffix('s') if line.unit == 'hours' else line.unit}"
    )


def _architecture_text(run: Run) -> str:
    priced = priced_architectures(run)
    if run.info.get("environment") == "aws":
        return (
            f"Priced at each function's own architecture: processor {priced['processor'][0]}, "
            f"loader {priced['loader'][0]}."
        )
    ran = ", ".join(f"{logical} {arch}" for logical, (_, arch) in priced.items() if arch != "unknown")
    return (
        f"Priced at {AWS_ARCHITECTURE} for both functions, the dev stack's architecture (Pulumi.dev.yaml)"
        + (
            f"; on this {run.info.get('environment') or 'local'} run they ran as {ran} (this machine's)"
            if ran
            else ""
        )
        + "."
    )


def _cost_text(runs: list[Run], figures: list[dict[str, Any]]) -> str:
    prices = cost.Prices()
    out = []
    for run, f in zip(runs, figures, strict=True):
        estimates: list[tuple[int, cost.Estimate]] = f.get("cost") or []
        if not estimates:
            continue
        out.append(f"\n**From the durations measured on {_md(run.label)}**\n")
        out.append(f"\n{_architecture_text(run)}\n")
        header = [
            "rows per file",
            "file size",
            "processor ms/file",
            "loader ms/file",
            "per-file requests",
            "total / month",
            "per 1,000 files",
        ]
        body = []
        for rows, e in estimates:
            w, r = e.workload, e.requests
            body.append(
                [
                    f"{rows:,}",
                    f"{w.file_bytes / 1e6:.2f} MB",
                    f"{w.processor_ms:.0f}",
                    f"{w.loader_ms:.0f}",
                    f"S3 {r.s3_put:.0f} PUT + {r.s3_get:.0f} GET, SQS {r.sqs:.0f}, DynamoDB {r.ddb_wru:.0f} WRU + {r.ddb_rru:g} RRU, "
                    f"EventBridge {r.eventbridge_custom:.0f}, Lambda {r.lambda_invocations:.0f}",
                    f"${e.total:,.2f}",
                    f"${e.per_thousand_files:.4f}",
                ]
            )
        out.append(_table(header, body))
        rows, e = next(((r, e) for r, e in estimates if r == 1_000), estimates[0])
        out.append(f"\nLine items for {rows:,}-row files:\n")
        out.append(
            _table(
                ["service", "item", "quantity", "unit price", "USD / month"],
                [
                    [
                        line.service,
                        line.item,
                        f"{line.quantity:,.1f} {line.unit}",
                        _price(line),
                        f"${line.monthly_usd:,.4f}",
                    ]
                    for line in e.lines
                ],
            )
        )
    fixed = cost.fixed_monthly(prices)
    out.append("\nFixed monthly costs of the dev stack, independent of volume (not in the totals above):\n")
    out.append(
        _table(
            ["service", "item", "USD / month"],
            [[line.service, line.item, f"${line.monthly_usd:,.2f}"] for line in fixed]
            + [["total", "", f"${sum(line.monthly_usd for line in fixed):,.2f}"]],
        )
    )
    out.append(
        "\nAssumptions:\n\n"
        f"- Prices: {prices.as_of}. Lambda ${_usd(prices.lambda_gb_second_arm)}/GB-s (arm64) or "
        f"${_usd(prices.lambda_gb_second_x86)}/GB-s (x86_64), ${prices.lambda_per_million_requests} per million requests; "
        f"SQS ${prices.sqs_per_million_requests} per million requests; S3 ${prices.s3_put_per_thousand} per 1,000 PUT, "
        f"${prices.s3_get_per_thousand} per 1,000 GET/HEAD, ${prices.s3_gb_month}/GB-month; DynamoDB on demand "
        f"${prices.ddb_per_million_wru} per million WRU, ${prices.ddb_per_million_rru} per million RRU; EventBridge "
        f"${prices.eventbridge_per_million_custom} per million custom events (S3's events on the default bus are free); "
        f"CloudWatch Logs ${prices.logs_per_gb_ingested}/GB; RDS db.t4g.micro ${prices.rds_t4g_micro_hour}/h, gp3 "
        f"${prices.rds_gp3_gb_month}/GB-month; interface endpoint ${prices.interface_endpoint_hour}/h per AZ; secret "
        f"${prices.secret_month}/month. No free tier, no savings plans.\n"
        "- Durations: the median warm file of each size in the latency experiment. Processor: `completed_at - "
        f"received_at` of the item (the invocation's work on the file) + {TAIL_MS:.0f} ms for what follows "
        "(publishing the event, the idempotency record). Loader: `loaded_at - completed_at` minus the loader's batching "
        "window, an upper bound (it includes EventBridge and queue delivery). Memory: the functions' configured "
        "MemorySize. Measured on the embedded runtime these are this machine's durations, not Lambda's: run the suite on "
        "AWS for AWS durations (`--compare` shows both).\n"
        "- One file per invocation (sequential uploads); in bursts batches fill and Lambda requests and SQS "
        "receive/delete requests fall by up to the batch size.\n"
        "- Requests per file as counted in `headrace/experiments/cost.py` (S3 HEADs included, multipart above 8 MiB); "
        "DynamoDB item size = the completed metadata item's JSON size (approximate DynamoDB sizing); every metadata "
        "write is also written to the `by_day` index (projection ALL), and the completed update to the keys-only "
        "`by_completion` index (1 WRU).\n"
        "- Not included: Lambda pollers' empty receives on idle queues (about 3 mappings x ~650,000 long polls a month "
        "≈ $0.8), Glue Data Catalog requests (a GetTable per file when the query catalog is on, as it is by default "
        "on AWS: $1 per million beyond the first million a month), the INIT phase of cold starts (billed as duration "
        "since August 2025; the cold-start penalty above gives its order), CloudWatch alarms and dashboard, data "
        "transfer out, X-Ray traces, the report function's daily runs, storage beyond the first month.\n"
    )
    return "".join(out)
