"""The child process: one Case in (a JSON file), one Record out (a JSON file).

    python -m benchbench.worker CASE.json RESULT.json

The framework is imported here and nowhere in the parent. Python exceptions become a
failed record written by the worker itself (traceback to the case log); crashes that
kill the process are recorded by the executor from the exit status.

:func:`measure_case` is the one path from a case to its record, for this process and for
every rank of a data-parallel case (``benchbench.worker.rank``); ``devices: N`` cases go
through :mod:`benchbench.worker.data_parallel`, which ``main`` hands ``measure_case``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchbench.case import Case
from benchbench.results import Record, utc_now, write_json

Clock = Callable[[], float]
Step = Callable[[], None]


def one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return " ".join(text.split())[:500]


CLEAR_REFS = "/proc/self/clear_refs"  # writing "5" resets the peak RSS (VmHWM) to the current RSS
STATUS = "/proc/self/status"


def _vm_hwm_bytes(status: str = STATUS) -> int | None:
    """The peak RSS (VmHWM) of this process's memory since it started or was last reset."""
    try:
        with open(status, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def build_start(clear_refs: str = CLEAR_REFS, status: str = STATUS) -> dict:
    """The worker's memory as the model build starts (the framework imported, nothing of the
    case built): its RSS, the peak so far, and the peak RSS reset to the current RSS (Linux's
    ``clear_refs``) so that the peak from here on — the model, the variant and the working
    set — can be read apart from the framework's own footprint."""
    import psutil

    mark = {
        "rss": psutil.Process().memory_info().rss,
        "peak_before": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "reset": False,
    }
    try:
        with open(clear_refs, "w", encoding="ascii") as f:
            f.write("5")
        mark["reset"] = _vm_hwm_bytes(status) is not None
    except OSError as e:
        mark["reset_reason"] = f"{clear_refs}: {e.strerror or e}"
    return mark


def host_memory(mark: dict | None = None, status: str = STATUS) -> dict:
    """The worker's host memory up to the end of the timed window: its peak RSS (framework
    import, model build and working set), and with ``mark`` (:func:`build_start`) the RSS as
    the build started and the peak above it."""
    import psutil

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if mark is not None:  # a reset peak forgets what came before the build: the larger of the two
        peak = max(peak, mark["peak_before"])
    out = {
        "host_peak_rss_bytes": peak,
        "host_peak_rss_source": "getrusage ru_maxrss of the worker up to the end of the timed "
        "window (framework import and model build included)",
        "host_rss_after_timed_bytes": psutil.Process().memory_info().rss,
    }
    if mark is None:
        return out
    out["host_rss_at_build_start_bytes"] = mark["rss"]
    since = _vm_hwm_bytes(status) if mark.get("reset") else None
    if since is not None:
        out["host_peak_above_build_start_bytes"] = max(0, since - mark["rss"])
        out["host_peak_above_build_start_source"] = (
            "peak RSS (VmHWM, reset as the build started) minus the RSS then: the model, the variant and the "
            "working set, without the framework's own footprint"
        )
    else:
        out["host_peak_above_build_start_bytes"] = max(0, peak - mark["rss"])
        out["host_peak_above_build_start_source"] = (
            "peak RSS minus the RSS as the build started; the peak RSS could not be reset there "
            f"({mark.get('reset_reason') or 'no VmHWM'}), so an upper bound if the worker peaked before the build"
        )
    return out


def _profile(case: Case, backend, prepared, trace_dir) -> dict:
    """The optional profiled window (``profile: true``), after the timed one. Its failure
    never fails the case: the record says why instead."""
    fn = getattr(backend, "profile", None)
    if fn is None:
        return {"available": False, "reason": f"profiling is not implemented for {case.framework} yet"}
    if trace_dir is None:
        return {"available": False, "reason": "no run directory to save the trace in"}
    try:
        os.makedirs(trace_dir, exist_ok=True)
        return {"available": True, **fn(prepared, os.path.join(trace_dir, f"{case.case_id}.trace.json"))}
    except Exception as e:
        traceback.print_exc()
        return {"available": False, "reason": f"profiler failed: {one_line(e)}"}


def _fidelity(prepared) -> dict:
    """Outputs vs the fp32 reference (after the timed window); its failure never fails the case."""
    if prepared.fidelity is None:
        return {"available": False, "reason": "fidelity is not implemented for this backend yet"}
    try:
        return prepared.fidelity()
    except Exception as e:
        traceback.print_exc()
        return {"available": False, "reason": f"fidelity check failed: {one_line(e)}"}


def _same(x):
    return x


def measure_case(
    case: Case,
    *,
    trace_dir: str | None = None,
    device: str | None = None,
    telemetry: bool = True,
    clock: Callable[[Clock], Clock] = _same,
    step_wrapper: Callable[[Step], Step] = _same,
    memory: Callable[[dict], dict] = _same,
    runtime: dict | None = None,
    timer: Callable[..., Any] | None = None,
) -> Record:
    """One case, one record: prepare (the variant and its fidelity), time, memory, model
    facts, fidelity, pipeline rates, profile, and the failure's label. The one path for
    every process that measures: the plain worker (the defaults) and each rank of a
    data-parallel case (:func:`benchbench.worker.data_parallel.rank_main`), which passes
    what differs there:

    - ``device``: prepare on this device instead of ``case.device`` (rank r: ``cuda:r``);
      the record keeps ``case``.
    - ``telemetry``: sample telemetry and energy in this process (ranks: rank 0 only).
    - ``clock``: this process's clock → the timing loop's.
    - ``step_wrapper``: the backend's step → the timed and profiled step.
    - ``timer``: the timing loop, called as :func:`benchbench.measure.timing.measure` is (ranks
      and their one-device baseline: ``data_parallel.lockstep_measure``, synchronised at the
      window's edges only).
    - ``memory``: this process's memory figures → the record's (ranks: every rank's, gathered).
    - ``runtime``: merged into ``record.runtime`` after prepare (ranks: the placement).

    A step processes ``case.batch_size × case.devices`` samples (the global batch).
    """
    from benchbench import backends
    from benchbench.framework.base import Skip
    from benchbench.measure import generate
    from benchbench.measure.stats import summarize
    from benchbench.measure.telemetry import Telemetry
    from benchbench.measure.timing import measure

    rec = Record(case=case.to_dict(), status="failed", started_at=utc_now())
    here = case if device is None or device == case.device else dataclasses.replace(case, device=device)
    samples_per_step = case.batch_size * case.devices
    try:
        backend = backends.get(case.framework)
        imports = getattr(backend, "imports", None)  # the model zoo prepare imports anyway
        if imports is not None:
            imports(case.model)
        mark = build_start()  # the framework is imported: what the case builds from here is its own
        if case.data is not None:  # a real input pipeline (benchbench.pipelines)
            from benchbench.pipelines import hook as data_hook

            prepared = data_hook.prepare(here, backend)
        else:
            prepared = backend.prepare(here)
        rec.runtime = prepared.runtime
        rec.runtime.update(runtime or {})
        rec.cold_start = dict(prepared.cold_start)
        prepared.reset_peak_memory()
        step = step_wrapper(prepared.step)
        with Telemetry.for_case(here, prepared.runtime) if telemetry else contextlib.nullcontext() as tel:
            if tel is not None and case.settings.process == 1:  # the idle reference: once per case
                tel.idle_baseline()
            local = tel.edge_clock() if tel is not None else time.perf_counter
            window = tel.sampling if tel is not None else None
            generation = None
            with prepared.context():  # the sampler runs over the timed window only (not warm-up)
                if prepared.generate is not None:  # generate mode: TTFT apart from every decode token
                    generation = generate.measure(prepared.generate, case.settings, clock(local), window)
                    timing = generation.timing
                else:
                    timing = (timer or measure)(step, case.settings, clock=clock(local), timed_window=window)
            if tel is not None:  # energy per sample; generate: per output token, prefill's included
                units = generate.output_tokens(generation, case.batch_size) if generation else None
                rec.telemetry, rec.energy = tel.report(
                    units or samples_per_step * timing.iterations, timing.timed_wall_s
                )
        rec.memory = memory({**host_memory(mark), **prepared.device_memory()})
        rec.samples = timing.samples
        rec.timing = timing.to_dict()
        rec.cold_start["first_iter_s"] = timing.first_iter_s
        rec.stats = summarize(timing.samples, samples_per_step).to_dict()
        if generation is not None and prepared.generate is not None:  # TTFT, TPOT, token rates, KV and weight bytes
            facts = prepared.generate.facts() if prepared.generate.facts else {}
            rec.generate = generate.summary(
                [generate.part(generation, case.batch_size, case.prompt_len or 0)],
                [timing.samples],
                facts,
            )
        # measured once per case, in its first worker process (benchbench.measure.combine keeps them)
        once = case.settings.process == 1
        rec.model = prepared.model_facts() if once else {}
        rec.fidelity = _fidelity(prepared) if once else {}
        if case.data is not None and once:  # loader-only and model-only rates, after the timed window; the bound
            rec.pipeline = prepared.pipeline_report(rec.stats)
        if case.settings.profile and once:  # on the timed step: a rank's profiled window stays in lock-step
            profiled = prepared if step is prepared.step else dataclasses.replace(prepared, step=step)
            rec.runtime["profile"] = _profile(case, backend, profiled, trace_dir)
        rec.status = "ok"
    except Skip as e:
        rec.status, rec.reason = "skipped", str(e)
    except MemoryError as e:
        rec.reason = f"out of memory: {one_line(e)}"
        traceback.print_exc()
    except Exception as e:
        reason = one_line(e)
        if "out of memory" in reason.lower():
            reason = f"out of memory: {reason}"
        rec.reason = reason
        traceback.print_exc()
    rec.ended_at = utc_now()
    return rec


def run(case: Case, trace_dir: str | None = None) -> Record:
    """One case in this process (``devices: 1``): :func:`measure_case` with the defaults."""
    if case.mode == "fit":  # train to a target, or a variant's quality on trained weights (issue 19)
        from benchbench.worker.fit import measure_fit

        return measure_fit(case, host_memory=host_memory, one_line=one_line)
    return measure_case(case, trace_dir=trace_dir)


def main(argv: list[str]) -> int:
    case_path, result_path = argv
    with open(case_path, encoding="utf-8") as f:
        case = Case.from_dict(json.load(f))
    print(f"benchbench worker pid {os.getpid()}: {case.label} ({case.case_id})", flush=True)
    work = os.path.dirname(os.path.abspath(result_path))  # the runner's <run dir>/.work
    trace_dir = os.path.join(os.path.dirname(work), "profiles") if os.path.basename(work) == ".work" else work
    if case.devices > 1:  # data-parallel (devices: N): torchrun ranks / MirroredStrategy
        from benchbench.worker import data_parallel as distributed

        record = distributed.run(case, trace_dir, measure_case)
    else:
        record = run(case, trace_dir)
    write_json(result_path, record.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
