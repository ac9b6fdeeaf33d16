"""What a whole ``benchbench run SUITE`` costs, this tree against another one, interleaved.

Runs the suite ``--rounds`` times with each of two source trees, alternating (A B A B …, or
B A B A … with ``--baseline-first no``), each as its own ``python -m benchbench run SUITE
--out DIR`` subprocess with ``PYTHONPATH`` set to the tree (the same interpreter and
packages for both), and prints per run:

* wall: the whole command, interpreter start to exit (what a user waits for);
* span: the first case's start to the last case's end, from ``results.jsonl``;
* case time: the records' ``duration_s`` summed (worker time, each process's start to record);
* the number of worker processes, and of ok / failed / skipped records;

then the ratio of this tree's wall and span to the baseline's, per round (a round is one run
of each, back to back) and overall (median of the rounds, with their min–max).

    python benchmarks/bench_suite_cost.py suites/cnn.yaml --baseline /tmp/base [--rounds 2]

``--baseline`` is a checkout of the code to compare with (``git worktree add`` or ``git
archive REV | tar -x -C DIR``). Run it on an idle machine: two processes of the same case
differ by 2–6% on a small VM, and a busy one makes every run slower by its own amount.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def run_once(tree: Path, suite: Path, out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchbench", "run", str(suite), "--out", str(out), *extra],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    runs = sorted(p.parent for p in out.rglob("results.jsonl"))
    if proc.returncode not in (0, 1) or not runs:
        raise SystemExit(f"{tree}: run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (runs[-1] / "results.jsonl").read_text().splitlines() if line]
    starts = [_ts(r.get("started_at")) for r in records if r.get("started_at")]
    ends = [_ts(r.get("ended_at")) for r in records if r.get("ended_at")]
    span = max(ends) - min(starts) if starts and ends else float("nan")
    processes = sum(int((r.get("processes") or {}).get("processes") or 1) for r in records if r["status"] == "ok")
    return {
        "wall_s": wall,
        "span_s": span,
        "case_s": sum(float(r.get("duration_s") or 0.0) for r in records),
        "processes": processes,
        "status": {s: sum(1 for r in records if r["status"] == s) for s in ("ok", "failed", "skipped")},
        "run_dir": str(runs[-1]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--baseline", type=Path, required=True, help="source tree of the code to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-first", choices=["yes", "no"], default="yes")
    ap.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary directory)")
    ap.add_argument("extra", nargs="*", help="after --: passed on to `benchbench run`")
    args = ap.parse_args(argv)
    suite = args.suite.resolve()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-suite-cost-"))
    sides = [("baseline", args.baseline.resolve()), ("this", HERE)]
    if args.baseline_first == "no":
        sides.reverse()
    rows: dict[str, list[dict]] = {"baseline": [], "this": []}
    print(f"{'round':>5} {'tree':<8} {'wall s':>7} {'span s':>7} {'case s':>7} {'procs':>5}  ok/failed/skipped  run")
    for i in range(1, args.rounds + 1):
        for name, tree in sides:
            r = run_once(tree, suite, out / f"{name}-{i}", args.extra)
            rows[name].append(r)
            st = r["status"]
            print(
                f"{i:>5} {name:<8} {r['wall_s']:7.1f} {r['span_s']:7.1f} {r['case_s']:7.1f} {r['processes']:>5}"
                f"  {st['ok']}/{st['failed']}/{st['skipped']}  {r['run_dir']}",
                flush=True,
            )
    for key in ("wall_s", "span_s"):
        ratios = [t[key] / b[key] for t, b in zip(rows["this"], rows["baseline"])]
        print(
            f"this/baseline {key[:-2]}: median {statistics.median(ratios):.3f} "
            f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
