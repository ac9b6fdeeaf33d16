"""Data-parallel cases (``devices: N``): identity, the lock-step timing rule with fake
clocks, the scaling arithmetic, and real runs through the CLI — torch DDP with 2 gloo
processes (torchrun) and TensorFlow MirroredStrategy over 2 logical CPU devices.

TensorFlow and torch each run in their own worker subprocess (never in this process:
TensorFlow + torchvision in one process segfault, see test_tensorflow.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json

import pytest

from benchbench.worker import data_parallel as distributed
from benchbench.case import Case, Settings
from benchbench.measure.timing import measure
from benchbench.results import Record
from benchbench.suite.schema import parse_suite
from conftest import bb, run_dir_of, write

CASE = Case("torch", "seed_cnn", 8, "cpu", "train", "fp32", (3, 32, 32))


# --- identity ------------------------------------------------------------------------------

def test_devices_joins_the_identity_only_when_not_one():
    assert "devices" not in CASE.identity()
    assert CASE.case_id == dataclasses.replace(CASE, devices=1).case_id
    two = dataclasses.replace(CASE, devices=2)
    assert two.identity()["devices"] == 2 and two.case_id != CASE.case_id
    assert two.label.endswith("/dp2") and Case.from_dict(two.to_dict()) == two
    assert Case.from_dict(CASE.to_dict()).devices == 1


def test_suite_devices_and_resources_per_model():
    suite = parse_suite("""\
name: s
matrix: {model: [seed_mlp, seed_cnn], batch_size: 2}
defaults: {devices: 2, resources: {num_cpus: 2, accelerator_type: A100, custom: {tpu_host: 1}}}
models:
  seed_cnn: {devices: 1, resources: {num_gpus: 1}}
""", "s.yaml")
    by = {c.model: c for c in suite.cases}
    assert by["seed_mlp"].devices == 2 and by["seed_cnn"].devices == 1
    assert by["seed_mlp"].settings.resources == {"num_cpus": 2, "accelerator_type": "A100", "custom": {"tpu_host": 1}}
    assert by["seed_cnn"].settings.resources == {"num_gpus": 1}


def test_a_mistake_under_resources_names_the_line_and_the_keys(tmp_path):
    s = write(tmp_path / "s.yaml", "name: s\nmatrix: {model: seed_mlp, batch_size: 2}\n"
                                   "defaults:\n  devices: 0\n  resources: {num_cpu: 2}\n")
    proc = bb("validate", s, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "s.yaml:4: defaults.devices: must be >= 1" in proc.stderr
    assert "s.yaml:5: defaults.resources.num_cpu: unknown key 'num_cpu'; did you mean 'num_cpus'?" in proc.stderr


# --- pure rules ------------------------------------------------------------------------------

def test_rank_cores_are_equal_disjoint_shares():
    assert [distributed.rank_cores(r, 2, [3, 1, 0, 2]) for r in range(2)] == [[0, 1], [2, 3]]
    assert [distributed.rank_cores(r, 2, [0, 1, 2]) for r in range(2)] == [[0], [1]]
    assert [distributed.rank_cores(r, 3, [0, 1]) for r in range(3)] == [[0], [1], [0]]  # shared


def test_scaling_efficiency_and_an_unknown_baseline():
    s = distributed.scaling(300.0, 200.0, 2)
    assert s["throughput_per_device"] == 150.0 and s["speedup"] == 1.5 and s["scaling_efficiency"] == 0.75
    s = distributed.scaling(300.0, None, 2, "one-device run failed: boom")
    assert s["scaling_efficiency"] is None and s["speedup"] is None
    assert s["scaling_efficiency_reason"] == "no one-device figure: one-device run failed: boom"


def test_combine_puts_the_figures_in_runtime_and_keeps_the_case():
    two = dataclasses.replace(CASE, devices=2)
    multi = Record(case={}, status="ok", stats={"throughput": 90.0}, runtime={"threads": 1})
    single = Record(case={}, status="ok", stats={"throughput": 60.0, "median": 0.13, "n": 9},
                    runtime={"threads": 1}, timing={"stop_reason": "max_time"})
    rec = distributed.combine(multi, single, two, {"devices": 2})
    dp = rec.runtime["data_parallel"]
    assert dp["scaling_efficiency"] == 0.75 and dp["throughput_single_device"] == 60.0
    assert dp["single_device"]["median_s"] == 0.13 and rec.case["devices"] == 2
    failed = Record(case={}, status="failed", reason="boom")
    dp = distributed.combine(Record(case={}, status="ok", stats={"throughput": 90.0}), failed, two, {})
    assert dp.runtime["data_parallel"]["scaling_efficiency"] is None


def test_skip_reasons():
    dp = dataclasses.replace(CASE, devices=2)
    assert "TPU" in distributed.skip_reason(dataclasses.replace(dp, device="tpu"))
    assert "use device: cuda" in distributed.skip_reason(dataclasses.replace(dp, device="cuda:1"))
    assert distributed.skip_reason(dataclasses.replace(dp, device="cuda"), lambda: 1) == \
        "devices: 2 needs 2 CUDA GPUs; 1 visible"
    assert distributed.skip_reason(dp) is None


# --- lock-step timing with fake clocks -------------------------------------------------------

class FakeRank:
    """A rank whose steps take ``durations`` (cycled) on its own fake clock."""

    def __init__(self, durations):
        self.t, self.steps, self.durations = 0.0, 0, itertools.cycle(durations)

    def clock(self):
        return self.t

    def step(self):
        self.steps += 1
        self.t += next(self.durations)


SETTINGS = Settings(warmup_iters=2, min_time=0.5, max_time=3.0, min_iters=8, target_rel_ci=0.02)


def test_ranks_on_rank_zeros_broadcast_clock_take_the_same_decisions():
    fast, slow = FakeRank([0.010, 0.013, 0.009, 0.011]), FakeRank([0.030, 0.021, 0.045])
    sent: list[float] = []

    def send(v):  # rank 0: its reading goes to everyone
        sent.append(v)
        return v

    replay = iter(sent)
    t0 = measure(fast.step, SETTINGS, clock=distributed.SyncedClock(fast.clock, send))
    t1 = measure(slow.step, SETTINGS, clock=distributed.SyncedClock(slow.clock, lambda _v: next(replay)))
    assert fast.steps == slow.steps and t0 == t1  # same iterations, same samples, same stop
    assert next(replay, None) is None  # every broadcast of rank 0 was received once
    # without the shared clock, the two ranks would stop after different step counts: a hang
    alone0, alone1 = FakeRank([0.010, 0.013, 0.009, 0.011]), FakeRank([0.030, 0.021, 0.045])
    measure(alone0.step, SETTINGS, clock=alone0.clock)
    measure(alone1.step, SETTINGS, clock=alone1.clock)
    assert alone0.steps != alone1.steps


def test_a_synced_step_ends_with_the_barrier():
    calls = []
    distributed.synced_step(lambda: calls.append("step"), lambda: calls.append("all_reduce"))()
    assert calls == ["step", "all_reduce"]


# --- real runs --------------------------------------------------------------------------------

SUITE = """\
name: dp
matrix:
  framework: {frameworks}
  model: [seed_cnn]
  batch_size: [4]
  mode: [train]
defaults:
  input_shape: [3, 32, 32]
  devices: 2
  warmup_iters: 1
  min_time: 0.1
  max_time: 0.4
  min_iters: 8
  telemetry: {{hz: 0}}
"""


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_and_tf_mirrored_over_two_logical_cpus(tmp_path):
    frameworks = ["torch"] + (["tensorflow"] if importlib.util.find_spec("tensorflow") else [])
    s = write(tmp_path / "dp.yaml", SUITE.format(frameworks=json.dumps(frameworks)))
    proc = bb("run", s, "--out", tmp_path / "out", "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    recs = {r["case"]["framework"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(recs) == set(frameworks)
    for fw, rec in recs.items():
        assert rec["status"] == "ok", rec["reason"]
        assert rec["case"]["devices"] == 2 and rec["case"]["batch_size"] == 4
        dp = rec["runtime"]["data_parallel"]
        assert dp["devices"] == 2 and dp["global_batch"] == 8 and dp["per_device_batch"] == 4
        st = rec["stats"]
        # stats are for the global batch: throughput = 8 samples × iterations / timed time
        assert st["throughput"] == pytest.approx(dp["throughput_global"])
        assert dp["throughput_per_device"] == pytest.approx(st["throughput"] / 2)
        assert dp["single_device"]["status"] == "ok" and dp["throughput_single_device"] > 0
        assert dp["scaling_efficiency"] == pytest.approx(st["throughput"] / (2 * dp["throughput_single_device"]))
        assert rec["stats"]["n"] >= 8
    if "torch" in recs:
        rt = recs["torch"]["runtime"]
        assert rt["data_parallel"]["process_group_backend"] == "gloo"
        assert rt["ddp"] == {"world_size": 2, "backend": "gloo"}  # the train step ran under DDP
        ranks = recs["torch"]["memory"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert ranks[0]["cores"] != ranks[1]["cores"]  # each rank on its own core(s)
        log = (run_dir_of(tmp_path / "out") / rt["log"]).read_text()
        assert "--nproc-per-node=2" in log and "benchbench rank 1/2" in log
    if "tensorflow" in recs:
        dp = recs["tensorflow"]["runtime"]["data_parallel"]
        assert "MirroredStrategy over 2 logical CPU devices" in dp["method"]
        assert "overhead, not a speed-up" in dp["note"]
