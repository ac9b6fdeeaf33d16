"""``--executor submitit``: what a case's job asks Slurm for, and a real run through
submitit's LocalExecutor (each case a submitit job process on this machine)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchbench.case import Case, Settings
from benchbench.executors.submitit import job_parameters
from conftest import bb, run_dir_of, write

CASE = Case("torch", "seed_mlp", 4, "cpu", "inference", "fp32", (10,), settings=Settings(timeout=600))


def test_job_parameters_follow_the_case():
    p = job_parameters(CASE, partition="gpu")
    assert p["slurm_exclusive"] is True and "cpus_per_task" not in p  # threads: all → a whole node
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 15 and p["name"] == f"benchbench-{CASE.case_id}"
    assert job_parameters(dataclasses.replace(CASE, threads=2))["cpus_per_task"] == 2
    ddp = dataclasses.replace(CASE, device="cuda", devices=4, mode="train")
    p = job_parameters(ddp, extra={"slurm_account": "lab"})
    assert p["gpus_per_node"] == 4 and p["timeout_min"] == 25 and p["slurm_account"] == "lab"
    res = dataclasses.replace(
        CASE, device="cuda", settings=Settings(resources={"num_cpus": 3.5, "accelerator_type": "A100"})
    )
    p = job_parameters(res)
    assert p["cpus_per_task"] == 4 and p["slurm_constraint"] == "A100" and p["gpus_per_node"] == 1


def test_submitit_options_are_checked_before_anything_runs(tmp_path):
    s = write(tmp_path / "s.yaml", "name: s\nmatrix: {model: seed_mlp, batch_size: 1}\n")
    alone = bb("run", s, "--out", tmp_path / "out", "--slurm-partition", "gpu", cwd=tmp_path)
    assert alone.returncode == 2 and "need --executor submitit" in alone.stderr
    bad = bb(
        "run",
        s,
        "--out",
        tmp_path / "out",
        "--executor",
        "submitit",
        "--slurm-params",
        '{"account": "x"}',
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "slurm_*" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "out").exists()


MODELS = '''\
import os, signal


def kill_job(input_shape=None):
    """Kills the worker's parent: the submitit job process, as a lost node would."""
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(3)
'''

SUITE = """\
name: sub
matrix:
  model: [seed_mlp, "sub_models:kill_job"]
  batch_size: [1]
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.2
  min_iters: 8
  threads: 1
  telemetry: {hz: 0}
"""


@pytest.mark.slow
def test_local_submitit_jobs_stream_records_and_a_killed_job_is_a_failed_record(tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbench[submitit]')")
    write(tmp_path / "sub_models.py", MODELS)
    s = write(tmp_path / "sub.yaml", SUITE)
    proc = bb(
        "run",
        s,
        "--out",
        tmp_path / "out",
        "--executor",
        "submitit",
        "--submitit-cluster",
        "local",
        "--json",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    recs = {r["case"]["model"]: r for r in map(json.loads, proc.stdout.splitlines())}
    ok, lost = recs["seed_mlp"], recs["sub_models:kill_job"]
    assert ok["status"] == "ok" and ok["stats"]["n"] >= 8
    assert ok["runtime"]["submitit"]["cluster"] == "local" and ok["runtime"]["executor"] == "submitit"
    assert ok["runtime"]["node"]["host"] and "ray_node_id" not in ok["runtime"]["node"]
    assert lost["status"] == "failed"
    assert lost["reason"].startswith(f"submitit job {lost['runtime']['submitit']['job_id']} failed: ")
    assert "died without a result" in lost["reason"] and "\n" not in lost["reason"]
    run_dir = run_dir_of(tmp_path / "out")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert "benchbench worker pid" in (run_dir / ok["runtime"]["log"]).read_text()
    assert "submitit driver" in (run_dir / lost["runtime"]["log"]).read_text()
