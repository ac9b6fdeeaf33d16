"""Statistics over per-iteration times: pure functions, no framework, no clock.

Times are seconds. Percentiles interpolate linearly between order statistics (the
same definition as numpy's default), so every figure can be recomputed from the
samples kept in the record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

NOISE_IQR_RATIO = 0.10  # IQR/median above this → noise warning (as torch.utils.benchmark)
Z95 = 1.959963984540054


def percentile(sorted_xs: list[float], q: float) -> float:
    """q in [0, 100] of already-sorted data, linear interpolation."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


def median_ci(sorted_xs: list[float], z: float = Z95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median from order statistics.

    Ranks n/2 ∓ z·√n/2 (normal approximation to the binomial). None when there are
    too few samples for the interval to lie inside the data (n < 6 at 95%).
    """
    n = len(sorted_xs)
    half = z * math.sqrt(n) / 2.0
    lo_rank = math.floor(n / 2.0 - half)  # 1-based rank
    hi_rank = math.ceil(1 + n / 2.0 + half)
    if lo_rank < 1 or hi_rank > n:
        return None
    return sorted_xs[lo_rank - 1], sorted_xs[hi_rank - 1]


def rel_ci_halfwidth(sorted_xs: list[float]) -> float | None:
    """Half-width of the median's 95% CI relative to the median; None if undefined."""
    ci = median_ci(sorted_xs)
    if ci is None:
        return None
    med = percentile(sorted_xs, 50)
    if med <= 0:
        return None
    return (ci[1] - ci[0]) / 2.0 / med


@dataclass(frozen=True)
class Stats:
    """Summary of per-iteration times (seconds) of one case at one batch size."""

    n: int
    median: float
    mean: float
    stdev: float  # sample standard deviation (n-1); 0.0 for n == 1
    cv: float | None  # stdev / mean
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    iqr: float
    ci95_low: float | None  # 95% CI of the median; None when n is too small
    ci95_high: float | None
    rel_ci: float | None  # CI half-width / median
    noisy: bool  # IQR / median > 10%
    batch_size: int
    throughput: float | None  # samples/s over the timed window: batch × n / Σ times
    ms_per_batch: float  # median, milliseconds
    ms_per_sample: float  # median / batch, milliseconds

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(times: list[float], batch_size: int) -> Stats:
    """Statistics of per-iteration times (s) for batches of ``batch_size`` samples."""
    if not times:
        raise ValueError("no samples to summarise")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    xs = sorted(float(t) for t in times)
    n = len(xs)
    mean = math.fsum(xs) / n
    stdev = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    med = percentile(xs, 50)
    iqr = percentile(xs, 75) - percentile(xs, 25)
    ci = median_ci(xs)
    total = math.fsum(xs)
    return Stats(
        n=n,
        median=med,
        mean=mean,
        stdev=stdev,
        cv=stdev / mean if mean > 0 else None,
        min=xs[0],
        max=xs[-1],
        p50=med,
        p90=percentile(xs, 90),
        p95=percentile(xs, 95),
        p99=percentile(xs, 99),
        iqr=iqr,
        ci95_low=ci[0] if ci else None,
        ci95_high=ci[1] if ci else None,
        rel_ci=rel_ci_halfwidth(xs),
        noisy=med > 0 and iqr / med > NOISE_IQR_RATIO,
        batch_size=batch_size,
        throughput=batch_size * n / total if total > 0 else None,
        ms_per_batch=med * 1e3,
        ms_per_sample=med * 1e3 / batch_size,
    )


# --- what the percentiles are of -------------------------------------------------------------

SINGLE = "single iterations"


def block_sizes(timing: dict | None) -> list[int]:
    """The block sizes a record's samples were timed in: one per worker process where they
    differ (``timing.block_sizes``), else the one ``timing.block_size``; [1] when unknown
    (records older than block timing timed every iteration)."""
    timing = timing or {}
    sizes = timing.get("block_sizes") or [timing.get("block_size")]
    return [int(b) if isinstance(b, (int, float)) and b >= 1 else 1 for b in sizes]


def percentiles_of(sizes: list[int]) -> str:
    """What p50/p90/p95/p99 are percentiles of, given the block sizes of the samples: single
    iterations, or block means — the mean of each block of iterations, whose spread is narrower
    than the iterations' and whose percentiles are therefore not latency percentiles."""
    big = sorted({b for b in sizes if b > 1})
    if not big:
        return SINGLE
    blocks = "/".join(map(str, big))
    mixed = " (some processes timed single iterations)" if any(b == 1 for b in sizes) else ""
    return f"block means of {blocks} iterations{mixed}: not latency percentiles"


def latency_p99(stats: dict | None, timing: dict | None) -> tuple[float | None, str | None]:
    """(p99 latency in seconds, None), or (None, why there is none): a record whose samples
    are block means has no latency p99 — the p99 of block means is far below the p99 of the
    iterations in them."""
    basis = percentiles_of(block_sizes(timing))
    if basis != SINGLE:
        return None, f"unavailable: the samples are {basis.split(':')[0]} (iterations too short to time singly)"
    v = (stats or {}).get("p99")
    if not isinstance(v, (int, float)) or v <= 0:
        return None, "unavailable: no p99 in the record"
    return float(v), None
