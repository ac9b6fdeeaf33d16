"""A history store with 1,000,000 records: how long ``compare`` and ``check`` take.

    python benchmarks/bench_store_scale.py [--cases 1000] [--runs 1000] [--db PATH] [--keep]

Fills an SQLite store (bulk insert through the store's own tables: ``--cases`` cases ×
``--runs`` nightly runs on one context, each record a full JSON record with 20 samples),
then times, three times each (median quoted):

* ``compare latest~1 latest --store DB --json`` and ``check --store DB --latest --json``
  in this process (cli.main, output discarded): the query and verdict work;
* the same two as ``python -m benchbench …`` subprocesses: what a CI job waits for,
  interpreter start-up and imports included.

The target (issue 7): both answer in < 2 s with 1,000,000 records.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchbench import cli
from benchbench.case import Case, case_label
from benchbench.history import store as st
from benchbench.measure.stats import summarize
from benchbench.results import Record

ENV = {"host": "bench-host", "cpu": {"model": "CPU X"}, "git": {"commit": "0" * 40, "dirty": False}}


def fill(url: str, cases: int, runs: int, seed: int = 1) -> float:
    rng = random.Random(seed)
    s = st.Store(url)
    templates = []
    for i in range(cases):
        case = Case("torch", f"model{i:04d}", 1 + i % 4, "cpu", "inference", "fp32", (10,))
        samples = [0.01 * (1 + 0.01 * ((k * 7) % 11 - 5) / 5) for k in range(20)]
        rec = Record(
            case=case.to_dict(),
            status="ok",
            stats=summarize(samples, case.batch_size).to_dict(),
            samples=samples,
            memory={"host_peak_rss_bytes": 100 * 2**20},
            host="bench-host",
            runtime={"framework": "torch", "device_name": "CPU X", "versions": {"torch": "2.4.0"}},
        )
        templates.append(rec)
    facts = st.context_facts(templates[0], ENV)
    fp = st.fingerprint(facts)
    t0 = time.perf_counter()
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with s._write() as conn, conn.begin():
        conn.execute(s.t_contexts.insert().values(fingerprint=fp, facts=json.dumps(facts, sort_keys=True)))
        conn.execute(
            s.t_runs.insert(),
            [
                {
                    "run_id": f"run{r:05d}",
                    "suite": "scale",
                    "created_at": (start + timedelta(days=r)).isoformat(),
                    "imported_at": start.isoformat(),
                    "git_commit": f"{r:07x}{'0' * 33}",
                    "source": "bench",
                    "environment": json.dumps({**ENV, "git": {"commit": f"{r:07x}{'0' * 33}"}}),
                }
                for r in range(runs)
            ],
        )
    for r in range(runs):
        created = (start + timedelta(days=r)).isoformat()
        rows = []
        for rec in templates:
            f = math.exp(rng.gauss(0, 0.03))
            d = rec.to_dict()
            d["stats"] = {
                **d["stats"],
                "median": d["stats"]["median"] * f,
                "p99": d["stats"]["p99"] * f,
                "throughput": d["stats"]["throughput"] / f,
            }
            rows.append(
                {
                    "run_id": f"run{r:05d}",
                    "case_id": rec.case_id,
                    "context": fp,
                    "label": case_label(rec.case),
                    "status": "ok",
                    "started_at": created,
                    "created_at": created,
                    "throughput": d["stats"]["throughput"],
                    "median_s": d["stats"]["median"],
                    "p99_s": d["stats"]["p99"],
                    "peak_rss_bytes": 100 * 2**20,
                    "energy_j_per_sample": None,
                    "record": json.dumps(d, separators=(",", ":")),
                }
            )
        with s._write() as conn, conn.begin():
            conn.execute(s.t_records.insert(), rows)
        if (r + 1) % 100 == 0:
            print(f"  {(r + 1) * cases:,} records ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    n = s.count_records()
    s.close()
    print(f"filled {n:,} records in {time.perf_counter() - t0:.1f} s", flush=True)
    return time.perf_counter() - t0


def timed_in_process(argv: list[str]) -> tuple[float, int]:
    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(argv)
    return time.perf_counter() - t0, code


def timed_subprocess(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchbench", *argv], capture_output=True, text=True)
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--db", help="store file (default: a temporary file, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the store file")
    a = ap.parse_args()
    db = Path(a.db) if a.db else Path(tempfile.mkdtemp(prefix="bb-scale-")) / "history.db"
    url = f"sqlite:///{db}"
    if not db.exists():
        fill(url, a.cases, a.runs)
    print(f"store {db}: {db.stat().st_size / 2**30:.2f} GiB")
    commands = {
        "compare": ["compare", "latest~1", "latest", "--store", url, "--json"],
        "check": ["check", "--store", url, "--latest", "--json"],
    }
    print("| command | in process (median of 3) | as `python -m benchbench` (median of 3) | exit |")
    print("| --- | --- | --- | --- |")
    for name, argv in commands.items():
        inproc = [timed_in_process(argv) for _ in range(3)]
        sub = [timed_subprocess(argv) for _ in range(3)]
        print(
            f"| {name} | {statistics.median(t for t, _ in inproc):.2f} s | "
            f"{statistics.median(t for t, _ in sub):.2f} s | {sub[0][1]} |",
            flush=True,
        )
    if not a.keep and not a.db:
        for p in db.parent.iterdir():
            p.unlink()
        os.rmdir(db.parent)


if __name__ == "__main__":
    main()
