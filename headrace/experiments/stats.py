"""Statistics of the experiment suite: pure functions, no I/O.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, the
default of NumPy, R and Excel's PERCENTILE.INC): for sorted values x[0..n-1] and a
quantile q in [0, 1], h = (n - 1) * q and the result is x[floor(h)] + (h - floor(h)) *
(x[floor(h) + 1] - x[floor(h)]). With few samples the high percentiles are close to the
maximum: the summaries always report ``n`` next to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PERCENTILE_METHOD = "linear interpolation between closest ranks (Hyndman & Fan type 7, as NumPy's default)"


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of ``values``; raises ValueError when empty."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no values")
    h = (len(data) - 1) * q
    lower = math.floor(h)
    upper = min(lower + 1, len(data) - 1)
    return data[lower] + (h - lower) * (data[upper] - data[lower])


def mean(values: Iterable[float]) -> float:
    data = [float(v) for v in values]
    if not data:
        raise ValueError("mean of no values")
    return math.fsum(data) / len(data)


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """n, mean, min, p50, p95, p99, max of ``values`` (None for each when there are none)."""
    data = sorted(float(v) for v in values)
    if not data:
        return {k: (0 if k == "n" else None) for k in ("n", "mean", "min", "p50", "p95", "p99", "max")}
    return {
        "n": len(data),
        "mean": mean(data),
        "min": data[0],
        "p50": percentile(data, 0.50),
        "p95": percentile(data, 0.95),
        "p99": percentile(data, 0.99),
        "max": data[-1],
    }


@dataclass(frozen=True)
class LinearFit:
    """y = slope * x + intercept, by ordinary least squares."""

    slope: float
    intercept: float
    r_squared: float
    n: int

    def predict(self, x: float) -> float:
        return self.slope * x + self.intercept

    def as_dict(self) -> dict[str, float | int]:
        return {"slope": self.slope, "intercept": self.intercept, "r_squared": self.r_squared, "n": self.n}


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Ordinary least squares of ``ys`` on ``xs``. Needs two or more distinct x values.
    ``r_squared`` is 1 - SS_res / SS_tot (1.0 when every y is equal and fitted exactly)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(xs) < 2:
        raise ValueError("a fit needs at least two points")
    x_mean, y_mean = mean(xs), mean(ys)
    sxx = math.fsum((x - x_mean) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a fit needs at least two distinct x values")
    sxy = math.fsum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = y_mean - slope * x_mean
    ss_res = math.fsum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = math.fsum((y - y_mean) ** 2 for y in ys)
    r_squared = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return LinearFit(slope=slope, intercept=intercept, r_squared=r_squared, n=len(xs))


def per_minute(count: int, start: float, end: float) -> float:
    """Throughput: ``count`` events between ``start`` and ``end`` (seconds), per minute."""
    if count < 0:
        raise ValueError("a negative count")
    if end <= start:
        raise ValueError(f"the interval [{start}, {end}] is empty")
    return count * 60.0 / (end - start)
