"""The pytest plugin (benchbench/pytest_plugin.py), used as a user would: test files of their
own, run by pytest in a fresh interpreter (pytester), the plugin found through its
``pytest11`` entry point.

* Registered, it is off, and costs nothing: no framework and no other benchbench module is
  imported, a test that uses ``bench`` is skipped with the reason; ``-p benchbench`` loads it
  where autoloading is off.
* On: ``bench.run`` measures seed_mlp in worker processes (the runner's path: 3 processes
  combined into one record), ``bench.assert_no_regression`` gates on the previous session's
  stored runs with ``compare``'s verdicts (a model made 100× slower fails the test, with the
  table), a mistyped setting fails with the suite validator's message, and the session is
  written as pytest-benchmark's JSON, which the real ``pytest-benchmark compare`` reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchbench.rundir import load_run

pytest_plugins = ["pytester"]

FIXTURES = Path(__file__).parent / "fixtures"


def test_registered_off_and_imports_nothing(pytester):
    pytester.makepyfile(
        test_user="""
        import sys

        def test_nothing_heavy_loaded():
            assert "benchbench.pytest_plugin" in sys.modules  # found through the pytest11 entry point
            heavy = {"torch", "tensorflow", "keras", "numpy", "pandas", "pydantic", "sqlalchemy", "plotly"}
            assert not heavy & set(sys.modules), heavy & set(sys.modules)
            ours = sorted(m for m in sys.modules if m.startswith("benchbench"))
            assert ours == ["benchbench", "benchbench.pytest_plugin"], ours

        def test_measures(bench):
            bench.run(model="seed_mlp", batch_size=8)
        """
    )
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*benchbench measurements are off: run pytest with --benchbench*"])


def test_p_benchbench_loads_it_without_autoload(pytester, monkeypatch):
    pytester.makepyfile(test_user="def test_measures(bench):\n    pass\n")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    without = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    without.assert_outcomes(errors=1)
    without.stdout.fnmatch_lines(["*fixture 'bench' not found*"])
    loaded = pytester.runpytest_subprocess("-p", "benchbench", "-rs", "-p", "no:cacheprovider")
    loaded.assert_outcomes(skipped=1)


USER_TESTS = """
import os

SETTINGS = dict(min_time=0.15, processes=3, threads=1, warmup_iters=2, telemetry={"hz": 0})


def test_seed_mlp(bench):
    record = bench.run(model="seed_mlp", batch_size=8, **SETTINGS)
    assert record.status == "ok" and record.stats["throughput"] > 0
    assert record.processes["processes"] == 3  # the runner combined three worker processes
    # an 18 µs iteration on a shared 2-core machine moves a lot between sessions: only a
    # doubling is this test's business here (the sleepy case below is the regression)
    cmp = bench.assert_no_regression(record, store=os.environ["BB_STORE"], threshold=1.0)
    print("VERDICTS seed_mlp", sorted({r.verdict for r in cmp.rows}))


def test_sleepy(bench):
    # 2 ms of sleep in every forward pass when BB_AB_SLOW is set (tests/fixtures/ab_models.py)
    record = bench.run(model="ab_models:sleepy", batch_size=8, input_shape=[10], **SETTINGS)
    cmp = bench.assert_no_regression(record, store=os.environ["BB_STORE"])
    print("VERDICTS sleepy", sorted({r.verdict for r in cmp.rows}))


def test_mistyped_setting(bench):
    bench.run(model="seed_mlp", batch_size=8, min_tme=0.1)
"""


@pytest.mark.slow
def test_bench_measures_gates_and_writes_pytest_benchmark_json(pytester, monkeypatch, tmp_path):
    pytester.makepyfile(test_user=USER_TESTS)
    shutil.copy(FIXTURES / "ab_models.py", pytester.path / "ab_models.py")
    store, out = tmp_path / "history.db", tmp_path / "runs"
    monkeypatch.setenv("BB_STORE", str(store))
    monkeypatch.delenv("BB_AB_SLOW", raising=False)
    common = ["-p", "no:cacheprovider", "-s", f"--benchbench-store={store}", f"--benchbench-out={out}"]

    first = pytester.runpytest_subprocess(*common, f"--benchbench-json={tmp_path / 'first.json'}")
    first.assert_outcomes(passed=2, failed=1)
    text = first.stdout.str()
    assert "VERDICTS seed_mlp ['new']" in text and "VERDICTS sleepy ['new']" in text  # no baseline yet
    first.stdout.fnmatch_lines(["*no baseline of * nothing to gate*"])  # said as a warning
    first.stdout.fnmatch_lines(["bench.run: defaults.min_tme: unknown key*did you mean 'min_time'*"])
    assert "During handling" not in text  # the validator's message, not a chained traceback

    monkeypatch.setenv("BB_AB_SLOW", "1")  # the sleepy model's workers now sleep in forward
    second = pytester.runpytest_subprocess(*common, f"--benchbench-json={tmp_path / 'second.json'}")
    second.assert_outcomes(passed=1, failed=2)
    text = second.stdout.str()
    assert "VERDICTS seed_mlp [" in text and "VERDICTS seed_mlp ['new']" not in text  # gated against the first
    second.stdout.fnmatch_lines(
        ["*benchbench: regressed against *", "case*metric*verdict*", "*ab_models:sleepy*throughput*regressed*"]
    )
    second.stdout.fnmatch_lines(["*benchbench*", "*test_user.py::test_seed_mlp: torch/seed_mlp/bs8/cpu/*samples/s*"])

    # the JSON: pytest-benchmark's --benchmark-json layout, one benchmark per ok record, the
    # statistics those of the record's samples (seconds per iteration)
    doc = json.loads((tmp_path / "second.json").read_text())
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    names = [(b["name"], b["fullname"]) for b in doc["benchmarks"]]
    assert [n for n, _ in names] == [
        "test_seed_mlp[torch/seed_mlp/bs8/cpu/inference/fp32]",
        "test_sleepy[torch/ab_models:sleepy/bs8/cpu/inference/fp32]",
    ]
    assert all(full.endswith(f"test_user.py::{name}") for name, full in names)  # the test's node id
    records = {r.case_id: r for run in sorted((out / "pytest").iterdir()) for r in load_run(run).records}
    for b in doc["benchmarks"]:
        rec = records[b["extra_info"]["case_id"]]
        s = b["stats"]
        assert s["rounds"] == len(rec.samples) and s["min"] == min(rec.samples) and s["max"] == max(rec.samples)
        assert s["median"] == rec.stats["median"]
        assert {"mean", "stddev", "iqr", "q1", "q3", "outliers", "ops", "total", "iterations"} <= set(s)
    sleepy = {json.loads(p.read_text())["benchmarks"][1]["stats"]["median"] for p in tmp_path.glob("*.json")}
    assert max(sleepy) > 20 * min(sleepy)  # the 2 ms sleep is in the second session's figures

    # the real pytest-benchmark reads both files and compares them
    cli = shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent)) or shutil.which("pytest-benchmark")
    assert cli, "pytest-benchmark (the test extra) is not installed"
    proc = subprocess.run(
        [cli, "compare", str(tmp_path / "first.json"), str(tmp_path / "second.json"), "--columns=min,median,rounds"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_sleepy[torch/ab_models:sleepy/bs8/cpu/inference/fp32]" in proc.stdout
    assert "first" in proc.stdout and "second" in proc.stdout  # one row per file
