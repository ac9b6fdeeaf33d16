"""A case with a real input pipeline, inside a worker (imports the case's framework only).

- mode ``data``: the loader alone. The step pulls one batch (on the host); no model is
  built. The record's ``pipeline`` holds CPU use (worker + its loader processes, in
  cores) and the per-worker rate.
- modes ``train``/``inference``: the backend builds the model as usual; the step pulls a
  batch, copies it into the model's input tensors (host→device) and runs the model's
  step, all inside the timed iteration. After that window, the loader alone and the
  model alone (the fixed tensor already on the device) are timed by the same rules, one
  after the other, never overlapping: the record's ``pipeline`` carries the three rates
  and the bound (:mod:`bound`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

from benchbench.framework.base import Prepared, Skip
from benchbench.measure import bound
from benchbench.pipelines import generate


class CpuMeter:
    """CPU seconds of this process and its children (DataLoader workers) over a window."""

    def __enter__(self):
        self.start = self._read()
        return self

    def __exit__(self, *exc):
        self.end = self._read()

    @staticmethod
    def _read() -> tuple[float, float, dict]:
        import psutil

        me = psutil.Process()
        t = os.times()
        kids = {}
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                kids[child.pid] = c.user + c.system
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system, kids

    def report(self) -> dict:
        (w0, s0, k0), (w1, s1, k1) = self.start, self.end
        kids = sum(v - k0.get(pid, 0.0) for pid, v in k1.items())
        cpu_s = (s1 - s0) + kids
        wall = w1 - w0
        return {"cpu_s": cpu_s, "wall_s": wall, "cpu_cores_used": cpu_s / wall if wall > 0 else None,
                "cpu_note": "user+system CPU of the worker and its loader processes over warm-up and the "
                            "timed window, divided by that wall time (1.0 = one core busy)"}  # fmt: skip


def _folder(cfg) -> tuple[str, float | None]:
    if cfg.source == "folder":
        return cfg.folder(), None
    return generate.ensure(cfg.folder(), cfg.images, cfg.size, cfg.classes, cfg.seed, cfg.hue_shift)


def _pipeline(case, folder: str, device_type: str):
    cfg = case.data
    if cfg.loader == "dali":
        from benchbench.pipelines import dali

        return dali.pipeline(case, folder, device_type)
    if case.framework == "torch":
        from benchbench.pipelines.torch_pipeline import TorchPipeline as cls
    else:
        from benchbench.pipelines.tf_pipeline import TfPipeline as cls
    return cls(cfg, folder, case.batch_size, case.input_shape, device_type, case.settings.seed)


def _set_threads(case) -> dict:
    if case.framework == "torch":
        import torch

        torch.set_num_threads(case.threads or len(os.sched_getaffinity(0)))
        return {"threads": torch.get_num_threads(), "versions": {"torch": torch.__version__}}
    from benchbench.framework import tf_runtime as tfb

    tfb.set_threads(*tfb.thread_counts(case.threads))
    return {
        "threads": tfb.tf.config.threading.get_intra_op_parallelism_threads(),
        "versions": {"tensorflow": tfb.tf.__version__},
    }


def _rate(timing, batch: int) -> float | None:
    total = sum(timing.samples) * timing.block_size
    return batch * timing.iterations / total if total > 0 else None


def prepare(case, backend) -> Prepared:
    """The Prepared of a case with ``case.data``; its ``pipeline_report(stats)`` (called after
    the timed window) fills ``record.pipeline``."""
    from benchbench.measure.timing import measure

    cfg = case.data
    folder, gen_s = _folder(case.data)
    if case.mode == "data":
        kind = case.device.split(":")[0]  # pin_memory: auto pins for a cuda case's loader too
        runtime = {
            "framework": case.framework,
            "device_type": "cpu",  # the loader alone runs on the host
            "loader_for_device": kind,
            **_set_threads(case),
        }
        t0 = time.perf_counter()
        pipe = _pipeline(case, folder, kind)
        meter = CpuMeter()
        runtime["input_shape"] = [case.batch_size, *case.input_shape]

        def report(stats: dict) -> dict:
            rate = stats.get("throughput")
            cpu = meter.report()
            return {"config": cfg.to_dict(), "folder": folder, "generate_s": gen_s, **pipe.describe(),
                    **pipe.counters(), **cpu, "loader_rate": rate,
                    "per_worker_rate": rate / max(1, cfg.num_workers) if rate else None,
                    "per_worker_note": "images/s ÷ num_workers (the main process when 0)",
                    "bound": None}  # fmt: skip

        prepared = Prepared(step=pipe.next, cold_start={"build_s": time.perf_counter() - t0, "compile_s": None},
                            runtime=runtime, reset_peak_memory=lambda: None,
                            device_memory=lambda: {"device_memory_reason": "data mode: no model, host only"},
                            model_facts=lambda: {"note": "data mode: the loader alone, no model"},
                            context=lambda: meter,
                            fidelity=lambda: {"available": False, "reason": "data mode: no model"})  # fmt: skip
        prepared.pipeline_report = report
        return prepared

    inner = backend.prepare(case)
    inputs = getattr(inner, "inputs", None)
    if inputs is None:
        raise Skip(
            f"the {case.framework} backend does not expose its input tensors for a data pipeline "
            f"(variant {case.variant})"
        )
    device_type = inner.runtime.get("device_type", "cpu")
    pipe = _pipeline(case, folder, device_type)
    copy = pipe.copier(*inputs)
    model_step = inner.step

    def step():
        copy(pipe.next())
        model_step()

    def report(stats: dict) -> dict:
        with inner.context():
            loader_t = measure(pipe.next, case.settings)
            model_t = measure(model_step, case.settings)
        loader, model = _rate(loader_t, case.batch_size), _rate(model_t, case.batch_size)
        b = bound.classify(loader, model, stats.get("throughput"))
        return {"config": cfg.to_dict(), "folder": folder, "generate_s": gen_s, **pipe.describe(),
                **pipe.counters(), **b,
                "rates_note": "end to end (timed window: batch from the loader, host→device copy, model step), "
                              "then the loader alone, then the model alone on a fixed device tensor: same "
                              "settings, one after another in this worker",
                "loader_timing": loader_t.to_dict(), "model_timing": model_t.to_dict()}  # fmt: skip

    prepared = dataclasses.replace(inner, step=step, runtime={**inner.runtime, "input_pipeline": pipe.framework})
    prepared.pipeline_report = report
    return prepared
