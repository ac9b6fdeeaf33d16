"""The timing loop: untimed warm-up until settled, then timed blocks until a stop rule.

``step`` runs one iteration *and* leaves the device synchronised (the backend's job:
``torch.cuda.synchronize()``, outputs materialised on the host …), so every timed
region ends with the work really done. The clock is injected: tests drive the loop
with a fake clock and exact expectations.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

from benchbench.case import Settings
from benchbench.measure.stats import percentiles_of, rel_ci_halfwidth

Clock = Callable[[], float]

SETTLE_TOLERANCE = 0.10  # two consecutive warm-up iterations within 10% → settled
# A clock reading costs ~50–150 ns (perf_counter; benchmarks/bench_block_timing.py): a sample of
# one iteration of 10 µs or more carries at most 1% of it, so such iterations are timed singly
# and their percentiles are latency percentiles; only shorter ones are timed in blocks.
CLOCK_COST_S = 1e-7
MAX_CLOCK_SHARE = 0.01
MIN_BLOCK_TIME = CLOCK_COST_S / MAX_CLOCK_SHARE  # 10 µs
CI_CHECK_GROWTH = 1.10  # re-check the CI each time the sample count grows by 10%


@dataclass(frozen=True)
class Timing:
    """What the loop observed. ``samples`` are seconds per iteration; when
    ``block_size`` > 1 each sample is the mean of a block of that many iterations."""

    samples: list[float]
    block_size: int
    first_iter_s: float  # the very first call: time to first result (cold, never in samples)
    warmup_iters: int  # untimed iterations after the first
    warmup_s: float
    warmup_settled: bool
    timed_wall_s: float  # wall time of the timed window, checks between blocks included
    iterations: int  # timed iterations = len(samples) × block_size
    stop_reason: str  # "ci_target_met" | "max_time" | "max_iters" | "share_done" (one of several processes)
    target_met: bool
    final_rel_ci: float | None
    # what the samples' percentiles are of: "single iterations", or block means (then they are
    # not latency percentiles: the record has no latency p99, stats.latency_p99)
    percentiles_of: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "percentiles_of", percentiles_of([self.block_size]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d


def _warm_up(step: Callable[[], None], s: Settings, clock: Clock) -> tuple[list[float], float, bool]:
    """Untimed iterations: at least ``warmup_iters``, then until two consecutive ones
    differ by at most 10% (settled) or ``warmup_max_time`` has passed (not settled), or,
    in a case's later processes, ``warmup_cap`` iterations have run (what its first process
    needed to settle: not settled unless the last two agreed)."""
    times: list[float] = []
    if s.warmup_iters == 0:
        return times, 0.0, False
    start = clock()
    while True:
        t0 = clock()
        step()
        times.append(clock() - t0)
        if len(times) >= max(s.warmup_iters, 2):
            if abs(times[-1] - times[-2]) <= SETTLE_TOLERANCE * times[-2]:
                return times, clock() - start, True
            if clock() - start >= s.warmup_max_time:
                return times, clock() - start, False
            if s.warmup_cap is not None and len(times) >= s.warmup_cap:
                return times, clock() - start, False


def choose_block_size(per_iter_s: float, min_block_time: float = MIN_BLOCK_TIME) -> int:
    """Iterations per timed sample: 1 (single iterations, real latency percentiles) unless an
    iteration is shorter than ``min_block_time``, where the clock's own cost would show; then
    enough for a block to last that long."""
    if per_iter_s <= 0:
        return 1000
    return max(1, math.ceil(min_block_time / per_iter_s))


def measure(
    step: Callable[[], None],
    settings: Settings,
    clock: Clock = time.perf_counter,
    timed_window: Callable[[], AbstractContextManager] | None = None,
) -> Timing:
    """Time ``step`` by the rules in DESIGN.md; see the module docstring.

    ``timed_window`` (e.g. the telemetry sampler) is entered after warm-up, just before
    the timed window's first clock reading, and left just after its last one, so what it
    observes brackets the timed iterations and nothing else."""
    s = settings
    t0 = clock()
    step()
    first = clock() - t0

    warm, warm_s, settled = _warm_up(step, s, clock)
    recent = sorted(warm[-3:] or [first])
    block = choose_block_size(recent[len(recent) // 2])

    samples: list[float] = []
    next_check = s.min_iters
    stop, rel = "", None
    with timed_window() if timed_window is not None else contextlib.nullcontext():
        start = clock()
        while True:
            b0 = clock()
            for _ in range(block):
                step()
            b1 = clock()
            samples.append((b1 - b0) / block)
            elapsed = b1 - start
            n = len(samples)
            if not s.stop_on_ci and elapsed >= s.min_time and n >= s.min_iters:
                stop = "share_done"  # one process's share of a case measured in several
                break
            if elapsed >= s.min_time and n >= s.min_iters and n >= next_check:
                rel = rel_ci_halfwidth(sorted(samples))
                if rel is not None and rel <= s.target_rel_ci:
                    stop = "ci_target_met"
                    break
                next_check = max(n + 1, math.ceil(n * CI_CHECK_GROWTH))
            if n >= s.min_iters and elapsed >= s.max_time:
                stop = "max_time"
                break
            if n >= s.max_iters:
                stop = "max_iters"
                break
        wall = clock() - start
    if stop != "ci_target_met":
        rel = rel_ci_halfwidth(sorted(samples))
    return Timing(
        samples=samples,
        block_size=block,
        first_iter_s=first,
        warmup_iters=len(warm),
        warmup_s=warm_s,
        warmup_settled=settled,
        timed_wall_s=wall,
        iterations=len(samples) * block,
        stop_reason=stop,
        target_met=stop == "ci_target_met",
        final_rel_ci=rel,
    )
