"""How much each suite measures, and how long each experiment may take at most.

``quick`` is sized for the embedded runtime on a 2-core machine: about 3.5 minutes in all,
of which a minute is the crash experiment waiting for the processing queue's visibility
timeout (60 s there) to bring crashed batches back. ``full`` takes 30-40 minutes on the
embedded runtime (the 1 GB file alone about 3); on AWS, longer for the visibility timeouts
(6x the function timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

EXPERIMENTS = ("latency", "filesize", "throughput", "failure", "sweep")


@dataclass(frozen=True)
class SweepPoint:
    batch_size: int
    window_seconds: int
    max_concurrency: int

    @property
    def label(self) -> str:
        return f"b{self.batch_size} w{self.window_seconds} c{self.max_concurrency}"


@dataclass(frozen=True)
class Suite:
    name: str
    latency_rows: tuple[int, ...] = ()
    latency_warm: int = 0  # warm iterations per size, after one cold one
    filesize_mb: tuple[float, ...] = ()
    throughput: tuple[tuple[int, int], ...] = ()  # (files, client upload threads)
    throughput_rows: int = 100
    poison_files: int = 0
    crash_files: int = 0
    crash_rate: float = 0.0
    db_outage_files: int = 0  # 0: no database outage
    db_outage_seconds: float = 20.0
    sweep: tuple[SweepPoint, ...] = ()
    sweep_files: int = 0
    sweep_rows: int = 100
    # how long the clean-up waits for the run's files to be processed and loaded
    drain_seconds: float = 60.0
    # upper bound of each experiment, in seconds (what is measured by then is kept)
    limits: dict[str, float] = field(default_factory=dict)

    def experiments(self) -> tuple[str, ...]:
        present = {
            "latency": bool(self.latency_rows),
            "filesize": bool(self.filesize_mb),
            "throughput": bool(self.throughput),
            "failure": bool(self.poison_files or self.crash_files or self.db_outage_files),
            "sweep": bool(self.sweep and self.sweep_files),
        }
        return tuple(name for name in EXPERIMENTS if present[name])

    def limit(self, experiment: str) -> float:
        return self.limits.get(experiment, 300.0)

    def with_db_outage(self, db_outage: bool | None) -> Suite:
        """The suite with (True) or without (False) the database outage; None: as it is."""
        if db_outage is None:
            return self
        limits = dict(self.limits)
        if db_outage and not self.db_outage_files:  # room for the load queue's visibility timeout
            limits["failure"] = self.limit("failure") + 420
        return replace(self, db_outage_files=(self.db_outage_files or 10) if db_outage else 0, limits=limits)


SUITES = {
    # a few seconds: proves the machinery end to end (e2e test)
    "smoke": Suite(
        name="smoke",
        latency_rows=(100,),
        latency_warm=1,
        limits={"latency": 60},
        drain_seconds=30,
    ),
    "quick": Suite(
        name="quick",
        latency_rows=(100, 1_000, 10_000, 100_000),
        latency_warm=2,
        filesize_mb=(1, 16, 64),
        throughput=((10, 1), (10, 8), (100, 8)),
        poison_files=2,
        crash_files=10,
        crash_rate=0.3,
        sweep=(SweepPoint(1, 0, 2), SweepPoint(5, 0, 2), SweepPoint(5, 0, 4)),
        sweep_files=10,
        limits={"latency": 75, "filesize": 60, "throughput": 120, "failure": 120, "sweep": 75},
        drain_seconds=30,
    ),
    "full": Suite(
        name="full",
        latency_rows=(100, 1_000, 10_000, 100_000),
        latency_warm=29,
        filesize_mb=(1, 10, 100, 1000),
        throughput=((10, 1), (10, 16), (100, 1), (100, 16), (1000, 16)),
        poison_files=5,
        crash_files=200,
        crash_rate=0.05,
        db_outage_files=20,
        db_outage_seconds=30,
        sweep=(
            SweepPoint(1, 0, 2),
            SweepPoint(10, 0, 2),
            SweepPoint(1, 0, 5),
            SweepPoint(10, 0, 5),
            SweepPoint(10, 0, 10),
            SweepPoint(50, 1, 5),
        ),
        sweep_files=100,
        limits={"latency": 900, "filesize": 1800, "throughput": 2400, "failure": 1500, "sweep": 1200},
        drain_seconds=300,
    ),
}
