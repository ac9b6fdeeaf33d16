"""Issue 17: numbers that hold on accelerators, checked where no accelerator is — torch_xla's
sync and precision through fake module objects, the step's kept output, the math modes and the
``autotune`` setting, the backward compile of a compiled train step, the XLA memory reason,
TensorFlow's CPU step without a device sync, the TensorFlow one-device baseline's own process,
and latency percentiles that are never of block means. The real XLA CPU device runs in
tests/test_xla.py (the second CI virtualenv)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch

from benchbench import registry
from benchbench.backends import torch as tb
from benchbench.case import Case, Settings
from benchbench.cli import display
from benchbench.framework.base import Skip
from benchbench.history import compare, exports
from benchbench.measure import stats
from benchbench.results import Record
from benchbench.suite.schema import parse_suite
from benchbench.worker import data_parallel as distributed
from conftest import REPO

FAST = Settings(warmup_iters=1, min_time=0.01, max_time=0.1, min_iters=3, telemetry_hz=0)
MLP = Case("torch", "seed_mlp", 2, "cpu", "inference", "fp32", (10,), threads=1, settings=FAST)


@pytest.fixture
def torch_flags():
    """The global math flags a test changes, put back afterwards."""
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (
        m.allow_tf32,
        c.allow_tf32,
        m.allow_fp16_reduced_precision_reduction,
        m.allow_bf16_reduced_precision_reduction,
        c.benchmark,
        torch.get_float32_matmul_precision(),
    )
    yield
    (m.allow_tf32, c.allow_tf32, m.allow_fp16_reduced_precision_reduction,
     m.allow_bf16_reduced_precision_reduction, c.benchmark) = saved[:5]  # fmt: skip
    torch.set_float32_matmul_precision(saved[5])


# --- item 1: torch_xla is timed for real --------------------------------------------------------


class FakeXla:
    """torch_xla and torch_xla.core.xla_model as the sync function sees them, recorded in order."""

    def __init__(self):
        self.calls: list[tuple] = []

    def sync(self, wait: bool = False, reset_scope: bool = True):
        self.calls.append(("sync", wait))

    def wait_device_ops(self, devices=()):
        self.calls.append(("wait_device_ops",))


def test_the_xla_sync_waits_for_the_device():
    """torch_xla.sync's default (wait=False) returns as soon as the graph is launched, and on
    XLA's CPU device even wait=True returned before the graph had run (measured: see
    ``_sync_fn``): the timed step cuts and launches the graph, then waits for the device's
    queue to empty."""
    fake = FakeXla()
    sync = tb._sync_fn(torch.device("xla"), xla=fake, xm=fake)
    sync(torch.ones(1))
    assert fake.calls == [("sync", True), ("wait_device_ops",)]


def test_cpu_and_cuda_syncs_take_the_kept_values_too():
    tb._sync_fn(torch.device("cpu"))(torch.ones(1))  # eager CPU: nothing to wait for, no error


def _recording_sync(monkeypatch):
    """The backend's sync replaced by one that records what the step kept alive at the call."""
    kept: list[list] = []

    def fake_sync_fn(device, xla=None):
        def sync(*keep):
            kept.append([weakref.ref(v) for v in keep if isinstance(v, torch.Tensor)])
            for ref in kept[-1]:
                assert ref() is not None  # alive while the device would run its graph

        return sync

    monkeypatch.setattr(tb, "_sync_fn", fake_sync_fn)
    return kept


def test_the_inference_step_keeps_its_output_alive_through_the_sync(monkeypatch):
    """A lazy device (torch_xla) computes only what a live tensor needs: the step's output
    must still be referenced when the step synchronises, or the step times nothing."""
    kept = _recording_sync(monkeypatch)
    prepared = tb.BACKEND.prepare(MLP)
    kept.clear()
    prepared.step()
    assert len(kept) == 1 and len(kept[0]) == 1
    out = kept[0][0]()
    assert out is None or tuple(out.shape) == (2, 10)  # the model's output (freed after the step)


def test_the_train_step_keeps_its_loss_alive_through_the_sync(monkeypatch):
    kept = _recording_sync(monkeypatch)
    prepared = tb.BACKEND.prepare(dataclasses.replace(MLP, mode="train"))
    kept.clear()
    prepared.step()
    assert len(kept) == 1 and len(kept[0]) == 1  # the loss (the parameters are the model's, alive anyway)


class FakeXlaBackends:
    """torch_xla.backends: the fp32 matmul precision as torch_xla keeps it."""

    def __init__(self):
        self.precision = "default"  # torch_xla's default: fp32 matmuls in bf16 passes on a TPU
        self.sets: list[str] = []

    def set_mat_mul_precision(self, p):
        self.sets.append(p)
        self.precision = p

    def get_mat_mul_precision(self):
        return self.precision


def test_fp32_on_xla_sets_the_highest_matmul_precision_and_records_it(torch_flags):
    fake = FakeXlaBackends()
    xla = torch.device("xla")
    tb._set_math("fp32", True, xla, xla_backends=fake)
    modes = tb._math_modes(True, xla, xla_backends=fake)
    assert fake.sets == ["highest"] and modes["xla.mat_mul_precision"] == "highest"
    other = FakeXlaBackends()
    tb._set_math("bf16", True, xla, xla_backends=other)
    assert other.sets == [] and tb._math_modes(True, xla, xla_backends=other)["xla.mat_mul_precision"] == "default"


def test_the_xla_memory_reason_tells_hbm_from_host_memory():
    """XLA's CPU device keeps its buffers in host memory (host RSS covers them); a TPU's HBM
    is not in the host RSS: without allocator statistics its peak is unknown, and says so."""

    class NoStats:
        def get_memory_info(self, device):
            raise RuntimeError("Bad StatusOr access: UNIMPLEMENTED: GetAllocatorStats is not supported")

    cpu = tb.xla_memory("xla:0", on_tpu=False, xm=NoStats())
    assert cpu["device_peak_allocated_bytes"] is None and "host memory" in cpu["device_memory_reason"]
    tpu = tb.xla_memory("xla:0", on_tpu=True, xm=NoStats())
    assert "HBM is not in the host RSS" in tpu["device_memory_reason"] and "covers" not in tpu["device_memory_reason"]

    class Stats:
        def get_memory_info(self, device):
            return {"bytes_used": 10, "bytes_limit": 100, "peak_bytes_used": 42}

    hbm = tb.xla_memory("xla:0", on_tpu=True, xm=Stats())
    assert hbm["device_peak_allocated_bytes"] == 42 and "peak_bytes_used" in hbm["device_memory_source"]


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed here")
def test_xla_and_tpu_cases_skip_with_the_reason_without_torch_xla():
    for device in ("xla", "tpu"):
        with pytest.raises(Skip, match="torch_xla is not installed"):
            tb.BACKEND.prepare(dataclasses.replace(MLP, device=device))
    assert tb._xla_cpu() == {"available": False, "reason": tb._xla_cpu()["reason"]}


def test_device_xla_is_a_torch_device_of_the_suite_format():
    suite = parse_suite(
        "name: x\nmatrix: {framework: [torch, tensorflow], model: seed_mlp, batch_size: 1, device: xla}\n", "s.yaml"
    )
    assert {c.device for c in suite.cases} == {"xla"}
    assert registry.variant_support("torch", "fp32", "xla", "train") is None
    assert "torch_xla" in registry.variant_support("tensorflow", "fp32", "xla", "inference")
    assert "XLA's CPU device" in distributed.skip_reason(dataclasses.replace(MLP, device="xla", devices=2))


# --- item 8: fp32 strict, the rest as users run them; autotune -----------------------------------


def test_fp32_is_strict_and_other_variants_keep_pytorchs_speed_defaults(torch_flags):
    cpu = torch.device("cpu")
    tb._set_math("fp32", True, cpu)
    strict = tb._math_modes(True, cpu)
    assert strict["cuda.matmul.allow_fp16_reduced_precision_reduction"] is False
    assert strict["cuda.matmul.allow_bf16_reduced_precision_reduction"] is False
    assert strict["cuda.matmul.allow_tf32"] is False and strict["cudnn.allow_tf32"] is False
    assert strict["float32_matmul_precision"] == "highest"
    assert strict["cudnn.benchmark"] is True and strict["autotune"] is True  # autotuning is on by default
    for variant in ("bf16", "amp", "fp16", "amp_bf16", "channels_last"):
        tb._set_math(variant, True, cpu)
        modes = tb._math_modes(True, cpu)
        assert modes["cuda.matmul.allow_fp16_reduced_precision_reduction"] is True, variant  # PyTorch's default
        assert modes["cuda.matmul.allow_bf16_reduced_precision_reduction"] is True, variant
        assert modes["reduced_precision_reduction"] is True and modes["cudnn.benchmark"] is True
        assert modes["cuda.matmul.allow_tf32"] is False  # TF32 only where a variant asks (tf32)
    tb._set_math("fp32", False, cpu)
    assert tb._math_modes(False, cpu)["cudnn.benchmark"] is False


def test_autotune_is_a_setting_recorded_in_math_modes(torch_flags):
    suite = parse_suite(
        "name: x\nmatrix: {model: seed_mlp, batch_size: 1}\ndefaults: {autotune: false}\n"
        "models: {seed_mlp: {autotune: true}}\n",
        "s.yaml",
    )
    assert [c.settings.autotune for c in suite.cases] == [True]
    off = parse_suite(
        "name: x\nmatrix: {model: seed_mlp, batch_size: 1}\ndefaults: {autotune: false}\n", "s.yaml"
    ).cases[0]
    assert off.settings.autotune is False
    assert off.case_id != suite.cases[0].case_id  # other kernels: another case
    assert suite.cases[0].case_id == Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,)).case_id
    rec_modes = tb.BACKEND.prepare(dataclasses.replace(MLP, settings=dataclasses.replace(FAST, autotune=False)))
    assert rec_modes.runtime["math_modes"]["autotune"] is False
    assert rec_modes.runtime["math_modes"]["cudnn.benchmark"] is False
    assert tb.BACKEND.prepare(MLP).runtime["math_modes"]["cudnn.benchmark"] is True


# --- item 12: the backward compile belongs to compile_s ------------------------------------------


def test_a_compiled_train_steps_backward_compile_goes_into_compile_s():
    class V:
        cold_start = {"compile_s": 2.0, "compile_note": "the first forward call"}

    ticks = iter([10.0, 13.5])  # the fake clock: before and after the first forward + backward
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    synced = []
    tb.compile_backward(
        V, lambda: model(torch.ones(2, 4)).sum(), opt, lambda *keep: synced.append(keep), clock=lambda: next(ticks)
    )
    assert V.cold_start["compile_forward_s"] == 2.0
    assert V.cold_start["compile_backward_s"] == 3.5 and V.cold_start["compile_s"] == 5.5
    assert "backward" in V.cold_start["compile_note"] and len(synced) == 1
    assert torch.equal(model.weight, before) and model.weight.grad is None  # no update, no gradients left


# --- item 12: TensorFlow's CPU step waits for nothing more than .numpy() -------------------------

TF_SCRIPT = textwrap.dedent(
    """
    import json
    from benchbench.backends import tensorflow as backend
    from benchbench.case import Case, Settings
    calls = []
    backend.tf.test.experimental.sync_devices = lambda: calls.append(1)
    s = Settings(warmup_iters=1, min_time=0.01, min_iters=3, telemetry_hz=0, autotune=False)
    prepared = backend.BACKEND.prepare(Case("tensorflow", "seed_mlp", 2, "cpu", "inference", "fp32", (10,),
                                            threads=1, settings=s))
    for _ in range(3):
        prepared.step()
    cpu_calls = len(calls)
    backend._Device("cuda", "/GPU:0").sync()
    env = {}
    print(json.dumps({"cpu_calls": cpu_calls, "gpu_calls": len(calls) - cpu_calls,
                      "modes": prepared.runtime["math_modes"], "on": backend.set_autotune(True, env), "env": env}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_tensorflow_syncs_devices_only_off_the_cpu_and_records_autotune():
    """``.numpy()`` has already waited for the value on the CPU; ``sync_devices`` there only cost
    ~24 µs a step. In a subprocess: TensorFlow never runs in the pytest process."""
    out = subprocess.run([sys.executable, "-c", TF_SCRIPT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cpu_calls"] == 0 and got["gpu_calls"] == 1
    assert got["modes"]["autotune"] is False and got["modes"]["TF_CUDNN_USE_AUTOTUNE"] == "0"
    assert got["on"]["TF_CUDNN_USE_AUTOTUNE"] == "1" and got["env"] == {"TF_CUDNN_USE_AUTOTUNE": "1"}


# --- item 5: TensorFlow's one-device baseline in a process of its own -----------------------------


def test_the_tensorflow_baseline_is_a_worker_of_its_own_started_first(monkeypatch):
    """MirroredStrategy fixes TensorFlow's visible devices when its runtime starts: the
    baseline must not run in the N-device process, and must run before it starts TensorFlow."""
    order: list[tuple] = []
    case = Case("tensorflow", "seed_cnn", 4, "cuda", "train", "fp32", (3, 32, 32), devices=2)

    def fake_launch(args, c, what, extra=()):
        order.append(("launch", tuple(args), c.devices, c.settings.profile))
        return Record(case=c.to_dict(), status="ok", stats={"throughput": 10.0}), 4242

    def fake_measure(c, trace_dir=None):
        order.append(("in-process", c.devices))
        return Record(case=c.to_dict(), status="ok", stats={"throughput": 15.0})

    monkeypatch.setattr(distributed, "_launch", fake_launch)
    monkeypatch.setattr(distributed, "_tf_gpu_count", lambda: 2)
    rec = distributed.run(case, None, fake_measure)
    assert order == [("launch", ("-m", "benchbench.worker"), 1, False), ("in-process", 2)]
    dp = rec.runtime["data_parallel"]
    assert dp["single_device"]["pid"] == 4242 and dp["pid"] != 4242
    assert dp["scaling_efficiency"] == pytest.approx(15.0 / (2 * 10.0))


# --- item 3: percentiles of single iterations, or labelled block means ----------------------------


def test_p99_of_block_means_is_no_latency_p99():
    st = {"p99": 0.002}
    assert stats.latency_p99(st, {"block_size": 1}) == (0.002, None)
    assert stats.latency_p99(st, None) == (0.002, None)  # records without timing timed single iterations
    v, why = stats.latency_p99(st, {"block_size": 40})
    assert v is None and why.startswith("unavailable: the samples are block means of 40 iterations")
    assert stats.latency_p99(st, {"block_size": None, "block_sizes": [1, 4]})[0] is None
    assert stats.percentiles_of([1, 4]) == (
        "block means of 4 iterations (some processes timed single iterations): not latency percentiles"
    )


def _rec(block: int, p99: float, tput: float = 100.0) -> Record:
    case = Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,))
    return Record(
        case=case.to_dict(),
        status="ok",
        stats={"throughput": tput, "p99": p99, "median": p99 / 2, "rel_ci": 0.01},
        timing={"block_size": block, "iterations": 100 * block},
        samples=[p99 / 2] * 10,
    )


def test_compare_keeps_block_means_out_of_latency_p99():
    blocked, single = _rec(40, 0.002), _rec(1, 0.004)
    assert compare.metric_value(blocked, "latency_p99") is None
    assert compare.metric_value(single, "latency_p99") == 0.004
    row = compare._compare_metric("x", "x", "latency_p99", blocked, single, None, 0.05)
    assert row.verdict == "inconclusive" and row.note.startswith("base: unavailable: the samples are block means")


def test_exports_carry_no_p99_of_block_means():
    class Run:
        records = [_rec(40, 0.002), _rec(1, 0.004)]
        environment: dict = {}
        created_at = "2026-01-01T00:00:00Z"

    smaller = exports.github_action_benchmark(Run, bigger=False)
    assert [e["value"] for e in smaller if e["name"].endswith("latency p99")] == [4.0]
    extra = [b["extra_info"] for b in exports.pytest_benchmark(Run)["benchmarks"]]
    assert extra[0]["p99_s"] is None and "block means" in extra[0]["p99_reason"]
    assert extra[1]["p99_s"] == 0.004 and extra[1]["p99_reason"] is None


def test_the_terminal_table_marks_p99_of_block_means():
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(display.summary_table([_rec(40, 0.002), _rec(1, 0.004)], "t"))
    text = console.export_text()
    assert "2.000†" in text or "2.00†" in text, text
    assert "† p99 of block means" in text
    console = Console(width=250, record=True)
    console.print(display.summary_table([_rec(1, 0.004)], "t"))
    assert "†" not in console.export_text()


def test_the_report_marks_p99_of_block_means(tmp_path):
    from benchbench.report import page
    from benchbench.report.frame import cases_frame
    from benchbench.rundir import Run

    run = Run("r1", "s", "2026-01-01T00:00:00Z", [_rec(40, 0.002), _rec(1, 0.004)], {"host": "h"}, path=tmp_path)
    df = cases_frame([run])
    assert list(df["percentiles_of"]) == [
        "block means of 40 iterations: not latency percentiles",
        "single iterations",
    ]
    cells = [page._p99_cell(r) for r in df.itertuples()]
    assert "†" in cells[0] and "block means of 40 iterations" in cells[0] and "†" not in cells[1]
