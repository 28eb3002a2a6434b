"""What the experiments conclude when a stack does not finish everything in time: a fake
stack on which only the first files of each burst complete before the time limit."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from headrace.experiments import failure, filesize, latency, sweep, throughput
from headrace.experiments.common import Context
from headrace.experiments.stack import Upload
from headrace.experiments.suites import Suite, SweepPoint


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _completed(upload: Upload, **extra: Any) -> dict[str, Any]:
    """The metadata item of an upload the fake pipeline completed a second after it."""
    return {
        "status": "completed",
        "attempts": 1,
        "received_at": iso(upload.end + 0.1),
        "started_at": iso(upload.end + 0.1),
        "completed_at": iso(upload.end + 1.0),
        **extra,
    }


class SQS:
    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {
            "Attributes": {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
        }


class FakeStack:
    """Every burst: the first ``completes`` files complete a second after their upload, the
    others never do (late: the time limit ends the wait)."""

    def __init__(self, completes: int):
        self.completes = completes
        self.unrestored: list[str] = []
        self.outputs = SimpleNamespace(
            processing_queue_url="processing",
            load_queue_url="load",
            metadata_table="metadata",
            processed_bucket="processed",
            client=lambda service: SQS(),
        )
        self.ddb = SimpleNamespace(query=lambda **_: {"Count": 1})
        self.s3 = SimpleNamespace(get_paginator=lambda name: SimpleNamespace(paginate=lambda **_: []))

    def quiesce(self, deadline: float) -> bool:
        return True

    def upload_many(
        self, files: list[tuple[str, bytes]], concurrency: int, label: Any = None
    ) -> list[Upload]:
        now = time.time()
        return [
            Upload(f"incoming/experiments/r-{name}", "v1", len(body), now, now + 0.01, dict(label or {}))
            for name, body in files
        ]

    def wait(self, uploads: list[Upload], deadline: float, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(u.key, u.version): _completed(u) for u in uploads[: self.completes]}

    # the configuration changes of the sweep and the crash phase: nothing to change here
    def mapping(self, logical: str, url: str) -> dict[str, Any]:
        return {"UUID": "m", "BatchSize": 10}

    def update_mapping(self, *_: Any) -> None:
        pass

    def set_environment(self, *_: Any) -> None:
        pass

    def queue_attribute(self, url: str, name: str) -> str:
        return "60"

    def database(self) -> None:
        return None


def context(tmp_path, stack: FakeStack, **suite: Any) -> Context:
    return Context(
        stack=stack,  # type: ignore[arg-type]
        suite=Suite(name="test", **suite),
        out=tmp_path,
        scratch=tmp_path,
        started=time.time(),
        max_size_mb=math.inf,
    )


def test_a_burst_cut_short_by_the_time_limit_has_no_rate_and_makes_throughput_incomplete(tmp_path):
    # Given a stack on which 4 of every 20 files complete before the time limit
    ctx = context(tmp_path, FakeStack(completes=4), throughput=((20, 8),))
    # When the throughput experiment runs
    summary = throughput.run(ctx)
    # Then the burst is recorded as partial, without a rate, and the experiment is incomplete
    (burst,) = summary["runs"]
    assert (burst["completed"], burst["lost_or_late"], burst["files_per_minute"]) == (4, 16, None)
    assert summary["best_files_per_minute"] is None
    assert summary["complete"] is False


def test_a_complete_burst_has_a_rate_and_throughput_is_complete(tmp_path):
    # Given a stack on which every file completes
    ctx = context(tmp_path, FakeStack(completes=20), throughput=((20, 8),))
    # When the throughput experiment runs
    summary = throughput.run(ctx)
    # Then the burst has its rate, and the experiment is complete
    (burst,) = summary["runs"]
    assert burst["files_per_minute"] > 0
    assert summary["best_files_per_minute"] == burst["files_per_minute"]
    assert summary["complete"] is True


def test_a_sweep_point_cut_short_makes_the_sweep_incomplete(tmp_path):
    # Given a stack on which 17 of every 20 files complete before the time limit
    ctx = context(tmp_path, FakeStack(completes=17), sweep=(SweepPoint(10, 0, 2),), sweep_files=20)
    # When the configuration sweep runs
    summary = sweep.run(ctx)
    # Then the point has no rate and the sweep is incomplete
    (point,) = summary["points"]
    assert (point["completed"], point["lost_or_late"], point["files_per_minute"]) == (17, 3, None)
    assert summary["complete"] is False


def test_crash_recovery_has_no_all_completed_time_unless_every_file_completed(tmp_path):
    # Given a stack on which 7 of the 20 files of the crash phase complete in time
    ctx = context(tmp_path, FakeStack(completes=7), crash_files=20, crash_rate=0.3)
    # When the crash phase runs
    _, result = failure.crash(ctx, time.monotonic() + 60, lambda n: None)
    # Then it says 7/20 completed, and gives no "every file completed after" time
    assert (result["completed"], result["files"]) == (7, 20)
    assert result["all_completed_after_s"] is None
    assert result["complete"] is False


class StuckStack(FakeStack):
    """One file at a time (latency, file size): every file completes a second after its
    upload except those named in ``stuck``, which never do (lost, or late)."""

    def __init__(self, stuck: set[str]):
        super().__init__(completes=0)
        self.stuck = stuck

    def touch(self, *_: Any) -> None:
        pass

    def function_configuration(self, logical: str) -> dict[str, Any]:
        return {"Timeout": 900}

    def upload(self, name: str, body: Any, **label: Any) -> Upload:
        now = time.time()
        return Upload(f"incoming/experiments/r-{name}", "v1", 100, now, now + 0.01, label)

    def wait(self, uploads: list[Upload], deadline: float, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        timings = {"download": 10.0, "process": 100.0, "write": 10.0, "total": 150.0}
        return {
            (u.key, u.version): _completed(u, timings_ms=timings)
            for u in uploads
            if u.key.rsplit("/", 1)[-1] not in self.stuck
        }


def test_a_latency_file_that_never_completes_makes_latency_incomplete(tmp_path):
    # Given a stack on which the last warm file of the run never completes (in time)
    ctx = context(tmp_path, StuckStack({"r-lat-100-02.csv"}), latency_rows=(100,), latency_warm=2)
    # When the latency experiment runs (well within its time limit)
    summary = latency.run(ctx)
    # Then the file is listed as not completed and the experiment is not "ok"
    assert summary["not_completed"] == ["incoming/experiments/r-lat-100-02.csv"]
    assert summary["complete"] is False


def test_latency_is_complete_when_every_file_completed(tmp_path):
    ctx = context(tmp_path, StuckStack(set()), latency_rows=(100,), latency_warm=2)
    summary = latency.run(ctx)
    assert (summary["completed"], summary["complete"]) == (3, True)


def test_a_file_size_that_never_completes_makes_filesize_incomplete(tmp_path):
    # Given a stack on which the 2 MB file never completes (in time)
    ctx = context(tmp_path, StuckStack({"r-size-2mb.csv"}), filesize_mb=(1, 2))
    # When the file-size experiment runs
    summary = filesize.run(ctx)
    # Then the file is listed as not completed and the experiment is not "ok"
    assert summary["not_completed"] == ["incoming/experiments/r-size-2mb.csv"]
    assert summary["complete"] is False
