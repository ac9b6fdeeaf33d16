"""Calibration of the records' ±CI95: does one run's interval hold another run's median?

Runs a suite K times (default 5), each as its own ``benchbench run SUITE --out DIR``
subprocess (``sys.executable -m benchbench``; arguments after ``--`` are passed on),
then reads each run's ``results.jsonl`` and reports, per case and over all cases:

* pair coverage — over ordered pairs of runs (i, j ≠ i), the share where run j's median
  lies inside run i's 95% interval. Goal ≥ 75%: if every run's interval were an honest
  ±1.96σ around an estimate with sd σ, a fresh estimate falls inside with probability
  P(|Z| < 1.96/√2) ≈ 83%. Intervals that ignore the run-to-run spread score far less.
* sd ratio — the observed run-to-run standard deviation of the case's median over the
  one its intervals imply (mean half-width / 1.96). Goal 0.7–1.5. Overall: the root
  mean square of the per-case ratios (the pooled variance ratio).
* each run's wall time.

    python benchmarks/bench_calibration.py SUITE [--runs 5] [--out DIR] [--check] [-- RUN ARGS]
    python benchmarks/bench_calibration.py --analyse RUN_DIR RUN_DIR ... [--check]

``--analyse`` reads existing run directories and runs nothing. Run it on an idle
machine (see README.md): a busy machine makes every run slower by a different amount,
which is exactly the spread this measures. Exit status is 0 unless ``--check`` is
given and the result is FAIL (then 1).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

MIN_COVERAGE = 0.75
RATIO_LOW, RATIO_HIGH = 0.7, 1.5
Z95 = 1.959963984540054
RESULTS_FILE, RUN_FILE = "results.jsonl", "run.json"


@dataclass(frozen=True)
class Interval:
    median: float
    low: float
    high: float


@dataclass(frozen=True)
class CaseCalibration:
    case_id: str
    runs: int  # runs with an ok record and an interval for this case
    pairs: int  # ordered pairs (i, j ≠ i)
    inside: int  # pairs where run j's median lies in run i's interval
    median: float  # median over runs of the case median
    observed_sd: float  # sample sd of the runs' medians
    implied_sd: float  # mean half-width / 1.96

    @property
    def coverage(self) -> float:
        return self.inside / self.pairs

    @property
    def sd_ratio(self) -> float | None:
        return self.observed_sd / self.implied_sd if self.implied_sd > 0 else None


def read_run(run_dir: Path) -> dict[str, Interval]:
    """case_id → interval of every ok record with a median and a 95% interval."""
    path = run_dir / RESULTS_FILE if run_dir.is_dir() else run_dir
    lines = path.read_text(encoding="utf-8").splitlines()
    out: dict[str, Interval] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):  # a torn last line (a crash mid-write)
                break
            raise SystemExit(f"{path}:{i}: not a JSON record") from None
        stats = rec.get("stats") or {}
        if rec.get("status") != "ok" or None in (stats.get("median"), stats.get("ci95_low"), stats.get("ci95_high")):
            continue
        out[rec["case"]["case_id"]] = Interval(stats["median"], stats["ci95_low"], stats["ci95_high"])
    return out


def run_wall_s(run_dir: Path) -> float | None:
    """Wall time recorded in run.json (created_at → updated_at, 1 s resolution)."""
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        start, end = (datetime.fromisoformat(info[k]) for k in ("created_at", "updated_at"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (end - start).total_seconds()


def analyse(runs: list[dict[str, Interval]]) -> list[CaseCalibration]:
    """Per-case calibration over the runs; cases seen in fewer than 2 runs are left out."""
    case_ids = sorted({c for run in runs for c in run})
    out = []
    for cid in case_ids:
        got = [run[cid] for run in runs if cid in run]
        if len(got) < 2:
            continue
        inside = sum(a.low <= b.median <= a.high for i, a in enumerate(got) for j, b in enumerate(got) if i != j)
        meds = [g.median for g in got]
        out.append(
            CaseCalibration(
                case_id=cid,
                runs=len(got),
                pairs=len(got) * (len(got) - 1),
                inside=inside,
                median=statistics.median(meds),
                observed_sd=statistics.stdev(meds),
                implied_sd=statistics.fmean((g.high - g.low) / 2 for g in got) / Z95,
            )
        )
    return out


def overall(cases: list[CaseCalibration]) -> tuple[float | None, float | None]:
    """(pair coverage over every case's pairs, RMS of the per-case sd ratios)."""
    pairs = sum(c.pairs for c in cases)
    coverage = sum(c.inside for c in cases) / pairs if pairs else None
    ratios = [r for c in cases if (r := c.sd_ratio) is not None]
    ratio = math.sqrt(statistics.fmean(r * r for r in ratios)) if ratios else None
    return coverage, ratio


def find_run_dir(out_root: Path) -> Path:
    """The one run directory ``benchbench run --out OUT_ROOT`` made (OUT_ROOT/SUITE/STAMP)."""
    dirs = [p.parent for p in out_root.glob(f"*/*/{RESULTS_FILE}")]
    if len(dirs) != 1:
        raise SystemExit(f"{out_root}: expected one run directory with {RESULTS_FILE}, found {len(dirs)}")
    return dirs[0]


def run_suite(suite: str, runs: int, out_root: Path, extra: list[str]) -> list[tuple[Path, float]]:
    """Run the suite ``runs`` times, each a fresh ``benchbench run`` process."""
    done = []
    for i in range(1, runs + 1):
        out = out_root / f"run{i}"
        cmd = [sys.executable, "-m", "benchbench", "run", suite, "--out", str(out), *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"WARNING: run {i} exited {proc.returncode}: {' '.join(cmd)}")
        run_dir = find_run_dir(out)
        print(f"run {i}/{runs}: {wall:.1f} s  {run_dir}", flush=True)
        done.append((run_dir, wall))
    return done


def report(cases: list[CaseCalibration]) -> bool:
    """Print the per-case table and the closing line; True when it passes."""
    print(f"{'runs':>4} {'median ms':>10} {'obs sd %':>8} {'impl sd %':>9} {'ratio':>6} {'pairs in':>9}  case")
    for c in cases:
        case_ratio = "-" if c.sd_ratio is None else f"{c.sd_ratio:.2f}"
        print(
            f"{c.runs:>4} {c.median * 1e3:>10.3f} {100 * c.observed_sd / c.median:>8.2f} "
            f"{100 * c.implied_sd / c.median:>9.2f} {case_ratio:>6} "
            f"{c.inside:>4}/{c.pairs:<4}  {c.case_id}"
        )
    coverage, ratio = overall(cases)
    if coverage is None:
        print("calibration: no case has an interval in 2 or more runs (FAIL)")
        return False
    ok_cov = coverage >= MIN_COVERAGE
    ok_ratio = ratio is not None and RATIO_LOW <= ratio <= RATIO_HIGH
    ratio_txt = "-" if ratio is None else f"{ratio:.2f}"
    print(
        f"calibration: pair coverage {100 * coverage:.1f}% ({'ok' if ok_cov else 'low'}, goal "
        f"≥ {100 * MIN_COVERAGE:.0f}%, honest ≈ 83%), sd ratio {ratio_txt} "
        f"({'ok' if ok_ratio else 'off'}, goal {RATIO_LOW}–{RATIO_HIGH}) over {len(cases)} cases "
        f"({'PASS' if ok_cov and ok_ratio else 'FAIL'})"
    )
    return ok_cov and ok_ratio


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("suite", nargs="?", help="suite YAML to run K times")
    ap.add_argument("--runs", type=int, default=5, help="K, the number of runs (>= 5; default 5)")
    ap.add_argument("--out", help="root for the runs' directories (default: a new temporary one)")
    ap.add_argument("--analyse", nargs="+", metavar="RUN_DIR", help="analyse these run directories, run nothing")
    ap.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    args = ap.parse_args(argv)

    if args.analyse:
        if args.suite or extra:
            ap.error("--analyse takes run directories only (no SUITE, no -- RUN ARGS)")
        run_dirs = [Path(p) for p in args.analyse]
        for i, d in enumerate(run_dirs, 1):
            wall = run_wall_s(d)
            print(f"run {i}/{len(run_dirs)}: {'?' if wall is None else f'{wall:.0f}'} s  {d}")
    else:
        if not args.suite:
            ap.error("a SUITE to run, or --analyse RUN_DIR ...")
        if args.runs < 5:
            ap.error("--runs must be >= 5: fewer runs say little about a 95% interval")
        out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_calibration-"))
        print(f"{args.suite}: {args.runs} runs into {out_root}" + (f", run args {extra}" if extra else ""))
        run_dirs = [d for d, _ in run_suite(args.suite, args.runs, out_root, extra)]
    ok = report(analyse([read_run(d) for d in run_dirs]))
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
