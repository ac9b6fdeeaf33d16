"""Generated run directories: realistic records without running anything.

For the report's tests, its benchmark (``benchmarks/bench_report.py``) and trying a
report out. Statistics come from :func:`benchbench.measure.stats.summarize` over
generated per-iteration times, so every figure is consistent with its samples.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from benchbench.case import Case, Settings
from benchbench.measure.stats import summarize
from benchbench.results import ENVIRONMENT_FILE, Record, append_record, write_json

# Seconds per sample of a batch of 1, inference, fp32 on the CPU (rough, for shape only).
MODEL_COST = {
    "seed_mlp": 2e-5,
    "seed_cnn": 3e-3,
    "seed_cnn4": 3.5e-3,
    "resnet18": 8e-3,
    "resnet50": 2.5e-2,
    "mobilenet_v2": 4e-3,
    "efficientnet_b0": 6e-3,
    "convnext_tiny": 2.8e-2,
    "vit_b_16": 6e-2,
    "regnet_y_400mf": 5e-3,
}
VARIANT_FACTOR = {"fp32": 1.0, "fp16": 0.55, "bf16": 0.6, "int8": 0.4, "pruned": 0.7}
DEVICE_FACTOR = {"cpu": 1.0, "cuda": 0.04}
MODE_FACTOR = {"inference": 1.0, "train": 3.2}


def make_record(
    model: str,
    batch_size: int,
    *,
    framework: str = "torch",
    device: str = "cpu",
    mode: str = "inference",
    variant: str = "fp32",
    status: str = "ok",
    reason: str | None = None,
    host: str = "bench-host",
    n: int = 60,
    rng: random.Random | None = None,
    input_shape: tuple[int, ...] = (3, 64, 64),
    speed: float = 1.0,
) -> Record:
    """One record as a worker would write it; ``speed`` divides every time (a faster machine)."""
    rng = rng or random.Random(f"{model}/{batch_size}/{framework}/{device}/{mode}/{variant}/{host}")
    case = Case(
        framework,
        model,
        batch_size,
        device,
        mode,
        variant,
        input_shape,
        settings=Settings(min_time=0.5, max_time=5.0, min_iters=8),
    )
    rec = Record(
        case=case.to_dict(),
        status=status,
        reason=reason,
        host=host,
        started_at="2026-11-25T12:00:00+00:00",
        ended_at="2026-11-25T12:00:03+00:00",
    )
    if status != "ok":
        return rec
    per_sample = (
        MODEL_COST.get(model, 1e-2)
        * VARIANT_FACTOR.get(variant, 0.8)
        * DEVICE_FACTOR.get(device, 0.1)
        * MODE_FACTOR.get(mode, 2.0)
        / speed
    )
    median = per_sample * batch_size**0.85 + 2e-5
    samples = [median * rng.lognormvariate(0.0, 0.04) * (3.0 if rng.random() < 0.02 else 1.0) for _ in range(n)]
    stats = summarize(samples, batch_size)
    rec.stats = stats.to_dict()
    rec.samples = samples
    rec.timing = {
        "block_size": 1,
        "first_iter_s": median * 4,
        "warmup_iters": 3,
        "warmup_s": median * 3,
        "warmup_settled": True,
        "timed_wall_s": sum(samples),
        "iterations": n,
        "stop_reason": "ci_target_met" if (stats.rel_ci or 1) <= 0.02 else "max_time",
        "target_met": (stats.rel_ci or 1) <= 0.02,
        "final_rel_ci": stats.rel_ci,
    }
    on_gpu = device.startswith("cuda")
    rec.memory = {
        "host_peak_rss_bytes": int((900 + 40 * batch_size * (3 if mode == "train" else 1)) * 2**20),
        "host_peak_rss_source": "getrusage ru_maxrss of the worker",
        "device_peak_allocated_bytes": int((150 + 30 * batch_size) * 2**20) if on_gpu else None,
        "device_peak_reserved_bytes": int((200 + 32 * batch_size) * 2**20) if on_gpu else None,
    }
    if not on_gpu:
        rec.memory["device_memory_reason"] = "cpu case: no device allocator (host RSS covers it)"
    rec.model = {"params": 1_000_000, "flops_per_sample": 2e9, "serialized_bytes": 4_000_000}
    rec.cold_start = {"build_s": 0.2, "first_iter_s": median * 4, "compile_s": None}
    rec.runtime = {
        "framework": framework,
        "device_name": "NVIDIA H100" if on_gpu else "AMD EPYC",
        "threads": 2,
        "dtype": "float32",
    }
    rec.duration_s = 3.0
    rec.telemetry, rec.energy = _telemetry(rng, on_gpu, rec.timing["timed_wall_s"], n * batch_size)
    return rec


NO_RAPL = "no RAPL: /sys/class/powercap does not exist (generated record)"


def _telemetry(rng: random.Random, on_gpu: bool, window_s: float, samples: int, points: int = 40):
    """(telemetry, energy) shaped as the sampler writes them: on a GPU, NVML's energy
    counter (about 300 W) and its utilisation; the CPU's energy unavailable (no RAPL)."""
    t = [round(window_s * (i + 0.5) / points, 4) for i in range(points)]
    series = {"t_s": t, "cpu.process_cpu_pct": [round(rng.uniform(150, 198), 1) for _ in t]}
    energy = {
        "window_s": window_s,
        "samples": samples,
        "primary": "gpu" if on_gpu else "cpu",
        "cpu": {
            "source": "unavailable",
            "reason": NO_RAPL,
            "energy_j": None,
            "avg_w": None,
            "j_per_sample": None,
            "samples_per_j": None,
        },
    }
    if on_gpu:
        watts = [round(rng.uniform(280, 320), 1) for _ in t]
        series.update({"nvml.power_w": watts, "nvml.gpu_util_pct": [round(rng.uniform(90, 100)) for _ in t]})
        avg = sum(watts) / len(watts)
        joules = avg * window_s
        energy["gpu"] = {
            "source": "nvml-energy-counter",
            "energy_j": joules,
            "avg_w": avg,
            "j_per_sample": joules / samples,
            "samples_per_j": samples / joules,
            "idle_w": None,
            "idle_reason": "no idle baseline (telemetry.idle_baseline_s: 0)",
        }
    telemetry = {"enabled": True, "hz": 10.0, "window_s": window_s, "ticks_in_window": points, "series": series}
    return telemetry, energy


def environment(host: str = "bench-host", *, cpu: str = "AMD EPYC", gpu: str | None = None) -> dict:
    """An environment.json as the runner writes it (shape only)."""
    return {
        "captured_at": "2026-11-25T12:00:00+00:00",
        "host": host,
        "os": {"system": "Linux", "release": "6.1.0", "platform": "Linux-6.1.0-x86_64-with-glibc2.36"},
        "cpu": {"model": cpu, "arch": "x86_64", "physical_cores": 2, "logical_cores": 2, "usable_cores": 2},
        "ram_bytes": 25 * 2**30,
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "packages": {"benchbench": "0.1.0", "torch": "2.14.1", "torchvision": "0.29.1", "tensorflow": None},
        "benchbench_version": "0.1.0",
        "frameworks": {
            "torch": {
                "framework": "torch",
                "versions": {"torch": "2.14.1+cu130"},
                "devices": {"cuda": {"available": gpu is not None, "gpus": [{"name": gpu}] if gpu else []}},
            }
        },
        "git": {"commit": "2bbb17817485a4ac1ee3a8926202b9aa676590dd", "dirty": False},
        "suite_sha256": "0" * 64,
    }


def write_run(run_dir: str | Path, records: list[Record], *, suite: str = "generated", env: dict | None = None) -> Path:
    """A run directory holding ``records`` (results.jsonl, environment.json, run.json)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for rec in records:
        append_record(run_dir / "results.jsonl", rec)
    host = next((r.host for r in records if r.host), "bench-host")
    write_json(run_dir / ENVIRONMENT_FILE, env if env is not None else environment(host))
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "suite": suite,
                "created_at": "2026-11-25T12:00:00+00:00",
                "updated_at": "2026-11-25T12:30:00+00:00",
                "status": "complete",
                "planned": [r.case_id for r in records],
                "missing": [],
            }
        ),
        encoding="utf-8",
    )
    return run_dir


def many_records(count: int = 1000, seed: int = 0) -> list[Record]:
    """``count`` records over models × batch sizes × devices × modes × variants, about 4%
    failed (out of memory) and 4% skipped (no GPU), 30–200 samples each."""
    rng = random.Random(seed)
    axes = itertools.product(MODEL_COST, (1, 4, 16, 32, 64), ("cpu", "cuda"), ("inference", "train"), VARIANT_FACTOR)
    out = []
    for model, batch, device, mode, variant in itertools.cycle(axes):
        if len(out) == count:
            break
        roll = rng.random()
        kw = dict(device=device, mode=mode, variant=variant, rng=rng, n=rng.randint(30, 200))
        if roll < 0.04:
            kw.update(status="failed", reason=f"out of memory: worker RSS exceeded the memory limit at batch {batch}")
        elif roll < 0.08:
            kw.update(status="skipped", reason="cuda: no CUDA GPU visible to PyTorch")
        out.append(make_record(model, batch, **kw))
    return out
