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
import os
import re
import subprocess
import sys

import pytest

from benchbench.case import Case, Settings
from benchbench.data_spec import DataConfig
from benchbench.measure.timing import measure
from benchbench.results import Record
from benchbench.suite.schema import parse_suite
from benchbench.worker import data_parallel as distributed
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
    suite = parse_suite(
        """\
name: s
matrix: {model: [seed_mlp, seed_cnn], batch_size: 2}
defaults: {devices: 2, resources: {num_cpus: 2, accelerator_type: A100, custom: {tpu_host: 1}}}
models:
  seed_cnn: {devices: 1, resources: {num_gpus: 1}}
""",
        "s.yaml",
    )
    by = {c.model: c for c in suite.cases}
    assert by["seed_mlp"].devices == 2 and by["seed_cnn"].devices == 1
    assert by["seed_mlp"].settings.resources == {"num_cpus": 2, "accelerator_type": "A100", "custom": {"tpu_host": 1}}
    assert by["seed_cnn"].settings.resources == {"num_gpus": 1}


def test_a_mistake_under_resources_names_the_line_and_the_keys(tmp_path):
    s = write(
        tmp_path / "s.yaml",
        "name: s\nmatrix: {model: seed_mlp, batch_size: 2}\ndefaults:\n  devices: 0\n  resources: {num_cpu: 2}\n",
    )
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
    single = Record(
        case={},
        status="ok",
        stats={"throughput": 60.0, "median": 0.13, "n": 9},
        runtime={"threads": 1},
        timing={"stop_reason": "max_time"},
    )
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
    assert (
        distributed.skip_reason(dataclasses.replace(dp, device="cuda"), lambda: 1)
        == "devices: 2 needs 2 CUDA GPUs; 1 visible"
    )
    assert distributed.skip_reason(dp) is None
    # torch ranks would each read the whole loader, and its extra windows are not in lock-step
    assert "data: pipeline is not implemented for torch" in distributed.skip_reason(
        dataclasses.replace(dp, data=DataConfig())
    )


def test_the_one_device_copy_is_the_case_on_one_device_not_profiled():
    dp = dataclasses.replace(CASE, devices=2, settings=Settings(profile=True, min_time=0.3))
    one = distributed.one_device_copy(dp)
    assert one.devices == 1 and one.case_id == CASE.case_id and one.settings.profile is False
    assert one.settings.min_time == 0.3


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


class Logged(FakeRank):
    """A FakeRank whose steps, barriers and broadcasts go into one log, in order."""

    def __init__(self, durations, log):
        super().__init__(durations)
        self.log = log

    def step(self):
        super().step()
        self.log.append("step")

    def barrier(self):
        self.log.append("barrier")


def _windows(log: list[str]) -> list[list[str]]:
    """What happened between each opening barrier and its closing one."""
    out, inside = [], None
    for e in log:
        if e == "barrier":
            if inside is None:
                inside = []
            else:
                out.append(inside)
                inside = None
        elif inside is not None:
            inside.append(e)
    assert inside is None, "a window opened and never closed"
    return out


def _lockstep_pair(settings):
    """Rank 0 (fast) and rank 1 (slow) through lockstep_measure, rank 1 replaying rank 0's
    broadcasts; (timings, logs)."""
    logs: tuple[list[str], list[str]] = ([], [])
    fast, slow = Logged([0.010, 0.013, 0.009, 0.011], logs[0]), Logged([0.030, 0.021, 0.045], logs[1])
    sent: list[float] = []

    def send(v):
        sent.append(v)
        logs[0].append("broadcast")
        return v

    replay = iter(sent)

    def receive(_v):
        logs[1].append("broadcast")
        return next(replay)

    t0 = distributed.lockstep_measure(fast.step, settings, clock=fast.clock, broadcast=send, barrier=fast.barrier)
    t1 = distributed.lockstep_measure(slow.step, settings, clock=slow.clock, broadcast=receive, barrier=slow.barrier)
    assert next(replay, None) is None  # every broadcast of rank 0 was received once
    assert fast.steps == slow.steps  # the same steps on every rank: no rank waits in a collective alone
    return (t0, t1), logs


def test_data_parallel_timing_synchronises_at_the_windows_edges_only():
    """Issue 17: no clock broadcast per timed block, no all-reduce per step — inside a window
    the ranks only step; a barrier opens and closes it, rank 0's decision follows the close."""
    (t0, t1), logs = _lockstep_pair(SETTINGS)
    for log in logs:
        windows = _windows(log)
        assert windows and all(set(w) == {"step"} for w in windows), windows
        # after each closing barrier: rank 0's decision (another window, or stop), nothing else
        assert log.count("barrier") == 2 * len(windows)
    assert [len(w) for w in _windows(logs[0])] == [len(w) for w in _windows(logs[1])]
    assert t0.iterations == t1.iterations and t0.block_size == t1.block_size
    assert t0.samples != t1.samples  # each rank's own clock inside the window
    assert max(t1.samples) >= 0.021 and min(t0.samples) < 0.014
    assert t0.stop_reason in ("ci_target_met", "max_time", "max_iters") and t0.timed_wall_s >= SETTINGS.min_time


def test_a_process_share_is_one_planned_window():
    share = dataclasses.replace(SETTINGS, stop_on_ci=False)
    (t0, _), logs = _lockstep_pair(share)
    # min_time of blocks at the planning block's time (13 ms: 39 blocks), and min_iters at least;
    # the steps ran faster (10.75 ms on average): a second window tops the first up to min_time
    assert [len(w) for w in _windows(logs[0])] == [39, 8] and t0.stop_reason == "share_done"
    assert len(t0.samples) >= SETTINGS.min_iters and t0.timed_wall_s >= SETTINGS.min_time


def test_the_first_window_is_planned_from_its_arguments_alone():
    s = Settings(min_time=1.0, max_time=2.0, min_iters=5, max_iters=1000)
    assert distributed.first_window(0.01, s) == 100
    assert distributed.first_window(1.0, s) == 5  # min_iters wins over max_time
    assert distributed.first_window(1e-6, s) == 1000  # max_iters caps it
    assert distributed.first_window(0.5, dataclasses.replace(s, min_iters=1)) == 2


def test_the_one_device_baseline_runs_the_ranks_timing(tmp_path, monkeypatch):
    """torchrun with one rank (the baseline) and with N ranks time through the same
    lockstep_measure: the baseline pays what the ranks pay, minus only the collectives."""
    from benchbench.worker import core, rank

    seen = {}

    def fake_measure_case(case, **kw):
        seen.update(kw, case=case)
        return Record(case=case.to_dict(), status="ok")

    monkeypatch.setattr(core, "measure_case", fake_measure_case)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(os, "sched_setaffinity", lambda *_: None)
    two = dataclasses.replace(CASE, devices=2, threads=1)
    (tmp_path / "c.json").write_text(json.dumps(two.to_dict()))
    assert rank.rank_main([str(tmp_path / "c.json"), str(tmp_path / "r.json")]) == 0
    timer = seen["timer"]
    assert timer.func is distributed.lockstep_measure
    assert timer.keywords["broadcast"](3.5) == 3.5 and timer.keywords["barrier"]() is None  # a world of one
    assert seen["case"].devices == 1 and "clock" not in seen and "step_wrapper" not in seen


def test_scaling_uses_the_edge_to_edge_window_on_both_sides():
    two = dataclasses.replace(CASE, devices=2)
    # rank 0's own samples say 100/s; the window, closed when the slowest rank finished, 80/s
    multi = Record(case={}, status="ok", stats={"throughput": 100.0}, timing={"iterations": 10, "timed_wall_s": 1.0})
    single = Record(case={}, status="ok", stats={"throughput": 50.0}, timing={"iterations": 10, "timed_wall_s": 2.0})
    dp = distributed.combine(multi, single, two, {}).runtime["data_parallel"]
    assert dp["throughput_global"] == 8 * 2 * 10 / 1.0 and dp["throughput_single_device"] == 8 * 10 / 2.0
    assert dp["scaling_efficiency"] == pytest.approx(160 / (2 * 40)) and "edge to edge" in dp["throughput_note"]


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


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    """The SUITE above run once through the CLI: (records by framework, run directory)."""
    tmp_path = tmp_path_factory.mktemp("dp")
    frameworks = ["torch"] + (["tensorflow"] if importlib.util.find_spec("tensorflow") else [])
    s = write(tmp_path / "dp.yaml", SUITE.format(frameworks=json.dumps(frameworks)))
    proc = bb("run", s, "--out", tmp_path / "out", "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    recs = {r["case"]["framework"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(recs) == set(frameworks)
    return recs, run_dir_of(tmp_path / "out")


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_and_tf_mirrored_over_two_logical_cpus(dp_run):
    recs, run_dir = dp_run
    for rec in recs.values():
        assert rec["status"] == "ok", rec["reason"]
        assert rec["case"]["devices"] == 2 and rec["case"]["batch_size"] == 4
        dp = rec["runtime"]["data_parallel"]
        assert dp["devices"] == 2 and dp["global_batch"] == 8 and dp["per_device_batch"] == 4
        timing = rec["timing"]
        # stats are for the global batch; the scaling figures over the timed window, edge to edge
        assert dp["throughput_global"] == pytest.approx(8 * timing["iterations"] / timing["timed_wall_s"])
        assert dp["throughput_per_device"] == pytest.approx(dp["throughput_global"] / 2)
        assert dp["single_device"]["status"] == "ok" and dp["throughput_single_device"] > 0
        assert dp["scaling_efficiency"] == pytest.approx(dp["throughput_global"] / (2 * dp["throughput_single_device"]))
        assert rec["stats"]["n"] >= 8
    if "torch" in recs:
        rt = recs["torch"]["runtime"]
        assert rt["data_parallel"]["process_group_backend"] == "gloo"
        assert rt["ddp"]["world_size"] == 2 and rt["ddp"]["backend"] == "gloo"  # the train step ran under DDP
        ranks = recs["torch"]["memory"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert ranks[0]["cores"] != ranks[1]["cores"]  # each rank on its own core(s)
        log = (run_dir / rt["log"]).read_text()
        assert "--nproc-per-node=2" in log and "benchbench rank 1/2" in log
    if "tensorflow" in recs:
        dp = recs["tensorflow"]["runtime"]["data_parallel"]
        assert "MirroredStrategy over 2 logical CPU devices" in dp["method"]
        assert "overhead, not a speed-up" in dp["note"]


@pytest.mark.slow
def test_data_parallel_records_carry_fidelity(dp_run):
    """Rank 0 (torch) and the MirroredStrategy worker (TensorFlow) run the worker's own
    fidelity code: fp32 train is the fp32 forward, so identical by construction."""
    recs, _ = dp_run
    for fw, rec in recs.items():
        assert rec["fidelity"], f"{fw}: a data-parallel record without fidelity"
        assert rec["fidelity"]["top1_agreement"] == 1.0, (fw, rec["fidelity"])
        assert rec["fidelity"]["method"].startswith("not recomputed: "), rec["fidelity"]


@pytest.mark.slow
def test_the_one_device_baseline_is_measured_in_its_own_process(dp_run):
    """TensorFlow cannot change its logical devices once its runtime started: the one-device
    baseline of a ``devices: 2`` case is a worker of its own (``python -m benchbench.worker``)."""
    recs, run_dir = dp_run
    if "tensorflow" in recs:
        rec = recs["tensorflow"]
        log = (run_dir / rec["runtime"]["log"]).read_text()
        # every worker process announces itself and its case in the case log: the baseline's
        # is a worker of the devices: 1 copy (label without /dp2), the N-device one's not
        label = "tensorflow/seed_cnn/bs4/cpu/train/fp32"
        single = set(map(int, re.findall(rf"benchbench worker pid (\d+): {label} \(", log)))
        multi = set(map(int, re.findall(rf"benchbench worker pid (\d+): {label}/dp2 \(", log)))
        assert single and multi and not single & multi, log[-3000:]
        dp = rec["runtime"]["data_parallel"]
        assert dp["single_device"]["pid"] in single and dp["pid"] in multi, dp
        assert "measured in its own worker process" in dp["single_device_how"]
    for fw, rec in recs.items():
        dp = rec["runtime"]["data_parallel"]
        pid, single_pid = dp["pid"], dp["single_device"]["pid"]
        assert isinstance(pid, int) and isinstance(single_pid, int) and pid != single_pid, (fw, dp)


# --- DDP × variant: the train step runs the variant's call on the DDP-wrapped module -----------

FAST = Settings(warmup_iters=1, min_time=0.05, max_time=0.3, min_iters=8, telemetry_hz=0)


def _worker(case: Case, tmp_path, name: str) -> dict:
    """``python -m benchbench.worker`` on ``case`` (as the executors start it) in a run
    directory of its own; its record. ``tmp_path`` is on the path (user models)."""
    work = tmp_path / name / ".work"
    work.mkdir(parents=True)
    (work / "c.json").write_text(json.dumps(case.to_dict()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-m", "benchbench.worker", str(work / "c.json"), str(work / "r.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rec = json.loads((work / "r.json").read_text())
    assert rec["status"] == "ok", (rec["reason"], out.stdout[-3000:])
    return rec


PROBE_MODEL = """\
import atexit, json, os, sys
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

SEEN = {}  # "<first Linear's output dtype> grad=<bool>" -> eager calls; "<dtype> compiling" -> 1


class Probe(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.fc1 = nn.Linear(features, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        h = self.fc1(x)
        modes = [type(m).__name__ for m in _get_current_dispatch_mode_stack()]
        if "_FlopCounterMode" in modes:  # model facts' train-FLOP count (process 1, after the timed window)
            SEEN[f"{h.dtype} flop count"] = SEEN.get(f"{h.dtype} flop count", 0) + 1
        elif torch.compiler.is_compiling():  # traced by dynamo: runs (as Python) only while compiling
            SEEN[f"{h.dtype} compiling"] = 1
        else:
            key = f"{h.dtype} grad={torch.is_grad_enabled()}"
            SEEN[key] = SEEN.get(key, 0) + 1
        return self.fc2(torch.relu(h))


def build(input_shape=(10,)):
    return Probe(input_shape[0])


@atexit.register
def _dump():  # in a torchrun rank: argv = [module, CASE.json, RESULT.json, TRACE_DIR]
    variant = json.loads(Path(sys.argv[1]).read_text())["variant"]
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    name = f"seen-{variant}-{world}-{rank}-{os.getpid()}.json"
    Path(__file__).with_name(name).write_text(json.dumps(SEEN))
"""


@pytest.mark.slow
def test_ddp_train_runs_the_variants_call(tmp_path):
    """``devices: 2`` train (gloo, CPU): amp_bf16 keeps its autocast (the first Linear's output
    is bfloat16 in every training forward), compile and torchscript run the compiled / traced
    module (no eager Python forward with gradients beyond the one torch.jit.trace makes)."""
    write(tmp_path / "ddp_probe.py", PROBE_MODEL)
    recs = {}
    for variant in ("amp_bf16", "compile", "torchscript"):
        case = Case("torch", "ddp_probe:build", 4, "cpu", "train", variant, (10,), threads=1, devices=2, settings=FAST)
        recs[variant] = rec = _worker(case, tmp_path, variant)
        assert rec["runtime"]["ddp"]["world_size"] == 2 and rec["runtime"]["data_parallel"]["devices"] == 2

    def seen(variant: str) -> list[dict]:  # what each rank of the 2-rank run saw
        files = sorted(tmp_path.glob(f"seen-{variant}-2-*.json"))
        assert len(files) == 2, files
        return [json.loads(f.read_text()) for f in files]

    for keys in seen("amp_bf16"):  # every training forward (gradients on) ran under autocast
        assert keys.get("torch.bfloat16 grad=True", 0) >= 8 and "torch.float32 grad=True" not in keys, keys
    for keys in seen("compile"):  # dynamo traced the forward; no eager training forward ran
        assert "torch.float32 compiling" in keys and "torch.float32 grad=True" not in keys, keys
    for keys in seen("torchscript"):  # one eager forward with gradients: torch.jit.trace's
        assert keys.get("torch.float32 grad=True", 0) <= 1, keys
    # the one-device baselines (torchrun with one rank, no DDP) ran the variants as well
    assert all(
        keys.get("torch.bfloat16 grad=True", 0) >= 8
        for keys in [json.loads(f.read_text()) for f in tmp_path.glob("seen-amp_bf16-1-*.json")]
    )
    # and the record says how DDP and the variant were composed
    assert recs["amp_bf16"]["runtime"]["autocast"] == "bfloat16"
    assert "autocast bfloat16" in recs["amp_bf16"]["runtime"]["ddp"]["wraps"]
    assert recs["compile"]["runtime"]["ddp"]["wraps"].startswith("torch.compile(DistributedDataParallel(model))")
    assert recs["compile"]["cold_start"]["compile_s"] > 0


@pytest.mark.slow
def test_a_data_parallel_torch_case_profiles_on_rank_zero(tmp_path):
    case = Case(
        "torch",
        "seed_mlp",
        4,
        "cpu",
        "train",
        "fp32",
        (10,),
        devices=2,
        settings=dataclasses.replace(FAST, profile=True),
    )
    rec = _worker(case, tmp_path, "run")
    prof = rec["runtime"]["profile"]
    assert prof["available"] is True, prof
    assert prof["tool"] == "torch.profiler" and prof["top_host_ops"]
    trace = tmp_path / "run" / "profiles" / f"{case.case_id}.trace.json"
    assert prof["trace"] == str(trace) and trace.stat().st_size > 0
    # the ranks ran the profiled window in lock-step: rank 0's trace holds the collectives
    assert "all_reduce" in trace.read_text()
