"""The generation loop (benchbench.measure.generate) driven by a fake model on a fake clock:
a model with known prefill and per-token costs gives exactly those TTFT and per-token times
through the real loop; no framework, no sleeps. Costs are dyadic fractions, exact in binary."""

import contextlib

import pytest

from benchbench.case import Settings
from benchbench.measure import generate
from benchbench.measure.combine import combine_records
from benchbench.results import Record

PREFILL = 0.0625  # s
TOKEN = 0.0078125  # s: the first decode step
GROWTH = 0.0009765625  # s more per step: attention over a longer KV cache


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return self.now


class FakeModel:
    """A decoder whose prefill costs ``prefill`` s (the first ``cold`` runs cost more) and whose
    decode step k (0-based, within a run) costs TOKEN + k × GROWTH s of fake time."""

    def __init__(self, clock, new_tokens, prefill=PREFILL, cold=(), growth=GROWTH):
        self.clock, self.new_tokens, self.prefill_s, self.growth = clock, new_tokens, prefill, growth
        self.cold = list(cold)
        self.runs = 0
        self.resets = 0
        self.log: list[str] = []

    def reset(self):
        self.resets += 1
        self.clock.now += 1.0  # an empty cache costs time, but never inside a run's timing
        self.log.append("reset")

    def prefill(self):
        self.clock.now += self.cold.pop(0) if self.cold else self.prefill_s
        self.runs += 1
        self.log.append("prefill")
        return 0

    def decode(self, k):
        self.clock.now += TOKEN + k * self.growth
        self.log.append("decode")
        return k + 1

    def steps(self, facts=None):
        return generate.Steps(self.prefill, self.decode, self.new_tokens, reset=self.reset, facts=facts)


def token_times(new_tokens):
    return [TOKEN + k * GROWTH for k in range(new_tokens - 1)]


def test_ttft_and_every_token_are_exactly_the_models_costs():
    clock = FakeClock()
    model = FakeModel(clock, new_tokens=5)
    s = Settings(warmup_iters=1, min_time=0.0, min_iters=4, max_iters=4, max_time=1000)
    g = generate.measure(model.steps(), s, clock=clock)
    assert g.ttft == [PREFILL] * 4
    assert g.timing.samples == token_times(5) * 4  # single tokens, in order, never block means
    assert g.e2e == [PREFILL + sum(token_times(5))] * 4
    assert g.timing.block_size == 1 and g.timing.percentiles_of == "single iterations"
    assert g.timing.iterations == 16 and g.timing.stop_reason == "max_iters"
    # the reset before every run (cold, warm-up, timed) is never inside a TTFT or a token
    assert model.resets == model.runs == 1 + 2 + 4  # cold, two warm-up runs (settled), four timed
    assert model.log[:6] == ["reset", "prefill", "decode", "decode", "decode", "decode"]


def test_the_cold_run_and_warm_up_are_never_samples():
    clock = FakeClock()
    model = FakeModel(clock, new_tokens=3, cold=[4.0, 1.0, 0.5])  # cold start, then a settling warm-up
    s = Settings(warmup_iters=2, min_time=0.0, min_iters=3, max_iters=3, max_time=1000)
    g = generate.measure(model.steps(), s, clock=clock)
    assert g.first_ttft_s == 4.0 and g.first_e2e_s == 4.0 + sum(token_times(3))
    assert g.timing.first_iter_s == g.first_e2e_s
    assert g.timing.warmup_iters == 4 and g.timing.warmup_settled  # prefills 1.0, 0.5, 0.0625, 0.0625: settled
    assert g.ttft == [PREFILL] * 3


def test_stops_on_the_ttft_and_token_intervals_or_on_its_share():
    clock = FakeClock()
    s = Settings(warmup_iters=0, min_time=0.5, min_iters=6, max_time=1000, target_rel_ci=0.02)
    g = generate.measure(FakeModel(clock, new_tokens=4, growth=0.0).steps(), s, clock=clock)
    # identical runs and tokens: both intervals are zero-wide once 8 runs (the fewest with a TTFT interval) ran
    assert g.timing.stop_reason == "ci_target_met" and g.timing.target_met and len(g.ttft) == 8
    share = Settings(warmup_iters=0, min_time=0.25, min_iters=2, max_time=1000, stop_on_ci=False)
    clock = FakeClock()
    g = generate.measure(FakeModel(clock, new_tokens=4).steps(), share, clock=clock)
    assert g.timing.stop_reason == "share_done" and len(g.ttft) == 2  # a run (its reset included) lasts over 0.25 s


def test_max_time_stops_a_run_whose_interval_is_never_met():
    clock = FakeClock()
    costs = [PREFILL * (1 + (i % 3)) for i in range(1000)]  # a spread the 2% target never meets
    model = FakeModel(clock, new_tokens=2, cold=costs)
    s = Settings(warmup_iters=0, min_time=0.0, min_iters=2, max_time=1.0, target_rel_ci=0.02)
    g = generate.measure(model.steps(), s, clock=clock)
    assert g.timing.stop_reason == "max_time" and not g.timing.target_met
    assert g.timing.timed_wall_s >= 1.0


def test_the_timed_window_brackets_the_timed_runs_only():
    clock = FakeClock()
    model = FakeModel(clock, new_tokens=3)
    seen = []

    @contextlib.contextmanager
    def window():
        seen.append(("in", model.runs))
        yield
        seen.append(("out", model.runs))

    s = Settings(warmup_iters=1, min_time=0.0, min_iters=2, max_iters=2, max_time=1000)
    generate.measure(model.steps(), s, clock=clock, timed_window=window)
    assert seen == [("in", 3), ("out", 5)]  # after the cold run and two warm-up runs; around the two timed


def test_one_new_token_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        generate.measure(FakeModel(FakeClock(), new_tokens=1).steps(), Settings(), clock=FakeClock())


def _block(batch=2, prompt=16, new_tokens=5, runs=4, prefill=PREFILL, facts=None):
    clock = FakeClock()
    model = FakeModel(clock, new_tokens=new_tokens, prefill=prefill)
    s = Settings(warmup_iters=0, min_time=0.0, min_iters=runs, max_iters=runs, max_time=1000)
    g = generate.measure(model.steps(), s, clock=clock)
    return generate.summary([generate.part(g, batch, prompt)], [g.timing.samples], facts or {}), g


def test_summary_statistics_and_token_rates():
    block, g = _block(batch=2, prompt=16, new_tokens=5, runs=4, facts={"kv_cache_bytes": 1024})
    assert block["ttft_s"]["median"] == PREFILL and block["ttft_s"]["p99"] == PREFILL
    assert block["ttft_s"]["interval_scope"] == "within-process"
    tokens = token_times(5)
    assert block["tpot_s"]["min"] == tokens[0] and block["tpot_s"]["max"] == tokens[-1]
    assert block["tpot_s"]["n"] == 16
    assert block["decode_tokens_per_s"] == pytest.approx(2 * 16 / (4 * sum(tokens)), rel=1e-12)
    assert block["output_tokens"] == 2 * 5 * 4 == generate.output_tokens(g, 2)
    assert block["output_tokens_per_s"] == pytest.approx(40 / (4 * (PREFILL + sum(tokens))), rel=1e-12)
    assert block["prefill_tokens_per_s"] == 2 * 16 / PREFILL
    assert block["kv_cache_bytes"] == 1024 and block["first_run"]["note"].startswith("cold")


def test_processes_combine_with_the_between_process_interval_and_keep_the_facts_measured_once():
    parts = []
    for i, prefill in enumerate((PREFILL, 2 * PREFILL, PREFILL)):
        facts = {"kv_cache_bytes": 1024, "prefill_flops": 5e9} if i == 0 else {"kv_cache_bytes": 1024}
        block, g = _block(prefill=prefill, facts=facts)
        parts.append((block, g.timing.samples))
    combined = generate.combine([b for b, _ in parts], [t for _, t in parts])
    assert combined["processes"] == 3 and combined["runs"] == 12
    assert combined["ttft_s"]["median"] == PREFILL  # the median of the process medians
    assert combined["ttft_s"]["interval_scope"] == "between-process"
    assert combined["ttft_s"]["ci95_high"] > 2 * PREFILL  # the odd process widens the interval
    assert len(combined["ttft_samples"]) == 12
    assert combined["prefill_flops"] == 5e9  # process 1's
    assert generate.combine([], []) == {} and generate.combine([{}], [[]]) == {}


def test_combine_records_carries_the_generate_block():
    from benchbench.case import Case

    case = Case("torch", "tiny_decoder", 2, "cpu", "generate", "fp32", (16,), prompt_len=16, new_tokens=5)
    records = []
    for prefill in (PREFILL, PREFILL):
        block, g = _block(prefill=prefill, facts={"kv_cache_bytes": 1})
        records.append(
            Record(
                case=case.to_dict(), status="ok", samples=g.timing.samples, timing=g.timing.to_dict(), generate=block
            )
        )
    rec = combine_records(case, records, "fixed: 2 processes")
    assert rec.generate["processes"] == 2 and rec.generate["ttft_s"]["median"] == PREFILL
    assert rec.generate["tpot_s"]["n"] == len(rec.samples) == 32
    assert rec.stats["throughput"] == pytest.approx(rec.generate["decode_tokens_per_s"], rel=1e-12)
