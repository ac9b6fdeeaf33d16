"""Several worker processes per case, driven by the runner: interleaved passes, the auto
stopping rules, combination into one record, failures, interrupts and --resume. A fake
executor stands in for the workers (each "process" a record with hand-made samples); the
real forked workers are exercised in test_isolation.py and test_end_to_end.py."""

from __future__ import annotations

import dataclasses

import pytest

from benchbench import runner
from benchbench.measure import combine
from benchbench.results import Record, read_records
from benchbench.suite.schema import parse_suite


def _suite(defaults: str = "processes: 3", models: str = "[seed_mlp, seed_cnn, resnet18]"):
    return parse_suite(f"name: p\nmatrix: {{model: {models}, batch_size: [1]}}\ndefaults: {{{defaults}}}\n", "p.yaml")


class FakeExecutor:
    """Records what it was asked to run; a process's samples come from ``samples(case, index)``."""

    def __init__(self, samples, fail=None, interrupt_at=None):
        self.samples, self.fail, self.interrupt_at = samples, fail or (lambda c, i: None), interrupt_at
        self.calls: list[list[tuple[str, int]]] = []
        self.ran = 0

    def run_many(self, cases, run_dir, extra_paths, on_start=None):
        self.calls.append([(c.model, c.settings.process) for c in cases])
        for case in cases:
            if self.interrupt_at is not None and self.ran == self.interrupt_at:
                raise KeyboardInterrupt
            self.ran += 1
            i = case.settings.process
            reason = self.fail(case, i)
            if reason:
                yield Record(case=case.to_dict(), status="failed", reason=reason)
                continue
            xs = self.samples(case, i)
            yield Record(
                case=case.to_dict(),
                status="ok",
                samples=xs,
                stats={"median": sorted(xs)[len(xs) // 2]},
                timing={
                    "timed_wall_s": sum(xs),
                    "iterations": len(xs),
                    "block_size": 1,
                    "stop_reason": "ci_target_met",
                },
                memory={"host_peak_rss_bytes": 100 * i},
                model={"params": 7} if i == 1 else {},
                runtime={"worker": {"pid": 1000 + i, "start_method": "forkserver"}},
                duration_s=sum(xs) + 1.0,
            )  # 1 s of start-up and warm-up

    def close(self):
        pass


def _flat(n=40, level=1.0, spread=0.01):
    return [level * (1 + spread * ((k * 7) % 11 - 5) / 5) for k in range(n)]


@pytest.fixture(autouse=True)
def _no_probe(monkeypatch):
    monkeypatch.setattr(runner, "_probes_for_environment", lambda fws: {})


def test_processes_are_interleaved_pass_by_pass_across_the_suite(tmp_path):
    suite = _suite("processes: 3")
    ex = FakeExecutor(lambda c, i: _flat())
    res = runner.run(suite, list(suite.cases), tmp_path / "run", executor=ex)
    # pass 1 runs every case's first process, pass 2 every case's second, …
    assert ex.calls == [[("seed_mlp", p), ("seed_cnn", p), ("resnet18", p)] for p in (1, 2, 3)]
    assert [r.case["model"] for r in res.records] == ["seed_mlp", "seed_cnn", "resnet18"]
    rec = res.records[0]
    assert rec.processes["processes"] == 3 and rec.processes["interval_scope"] == "between-process"
    assert [p["pid"] for p in rec.processes["per_process"]] == [1001, 1002, 1003]
    assert len(rec.samples) == 120 and rec.stats["n"] == 120
    assert rec.model == {"params": 7}  # from process 1, the only one that counts it
    assert rec.memory["host_peak_rss_bytes"] == 300  # the largest process
    assert rec.case["settings"]["process"] == 1 and rec.case["settings"]["max_time"] == suite.cases[0].settings.max_time
    assert not (tmp_path / "run" / "processes" / f"{rec.case_id}.jsonl").exists()  # combined: the parts are gone


def test_each_process_gets_its_share_of_the_case_time():
    case = _suite("processes: 4, min_time: 2, max_time: 8").cases[0]
    p3 = combine.process_case(case, 3)
    assert (p3.settings.process, p3.settings.min_time, p3.settings.max_time) == (3, 0.5, 2.0)
    assert combine.process_case(case, 1).settings.min_iters == 2  # min_iters 5 shared by 4, at least 2 in process 1
    assert p3.settings.min_iters == 1  # a later process: one sample at least (its median), and its min_time share
    assert p3.settings.stop_on_ci is False  # stops at its share: more processes, not longer ones
    one = _suite("processes: 1").cases[0]
    assert combine.process_case(one, 1).settings.stop_on_ci is True  # one process: its own interval decides
    assert p3.case_id == case.case_id
    auto = _suite("min_time: 1, max_time: 10").cases[0]  # auto: shared by its minimum of 5
    assert combine.process_case(auto, 1).settings.max_time == 2.0


def test_later_processes_cap_their_warm_up_at_what_process_1_needed():
    case = _suite("processes: 3, warmup_iters: 2").cases[0]
    first = Record(case=case.to_dict(), status="ok", samples=[1.0], timing={"warmup_iters": 4, "warmup_settled": True})
    assert combine.process_case(case, 1).settings.warmup_cap is None  # process 1 finds out
    assert combine.process_case(case, 2, [first]).settings.warmup_cap == 4
    unsettled = dataclasses.replace(first, timing={"warmup_iters": 9, "warmup_settled": False})
    assert combine.process_case(case, 2, [unsettled]).settings.warmup_cap is None  # nothing learnt: the full rule
    short = dataclasses.replace(first, timing={"warmup_iters": 1, "warmup_settled": True})
    assert combine.process_case(case, 3, [short, first]).settings.warmup_cap == 2  # never below warmup_iters


def test_the_runner_hands_process_1_to_the_later_ones(tmp_path):
    suite = _suite("processes: 3, warmup_iters: 2", models="[seed_mlp]")
    seen = []

    class Warm(FakeExecutor):
        def run_many(self, cases, run_dir, extra_paths, on_start=None):
            seen.extend((c.settings.process, c.settings.warmup_cap, c.settings.min_iters) for c in cases)
            for rec in super().run_many(cases, run_dir, extra_paths, on_start):
                rec.timing.update(warmup_iters=3, warmup_settled=True)
                yield rec

    runner.run(suite, list(suite.cases), tmp_path / "run", executor=Warm(lambda c, i: _flat()))
    assert seen == [(1, None, 2), (2, 3, 1), (3, 3, 1)]


def test_auto_stops_on_the_target_the_cap_or_the_budget(tmp_path):
    agree = FakeExecutor(lambda c, i: _flat(level=0.01, spread=0.002))
    suite = _suite("target_rel_ci: 0.02, max_processes: 8, min_time: 100, max_time: 100", models="[seed_mlp]")
    rec = runner.run(suite, list(suite.cases), tmp_path / "a", executor=agree).records[0]
    assert rec.processes["processes"] == 5 and rec.processes["stopped_by"] == "target met"

    wild = FakeExecutor(lambda c, i: _flat(level=0.01 + 0.003 * (i % 2), spread=0.002))  # processes disagree
    rec = runner.run(suite, list(suite.cases), tmp_path / "b", executor=wild).records[0]
    assert rec.processes["processes"] == 8 and rec.processes["stopped_by"] == "process cap"
    assert rec.stats["rel_ci"] > 0.02 and rec.timing["target_met"] is False

    # ≈ 12.5 s per process (11.5 of samples, 1 of start-up); the budget is what one process
    # meeting min_time cost: its start-up + min_time = 56 s: a 5th process would end past it
    slow = FakeExecutor(lambda c, i: _flat(n=10, level=1.0 + 0.3 * (i % 2)))
    suite = _suite("target_rel_ci: 0.02, max_processes: 8, min_time: 55, max_time: 55", models="[seed_mlp]")
    rec = runner.run(suite, list(suite.cases), tmp_path / "c", executor=slow).records[0]
    assert rec.processes["processes"] == 4 and rec.processes["stopped_by"] == "time budget"

    # however short the budget, auto never stops below 3 processes: fewer give no interval worth the name
    suite = _suite("target_rel_ci: 0.02, min_time: 1, max_time: 1", models="[seed_mlp]")
    rec = runner.run(suite, list(suite.cases), tmp_path / "d", executor=slow).records[0]
    assert rec.processes["processes"] == 3 and rec.processes["stopped_by"] == "time budget"


def test_interval_widens_when_processes_disagree(tmp_path):
    suite = _suite("processes: 5", models="[seed_mlp]")
    agree = runner.run(
        suite, list(suite.cases), tmp_path / "a", executor=FakeExecutor(lambda c, i: _flat(spread=0.01))
    ).records[0]
    apart = runner.run(
        suite,
        list(suite.cases),
        tmp_path / "b",
        executor=FakeExecutor(lambda c, i: _flat(level=1 + 0.05 * (i - 3), spread=0.01)),
    ).records[0]
    assert apart.stats["rel_ci"] > 3 * agree.stats["rel_ci"]
    assert apart.processes["between_rel_sd"] > 0.03


def test_one_process_says_its_interval_is_within_process(tmp_path):
    suite = _suite("processes: 1", models="[seed_mlp]")
    rec = runner.run(suite, list(suite.cases), tmp_path / "r", executor=FakeExecutor(lambda c, i: _flat())).records[0]
    assert rec.processes["interval_scope"] == "within-process" and rec.stats["interval_scope"] == "within-process"


def test_a_failed_process_fails_the_case_and_the_suite_goes_on(tmp_path):
    suite = _suite("processes: 3")
    ex = FakeExecutor(
        lambda c, i: _flat(), fail=lambda c, i: "worker crashed: SIGSEGV" if (c.model, i) == ("seed_cnn", 2) else None
    )
    res = runner.run(suite, list(suite.cases), tmp_path / "run", executor=ex)
    by = {r.case["model"]: r for r in res.records}
    assert by["seed_cnn"].status == "failed" and by["seed_cnn"].reason == "worker crashed: SIGSEGV"
    assert by["seed_cnn"].processes["failed_process"] == 2 and len(by["seed_cnn"].processes["ok_before"]) == 1
    assert by["seed_mlp"].status == by["resnet18"].status == "ok"
    assert ex.calls[2] == [("seed_mlp", 3), ("resnet18", 3)]  # the failed case is not run again


def test_interrupt_keeps_finished_processes_and_resume_runs_only_the_missing_ones(tmp_path):
    suite = _suite("processes: 3")
    run_dir = tmp_path / "run"
    ex = FakeExecutor(lambda c, i: _flat(), interrupt_at=4)  # Ctrl-C during pass 2, case 2
    res = runner.run(suite, list(suite.cases), run_dir, executor=ex)
    assert res.interrupted and res.records == []
    kept = {c.model: len(read_records(run_dir / "processes" / f"{c.case_id}.jsonl")) for c in suite.cases}
    assert kept == {"seed_mlp": 2, "seed_cnn": 1, "resnet18": 1}  # only the running process is lost

    again = FakeExecutor(lambda c, i: _flat())
    res = runner.run(suite, list(suite.cases), run_dir, executor=again)
    assert again.calls[0] == [("seed_mlp", 3), ("seed_cnn", 2), ("resnet18", 2)]
    assert all(r.processes["processes"] == 3 for r in res.records)
    assert [p["pid"] for p in res.records[0].processes["per_process"]] == [1001, 1002, 1003]


def test_a_skipped_case_is_one_skipped_record(tmp_path):
    suite = _suite("processes: 3", models="[seed_mlp]")

    class Skipping(FakeExecutor):
        def run_many(self, cases, run_dir, extra_paths, on_start=None):
            self.calls.append([(c.model, c.settings.process) for c in cases])
            for c in cases:
                yield Record(case=c.to_dict(), status="skipped", reason="no GPU")

    ex = Skipping(None)
    res = runner.run(suite, list(suite.cases), tmp_path / "run", executor=ex)
    assert [r.status for r in res.records] == ["skipped"] and len(ex.calls) == 1
    assert res.records[0].case["settings"]["process"] == 1


def test_combined_record_round_trips_and_keeps_process_samples_in_order():
    case = _suite("processes: 2", models="[seed_mlp]").cases[0]
    recs = [
        Record(
            case=case.to_dict(),
            status="ok",
            samples=[float(i)] * 10,
            timing={"timed_wall_s": 1.0, "iterations": 10, "block_size": 1},
        )
        for i in (1, 2)
    ]
    rec = combine.combine_records(case, recs, "fixed: 2 processes")
    assert rec.samples == [1.0] * 10 + [2.0] * 10
    assert [p["n"] for p in rec.processes["per_process"]] == [10, 10]
    assert rec.stats["median"] == 1.5 and rec.timing["iterations"] == 20
    assert Record.from_dict(rec.to_dict()) == rec
    assert dataclasses.asdict(rec)["processes"]["planned"] == 2


def test_a_data_parallel_case_runs_once_under_auto(tmp_path):
    suite = _suite("devices: 2", models="[seed_mlp]")
    ex = FakeExecutor(lambda c, i: _flat())
    rec = runner.run(suite, list(suite.cases), tmp_path / "run", executor=ex).records[0]
    assert ex.calls == [[("seed_mlp", 1)]]
    assert rec.processes["processes"] == 1 and rec.processes["interval_scope"] == "within-process"
    assert rec.processes["stopped_by"].startswith("data-parallel")
    assert combine.process_case(suite.cases[0], 1).settings.max_time == suite.cases[0].settings.max_time


def test_throughput_counts_iterations_when_processes_chose_different_block_sizes():
    case = _suite("processes: 2", models="[seed_mlp]").cases[0]
    # process 1: 10 samples, each the mean of 4 iterations of 1 ms; process 2: 10 single 2 ms iterations
    recs = [
        Record(case=case.to_dict(), status="ok", samples=[0.001] * 10, timing={"block_size": 4, "iterations": 40}),
        Record(case=case.to_dict(), status="ok", samples=[0.002] * 10, timing={"block_size": 1, "iterations": 10}),
    ]
    rec = combine.combine_records(case, recs, "fixed: 2 processes")
    # 50 iterations of batch 1 in 40 × 1 ms + 10 × 2 ms = 60 ms (not 20 samples in 30 ms)
    assert rec.stats["throughput"] == pytest.approx(50 / 0.060)
    assert rec.processes["throughput"] == rec.stats["throughput"]
    assert rec.timing["block_size"] is None and rec.timing["block_sizes"] == [4, 1]
