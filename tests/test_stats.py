"""Statistics on hand-picked samples: exact expected values."""

import math

import pytest

from benchbench.measure.stats import median_ci, percentile, rel_ci_halfwidth, summarize


def test_percentiles_interpolate_linearly_like_numpy():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 50) == 2.5
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile(xs, 100) == 4.0
    assert percentile([5.0], 99) == 5.0


def test_summary_of_ten_known_samples():
    times = [0.010, 0.011, 0.012, 0.013, 0.014, 0.015, 0.016, 0.017, 0.018, 0.100]
    s = summarize(times, batch_size=4)
    assert s.n == 10
    assert s.median == pytest.approx(0.0145)
    assert s.mean == pytest.approx(0.0226)
    # sample stdev (n-1), computed by hand
    mean = 0.0226
    var = sum((t - mean) ** 2 for t in times) / 9
    assert s.stdev == pytest.approx(math.sqrt(var))
    assert s.cv == pytest.approx(math.sqrt(var) / mean)
    assert s.min == 0.010 and s.max == 0.100
    assert s.p90 == pytest.approx(0.018 + 0.1 * (0.100 - 0.018))  # position 8.1 of 0..9
    assert s.p99 == pytest.approx(0.018 + 0.91 * (0.100 - 0.018))  # position 8.91
    assert s.iqr == pytest.approx(0.01675 - 0.01225)  # positions 6.75 and 2.25
    # n=10: ranks floor(5 - 3.099) = 1 and ceil(6 + 3.099) = 10
    assert (s.ci95_low, s.ci95_high) == (0.010, 0.100)
    assert s.rel_ci == pytest.approx((0.100 - 0.010) / 2 / 0.0145)
    assert s.throughput == pytest.approx(4 * 10 / sum(times))
    assert s.ms_per_batch == pytest.approx(14.5)
    assert s.ms_per_sample == pytest.approx(14.5 / 4)
    assert s.noisy is True  # IQR 4.5 ms / median 14.5 ms = 31% > 10%


def test_quiet_samples_are_not_noisy():
    s = summarize([1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01], batch_size=1)
    assert s.noisy is False
    assert s.median == pytest.approx(1.0)


def test_ci_of_median_needs_enough_samples():
    assert median_ci([1.0] * 7) is None
    assert median_ci(sorted(range(1, 9))) == (1, 8)  # n=8: ranks 1 and 8
    xs = list(range(1, 101))  # n=100: ranks floor(50-9.8)=40, ceil(51+9.8)=61
    assert median_ci(xs) == (40, 61)
    assert rel_ci_halfwidth(xs) == pytest.approx((61 - 40) / 2 / 50.5)
    assert rel_ci_halfwidth([0.0] * 10) is None


def test_single_sample_and_bad_input():
    s = summarize([0.5], batch_size=2)
    assert s.stdev == 0.0 and s.ci95_low is None and s.rel_ci is None
    assert s.throughput == pytest.approx(4.0)
    with pytest.raises(ValueError):
        summarize([], 1)
    with pytest.raises(ValueError):
        summarize([1.0], 0)
