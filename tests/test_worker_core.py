"""benchbench.worker.core.measure_case: the one path from a case to its record, for the
plain worker and for every rank of a data-parallel case. A fake backend (no framework):
what a rank passes in (clock, step wrapper, telemetry, memory, placement, device) is what
the record is made with; variant facts, fidelity, failure labels and profile do not
depend on who measures."""

from __future__ import annotations

import dataclasses

import pytest

from benchbench import backends
from benchbench.case import Case, Settings
from benchbench.framework.base import Prepared, Skip
from benchbench.measure.stats import summarize
from benchbench.worker import core

FAST = Settings(warmup_iters=1, min_time=0.0, max_time=0.01, min_iters=3, telemetry_hz=0)
CASE = Case("torch", "seed_mlp", 4, "cpu", "train", "fp32", (10,), settings=FAST)
DP = dataclasses.replace(CASE, device="cuda", devices=2)


class FakeBackend:
    name = "torch"

    def __init__(self):
        self.cases: list[Case] = []
        self.calls: list[str] = []
        self.fail: BaseException | None = None

    def prepare(self, case: Case) -> Prepared:
        self.cases.append(case)
        if self.fail is not None:
            raise self.fail
        return Prepared(
            step=lambda: self.calls.append("step"),
            cold_start={"build_s": 0.5},
            runtime={"framework": "torch", "device_type": case.device.split(":")[0]},
            reset_peak_memory=lambda: None,
            device_memory=lambda: {"device_peak_allocated_bytes": 7},
            model_facts=lambda: {"params": 3},
            fidelity=lambda: {"top1_agreement": 1.0},
        )

    def profile(self, prepared: Prepared, trace_path) -> dict:
        self.calls.append("profile")
        prepared.step()
        return {"tool": "fake", "trace": str(trace_path)}


@pytest.fixture
def fake(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setattr(backends, "get", lambda name: backend)
    return backend


def rank_hooks(sent: list[float], gathered: list[dict], calls: list[str]) -> dict:
    """What rank 0 of two passes in (as data_parallel.rank_main does, with fake collectives)."""

    def clock(local):
        def synced():
            sent.append(local())
            return sent[-1]

        return synced

    def memory(mine: dict) -> dict:
        gathered.append(mine)
        return {**mine, "ranks": [{"rank": 0, **mine}, {"rank": 1, **mine}]}

    def step_wrapper(step):
        def synced():
            step()
            calls.append("barrier")

        return synced

    return {
        "device": "cuda:0",
        "telemetry": False,
        "clock": clock,
        "step_wrapper": step_wrapper,
        "memory": memory,
        "runtime": {"placement": {"rank": 0, "world_size": 2}},
    }


def test_a_rank_measures_through_the_same_path_with_its_own_hooks(fake, tmp_path):
    sent, gathered = [], []
    case = dataclasses.replace(DP, settings=dataclasses.replace(FAST, profile=True))
    rec = core.measure_case(case, trace_dir=str(tmp_path), **rank_hooks(sent, gathered, fake.calls))
    assert rec.status == "ok", rec.reason
    assert fake.cases[0].device == "cuda:0" and rec.case == case.to_dict()  # prepared there, recorded as asked
    assert sent  # every timing decision read the rank's (broadcast) clock
    timed = fake.calls[: fake.calls.index("profile")]
    assert timed == ["step", "barrier"] * (len(timed) // 2)  # every timed step ends with the barrier
    assert fake.calls[fake.calls.index("profile") :] == ["profile", "step", "barrier"]  # so does the profiled one
    assert rec.runtime["placement"] == {"rank": 0, "world_size": 2}
    assert rec.memory["ranks"][1]["rank"] == 1 and gathered[0]["device_peak_allocated_bytes"] == 7
    assert rec.telemetry == {} and rec.energy == {}  # only a rank with telemetry samples it
    assert rec.fidelity == {"top1_agreement": 1.0} and rec.model == {"params": 3}
    assert rec.runtime["profile"] == {
        "available": True,
        "tool": "fake",
        "trace": str(tmp_path / f"{case.case_id}.trace.json"),
    }
    # the stats are for the global batch: batch_size × devices samples per step
    assert rec.stats == summarize(rec.samples, 4 * 2).to_dict()


def test_the_plain_worker_is_measure_case_with_the_defaults(fake):
    rec = core.run(CASE)
    assert rec.status == "ok", rec.reason
    assert fake.cases == [CASE] and "barrier" not in fake.calls
    assert "placement" not in rec.runtime and "ranks" not in rec.memory
    assert rec.telemetry  # the plain worker samples (here: telemetry off, and the record says so)
    assert rec.fidelity == {"top1_agreement": 1.0} and rec.cold_start["build_s"] == 0.5
    assert rec.stats == summarize(rec.samples, 4).to_dict()


@pytest.mark.parametrize("hooks", [False, True], ids=["worker", "rank"])
@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (MemoryError(), "failed", "out of memory: MemoryError:"),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
            "failed",
            "out of memory: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB",
        ),
        (ValueError("bad\nshape"), "failed", "ValueError: bad shape"),
        (Skip("no such GPU"), "skipped", "no such GPU"),
    ],
)
def test_failures_are_labelled_the_same_for_every_process(fake, hooks, error, status, reason):
    fake.fail = error
    kw = rank_hooks([], [], fake.calls) if hooks else {}
    rec = core.measure_case(DP if hooks else CASE, **kw)
    assert (rec.status, rec.reason) == (status, reason)
    assert rec.ended_at is not None
