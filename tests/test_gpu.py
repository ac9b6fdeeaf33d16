"""On an NVIDIA GPU: a real CUDA case. Skipped, with the reason, where PyTorch sees no GPU."""

import pytest

from benchbench import probe, results
from conftest import bb, run_dir_of, write

CUDA_SKIP = probe.device_skip_reason("torch", "cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(CUDA_SKIP is not None, reason=f"no GPU: {CUDA_SKIP}")]

SUITE = """\
name: gpu
matrix:
  model: [seed_cnn, resnet18]
  batch_size: [8]
  device: [cuda]
  mode: [inference, train]
defaults:
  warmup_iters: 3
  min_time: 0.5
  max_time: 3
  min_iters: 10
"""


def test_cuda_cases_record_device_memory_uuid_and_fp32_math(tmp_path):
    proc = bb("run", write(tmp_path / "gpu.yaml", SUITE), "--out", tmp_path / "out", "--strict")
    assert proc.returncode == 0, proc.stderr
    recs = results.read_records(run_dir_of(tmp_path / "out"))
    assert len(recs) == 4
    for r in recs:
        assert r.status == "ok", r.reason
        assert r.runtime["device_type"] == "cuda"
        assert r.runtime["device_uuid"]
        assert r.memory["device_peak_allocated_bytes"] > 0
        assert r.memory["device_peak_reserved_bytes"] >= r.memory["device_peak_allocated_bytes"]
        assert r.runtime["math_modes"]["cuda.matmul.allow_tf32"] is False
        assert r.runtime["math_modes"]["float32_matmul_precision"] == "highest"
        assert r.stats["median"] > 0 and r.stats["n"] >= 10
