"""Several worker processes per case: pooled median, between-process interval, auto stopping,
and the calibration script's analysis (benchmarks/bench_calibration.py)."""

import importlib.util
import json
import math
import random
import statistics
import sys
from pathlib import Path

import pytest

from benchbench.measure.processes import (
    SCOPE_BETWEEN,
    SCOPE_WITHIN,
    ProcessStats,
    auto_decision,
    combine,
    median_se_factor,
    t975,
)
from benchbench.measure.stats import Z95

REPO = Path(__file__).parent.parent
# 101 samples spread ±2% around 1: the within-process CI is about ±0.44%
SPREAD = [1 + 0.0004 * (i - 50) for i in range(101)]


def process(median: float) -> list[float]:
    return [median * x for x in SPREAD]


AGREE = [process(m) for m in (1.000, 1.001, 0.999, 1.0005, 0.9995)]
DISAGREE = [process(m) for m in (1.00, 1.05, 0.95, 1.10, 0.90)]


def test_t_quantiles_and_median_factor():
    assert t975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t975(4) == pytest.approx(2.7764, abs=1e-4)
    assert t975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t975(31) == pytest.approx(2.0395, abs=1e-4)  # Cornish–Fisher past the table
    assert t975(120) == pytest.approx(1.9799, abs=1e-4)
    assert median_se_factor(2) == 1.0 and median_se_factor(5) == pytest.approx(1.1976)
    assert median_se_factor(1000) == pytest.approx(math.sqrt(math.pi / 2))


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_interval_widens_when_process_medians_disagree(method):
    agree, disagree = combine(AGREE, method=method), combine(DISAGREE, method=method)
    assert agree.median == pytest.approx(1.0) and disagree.median == pytest.approx(1.0)
    assert disagree.interval_scope == SCOPE_BETWEEN and disagree.method == method
    assert disagree.rel_ci > 10 * agree.rel_ci
    assert disagree.ci95_low < 0.95 and disagree.ci95_high > 1.05
    assert disagree.between_rel_sd == pytest.approx(statistics.stdev([1.0, 1.05, 0.95, 1.1, 0.9]))
    assert disagree.between_share > 0.99  # nearly all of it is between processes
    assert agree.between_share < 0.5


def test_t_interval_by_hand():
    got = combine(DISAGREE, method="t")
    sd = math.sqrt((0.05**2 * 2 + 0.1**2 * 2) / 4)  # medians 1 ± 0.05, 1 ± 0.1
    half = 2.776445 * 1.1976 * sd / math.sqrt(5)
    assert (got.ci95_low, got.ci95_high) == pytest.approx((1 - half, 1 + half))
    assert got.rel_ci == pytest.approx(half)


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_agreeing_processes_stay_close_to_the_within_process_interval(method):
    got = combine(AGREE, method=method)
    within = got.within_rel_ci
    assert within == pytest.approx(combine([AGREE[0]]).rel_ci)
    # the floor: s never below within-process noise → t(4)·c_5/(1.96·√5) ≈ 0.76 of it
    assert 0.7 * within <= got.rel_ci <= 1.5 * within
    assert got.ci95_low <= got.median <= got.ci95_high


def test_one_process_is_within_process_only():
    got = combine([AGREE[0]], batch_size=4)
    assert got.processes == 1 and got.interval_scope == SCOPE_WITHIN and got.method == "within"
    assert got.between_rel_sd is None and got.between_share is None
    assert got.rel_ci == pytest.approx(got.within_rel_ci)
    assert (got.ci95_low, got.ci95_high) == (got.per_process[0].ci95_low, got.per_process[0].ci95_high)
    assert got.throughput == pytest.approx(4 * 101 / sum(AGREE[0]))
    assert got.ms_per_sample == pytest.approx(got.median * 1e3 / 4)


def test_record_is_plain_json_and_deterministic():
    for method in ("t", "bootstrap"):
        a, b = combine(DISAGREE, 8, method=method), combine(DISAGREE, 8, method=method)
        assert a == b and a.to_dict() == b.to_dict()
        d = json.loads(json.dumps(a.to_dict()))
        assert d == a.to_dict()
        assert {
            "processes",
            "method",
            "median",
            "ci95_low",
            "ci95_high",
            "rel_ci",
            "within_rel_ci",
            "between_rel_sd",
            "interval_scope",
            "per_process",
        } <= d.keys()
        assert d["processes"] == 5 and len(d["per_process"]) == 5
        assert set(d["per_process"][0]) == {"n", "median", "ci95_low", "ci95_high", "rel_ci"}
    rng = random.Random(0)
    noisy = [[rng.lognormvariate(0, 0.05) * (1 + 0.02 * p) for _ in range(40)] for p in range(5)]
    seeded = [combine(noisy, method="bootstrap", seed=s) for s in range(10)]
    assert len({(r.ci95_low, r.ci95_high) for r in seeded}) > 1  # the seed is used…
    assert max(r.rel_ci for r in seeded) < 1.1 * min(r.rel_ci for r in seeded)  # …and matters little


def test_bad_input():
    with pytest.raises(ValueError):
        combine([])
    with pytest.raises(ValueError):
        combine([[1.0], []])
    with pytest.raises(ValueError):
        combine(AGREE, method="jackknife")


def test_bootstrap_is_fast():
    import time

    rng = random.Random(0)
    big = [[rng.lognormvariate(0, 0.05) * (1 + 0.01 * p) for _ in range(2000)] for p in range(5)]
    t0 = time.perf_counter()
    combine(big, method="bootstrap")
    assert time.perf_counter() - t0 < 0.5  # ~15 ms on an idle 2-core VM; generous for CI


def test_auto_decision_rules():
    assert auto_decision([], 0.01, 10, 0.0, 1.0) == (True, "min processes")
    assert auto_decision(AGREE[:2], 0.05, 10, 2.0, None) == (True, "min processes")
    assert auto_decision(AGREE, 0.05, 10, 5.0, None) == (False, "target met")
    assert auto_decision(combine(AGREE), 0.05, 10, 5.0, None) == (False, "target met")
    assert auto_decision(DISAGREE, 0.01, 10, 5.0, None) == (True, "target not met")
    assert auto_decision(DISAGREE, 0.01, 5, 5.0, None) == (False, "process cap")
    # 3 processes in 30 s: a 4th would end near 40 s
    assert auto_decision(DISAGREE[:3], 0.01, 10, 30.0, 35.0) == (False, "time budget")
    assert auto_decision(DISAGREE[:3], 0.01, 10, 30.0, 45.0) == (True, "target not met")
    # the budget stops a case before min_processes; the cap too
    assert auto_decision(AGREE[:1], 0.05, 10, 30.0, 45.0) == (False, "time budget")
    assert auto_decision(AGREE[:2], 0.05, 2, 2.0, None) == (False, "process cap")
    # one process of 3 samples has no interval at all
    assert auto_decision([[1.0, 1.1, 0.9]], 0.05, 10, 1.0, None, min_processes=1) == (True, "interval undefined")


def simulate(k: int, runs: int, s_between: float, seed: int = 0) -> list[ProcessStats]:
    """``runs`` runs of ``k`` processes: each process's speed is off by exp(N(0, s_between)),
    its 50 samples lognormal(0, 0.05) around that — a within-process CI of about ±2%."""
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        procs = []
        for _ in range(k):
            off = math.exp(rng.gauss(0.0, s_between))
            procs.append([off * rng.lognormvariate(0.0, 0.05) for _ in range(50)])
        out.append(combine(procs))
    return out


def pair_coverage(results: list[ProcessStats]) -> float:
    inside = sum(
        a.ci95_low <= b.median <= a.ci95_high for i, a in enumerate(results) for j, b in enumerate(results) if i != j
    )
    return inside / (len(results) * (len(results) - 1))


def test_default_interval_covers_other_runs_medians():
    """Between-process spread 3x the within-process noise (ours was 11x): a fresh run's
    median falls inside another run's interval about as often as honest intervals allow
    (≈ 83%), and the intervals' implied sd matches the runs' spread."""
    runs = simulate(5, 200, s_between=0.03)
    assert 0.75 <= pair_coverage(runs) <= 0.95
    observed = statistics.stdev(r.median for r in runs)
    implied = statistics.fmean((r.ci95_high - r.ci95_low) / 2 for r in runs) / Z95
    assert 0.7 <= observed / implied <= 1.5
    # one process per run: within-process intervals miss most other runs' medians
    assert pair_coverage(simulate(1, 200, s_between=0.03)) < 0.5


# --- benchmarks/bench_calibration.py --analyse -------------------------------------------


def load_calibration():
    spec = importlib.util.spec_from_file_location("bench_calibration", REPO / "benchmarks" / "bench_calibration.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_calibration"] = mod
    spec.loader.exec_module(mod)
    return mod


def rec(case_id: str, median: float, lo: float | None, hi: float | None, status: str = "ok") -> str:
    stats = {"median": median, "ci95_low": lo, "ci95_high": hi} if status == "ok" else None
    return json.dumps({"case": {"case_id": case_id}, "status": status, "stats": stats})


def write_run(root: Path, name: str, lines: list[str], wall: bool = True) -> Path:
    d = root / name
    d.mkdir()
    (d / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if wall:
        (d / "run.json").write_text(
            json.dumps({"created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:01:30+00:00"})
        )
    return d


def test_calibration_analysis_by_hand(tmp_path, capsys):
    cal = load_calibration()
    r1 = write_run(
        tmp_path,
        "r1",
        [
            rec("a", 1.00, 0.98, 1.02),
            rec("b", 2.0, 1.8, 2.2),
            rec("c", 5.0, 4.0, 6.0),
            rec("f", 1.0, None, None, "failed"),
        ],
    )
    r2 = write_run(tmp_path, "r2", [rec("a", 1.01, 0.99, 1.03), rec("b", 2.1, 1.95, 2.25), rec("n", 3.0, None, None)])
    r3 = write_run(tmp_path, "r3", [rec("a", 1.05, 1.03, 1.07), rec("b", 2.3, 2.05, 2.55), '{"torn'], wall=False)
    cases = cal.analyse([cal.read_run(d) for d in (r1, r2, r3)])
    assert [c.case_id for c in cases] == ["a", "b"]  # c: one run only; f failed; n no interval
    a, b = cases
    # a: only runs 1 and 2 hold each other's medians; b: 1 holds 2, 2 holds 1, 3 holds 2
    assert (a.inside, a.pairs, b.inside, b.pairs) == (2, 6, 3, 6)
    ratio_a = math.sqrt((0.02**2 + 0.01**2 + 0.03**2) / 2) / (0.02 / 1.959964)
    sd_b = statistics.stdev([2.0, 2.1, 2.3])
    ratio_b = sd_b / (((0.2 + 0.15 + 0.25) / 3) / 1.959964)
    assert a.sd_ratio == pytest.approx(ratio_a, rel=1e-6)
    assert b.sd_ratio == pytest.approx(ratio_b, rel=1e-6)
    coverage, ratio = cal.overall(cases)
    assert coverage == pytest.approx(5 / 12)
    assert ratio == pytest.approx(math.sqrt((ratio_a**2 + ratio_b**2) / 2), rel=1e-6)

    assert cal.main(["--analyse", str(r1), str(r2), str(r3)]) == 0
    assert cal.main(["--analyse", str(r1), str(r2), str(r3), "--check"]) == 1
    out = capsys.readouterr().out
    assert "run 1/3: 90 s" in out and "run 3/3: ? s" in out
    assert "pair coverage 41.7%" in out and "FAIL" in out


def test_calibration_passes_honest_intervals(tmp_path, capsys):
    """Runs whose intervals are ±1.96 × the true run-to-run sd pass the calibration."""
    cal = load_calibration()
    rng = random.Random(3)
    sd = 0.02
    dirs = []
    for i in range(8):
        lines = []
        for case in range(30):
            m = 1.0 + case + rng.gauss(0.0, sd)
            lines.append(rec(f"case{case}", m, m - Z95 * sd, m + Z95 * sd))
        dirs.append(write_run(tmp_path, f"r{i}", lines))
    coverage, ratio = cal.overall(cal.analyse([cal.read_run(d) for d in dirs]))
    assert 0.78 <= coverage <= 0.88 and 0.85 <= ratio <= 1.15
    assert cal.main(["--analyse", *map(str, dirs), "--check"]) == 0
    assert "PASS" in capsys.readouterr().out
