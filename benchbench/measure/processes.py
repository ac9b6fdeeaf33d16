"""One case measured in K fresh worker processes: pooled estimate and an honest interval.

Pure functions: no framework, no clock, no I/O. Times are seconds per iteration.

Why: the ±CI95 of one process (``stats.median_ci`` over its own samples) only says how
well that process knows *its* median. Separate processes of the same case differ by far
more (heap and code layout, thread placement, clock and cache state at start-up) — in
our runs the run-to-run spread was ~11x what those intervals imply. So a case runs in
K processes and its interval must include the between-process spread.

Point estimate: the **median of the process medians**. The process is the independent
unit; the grand median of the pooled samples would weight each process by how many
iterations it happened to run (a stopping rule gives fast or quiet processes more), and
one odd process (a descheduled thread pool, a cold start) would drag a mean. The median
of K medians is robust to that and is what the interval below is about.

Interval methods (``METHODS``), both at 95%:

* ``"t"`` (default): the Student t interval over the K process medians,
  ``median ± t(K-1) · c_K · s / √K``, where ``s`` is the standard deviation of the process
  medians and ``c_K`` the standard error of the median of K normal values relative to
  that of their mean (1.0 for K = 1, 2; 1.198 for K = 5; → √(π/2)). ``s`` is floored at
  ``se_w``, the standard deviation of one process's median that within-process noise
  alone implies (typical within-process half-width / 1.96): processes cannot really
  agree better than their own sampling noise, and a few medians agree by luck far more
  often than one would like (with K = 5, s < 0.42σ in 5% of runs). With agreeing
  processes the interval is therefore ``t(K-1)·c_K/(1.96·√K)`` times the typical
  within-process one: 0.76x at K = 5, 1.47x at K = 3.
* ``"bootstrap"``: a hierarchical bootstrap — resample K processes with replacement,
  then each chosen process's samples with replacement, take the median of the K
  resampled medians; the 2.5/97.5 percentiles of 2000 such values (seeded, so the same
  input gives the same interval). A resampled process median is drawn directly from
  its order statistics (see ``_median_cdf``), so the cost does not grow with the
  number of samples. The same floor applies. With few processes the percentile
  bootstrap is too narrow: it treats the K medians as the whole population.

Why ``"t"`` is the default — a simulation (process speed off by exp(N(0, s_b)), 100
lognormal(0, 0.05) samples per process, 150 runs; "pair" = share of ordered run pairs
where one run's median lies in the other's interval, ≈ 83% for honest intervals; "true"
= coverage of the true median, 95% nominal): with s_b 5x–16x the sd of a process median,
at K = 5 ``t`` gives pair 0.86–0.87, true 0.93–0.95, bootstrap pair 0.78–0.79, true
0.88–0.90; at K = 3 ``t`` pair 0.92, bootstrap 0.63–0.72; at K = 10 both are close (t
0.83–0.84, bootstrap 0.78–0.79). ``t`` is also ~15x cheaper. Its cost: with K < 5 the t
quantile makes intervals wider than 1.96 implied sds (run-to-run sd / implied sd ≈ 0.5
at K = 3, 0.75 at K = 5, 0.95 at K = 10).

With one process there is no between-process information: the record carries that
process's own (within-process) interval and says so (``interval_scope``).
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .stats import Z95, median_ci, percentile

METHODS = ("t", "bootstrap")
DEFAULT_METHOD = "t"
RESAMPLES = 2000
SCOPE_WITHIN = "within-process"
SCOPE_BETWEEN = "between-process"

# Student t 0.975 quantiles, df = 1..30 (scipy.stats.t.ppf(0.975, df), 6 decimals).
_T975 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)
# c_K = √K · sd(median of K standard normals), K = 1..30, by numerical integration of
# the order-statistic densities; even K averages the two middle values.
_MEDIAN_SE_FACTOR = (
    1.0,
    1.0,
    1.1602,
    1.0922,
    1.1976,
    1.1351,
    1.2137,
    1.1599,
    1.2227,
    1.1761,
    1.2283,
    1.1875,
    1.2322,
    1.1960,
    1.2351,
    1.2025,
    1.2373,
    1.2077,
    1.2390,
    1.2119,
    1.2403,
    1.2154,
    1.2415,
    1.2184,
    1.2424,
    1.2209,
    1.2433,
    1.2231,
    1.2440,
    1.2250,
)
_EXACT_BINOMIAL_MAX_N = 60  # larger processes use the normal approximation (see _median_cdf)


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile; a table to df 30, Cornish–Fisher beyond."""
    if df < 1:
        raise ValueError("t quantile needs df >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def median_se_factor(k: int) -> float:
    """Standard error of the median of ``k`` normal values over that of their mean."""
    if k < 1:
        raise ValueError("k must be >= 1")
    return _MEDIAN_SE_FACTOR[k - 1] if k <= len(_MEDIAN_SE_FACTOR) else math.sqrt(math.pi / 2)


@dataclass(frozen=True)
class ProcessSummary:
    """One worker process's samples: count, median and its within-process 95% CI."""

    n: int
    median: float
    ci95_low: float | None  # None when n < 6 (see stats.median_ci)
    ci95_high: float | None
    rel_ci: float | None  # within-process CI half-width / median

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median": self.median,
            "ci95_low": self.ci95_low,
            "ci95_high": self.ci95_high,
            "rel_ci": self.rel_ci,
        }


@dataclass(frozen=True)
class ProcessStats:
    """A case measured in ``processes`` worker processes."""

    processes: int
    method: str  # "t" | "bootstrap"; "within" when processes == 1
    interval_scope: str  # "within-process" (one process) | "between-process"
    n: int  # samples, all processes
    median: float  # median of the process medians (s)
    ci95_low: float | None
    ci95_high: float | None
    rel_ci: float | None  # (ci95_high - ci95_low) / 2 / median
    within_rel_ci: float | None  # typical (median) within-process rel_ci
    between_rel_sd: float | None  # sd of the process medians / median; None for 1 process
    between_share: float | None  # share of that variance beyond within-process noise, 0..1
    batch_size: int
    throughput: float | None  # samples/s over every timed iteration: batch × n / Σ times
    ms_per_batch: float
    ms_per_sample: float
    per_process: tuple[ProcessSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "method": self.method,
            "interval_scope": self.interval_scope,
            "n": self.n,
            "median": self.median,
            "ci95_low": self.ci95_low,
            "ci95_high": self.ci95_high,
            "rel_ci": self.rel_ci,
            "within_rel_ci": self.within_rel_ci,
            "between_rel_sd": self.between_rel_sd,
            "between_share": self.between_share,
            "batch_size": self.batch_size,
            "throughput": self.throughput,
            "ms_per_batch": self.ms_per_batch,
            "ms_per_sample": self.ms_per_sample,
            "per_process": [p.to_dict() for p in self.per_process],
        }


def summarize_process(sorted_xs: Sequence[float]) -> ProcessSummary:
    """Count, median and within-process CI of one process's already-sorted samples."""
    xs = list(sorted_xs)
    med = percentile(xs, 50)
    ci = median_ci(xs)
    rel = (ci[1] - ci[0]) / 2.0 / med if ci is not None and med > 0 else None
    return ProcessSummary(
        n=len(xs), median=med, ci95_low=ci[0] if ci else None, ci95_high=ci[1] if ci else None, rel_ci=rel
    )


def combine(
    samples: Sequence[Sequence[float]],
    batch_size: int = 1,
    *,
    method: str = DEFAULT_METHOD,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> ProcessStats:
    """Pool per-process per-iteration times (s) of one case into a ``ProcessStats``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not samples or any(len(s) == 0 for s in samples):
        raise ValueError("every process needs at least one sample")
    sorted_runs = [sorted(float(t) for t in s) for s in samples]
    per = tuple(summarize_process(xs) for xs in sorted_runs)
    k = len(per)
    meds = [p.median for p in per]
    med = statistics.median(meds)
    within = [p.rel_ci for p in per if p.rel_ci is not None]
    within_rel = statistics.median(within) if within else None

    between_rel_sd: float | None = None
    between_share: float | None = None
    if k == 1:
        lo, hi = per[0].ci95_low, per[0].ci95_high
        used, scope = "within", SCOPE_WITHIN
    else:
        sd = statistics.stdev(meds)
        between_rel_sd = sd / med if med > 0 else None
        halves = [(p.ci95_high - p.ci95_low) / 2.0 for p in per if p.ci95_low is not None and p.ci95_high is not None]
        # sd of one process's median from its own sampling noise alone
        se_w = within_rel * med / Z95 if within_rel is not None else 0.0
        if halves and sd > 0:
            noise_var = math.fsum((h / Z95) ** 2 for h in halves) / len(halves)
            between_share = max(0.0, 1.0 - noise_var / sd**2)
        elif halves:
            between_share = 0.0
        floor = t975(k - 1) * median_se_factor(k) * se_w / math.sqrt(k)
        if method == "t":
            half = t975(k - 1) * median_se_factor(k) * max(sd, se_w) / math.sqrt(k)
            lo, hi = med - half, med + half
        else:
            lo, hi = _hierarchical_bootstrap(sorted_runs, resamples, seed)
            lo, hi = min(lo, med - floor), max(hi, med + floor)
        used, scope = method, SCOPE_BETWEEN

    total = math.fsum(math.fsum(xs) for xs in sorted_runs)
    n = sum(len(xs) for xs in sorted_runs)
    rel_ci = (hi - lo) / 2.0 / med if lo is not None and hi is not None and med > 0 else None
    return ProcessStats(
        processes=k,
        method=used,
        interval_scope=scope,
        n=n,
        median=med,
        ci95_low=lo,
        ci95_high=hi,
        rel_ci=rel_ci,
        within_rel_ci=within_rel,
        between_rel_sd=between_rel_sd,
        between_share=between_share,
        batch_size=batch_size,
        throughput=batch_size * n / total if total > 0 else None,
        ms_per_batch=med * 1e3,
        ms_per_sample=med * 1e3 / batch_size,
        per_process=per,
    )


def _binom_sf(n: int, p: float, r: int) -> float:
    """P(Binomial(n, p) >= r): exact for small n, normal approximation (with continuity
    correction) above ``_EXACT_BINOMIAL_MAX_N`` — its error there is < 0.01, far below
    what a 2000-resample bootstrap resolves."""
    if p <= 0.0:
        return 1.0 if r <= 0 else 0.0
    if p >= 1.0:
        return 1.0 if r <= n else 0.0
    if n <= _EXACT_BINOMIAL_MAX_N:
        return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(r, n + 1))
    z = (r - 0.5 - n * p) / math.sqrt(n * p * (1 - p))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _median_cdf(n: int, rank: int) -> list[float]:
    """cdf[j] = P(the ``rank``-th smallest of n draws with replacement from n sorted
    values is at most the (j+1)-th of them) = P(Binomial(n, (j+1)/n) >= rank)."""
    cdf = [_binom_sf(n, (j + 1) / n, rank) for j in range(n)]
    cdf[-1] = 1.0
    for j in range(1, n):  # the approximation may wobble; a CDF does not
        cdf[j] = max(cdf[j], cdf[j - 1])
    return cdf


def _hierarchical_bootstrap(sorted_runs: list[list[float]], resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the median of process medians, resampling processes
    and then samples within each. A resampled process's median is drawn from its exact
    (order-statistic) distribution: inverse CDF of a uniform. For even n the two middle
    order statistics are drawn with the same uniform and averaged (an approximation:
    they are strongly, not perfectly, dependent)."""
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    rng = random.Random(seed)
    tables: list[tuple[list[float], list[float], list[float]]] = []
    for xs in sorted_runs:
        n = len(xs)
        lo_cdf = _median_cdf(n, (n + 1) // 2)
        hi_cdf = lo_cdf if n % 2 else _median_cdf(n, n // 2 + 1)
        tables.append((xs, lo_cdf, hi_cdf))
    k = len(sorted_runs)
    stats_b: list[float] = []
    for _ in range(resamples):
        meds: list[float] = []
        for i in rng.choices(range(k), k=k):
            xs, lo_cdf, hi_cdf = tables[i]
            u = rng.random()
            a = xs[bisect.bisect_left(lo_cdf, u)]
            meds.append(a if hi_cdf is lo_cdf else (a + xs[bisect.bisect_left(hi_cdf, u)]) / 2.0)
        stats_b.append(statistics.median(meds))
    stats_b.sort()
    return percentile(stats_b, 2.5), percentile(stats_b, 97.5)


def auto_decision(
    process_results_so_far: Sequence[Sequence[float]] | ProcessStats,
    target_rel_ci: float,
    max_processes: int,
    elapsed_s: float,
    budget_s: float | None,
    min_processes: int = 3,
    *,
    method: str = DEFAULT_METHOD,
) -> tuple[bool, str]:
    """Whether to start one more worker process for a case measured "auto"-matically.

    ``process_results_so_far``: each finished process's samples (or their
    ``combine``); ``elapsed_s``: wall time those processes took, measured by the caller.
    Returns ``(continue, reason)``, the rule that decided, first match wins:

    * ``"target met"`` — stop: at least ``min_processes`` ran and the between-process
      interval's rel_ci ≤ ``target_rel_ci``;
    * ``"process cap"`` — stop: ``max_processes`` ran;
    * ``"time budget"`` — stop: one more process of the mean length so far would end
      past ``budget_s`` (None: no budget);
    * no process yet → continue with ``"min processes"``, whatever the budget;
    * ``"min processes"`` — continue: fewer than ``min_processes`` ran (default 3: a t
      interval over 2 medians has one degree of freedom and is ±12.7 s.e. wide);
    * ``"interval undefined"`` — continue: too few samples for any interval;
    * ``"target not met"`` — continue.
    """
    if max_processes < 1 or min_processes < 1:
        raise ValueError("max_processes and min_processes must be >= 1")
    if isinstance(process_results_so_far, ProcessStats):
        got: ProcessStats | None = process_results_so_far
    else:
        got = combine(process_results_so_far, method=method) if process_results_so_far else None
    if got is None:  # nothing to stop on: every case runs at least one process
        return True, "min processes"
    k, rel = got.processes, got.rel_ci
    if k >= min_processes and rel is not None and rel <= target_rel_ci:
        return False, "target met"
    if k >= max_processes:
        return False, "process cap"
    if budget_s is not None and elapsed_s * (k + 1) / k > budget_s:
        return False, "time budget"
    if k < min_processes:
        return True, "min processes"
    if rel is None:
        return True, "interval undefined"
    return True, "target not met"
