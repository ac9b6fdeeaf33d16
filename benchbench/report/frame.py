"""Run directories in, tidy frames out: one row per record, SI units, no presentation.

Reads only what a run stored (``results.jsonl``, ``environment.json``, ``run.json``);
knows nothing of frameworks. Throughput in the figures is derived from the median
iteration time (``batch / median``, with the median's 95% CI turned into throughput
bounds ``batch / ci_high .. batch / ci_low``); the record's own ``throughput`` (samples
over the whole timed window) is kept beside it, unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchbench import rundir
from benchbench.errors import UserError
from benchbench.measure.stats import block_sizes, percentiles_of
from benchbench.results import Record
from benchbench.rundir import Run

# What makes two records "the same case apart from the variant" (for --baseline).
BASELINE_KEY = ("framework", "model", "batch_size", "device", "mode", "input_shape", "threads", "optimizer", "origin")

# Optional text: None when absent (never NaN), so ``if row.reason`` means what it says.
TEXT_COLUMNS = (
    "device_name",
    "reason",
    "optimizer",
    "stop_reason",
    "device_memory_note",
    "started_at",
    "ended_at",
    "log",
    "energy_source",
    "energy_reason",
)


def load_runs(paths) -> list[Run]:
    """Each path a run directory (or its results.jsonl); the same run twice counts once."""
    runs = rundir.load_runs(paths)
    if not runs:
        raise UserError("report: give at least one run directory")
    return runs


def num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _row(run: Run, rec: Record) -> dict:
    case = rec.case or {}
    stats = rec.stats or {}
    memory = rec.memory or {}
    timing = rec.timing or {}
    runtime = rec.runtime or {}
    batch = int(case.get("batch_size") or 0)
    median = num(stats.get("median"))
    ci_low, ci_high = num(stats.get("ci95_low")), num(stats.get("ci95_high"))
    thr_median = batch / median if median is not None and median > 0 and batch > 0 else None
    ok_median = thr_median is not None
    shape = case.get("input_shape")
    energy = getattr(rec, "energy", None) or {}
    primary = energy.get(energy.get("primary"))
    primary = primary if isinstance(primary, dict) else {}
    return {
        "run": run.name,
        "run_dir": str(run.path),
        "suite": run.suite,
        "machine": rec.host or run.host or "unknown host",
        "case_id": str(case.get("case_id", "")),
        "framework": str(case.get("framework", "")),
        "model": str(case.get("model", "")),
        "batch_size": batch,
        "device": str(case.get("device", "")),
        "device_name": runtime.get("device_name"),
        "mode": str(case.get("mode", "")),
        "variant": str(case.get("variant", "")),
        "input_shape": "×".join(map(str, shape)) if isinstance(shape, (list, tuple)) else str(shape or ""),
        "threads": runtime.get("threads", case.get("threads")),
        "optimizer": case.get("optimizer") if case.get("mode") == "train" else None,
        "status": rec.status,
        "reason": rec.reason,
        "n": stats.get("n"),
        "median_s": median,
        "p50_s": num(stats.get("p50")) if num(stats.get("p50")) is not None else median,
        "p99_s": num(stats.get("p99")),
        "ci_low_s": ci_low,
        "ci_high_s": ci_high,
        "rel_ci": num(stats.get("rel_ci")),
        "noisy": bool(stats.get("noisy")),
        "target_met": timing.get("target_met"),
        "stop_reason": timing.get("stop_reason"),
        "block_size": timing.get("block_size") or 1,
        "percentiles_of": percentiles_of(block_sizes(timing)),  # single iterations, or block means
        "throughput": num(stats.get("throughput")),
        "thr_median": thr_median,
        "thr_low": batch / ci_high if ok_median and ci_high else None,
        "thr_high": batch / ci_low if ok_median and ci_low else None,
        "host_peak_rss_bytes": num(memory.get("host_peak_rss_bytes")),
        # the model, variant and working set: the peak above the RSS as the build started
        "host_above_build_bytes": num(memory.get("host_peak_above_build_start_bytes")),
        "device_peak_bytes": num(memory.get("device_peak_allocated_bytes")),
        "device_reserved_bytes": num(memory.get("device_peak_reserved_bytes")),
        "device_memory_note": memory.get("device_memory_reason"),
        "params": (rec.model or {}).get("params"),
        "nonzero_params": num((rec.model or {}).get("nonzero_params")),
        "serialized_bytes": num((rec.model or {}).get("serialized_bytes")),
        "top1_agreement": num((getattr(rec, "fidelity", None) or {}).get("top1_agreement")),
        "max_abs_diff": num((getattr(rec, "fidelity", None) or {}).get("max_abs_diff")),
        # energy of the case's primary domain (gpu for CUDA cases, else cpu), with its source
        "energy_source": primary.get("source"),
        "energy_reason": primary.get("reason"),
        "j_per_sample": num(primary.get("j_per_sample")),
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "log": runtime.get("log"),
        "samples": [s for s in (rec.samples or []) if num(s) is not None],
        # the case's worker processes: their medians (each process's own), and whether the
        # interval above spans them ("between-process") or one process only
        "processes": int((rec.processes or {}).get("processes") or 1),
        "interval_scope": (rec.processes or {}).get("interval_scope") or "within-process",
        "process_medians_s": [
            m for m in (num(p.get("median")) for p in (rec.processes or {}).get("per_process") or []) if m is not None
        ],
    }


def cases_frame(runs: list[Run], baseline: str | None = None) -> pd.DataFrame:
    """One row per record of every run (columns: see ``_row``), plus:

    - ``origin``: the machine when several machines are merged, and the run too when the
      same case appears in several runs of one machine (else empty);
    - ``series``: the colour key, the variant (prefixed by the framework when several
      frameworks are present);
    - ``speedup``: with ``baseline``, the baseline variant's median time over this
      record's (same case otherwise, same machine); NaN where there is no baseline.
    """
    rows = [_row(run, rec) for run in runs for rec in run.records]
    if not rows:  # keep the columns: every section then sees "no data", not a KeyError
        rows = [
            _row(Run(run_id=".", suite=None, created_at=None, records=[], path=Path(".")), Record(case={}, status="ok"))
        ]
        df = pd.DataFrame(rows).iloc[0:0].assign(origin="", series="")
        return df.assign(speedup=float("nan")) if baseline is not None else df
    df = pd.DataFrame(rows)
    for col in TEXT_COLUMNS:  # pandas ≥ 3 stores a missing string as NaN: keep None
        df[col] = pd.Series([v if isinstance(v, str) else None for v in df[col]], index=df.index, dtype=object)
    df["origin"] = ""
    if df["machine"].nunique() > 1:
        df["origin"] = df["machine"]
    dup = df.duplicated(["case_id", "machine"], keep=False)
    if dup.any():
        df.loc[dup, "origin"] = df.loc[dup, "machine"] + " · " + df.loc[dup, "run"]
    several_fw = df["framework"].nunique() > 1
    df["series"] = (df["framework"] + " · " + df["variant"]) if several_fw else df["variant"]
    if baseline is not None:
        df["speedup"] = _speedup(df, baseline)
    return df


def _speedup(df: pd.DataFrame, baseline: str):
    variants = sorted(set(df["variant"]))
    if baseline not in variants:
        raise UserError(
            f"--baseline {baseline!r}: no such variant in these runs; present: {', '.join(variants) or 'none'}"
        )
    key = [df[k].astype(str) for k in BASELINE_KEY]
    keys = pd.Series(list(zip(*key)), index=df.index)
    ok = (df["status"] == "ok") & df["median_s"].notna()
    base = df[ok & (df["variant"] == baseline)]
    base_median = dict(zip(keys[base.index], base["median_s"]))
    ref = keys.map(base_median)
    return (ref / df["median_s"]).where(ok)


def suite_baseline(runs: list[Run]) -> str | None:
    """The reference variant the runs' suites name (run.json ``baseline``), when they agree
    and the records hold it and at least one other variant (then speed-up means something)."""
    named = {(run.info or {}).get("baseline") for run in runs}
    variants = {str((r.case or {}).get("variant")) for run in runs for r in run.records if r.status == "ok"}
    if len(named) != 1 or None in named:
        return None
    (name,) = named
    return name if name in variants and len(variants) > 1 else None


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a measurement (status ok and a median)."""
    if df.empty:
        return df
    return df[(df["status"] == "ok") & df["median_s"].notna()]


def environments(runs: list[Run]) -> list[tuple[str, dict]]:
    """(run name, environment.json) for each run that has one."""
    return [(run.name, run.environment) for run in runs if run.environment]
