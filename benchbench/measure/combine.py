"""A case's worker processes → its one record, and what each process is asked to do.

Each case runs in several fresh worker processes (``processes:``; see
:mod:`benchbench.measure.processes` for why and for the interval). The runner asks for
them with :func:`process_case` and, once it stops adding processes, turns their records
into the case's one record with :func:`combine_records`:

* ``stats``: order statistics (p50…p99, mean, min/max) and ``throughput`` over every
  process's samples pooled; ``median`` is the median of the process medians, and
  ``ci95_low``/``ci95_high``/``rel_ci`` the interval that covers a re-run (between
  processes, or within the one process when there was one: ``interval_scope`` says which).
* ``processes``: each process's n, median, interval, pid, start, block size, stop rule
  and how its worker started; the within- and between-process spread; why no more
  processes ran.
* ``samples``: every process's samples, in process order (``processes.per_process[i].n``
  splits them back).
* ``model``, ``fidelity``, ``cold_start``, ``pipeline``, profile: from process 1, the only
  one that measures them (work done once per case).
* ``memory``: the figures of the process with the largest peak host RSS.
* ``energy``: per domain, the joules of every process's timed window summed, over their
  summed samples and seconds (J/sample, W); where one process has no figure the domain is
  unavailable with that process's reason. The idle baseline is process 1's (measured once).
* ``telemetry``: process 1's sampler (its series and summary), labelled as such.
* ``generate`` (mode generate): TTFT, per-token and end-to-end statistics over every
  process's runs, each with the between-process interval, and the token rates
  (:func:`benchbench.measure.generate.combine`); the bytes and FLOPs measured once, process 1's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from benchbench.case import AUTO_MIN_PROCESSES, Case
from benchbench.measure import bound
from benchbench.measure import fit as fit_quality
from benchbench.measure import generate as generation
from benchbench.measure import processes as proc_stats
from benchbench.measure.stats import block_sizes, percentiles_of, summarize
from benchbench.results import Record

MIN_ITERS_PER_PROCESS = 2  # samples in a case's first process at least (its median and spread)
MIN_ITERS_LATER_PROCESS = 1  # samples in each later process at least (its median: see process_case)
AUTO_FLOOR_PROCESSES = 3  # auto never stops below this many (a t interval over 2 medians is ±12.7 s.e.)


def planned_processes(case: Case) -> int:
    """How many processes a case starts with (``auto``: the minimum it always gets)."""
    s = case.settings
    if s.processes is not None:
        return s.processes
    if case.devices > 1:  # one job of N ranks plus its one-device baseline: auto runs it once
        return 1
    return min(AUTO_MIN_PROCESSES, s.max_processes)


def process_case(case: Case, index: int, done: Sequence[Record] = ()) -> Case:
    """The case as its ``index``-th worker process (1-based) runs it, after the ok processes
    ``done``: the case's time and samples (min_time, max_time, min_iters) shared by the
    processes it plans. Each process still pays its own start-up, first iteration and
    warm-up; what the first process learnt makes the later ones cheaper:

    * a later process needs one timed sample at least (MIN_ITERS_LATER_PROCESS): the case's
      interval is over process medians, and a process whose single iteration outlasts its
      share of ``min_time`` has a median of one sample; process 1 keeps
      MIN_ITERS_PER_PROCESS for the within-process spread. Fast iterations are unaffected:
      ``min_time`` / k gives them many samples.
    * a later process's warm-up is capped (``warmup_cap``) at the iterations process 1
      needed to settle (at least ``warmup_iters``): the cold start it warms past is the
      same code's. A capped warm-up that did not settle says so (``warmup_settled``), and a
      process still warming up shows in the between-process spread the interval includes.
    """
    s = case.settings
    k = planned_processes(case)
    later = index > 1 and k > 1
    warmup_cap = None
    if later and done:
        first = done[0].timing or {}
        if first.get("warmup_settled") and first.get("warmup_iters"):
            warmup_cap = max(s.warmup_iters, 2, int(first["warmup_iters"]))
    settings = dataclasses.replace(
        s,
        process=index,
        min_time=s.min_time / k,
        max_time=s.max_time / k,
        min_iters=MIN_ITERS_LATER_PROCESS if later else max(MIN_ITERS_PER_PROCESS, math.ceil(s.min_iters / k)),
        # with several processes, each measures its share of min_time and min_iters and stops:
        # the spread between processes dominates, so more processes, not longer ones, narrow
        # the case's interval (max_time / k still bounds a process whose samples are slow)
        stop_on_ci=k == 1,
        warmup_cap=warmup_cap,
    )
    return dataclasses.replace(case, settings=settings)


def time_budget(case: Case, done: list[Record]) -> float:
    """What an auto case may spend in its processes, start to record: what one worker
    process meeting ``min_time`` cost before processes were combined — its interpreter start
    and imports (the fork server's own start, measured, where the processes are forked), its
    start-up and warm-up (process 1's), and ``min_time`` of timing. A case whose interval
    is still wide then says so. The floor of AUTO_FLOOR_PROCESSES can exceed it: cases whose
    first iteration and warm-up dominate cost more than one process did."""
    first = done[0]
    timed = float((first.timing or {}).get("timed_wall_s") or 0.0)
    overhead = max(0.0, (first.duration_s or 0.0) - timed)
    spawn = float(((first.runtime or {}).get("worker") or {}).get("server_start_s") or 0.0)
    return spawn + overhead + case.settings.min_time


def next_process(case: Case, done: list[Record]) -> tuple[bool, str]:
    """Whether ``case`` gets another process after the ok ones in ``done``, and why.

    Fixed ``processes: N``: until N ran. ``auto``: at least AUTO_FLOOR_PROCESSES (the
    fewest whose interval means anything), then :func:`benchbench.measure.processes.auto_decision`
    with AUTO_MIN_PROCESSES before the target may stop it, ``max_processes`` as the cap and
    :func:`time_budget` against the processes' total wall time."""
    s = case.settings
    k = len(done)
    if any(not r.samples for r in done):
        return False, "a process recorded no samples"
    if s.processes is not None:
        return (k < s.processes, f"fixed: {s.processes} process{'es' if s.processes != 1 else ''}")
    if case.devices > 1:
        return False, "data-parallel: auto runs the job (N ranks and the one-device baseline) once"
    if k < min(AUTO_FLOOR_PROCESSES, s.max_processes):
        return True, "min processes"
    elapsed = sum(r.duration_s or 0.0 for r in done)
    return proc_stats.auto_decision(
        [r.samples for r in done],
        s.target_rel_ci,
        s.max_processes,
        elapsed,
        time_budget(case, done),
        min_processes=planned_processes(case),
    )


def _process_entry(summary: dict[str, Any], rec: Record) -> dict[str, Any]:
    timing = rec.timing or {}
    worker = (rec.runtime or {}).get("worker") or {}
    return {
        **summary,
        "pid": worker.get("pid"),
        "started_at": rec.started_at,
        "start_method": worker.get("start_method"),
        "block_size": timing.get("block_size"),
        "iterations": timing.get("iterations"),
        "timed_wall_s": timing.get("timed_wall_s"),
        "stop_reason": timing.get("stop_reason"),
        "duration_s": rec.duration_s,
    }


def _throughput(done: list[Record], batch: int) -> float | None:
    """Samples per second over every process's timed iterations. A sample is the mean of a
    block of ``block_size`` iterations, and processes may choose different block sizes, so
    each process counts its iterations and their time, not its number of samples."""
    iterations = 0.0
    seconds = 0.0
    for r in done:
        block = int((r.timing or {}).get("block_size") or 1)
        iterations += len(r.samples) * block
        seconds += sum(r.samples) * block
    return batch * iterations / seconds if seconds > 0 else None


def combine_records(case: Case, done: list[Record], stopped_by: str) -> Record:
    """The case's one record from its ok process records (in process order)."""
    if not done:
        raise ValueError("no process records to combine")
    first = done[0]
    if any(not r.samples for r in done):  # nothing to combine: the first process's record as it is
        return dataclasses.replace(
            first, case=case.to_dict(), processes={"processes": len(done), "stopped_by": stopped_by}
        )
    batch = case.batch_size * case.devices
    pooled = [t for r in done for t in r.samples]
    ps = proc_stats.combine([r.samples for r in done], batch)
    stats = summarize(pooled, batch).to_dict()
    stats.update(
        median=ps.median,
        ci95_low=ps.ci95_low,
        ci95_high=ps.ci95_high,
        rel_ci=ps.rel_ci,
        ms_per_batch=ps.ms_per_batch,
        ms_per_sample=ps.ms_per_sample,
        interval_scope=ps.interval_scope,
        processes=ps.processes,
        throughput=_throughput(done, batch),
    )
    info = ps.to_dict()
    info["throughput"] = stats["throughput"]
    info["per_process"] = [_process_entry(p, r) for p, r in zip(info["per_process"], done)]
    info["stopped_by"] = stopped_by
    info["planned"] = case.settings.processes if case.settings.processes is not None else "auto"

    timing = dict(first.timing or {})
    timing.update(
        iterations=sum(int((r.timing or {}).get("iterations") or 0) for r in done),
        timed_wall_s=sum(float((r.timing or {}).get("timed_wall_s") or 0.0) for r in done),
        target_met=ps.rel_ci is not None and ps.rel_ci <= case.settings.target_rel_ci,
        final_rel_ci=ps.rel_ci,
        stop_reason=f"processes: {stopped_by}",
    )
    blocks = [(r.timing or {}).get("block_size") for r in done]
    if len(set(blocks)) > 1:  # chosen per process from its own warm-up: each process's is in per_process
        timing["block_size"] = None
        timing["block_sizes"] = blocks
    timing["percentiles_of"] = percentiles_of(block_sizes(timing))  # of the pooled samples
    biggest = max(done, key=lambda r: (r.memory or {}).get("host_peak_rss_bytes") or 0)
    memory = dict(biggest.memory or {})
    if len(done) > 1:
        memory["processes_note"] = "the figures of the process with the largest peak host RSS"
    telemetry = dict(first.telemetry or {})
    if telemetry.get("enabled") and len(done) > 1:
        telemetry["window"] = f"process 1 of {len(done)}"
    energy = combine_energy([r.energy or {} for r in done])
    pipeline = dict(first.pipeline or {})
    if pipeline.get("loader_rate") is not None or pipeline.get("model_rate") is not None:
        # loader-only and model-only rates are process 1's; end to end is the case's own figure
        pipeline.update(bound.classify(pipeline.get("loader_rate"), pipeline.get("model_rate"), stats["throughput"]))
    return Record(
        case=case.to_dict(),
        status="ok",
        stats=stats,
        samples=pooled,
        timing=timing,
        memory=memory,
        model=first.model,
        cold_start=first.cold_start,
        runtime=first.runtime,
        telemetry=telemetry,
        energy=energy,
        pipeline=pipeline,
        fidelity=first.fidelity,
        processes=info,
        quality=fit_quality.combine([r.quality for r in done]) if case.mode == "fit" else {},  # issue 19: the seeds
        generate=generation.combine([r.generate for r in done], [r.samples for r in done]),  # issue 20: TTFT, TPOT
        started_at=first.started_at,
        ended_at=done[-1].ended_at,
        duration_s=sum(r.duration_s or 0.0 for r in done),
        host=first.host,
    )


def failed_record(case: Case, bad: Record, done: list[Record]) -> Record:
    """A case whose process ``bad`` failed (or was skipped): that record, for the whole case,
    keeping what its earlier processes measured in ``processes``."""
    rec = dataclasses.replace(bad, case=case.to_dict())
    if done:
        rec.processes = {
            "failed_process": len(done) + 1,
            "ok_before": [
                _process_entry({"n": len(r.samples), "median": (r.stats or {}).get("median")}, r) for r in done
            ],
        }
    return rec


ENERGY_FIELDS = ("energy_j", "avg_w", "j_per_sample", "samples_per_j")
ABOVE_IDLE_FIELDS = ("above_idle_energy_j", "above_idle_j_per_sample", "above_idle_samples_per_j")


def combine_energy(parts: list[dict]) -> dict:
    """The ``energy`` of a case from its processes' (each over its own timed window)."""
    if not parts or not parts[0]:
        return {}
    if len(parts) == 1:
        return dict(parts[0])
    first = parts[0]
    window = sum(float(p.get("window_s") or 0.0) for p in parts)
    samples = sum(int(p.get("samples") or 0) for p in parts)
    out: dict[str, Any] = {
        "window_s": window,
        "samples": samples,
        "primary": first.get("primary"),
        "processes": len(parts),
        "window": f"the timed windows of all {len(parts)} processes together",
    }
    for domain, entry in first.items():
        if not isinstance(entry, dict):
            continue
        entries = [p.get(domain) or {} for p in parts]
        merged = dict(entry)
        missing = next((e for e in entries if e.get("energy_j") is None), None)
        sources = {e.get("source") for e in entries}
        if missing is not None or len(sources) > 1:
            merged.update({k: None for k in ENERGY_FIELDS + ABOVE_IDLE_FIELDS if k in merged or k in ENERGY_FIELDS})
            merged["source"] = "unavailable" if missing is not None else "mixed"
            merged["reason"] = (
                ((missing or {}).get("reason") or "a process had no energy figure")
                if missing
                else f"processes used different sources: {', '.join(sorted(map(str, sources)))}"
            )
        else:
            joules = sum(float(e["energy_j"]) for e in entries)
            merged.update(
                energy_j=joules,
                avg_w=joules / window if window > 0 else None,
                j_per_sample=joules / samples if samples else None,
                samples_per_j=samples / joules if joules > 0 else None,
            )
            merged["warnings"] = sorted({w for e in entries for w in (e.get("warnings") or [])}) or None
            if merged["warnings"] is None:
                merged.pop("warnings")
            idle_w = entry.get("idle_w")
            if idle_w is not None:  # process 1's idle baseline, over every process's window
                above = joules - idle_w * window
                merged.update(
                    above_idle_energy_j=above,
                    above_idle_j_per_sample=above / samples if samples else None,
                    above_idle_samples_per_j=samples / above if samples and above > 0 else None,
                )
        out[domain] = merged
    return out
