"""Failure isolation: a model that raises, aborts, segfaults, hangs or eats memory
becomes a failed record with its reason; the rest of the suite completes. Interrupts
keep finished records, and --resume runs only what is missing."""

import json
import signal
import subprocess
import sys
import time

import pytest

from benchbench import results
from conftest import bb, run_dir_of, write

pytestmark = pytest.mark.slow

BAD = """\
name: isolation
matrix:
  model:
    - bad_models:raising
    - bad_models:raising_build
    - bad_models:not_a_module
    - bad_models:aborting
    - bad_models:segfaulting
    - bad_models:hanging
    - bad_models:hogging
    - seed_mlp
  batch_size: [2]
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.3
  min_iters: 8
  threads: 1
  timeout: 60
  memory_limit: 2GiB
models:
  bad_models:hanging: {timeout: 8}
"""

EXPECTED_REASON = {
    "bad_models:raising": "RuntimeError: boom in forward",
    "bad_models:raising_build": "ValueError: cannot build this model",
    "bad_models:not_a_module": "TypeError: bad_models:not_a_module returned str, not a torch.nn.Module",
    "bad_models:aborting": "worker crashed: SIGABRT (abort)",
    "bad_models:segfaulting": "worker crashed: SIGSEGV (segmentation fault)",
    "bad_models:hanging": "timed out after 8 s (per-case timeout); worker killed",
    "bad_models:hogging": "out of memory: worker RSS",
}


def test_each_misbehaving_model_is_a_failed_record_and_the_suite_goes_on(workdir):
    suite = write(workdir / "bad.yaml", BAD)
    proc = bb("run", suite, "--out", workdir / "out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    recs = {r.case["model"]: r for r in results.read_records(run_dir_of(workdir / "out"))}
    assert set(recs) == set(EXPECTED_REASON) | {"seed_mlp"}
    for model, expected in EXPECTED_REASON.items():
        rec = recs[model]
        assert rec.status == "failed", model
        assert expected in rec.reason, (model, rec.reason)
        assert "\n" not in rec.reason
        assert rec.runtime["worker"]["start_method"] == "forkserver", model  # a forked child fails alone
    assert "exceeded the memory limit of 2.0 GiB" in recs["bad_models:hogging"].reason
    assert recs["seed_mlp"].status == "ok" and recs["seed_mlp"].stats["n"] >= 8
    # the traceback of a Python failure is in the case's log, not in the terminal
    log = run_dir_of(workdir / "out") / recs["bad_models:raising"].runtime.get("log", "missing")
    assert log.exists() and "Traceback" in log.read_text()
    assert "--strict" not in proc.stderr


def test_strict_exits_non_zero_when_a_case_failed(workdir):
    text = BAD.split("models:\n  bad_models:hanging")[0]
    suite = write(
        workdir / "one.yaml",
        text.replace(
            "  batch_size: [2]",
            "  batch_size: [2]\nexclude:\n"
            + "".join(f"  - {{model: '{m}'}}\n" for m in EXPECTED_REASON if m != "bad_models:raising"),
        ),
    )
    proc = bb("run", suite, "--strict", "--out", workdir / "out", cwd=workdir)
    assert proc.returncode == 1, proc.stderr
    recs = results.read_records(run_dir_of(workdir / "out"))
    assert sorted(r.status for r in recs) == ["failed", "ok"]


SLOW = """\
name: slow
matrix:
  model: [seed_mlp, bad_models:hanging, seed_cnn]
  batch_size: [1]
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.3
  min_iters: 8
  threads: 1
  timeout: 120
  processes: 1
models:
  seed_cnn: {input_shape: [3, 32, 32]}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_finished_records_and_resume_runs_only_the_rest(workdir, sig):
    suite = write(workdir / "slow.yaml", SLOW)
    out = workdir / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchbench", "run", str(suite), "--out", str(out)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the first case's record is on disk
        found = list(out.glob("*/*/results.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the first record never appeared")
    time.sleep(3)  # the hanging case is now running in its worker
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    run_dir = run_dir_of(out)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "incomplete"
    first = results.read_records(run_dir)
    assert [r.case["model"] for r in first] == ["seed_mlp"]
    assert f"benchbench run --resume {run_dir}" in stderr
    # no worker left behind: neither the fork server nor any child it forked
    ps = subprocess.run(["pgrep", "-f", f"benchbench.worker {run_dir}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
    server_log = (run_dir / "logs" / "fork-server-torch.log").read_text()
    pids = [int(w) for line in server_log.splitlines() for w in line.split() if w.isdigit()][:1] + [
        int(line.split()[3]) for line in server_log.splitlines() if line.startswith("forked worker pid")
    ]
    assert len(pids) >= 3  # the server, seed_mlp's worker, the hanging one's
    for pid in pids:
        assert not _alive(pid), (pid, server_log)

    # resume with the hanging model excluded by filter: only the missing seed_cnn case runs
    resumed = bb("run", "--resume", run_dir, "--filter", "model=seed_*", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    recs = results.read_records(run_dir)
    assert [r.case["model"] for r in recs] == ["seed_mlp", "seed_cnn"]
    assert all(r.status == "ok" for r in recs)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "incomplete"  # the filtered-out hanging case is still missing
    assert len(info["missing"]) == 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
