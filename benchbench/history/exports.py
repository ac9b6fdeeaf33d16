"""One run in other tools' formats (``benchbench store export RUN --format …``):

* ``github-bigger`` / ``github-smaller``: github-action-benchmark's ``customBiggerIsBetter``
  (throughput) / ``customSmallerIsBetter`` (p99 latency — only where the samples are single
  iterations, never of block means —, peak RSS, energy per sample) JSON:
  a list of ``{name, unit, value, range?, extra?}``
  (https://github.com/benchmark-action/github-action-benchmark#examples);
* ``pytest-benchmark``: the JSON ``pytest --benchmark-json`` writes (machine_info,
  commit_info, benchmarks[].stats in seconds per iteration), so tools that read it
  (pytest-benchmark compare, github-action-benchmark's ``pytest`` tool) can take benchbench
  runs. Each record's samples are seconds per iteration (the mean of a timing block when
  the case was timed in blocks); ``rounds`` is the number of samples;
* ``csv`` / ``parquet``: a row per case (results.to_row: the record flattened, samples
  left out), with the run id.
"""

from __future__ import annotations

import json
import math
import platform

from benchbench.errors import UserError

FORMATS = ("github-bigger", "github-smaller", "pytest-benchmark", "csv", "parquet")


def github_action_benchmark(run, bigger: bool) -> list[dict]:
    from benchbench.case import case_label
    from benchbench.history.compare import metric_value

    out = []
    for r in run.records:
        if r.status != "ok":
            continue
        name = case_label(r.case)
        rel = (r.stats or {}).get("rel_ci")
        extra = f"case_id {r.case_id}"
        if bigger:
            v = metric_value(r, "throughput")
            if v is not None:
                out.append(
                    {
                        "name": f"{name} throughput",
                        "unit": "samples/s",
                        "value": v,
                        "range": f"±{rel * v:.4g}" if rel else None,
                        "extra": extra,
                    }
                )
            continue
        for metric, title, unit, scale in (
            ("latency_p99", "latency p99", "ms", 1e3),
            ("memory", "peak RSS", "MiB", 1 / 2**20),
            ("energy_per_sample", "energy per sample", "J", 1.0),
        ):
            v = metric_value(r, metric)
            if v is not None:
                out.append({"name": f"{name} {title}", "unit": unit, "value": v * scale, "extra": extra})
    return [{k: v for k, v in e.items() if v is not None} for e in out]


def _quartiles(xs: list[float]) -> tuple[float, float]:
    from benchbench.measure.stats import percentile

    s = sorted(xs)
    return percentile(s, 25), percentile(s, 75)


def pytest_benchmark(run) -> dict:
    """The run as pytest-benchmark's JSON (its ``--benchmark-json`` layout, version 4)."""
    from benchbench.case import case_label
    from benchbench.measure.stats import latency_p99

    env = run.environment or {}
    benches = []
    for r in run.records:
        xs = [float(x) for x in (r.samples or []) if isinstance(x, (int, float)) and math.isfinite(x)]
        if r.status != "ok" or not xs:
            continue
        n = len(xs)
        mean = sum(xs) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
        q1, q3 = _quartiles(xs)
        iqr = q3 - q1
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        name = case_label(r.case)
        benches.append(
            {
                "group": r.case.get("model"),
                "name": name,
                "fullname": f"benchbench::{name}",
                "params": {k: r.case.get(k) for k in ("framework", "model", "batch_size", "device", "mode", "variant")},
                "param": r.case_id,
                "extra_info": {
                    "case_id": r.case_id,
                    "throughput_samples_per_s": (r.stats or {}).get("throughput"),
                    # None where the samples are block means (not a latency p99): p99_reason says so
                    "p99_s": latency_p99(r.stats, r.timing)[0],
                    "p99_reason": latency_p99(r.stats, r.timing)[1],
                    "block_size": (r.timing or {}).get("block_size"),
                },
                "options": {"timer": "benchbench (synchronised)", "warmup": True},
                "stats": {
                    "min": min(xs),
                    "max": max(xs),
                    "mean": mean,
                    "stddev": sd,
                    "rounds": n,
                    "median": (r.stats or {}).get("median"),
                    "iqr": iqr,
                    "q1": q1,
                    "q3": q3,
                    "iqr_outliers": sum(1 for x in xs if x < lo or x > hi),
                    "stddev_outliers": sum(1 for x in xs if abs(x - mean) > sd) if sd else 0,
                    "outliers": f"{sum(1 for x in xs if abs(x - mean) > sd) if sd else 0};"
                    f"{sum(1 for x in xs if x < lo or x > hi)}",
                    "ld15iqr": min((x for x in xs if x >= lo), default=min(xs)),
                    "hd15iqr": max((x for x in xs if x <= hi), default=max(xs)),
                    "ops": 1 / mean if mean > 0 else None,
                    "total": sum(xs),
                    "iterations": (r.timing or {}).get("block_size") or 1,
                },
            }
        )
    git = env.get("git") or {}
    return {
        "machine_info": {
            "node": env.get("host"),
            "processor": (env.get("cpu") or {}).get("model"),
            "machine": platform.machine(),
            "python_version": (env.get("python") or {}).get("version")
            if isinstance(env.get("python"), dict)
            else env.get("python"),
            "cpu": env.get("cpu") or {},
        },
        "commit_info": {"id": git.get("commit"), "dirty": git.get("dirty"), "branch": git.get("branch")},
        "benchmarks": benches,
        "datetime": run.created_at,
        "version": "4.0.0",
    }


def export(run, fmt: str, out: str | None) -> str | None:
    """The export's text (None for parquet, written to ``out``)."""
    if fmt in ("github-bigger", "github-smaller"):
        return json.dumps(github_action_benchmark(run, fmt == "github-bigger"), indent=2, ensure_ascii=False) + "\n"
    if fmt == "pytest-benchmark":
        return json.dumps(pytest_benchmark(run), indent=2) + "\n"
    import pandas as pd

    from benchbench.results import to_row

    rows = [{**to_row(r), "run_id": run.run_id} for r in run.records]
    df = pd.DataFrame(rows).drop(columns=["samples"], errors="ignore")
    if fmt == "csv":
        return df.to_csv(index=False)
    if not out:
        raise UserError("--format parquet needs -o FILE")
    try:
        df.to_parquet(out)
    except ImportError as e:
        raise UserError(f"parquet export needs pyarrow: pip install pyarrow ({e})") from None
    return None
