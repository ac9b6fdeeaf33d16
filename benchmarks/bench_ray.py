"""Wall time of a 12-case tiny suite through the local and the Ray executor, and Ray's
overhead per case. Runs on this machine only, in a loopback-only network namespace
(Ray binds the machine's own address otherwise): re-executes itself under
``unshare -n`` (as root; otherwise ``unshare -rn``).

    python benchmarks/bench_ray.py [--out DIR]

Three runs of the same suite (seed_mlp × 6 batch sizes × inference/train, threads 1):

- local: the default executor, one worker subprocess after another;
- ray (concurrent): a local Ray instance, each case a task asking for 1 CPU, so as many
  cases run at once as the machine has cores;
- ray (one at a time): the same instance, every case also asking for a ``slot``
  resource the instance has one of: Ray's own cost per case, without concurrency.

Overhead per case = the time between one record and the next (the first: since the run
began) minus that case's own ``duration_s`` (worker start to record, measured on the
node). Locally that is the runner's bookkeeping; under Ray it adds scheduling, the task
dispatch and the record's trip back. Ray's start-up is timed separately.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """\
name: bench_ray
matrix:
  model: [seed_mlp]
  batch_size: [1, 2, 4, 8, 16, 32]
  mode: [inference, train]
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.2
  min_iters: 8
  threads: 1
  telemetry: {hz: 0}
"""

INSIDE = "BENCHBENCH_BENCH_RAY_INSIDE"


def _reexec_in_namespace() -> int:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        print("needs unshare (util-linux) and ip (iproute2)", file=sys.stderr)
        return 2
    flags = ["-n"] if os.geteuid() == 0 else ["-rn"]
    script = 'ip link set lo up && exec "$0" "$@"'
    env = {**os.environ, INSIDE: "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.call([unshare, *flags, "sh", "-c", script, sys.executable, *sys.argv], env=env)


def _timed_run(suite, executor, out: Path) -> dict:
    from benchbench import runner

    arrivals: list[float] = []
    run_dir = runner.new_run_dir(out, suite)
    t0 = time.monotonic()
    result = runner.run(
        suite, list(suite.cases), run_dir, executor=executor, on_record=lambda rec: arrivals.append(time.monotonic())
    )
    wall = time.monotonic() - t0
    overheads, prev = [], t0
    for rec, at in zip(result.records, arrivals):
        overheads.append(at - prev - (rec.duration_s or 0.0))
        prev = at
    statuses = {s: result.count(s) for s in ("ok", "failed", "skipped")}
    return {
        "wall": wall,
        "case_s": sum(r.duration_s or 0 for r in result.records),
        "durations": [r.duration_s or 0 for r in result.records],
        "overheads": overheads,
        "statuses": statuses,
        "run_dir": run_dir,
    }


def _line(name: str, r: dict, gaps: bool = True) -> str:
    oh = r["overheads"]
    gap = (
        f"gap−duration: first {oh[0]:5.2f} s, then median {statistics.median(oh[1:]):5.2f} s (max {max(oh[1:]):5.2f})"
        if gaps
        else "gap−duration: n/a (cases overlap)"
    )
    return (
        f"{name:20} wall {r['wall']:6.1f} s  Σ case {r['case_s']:6.1f} s  "
        f"median case {statistics.median(r['durations']):5.2f} s  {gap}  {r['statuses']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="where the three run directories go (default: a temporary directory)")
    args = ap.parse_args()
    if os.environ.get(INSIDE) != "1":
        return _reexec_in_namespace()

    import logging

    import ray

    from benchbench.executors import local
    from benchbench.executors.ray import RayExecutor
    from benchbench.suite.schema import load_suite

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray-"))
    out = Path(args.out) if args.out else tmp / "results"
    suite_path = tmp / "bench_ray.yaml"
    suite_path.write_text(SUITE, encoding="utf-8")
    suite = load_suite(suite_path)
    cores = len(os.sched_getaffinity(0))
    print(f"{len(suite.cases)} cases, {cores} cores, Ray {ray.__version__}", flush=True)
    from benchbench import runner

    runner._probes_for_environment({"torch"})  # probed once per process: keep it out of every timing

    loc = _timed_run(suite, local, out)
    print(_line("local", loc), flush=True)

    t0 = time.monotonic()
    ray.init(
        num_cpus=cores,
        resources={"slot": 1},
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    startup = time.monotonic() - t0
    print(f"{'ray start-up':22} {startup:7.1f} s (ray.init of a local instance)", flush=True)
    try:
        conc = _timed_run(suite, RayExecutor(), out)
        print(_line("ray (concurrent)", conc, gaps=False), flush=True)
        seq = _timed_run(suite, RayExecutor(resources={"slot": 1}), out)
        print(_line("ray (one at a time)", seq), flush=True)
    finally:
        ray.shutdown()

    extra = statistics.median(seq["overheads"][1:]) - statistics.median(loc["overheads"][1:])
    print(f"\nRay overhead per case (one at a time, median gap−duration minus local's): {extra:+.2f} s")
    print(
        f"Ray overhead per case (one at a time, wall difference / {len(suite.cases)}): "
        f"{(seq['wall'] - loc['wall']) / len(suite.cases):+.2f} s (+ {startup:.1f} s start-up once)"
    )
    print(
        f"Median case duration (worker start to record), ray one at a time vs local: "
        f"{statistics.median(seq['durations']):.2f} s vs {statistics.median(loc['durations']):.2f} s "
        f"(Ray's own processes share the cores)"
    )
    print(
        f"Ray concurrent vs local wall: {conc['wall']:.1f} s vs {loc['wall']:.1f} s "
        f"(×{loc['wall'] / conc['wall']:.2f}; + {startup:.1f} s start-up)"
    )
    if not args.out:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
