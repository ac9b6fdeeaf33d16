"""The torch_xla path run for real, on XLA's CPU device (``device: xla``, ``PJRT_DEVICE=CPU``).

torch_xla needs its own torch release, so these tests run in CI's second virtualenv
(``.venv-xla``: torch-xla and its matching torch, see ``.ci/run``); where torch_xla is not
installed (the main virtualenv) the module is skipped with the reason.

What they show, on the real lazy device (no fakes):
- the timed step waits for the device: a step whose work grows 4× takes ≥ 2.2× longer (2.6–3.7×
  measured; a step that does not wait: ~1×), in
  inference — where the step discards the model's output — and in training;
- the same step without the fix (output dropped, ``torch_xla.sync()`` without waiting) does
  not scale at all: the check above can fail;
- fp32 runs with XLA's ``highest`` matmul precision, and the record says what was set;
- a ``device: xla`` suite runs end to end through the CLI (spawned worker, one record).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

import pytest

if importlib.util.find_spec("torch_xla") is None:
    pytest.skip(
        "torch_xla is not installed: the XLA tests run in CI's second virtualenv (.venv-xla, see .ci/run)",
        allow_module_level=True,
    )

os.environ["PJRT_DEVICE"] = "CPU"  # before torch_xla's runtime starts (the backend sets it too)

from benchbench.case import Case, Settings  # noqa: E402
from benchbench.worker import core  # noqa: E402
from conftest import bb, run_dir_of, write  # noqa: E402

pytestmark = pytest.mark.xla

# a stack of matmuls at a batch, then at 4× the batch: 4× the work at the same efficiency (both
# batches fill the CPU's matmul kernels), while the per-step costs that do not grow with the
# batch (tracing the lazy graph, the sync, the optimizer's update: ~1–2 ms inference, ~30 ms
# Adam on 2 cores) stay the same: batches large enough that the work (tens to hundreds of ms)
# dwarfs those (at 256 → 1024, inference scaled only 2.6× in CI: the fixed costs showed)
WIDTH, LAYERS = 512, 4
BATCHES = {"inference": (1024, 4096), "train": (1024, 4096)}
SMALL, LARGE = BATCHES["inference"]
MODEL = f"""\
from torch import nn


def build(input_shape=({WIDTH},)):
    return nn.Sequential(*[m for _ in range({LAYERS}) for m in (nn.Linear({WIDTH}, {WIDTH}), nn.ReLU())])
"""
TIMING = Settings(warmup_iters=2, min_time=0.4, max_time=3.0, min_iters=6, telemetry_hz=0, processes=1)


@pytest.fixture(scope="module")
def work_model(tmp_path_factory):
    where = tmp_path_factory.mktemp("xla_models")
    write(where / "xla_work.py", MODEL)
    sys.path.insert(0, str(where))
    yield "xla_work:build"
    sys.path.remove(str(where))


def _median(model: str, batch: int, mode: str) -> tuple[float, dict]:
    case = Case("torch", model, batch, "xla", mode, "fp32", (WIDTH,), settings=TIMING)
    rec = core.run(case)  # the worker's one path, in this process
    assert rec.status == "ok", rec.reason
    return rec.stats["median"], rec.to_dict()


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_the_timed_step_waits_for_the_work(work_model, mode):
    small, rec = _median(work_model, BATCHES[mode][0], mode)
    large, _ = _median(work_model, BATCHES[mode][1], mode)
    # 4× the work: 2.6–3.7× the time measured here (the per-step fixed costs and the kernels'
    # efficiency at each batch vary); a step that does not wait for the device takes ~1× (below)
    assert large / small >= 2.2, (mode, small, large)
    assert rec["runtime"]["device_type"] == "xla" and rec["runtime"]["device_name"].startswith("XLA CPU device")
    assert rec["timing"]["percentiles_of"] == "single iterations"  # tens of ms: timed one by one


def test_the_unfixed_step_times_nothing(work_model):
    """The step before issue 17 — output dropped, ``torch_xla.sync()`` returning at launch —
    on the same device and model: its time does not grow with the work (nothing is computed),
    which is what the test above would catch."""
    import torch
    import torch_xla

    from benchbench.models import torch_models

    device = torch_xla.device()
    model = torch_models.build(work_model, (WIDTH,)).to(device).eval()

    def old_step_median(batch: int) -> float:
        x = torch.randn(batch, WIDTH).to(device)
        torch_xla.sync(wait=True)
        times = []
        with torch.no_grad():
            for _ in range(15):
                t0 = time.perf_counter()
                model(x)  # output dropped
                torch_xla.sync()  # wait=False
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    small, large = old_step_median(SMALL), old_step_median(LARGE)
    assert large / small < 1.5, (small, large)  # ~1×: 0.12 ms at either batch


def test_fp32_runs_at_the_highest_xla_matmul_precision_and_records_it(work_model):
    import torch_xla.backends

    _, rec = _median(work_model, SMALL, "inference")
    modes = rec["runtime"]["math_modes"]
    assert modes["xla.mat_mul_precision"] == "highest" == torch_xla.backends.get_mat_mul_precision()
    assert modes["float32_matmul_precision"] == "highest"
    assert "host memory" in rec["memory"]["device_memory_reason"]  # XLA's CPU device: buffers in host RAM
    assert "first_iter_s" in rec["cold_start"] and "XLA compiles" in rec["cold_start"]["compile_note"]


SUITE = """\
name: xla
matrix:
  framework: torch
  model: [seed_mlp]
  batch_size: [8]
  device: [xla]
  mode: [inference, train]
defaults:
  warmup_iters: 2
  min_time: 0.2
  max_time: 1.0
  processes: 1
  telemetry: {hz: 0}
"""


def test_a_device_xla_suite_runs_through_the_cli(tmp_path):
    s = write(tmp_path / "xla.yaml", SUITE)
    proc = bb("run", s, "--out", tmp_path / "out", "--json", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in recs] == ["ok", "ok"], [r["reason"] for r in recs]
    for r in recs:
        assert r["runtime"]["xla_device"].startswith("xla:")
        assert r["runtime"]["worker"]["start_method"] == "spawn"  # a fresh interpreter, never a fork
        assert r["runtime"]["math_modes"]["xla.mat_mul_precision"] == "highest"
    assert (run_dir_of(tmp_path / "out") / "report.html").exists()
