"""A tiny suite through the real CLI: worker subprocesses, PyTorch, files on disk."""

import json

import pytest

from benchbench import probe, results
from conftest import bb, run_dir_of, write

pytestmark = pytest.mark.slow

TINY = """\
name: tiny
matrix:
  model: [seed_mlp, seed_cnn]
  batch_size: [1, 4]
  device: [cpu, cuda]
  mode: [inference, train]
defaults:
  input_shape: [3, 32, 32]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.5
  min_iters: 8
  threads: 1
  timeout: 120
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    suite = write(tmp / "tiny.yaml", TINY)
    proc = bb("run", suite, "--out", tmp / "out", "--json", cwd=tmp)
    return tmp, proc


def test_every_case_has_one_record_and_cuda_is_skipped_without_a_gpu(tiny_run):
    tmp, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    run_dir = run_dir_of(tmp / "out")
    recs = results.read_records(run_dir)
    assert len(recs) == 16
    assert len({r.case_id for r in recs}) == 16
    cpu = [r for r in recs if r.case["device"] == "cpu"]
    assert {r.status for r in cpu} == {"ok"}
    for r in recs:
        if r.case["device"] == "cuda" and r.status == "skipped":
            assert "CUDA" in r.reason


def test_ok_records_carry_statistics_memory_model_facts_and_cold_start(tiny_run):
    tmp, _ = tiny_run
    recs = [r for r in results.read_records(run_dir_of(tmp / "out")) if r.status == "ok"]
    for r in recs:
        s = r.stats
        assert r.schema_version == results.SCHEMA_VERSION
        assert s["n"] == len(r.samples)
        assert s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
        assert s["throughput"] > 0 and s["ms_per_batch"] > 0
        per = r.processes["per_process"]  # each worker process: its samples and block size
        # each process measured its share of the case (auto plans 5): min_time 0.05 / 5, and
        # samples at least 2 in process 1 (its own spread), 1 in a later one (its median) — a
        # slow iteration gives few samples, so the case's total is not min_iters
        assert per[0]["n"] >= 2 and all(p["n"] >= 1 for p in per)
        assert all(p["timed_wall_s"] >= 0.05 / 5 for p in per)
        assert sum(p["n"] for p in per) == s["n"] and r.processes["processes"] == len(per) >= 3
        assert r.timing["iterations"] == sum(p["n"] * p["block_size"] for p in per)
        assert r.processes["interval_scope"] == "between-process" and s["interval_scope"] == "between-process"
        assert s["ci95_low"] <= s["median"] <= s["ci95_high"]
        assert all(p["start_method"] == "forkserver" for p in per) and len({p["pid"] for p in per}) == len(per)
        assert r.cold_start["build_s"] > 0 and r.cold_start["first_iter_s"] > 0
        assert r.memory["host_peak_rss_bytes"] > 50 * 2**20
        assert r.memory["device_peak_allocated_bytes"] is None and r.memory["device_memory_reason"]
        assert r.runtime["threads"] == 1
        assert r.runtime["math_modes"]["cudnn.allow_tf32"] is False
        assert r.model["params"] > 0 and r.model["serialized_bytes"] > 0
    mlp = next(r for r in recs if r.case["model"] == "seed_mlp")
    assert mlp.case["input_shape"] == [10]  # a suite-wide image shape does not apply to it
    assert mlp.model["params"] == 10 * 128 + 128 + 128 * 10 + 10
    assert mlp.model["flops_per_sample"] == 2 * (10 * 128 + 128 * 10)


def test_run_dir_holds_suite_environment_and_run_status(tiny_run):
    tmp, _ = tiny_run
    run_dir = run_dir_of(tmp / "out")
    assert (run_dir / "suite.yaml").read_text() == TINY
    env = json.loads((run_dir / "environment.json").read_text())
    for key in ("host", "os", "cpu", "ram_bytes", "python", "packages", "frameworks", "suite_sha256"):
        assert key in env
    assert env["packages"]["torch"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert run_dir.parent.name == "tiny"


def test_json_flag_prints_records_on_stdout_and_load_gives_a_dataframe(tiny_run):
    tmp, proc = tiny_run
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 16 and all("case" in d and "status" in d for d in lines)
    df = results.load(run_dir_of(tmp / "out"))
    assert len(df) == 16
    for col in (
        "case_id",
        "model",
        "batch_size",
        "status",
        "stats.throughput",
        "stats.p99",
        "memory.host_peak_rss_bytes",
        "samples",
    ):
        assert col in df.columns
    assert df["case_id"].is_unique


def test_dry_run_lists_cases_and_skips_without_running(tmp_path):
    suite = write(tmp_path / "tiny.yaml", TINY)
    proc = bb("run", suite, "--dry-run", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    cuda_skip = probe.device_skip_reason("torch", "cuda")
    if cuda_skip:
        assert "16 cases: 8 to run, 8 skipped" in proc.stdout
        assert f"skip: {cuda_skip}" in proc.stdout
    else:
        assert "16 cases: 16 to run, 0 skipped" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_filter_and_strict(tmp_path):
    suite = write(tmp_path / "tiny.yaml", TINY)
    proc = bb(
        "run", suite, "--filter", "model=seed_mlp,batch_size=1,mode=inference", "--strict", "--out", tmp_path / "out"
    )
    recs = results.read_records(run_dir_of(tmp_path / "out"))
    assert {(r.case["model"], r.case["batch_size"], r.case["mode"]) for r in recs} == {("seed_mlp", 1, "inference")}
    assert len(recs) == 2  # cpu and cuda
    skipped = any(r.status == "skipped" for r in recs)
    assert proc.returncode == (1 if skipped else 0)
    bad = bb("run", suite, "--filter", "modle=x")
    assert bad.returncode == 2 and "unknown key 'modle'" in bad.stderr and "Traceback" not in bad.stderr


def test_worker_logs_reach_the_terminal_only_with_verbose(tmp_path):
    suite = write(tmp_path / "one.yaml", TINY)
    quiet = bb(
        "run", suite, "--filter", "model=seed_mlp,batch_size=1,mode=inference,device=cpu", "--out", tmp_path / "q"
    )
    loud = bb(
        "run",
        suite,
        "--filter",
        "model=seed_mlp,batch_size=1,mode=inference,device=cpu",
        "--out",
        tmp_path / "v",
        "--verbose",
    )
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    assert "benchbench worker pid" not in quiet.stderr
    assert "--- log of" in loud.stderr and "benchbench worker pid" in loud.stderr
