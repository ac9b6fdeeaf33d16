"""The timing loop driven by a fake clock: exact iteration counts and stop reasons, no sleeps."""

import contextlib
import itertools

import pytest

from benchbench.case import Settings
from benchbench.measure.timing import choose_block_size, measure


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def stepper(clock, durations):
    """A step that takes the next duration from ``durations`` (an iterable) of fake time."""
    it = iter(durations)
    calls = []

    def step():
        d = next(it)
        calls.append(d)
        clock.now += d

    return step, calls


def test_first_iteration_is_cold_start_and_never_a_sample():
    clock = FakeClock()
    # cold 5 s, warm-up 0.25 then 0.25 (settled), then steady 0.125 (exact in binary)
    step, calls = stepper(clock, itertools.chain([5.0, 0.25, 0.25], itertools.repeat(0.125)))
    s = Settings(warmup_iters=2, min_time=1.0, max_time=10.0, min_iters=10, target_rel_ci=0.02)
    t = measure(step, s, clock=clock)
    assert t.first_iter_s == 5.0
    assert t.warmup_iters == 2 and t.warmup_settled is True
    assert t.samples == [0.125] * len(t.samples)
    # identical samples: the CI is zero-width as soon as min_time and min_iters are met
    assert t.stop_reason == "ci_target_met" and t.target_met
    assert len(t.samples) == 10  # 10 × 0.125 s ≥ 1.0 s = min_time, and min_iters 10
    assert t.block_size == 1
    assert t.iterations == 10


def test_warm_up_runs_until_settled():
    clock = FakeClock()
    warm = [1.0, 0.75, 0.5, 0.375, 0.25, 0.234375]  # cold, then settling; 0.25 → 0.234375 within 10%
    step, calls = stepper(clock, itertools.chain(warm, itertools.repeat(0.234375)))
    s = Settings(warmup_iters=2, min_time=0.0, min_iters=8, max_time=100)
    t = measure(step, s, clock=clock)
    assert t.warmup_iters == 5
    assert t.warmup_settled
    assert t.warmup_s == 0.75 + 0.5 + 0.375 + 0.25 + 0.234375


def test_unsettled_warm_up_stops_at_its_time_limit_and_says_so():
    clock = FakeClock()
    alternating = itertools.cycle([0.1, 0.3])  # never within 10% of the previous
    step, _ = stepper(clock, alternating)
    s = Settings(warmup_iters=2, warmup_max_time=2.0, min_time=0.0, min_iters=8, max_time=3.0)
    t = measure(step, s, clock=clock)
    assert t.warmup_settled is False
    assert 2.0 <= t.warmup_s < 2.4


def test_a_later_process_warm_up_stops_at_its_cap_and_says_whether_it_settled():
    clock = FakeClock()
    alternating = itertools.cycle([0.1, 0.3])  # never within 10% of the previous
    step, _ = stepper(clock, alternating)
    s = Settings(warmup_iters=2, warmup_max_time=100.0, warmup_cap=3, min_time=0.0, min_iters=1, max_time=3.0)
    t = measure(step, s, clock=clock)
    assert t.warmup_iters == 3 and t.warmup_settled is False  # capped, not settled: the record says so
    assert t.warmup_s == pytest.approx(0.3 + 0.1 + 0.3)  # the first (0.1) is the cold start, not warm-up

    clock = FakeClock()
    step, _ = stepper(clock, itertools.chain([1.0, 0.5, 0.25], itertools.repeat(0.25)))
    s = Settings(warmup_iters=2, warmup_cap=5, min_time=0.0, min_iters=1, max_time=3.0)
    t = measure(step, s, clock=clock)
    assert t.warmup_iters == 3 and t.warmup_settled is True  # settled before the cap: the cap never bites

    clock = FakeClock()
    step, _ = stepper(clock, itertools.cycle([0.1, 0.3]))
    s = Settings(warmup_iters=4, warmup_cap=2, warmup_max_time=100.0, min_time=0.0, min_iters=1, max_time=3.0)
    assert measure(step, s, clock=clock).warmup_iters == 4  # warmup_iters is a floor the cap never cuts


def test_noisy_samples_stop_on_max_time_with_target_not_met():
    clock = FakeClock()
    noisy = itertools.cycle([0.1, 0.2, 0.1, 0.3, 0.15])
    step, _ = stepper(clock, itertools.chain([1.0, 0.1, 0.1], noisy))
    s = Settings(warmup_iters=2, min_time=1.0, max_time=5.0, min_iters=5, target_rel_ci=0.01)
    t = measure(step, s, clock=clock)
    assert t.stop_reason == "max_time"
    assert t.target_met is False
    assert t.final_rel_ci is not None and t.final_rel_ci > 0.01
    assert 5.0 <= sum(t.samples) < 5.0 + 0.3 + 1e-9


def test_max_iters_caps_the_sample_count():
    clock = FakeClock()
    noisy = itertools.cycle([0.1, 0.2])
    step, _ = stepper(clock, itertools.chain([1.0, 0.1, 0.1], noisy))
    s = Settings(warmup_iters=2, min_time=0.0, max_time=1e9, min_iters=5, max_iters=40, target_rel_ci=0.001)
    t = measure(step, s, clock=clock)
    assert t.stop_reason == "max_iters" and len(t.samples) == 40


def test_min_iters_wins_over_max_time():
    clock = FakeClock()
    step, _ = stepper(clock, itertools.repeat(2.0))
    s = Settings(warmup_iters=1, min_time=0.0, max_time=1.0, min_iters=5)
    t = measure(step, s, clock=clock)
    assert len(t.samples) == 5


def test_fast_steps_are_timed_in_blocks():
    clock = FakeClock()
    step, calls = stepper(clock, itertools.repeat(2e-7))
    s = Settings(warmup_iters=3, min_time=0.05, max_time=1.0, min_iters=10)
    t = measure(step, s, clock=clock)
    assert t.block_size == choose_block_size(2e-7) == 50
    assert t.iterations == len(t.samples) * 50
    assert all(abs(x - 2e-7) < 1e-12 for x in t.samples)
    assert t.percentiles_of == "block means of 50 iterations: not latency percentiles"
    # first call + warm-up (2 settle checks need ≥ 3 here) + timed iterations
    assert len(calls) == 1 + t.warmup_iters + t.iterations


def test_block_size_rule():
    """Single iterations whenever the clock's cost (~0.1 µs a reading) is at most 1% of one:
    from 10 µs up; shorter iterations in blocks of at least 10 µs."""
    assert choose_block_size(0.5) == 1
    assert choose_block_size(1e-3) == 1
    assert choose_block_size(2.5e-4) == 1  # 250 µs: timed in blocks of 4 before issue 17
    assert choose_block_size(1e-5) == 1
    assert choose_block_size(2.5e-6) == 4
    assert choose_block_size(1e-7) == 100


def test_single_iterations_are_labelled_as_such():
    clock = FakeClock()
    step, _ = stepper(clock, itertools.repeat(15e-6))  # batch-1 seed_mlp on a CPU: ~15 µs
    t = measure(step, Settings(warmup_iters=2, min_time=0.01, min_iters=10), clock=clock)
    assert t.block_size == 1 and t.percentiles_of == "single iterations"
    assert t.to_dict()["percentiles_of"] == "single iterations"


def test_timed_window_hook_brackets_the_timed_iterations_only():
    """The telemetry sampler's hook: entered after the cold call and warm-up, before the
    window's first clock reading; left after its last one."""
    clock = FakeClock()
    step, calls = stepper(clock, itertools.chain([5.0, 0.25, 0.25], itertools.repeat(0.125)))
    seen = {}

    @contextlib.contextmanager
    def window():
        seen["enter"] = (len(calls), clock.now)
        yield
        seen["exit"] = (len(calls), clock.now)

    s = Settings(warmup_iters=2, min_time=1.0, max_time=10.0, min_iters=10, target_rel_ci=0.02)
    t = measure(step, s, clock=clock, timed_window=window)
    assert seen["enter"] == (3, 5.5)  # cold call + 2 warm-up iterations, none timed yet
    assert seen["exit"] == (3 + t.iterations, 5.5 + t.timed_wall_s)
    assert t.timed_wall_s == 10 * 0.125


def test_timed_window_hook_is_left_when_a_step_raises():
    clock = FakeClock()
    n = {"calls": 0}

    def step():
        n["calls"] += 1
        clock.now += 0.1
        if n["calls"] == 6:
            raise RuntimeError("boom")

    state = []

    @contextlib.contextmanager
    def window():
        state.append("on")
        try:
            yield
        finally:
            state.append("off")

    with pytest.raises(RuntimeError, match="boom"):
        measure(step, Settings(warmup_iters=2, min_iters=5), clock=clock, timed_window=window)
    assert state == ["on", "off"]


def test_a_process_share_stops_at_min_time_and_min_iters_whatever_its_interval():
    """One of several processes of a case (stop_on_ci False) measures its share and stops:
    noisy samples that would run to max_time stop once min_time and min_iters are met."""
    clock = FakeClock()
    noisy = itertools.cycle([0.1, 0.2, 0.1, 0.3, 0.15])
    step, _ = stepper(clock, itertools.chain([1.0, 0.1, 0.1], noisy))
    s = Settings(warmup_iters=2, min_time=0.4, max_time=5.0, min_iters=3, target_rel_ci=0.01, stop_on_ci=False)
    t = measure(step, s, clock=clock)
    assert t.stop_reason == "share_done" and t.target_met is False
    assert len(t.samples) == 3 and sum(t.samples) == pytest.approx(0.4)  # 0.1 + 0.2 + 0.1 ≥ 0.4, n = 3
    s = Settings(warmup_iters=2, min_time=0.4, max_time=5.0, min_iters=3, target_rel_ci=0.01)  # one process
    clock.now = 0.0
    step, _ = stepper(clock, itertools.chain([1.0, 0.1, 0.1], noisy))
    assert measure(step, s, clock=clock).stop_reason == "max_time"
