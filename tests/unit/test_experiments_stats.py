"""Statistics of the experiment suite: percentiles, the least-squares fit, throughput."""

from __future__ import annotations

import random

import numpy as np
import pytest

from headrace.experiments.stats import linear_fit, mean, per_minute, percentile, summarize


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.0, 1.0), (0.5, 5.5), (0.95, 9.55), (0.99, 9.91), (1.0, 10.0), (0.25, 3.25)],
)
def test_percentiles_of_one_to_ten_interpolate_between_closest_ranks(q, expected):
    # Given 1..10 in any order
    values = [7, 3, 10, 1, 5, 2, 9, 4, 8, 6]
    # Then the percentile is the type-7 linear interpolation
    assert percentile(values, q) == pytest.approx(expected)


def test_percentiles_agree_with_numpys_default_method():
    rng = random.Random(11)
    for n in (1, 2, 3, 7, 50, 501):
        values = [rng.lognormvariate(6, 1) for _ in range(n)]
        for q in (0.5, 0.9, 0.95, 0.99):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_a_single_value_is_every_percentile():
    assert [percentile([42.0], q) for q in (0, 0.5, 0.99, 1)] == [42.0] * 4


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_quantiles_outside_zero_to_one_are_refused(q):
    with pytest.raises(ValueError, match="outside"):
        percentile([1, 2], q)


def test_no_values_have_no_percentile_and_an_empty_summary():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        mean([])
    assert summarize([]) == {
        "n": 0,
        "mean": None,
        "min": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }


def test_summary_of_known_values():
    s = summarize(range(1, 101))
    assert s["n"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert (s["min"], s["max"]) == (1, 100)
    assert s["p50"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)


def test_fit_recovers_an_exact_line():
    # Given points on y = 0.025 x + 0.4
    xs = [1, 8, 32, 100, 1000]
    ys = [0.025 * x + 0.4 for x in xs]
    fit = linear_fit(xs, ys)
    assert fit.slope == pytest.approx(0.025)
    assert fit.intercept == pytest.approx(0.4)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.n == 5
    assert fit.predict(500) == pytest.approx(12.9)


def test_fit_of_noisy_data_is_close_to_the_true_slope_and_matches_numpy():
    rng = random.Random(3)
    xs = [rng.uniform(0, 200) for _ in range(400)]
    ys = [0.05 * x + 2 + rng.gauss(0, 0.5) for x in xs]
    fit = linear_fit(xs, ys)
    slope, intercept = np.polyfit(xs, ys, 1)
    assert fit.slope == pytest.approx(slope)
    assert fit.intercept == pytest.approx(intercept)
    assert fit.slope == pytest.approx(0.05, abs=0.002)
    assert 0.95 < fit.r_squared < 1.0
    assert fit.r_squared == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)


def test_a_flat_line_fits_perfectly():
    fit = linear_fit([1, 2, 3], [5, 5, 5])
    assert (fit.slope, fit.intercept, fit.r_squared) == (0.0, 5.0, 1.0)


@pytest.mark.parametrize(
    ("xs", "ys", "message"),
    [([1], [1], "at least two points"), ([2, 2, 2], [1, 2, 3], "distinct"), ([1, 2], [1], "x values but")],
)
def test_fits_that_cannot_be_made_are_refused(xs, ys, message):
    with pytest.raises(ValueError, match=message):
        linear_fit(xs, ys)


def test_throughput_is_per_minute():
    assert per_minute(100, 10.0, 40.0) == pytest.approx(200.0)
    assert per_minute(0, 0.0, 1.0) == 0.0


@pytest.mark.parametrize(("start", "end"), [(5.0, 5.0), (5.0, 4.0)])
def test_throughput_over_an_empty_interval_is_refused(start, end):
    with pytest.raises(ValueError, match="empty"):
        per_minute(10, start, end)
