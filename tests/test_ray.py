"""The Ray executor on a real local Ray cluster (no mocks).

Ray binds to the machine's own address, so the cluster lives in namespaces of its own:
a new network namespace with only loopback (``unshare -n``, ``ip link set lo up``), a
new PID namespace (so tearing it down ends exactly its processes) and a mount namespace
for that PID namespace's /proc. One cluster serves the module; every CLI call joins it
with ``nsenter``. Skipped, with the reason, where Ray, unshare/nsenter/ip or namespaces
are unavailable.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from benchbench import results
from conftest import bb, run_dir_of, write

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'benchbench[ray]')")

PORT = 6379  # inside the cluster's own network namespace: never taken
ADDRESS = f"127.0.0.1:{PORT}"
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # loopback only: nothing outside the namespace can reach it
    "RAY_USAGE_STATS_ENABLED": "0",
}

RAY_MODELS = '''\
"""Models that kill the process that started their worker (a Ray worker), as a lost node would."""
import os
import signal
from pathlib import Path

from torch import nn


def kill_parent(input_shape=None):
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(3)


def kill_parent_once(input_shape=None):
    marker = Path(__file__).with_suffix(".killed")
    if not marker.exists():
        marker.write_text("killed once")
        kill_parent()
    return nn.Sequential(nn.Linear(10, 10))


def slow(input_shape=None):
    """Builds for two minutes; leaves its pid in slow_pids/ so the test can see it end."""
    import time

    pids = Path(__file__).parent / "slow_pids"
    pids.mkdir(exist_ok=True)
    (pids / str(os.getpid())).write_text("")
    time.sleep(120)
    return nn.Sequential(nn.Linear(10, 10))
'''

SUITE = """\
name: {name}
matrix:
  model: {models}
  batch_size: {batch_sizes}
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.2
  min_iters: 8
  threads: 1
  telemetry: {{hz: 0}}
  processes: {processes}
"""


class Cluster:
    """A Ray head node (and more nodes on demand) in namespaces of their own."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="bbray")  # short: Ray's socket paths must stay < 108 bytes
        self.root = os.geteuid() == 0
        cmd = [
            "unshare",
            *([] if self.root else ["--map-root-user"]),
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            "ip link set lo up && echo up && exec sleep 100000",
        ]
        self.holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if line != "up":
            err = self.holder.communicate(timeout=10)[1].strip()
            shutil.rmtree(self.temp, ignore_errors=True)
            pytest.skip(f"cannot make a loopback-only network namespace ({' '.join(cmd[:6])}): {err}")
        self.init_pid = self._ns_init()
        self.env = {**os.environ, **RAY_ENV}

    def _ns_init(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = psutil.Process(self.holder.pid).children()
            if kids:
                return kids[0].pid  # PID 1 of the new PID namespace
            time.sleep(0.05)
        raise RuntimeError("the namespace's first process never appeared")

    def enter(self, cwd) -> list[str]:
        """The prefix that runs a command inside the cluster's namespaces, in ``cwd``."""
        return [
            "nsenter",
            "-t",
            str(self.init_pid),
            *([] if self.root else ["-U", "--preserve-credentials"]),
            "-n",
            "-p",
            "-m",
            f"--wd={cwd}",
        ]

    def ray_start(self, *args, timeout=120):
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        proc = subprocess.run(
            [
                *self.enter(self.temp),
                ray_bin,
                "start",
                "--node-ip-address",
                "127.0.0.1",
                "--disable-usage-stats",
                "--temp-dir",
                self.temp,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def bb(self, *args, cwd, timeout=300):
        """The real CLI inside the cluster's namespaces."""
        return subprocess.run(
            [*self.enter(cwd), sys.executable, "-m", "benchbench", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def close(self):
        try:
            os.kill(self.init_pid, signal.SIGKILL)  # PID 1 gone: the kernel ends the whole namespace
        except ProcessLookupError:
            pass
        self.holder.wait(timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (util-linux / iproute2): the Ray tests need a loopback-only namespace")
    c = Cluster()
    try:
        c.ray_start("--head", "--port", str(PORT), "--num-cpus", "2", "--include-dashboard", "false")
        yield c
    finally:
        c.close()


@pytest.fixture
def raydir(workdir):
    write(workdir / "ray_models.py", RAY_MODELS)
    return workdir


def suite(path, name, models, batch_sizes=(1,), extra="", processes=1):
    """One process per case unless asked (a Ray task spawns its worker: each costs an interpreter start)."""
    text = SUITE.format(
        name=name, models=json.dumps(list(models)), batch_sizes=json.dumps(list(batch_sizes)), processes=processes
    )
    return write(path / f"{name}.yaml", text + extra)


def records(out):
    return results.read_records(run_dir_of(out))


def test_local_and_ray_run_the_same_case_set(cluster, raydir):
    s = suite(raydir, "same", ["seed_mlp"], [1, 2], processes=2)
    # the local run goes alongside (only the case sets are compared, not the numbers)
    local = subprocess.Popen(
        [sys.executable, "-m", "benchbench", "run", str(s), "--out", str(raydir / "local")],
        cwd=raydir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    viaray = cluster.bb("run", s, "--out", raydir / "ray", "--executor", "ray", "--address", ADDRESS, cwd=raydir)
    assert local.wait(timeout=300) == 0, local.stderr.read()
    assert viaray.returncode == 0, viaray.stderr
    assert "Traceback" not in viaray.stderr
    a, b = records(raydir / "local"), records(raydir / "ray")
    assert {r.case_id for r in a} == {r.case_id for r in b} and len(b) == 2
    assert all(r.status == "ok" and r.stats["n"] >= 8 for r in b)
    assert all(r.processes["processes"] == 2 for r in b)  # each process its own Ray task, combined
    run_dir = run_dir_of(raydir / "ray")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    for r in b:  # each record says where it ran; its worker's log is in the run directory
        assert r.host and r.runtime["node"]["ray_node_ip"] == "127.0.0.1" and r.runtime["node"]["ray_node_id"]
        assert "benchbench worker pid" in (run_dir / r.runtime["log"]).read_text()


def test_a_worker_killed_mid_case_is_a_failed_record_and_the_rest_complete(cluster, raydir):
    s = suite(raydir, "kill", ["seed_mlp", "ray_models:kill_parent"])
    proc = cluster.bb("run", s, "--out", raydir / "out", "--executor", "ray", "--address", ADDRESS, cwd=raydir)
    assert proc.returncode == 0, proc.stderr
    recs = {r.case["model"]: r for r in records(raydir / "out")}
    assert recs["seed_mlp"].status == "ok"
    lost = recs["ray_models:kill_parent"]
    assert lost.status == "failed"
    assert lost.reason.startswith("lost on the Ray cluster: WorkerCrashedError"), lost.reason
    assert "not retried" in lost.reason and "\n" not in lost.reason


def test_retry_lost_and_placement_by_a_per_case_resource_on_a_second_node(cluster, raydir):
    cluster.ray_start(
        "--address", ADDRESS, "--num-cpus", "1", "--resources", '{"special": 1}', "--dashboard-agent-listen-port", "0"
    )
    # the suite's per-model resources: only the second node offers "special"
    s = suite(
        raydir,
        "once",
        ["ray_models:kill_parent_once"],
        extra='models:\n  "ray_models:kill_parent_once": {resources: {custom: {special: 1}}}\n',
    )
    proc = cluster.bb(
        "run", s, "--out", raydir / "out", "--executor", "ray", "--address", ADDRESS, "--retry-lost", cwd=raydir
    )
    assert proc.returncode == 0, proc.stderr
    assert (raydir / "ray_models.killed").exists()  # the first attempt was lost
    [rec] = records(raydir / "out")
    assert rec.status == "ok", rec.reason
    assert rec.runtime["node"]["ray_node_resources"].get("special") == 1  # placed on the second node
    assert rec.runtime["node"]["ray_node_resources"].get("CPU") == 1
    assert rec.runtime["ray_request"]["resources"] == {"special": 1}
    assert rec.runtime["attempts"] == 2  # the record says it took a retry, and why
    [lost] = rec.runtime["lost_attempts"]
    assert lost.startswith("lost on the Ray cluster: WorkerCrashedError")


def test_ray_options_are_checked_before_anything_runs(workdir):
    s = suite(workdir, "opts", ["seed_mlp"])
    bad = bb("run", s, "--out", workdir / "out", "--executor", "ray", "--ray-resources", "{special: 1}", cwd=workdir)
    assert bad.returncode == 2 and "--ray-resources" in bad.stderr and "Traceback" not in bad.stderr
    alone = bb("run", s, "--out", workdir / "out", "--retry-lost", cwd=workdir)
    assert alone.returncode == 2 and "need --executor ray" in alone.stderr
    assert not (workdir / "out").exists()


def test_ctrl_c_cancels_what_remains_and_keeps_what_finished(cluster, raydir):
    s = suite(
        raydir,
        "intr",
        ["seed_mlp", "ray_models:slow"],
        [1, 2],
        extra="exclude:\n  - {model: seed_mlp, batch_size: 2}\n",
    )
    out = raydir / "out"
    err_path = raydir / "stderr.txt"  # a file, not a pipe: Ray's warnings could fill a pipe nobody reads yet
    with open(err_path, "w") as err:
        nsenter = subprocess.Popen(
            [
                *cluster.enter(raydir),
                sys.executable,
                "-X",
                "faulthandler",
                "-m",
                "benchbench",
                "run",
                str(s),
                "--out",
                str(out),
                "--executor",
                "ray",
                "--address",
                ADDRESS,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env=cluster.env,
        )
    try:
        deadline = time.monotonic() + 180
        jsonl = None
        while time.monotonic() < deadline:  # the fast case has a record: interrupt the rest
            found = list(out.glob("*/*/results.jsonl"))
            if found and found[0].read_text().strip() and len(list((raydir / "slow_pids").glob("*"))) >= 1:
                jsonl = found[0]
                break
            assert nsenter.poll() is None, err_path.read_text()
            time.sleep(0.2)
        assert jsonl is not None, "the fast case never finished"
        [cli] = [
            p for p in psutil.Process(nsenter.pid).children(recursive=True) if "benchbench" in " ".join(p.cmdline())
        ]
        cli.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
        try:
            code = nsenter.wait(timeout=150)
        except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
            cli.send_signal(signal.SIGABRT)
            nsenter.wait(timeout=30)
            pytest.fail(f"no exit 150 s after SIGINT:\n{err_path.read_text()[-6000:]}")
    finally:
        if nsenter.poll() is None:
            nsenter.kill()
    stderr = err_path.read_text()
    assert code == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    run_dir = jsonl.parent
    recs = results.read_records(run_dir)
    assert [(r.case["model"], r.status) for r in recs] == [("seed_mlp", "ok")]  # what finished is kept
    info = json.loads((run_dir / "run.json").read_text())
    slow_ids = [c for c in info["planned"] if c != recs[0].case_id]
    assert info["status"] == "incomplete" and sorted(info["missing"]) == sorted(slow_ids) and len(slow_ids) == 2
    deadline = time.monotonic() + 30  # the slow workers that had started are killed, not left running
    pids = [int(p.name) for p in (raydir / "slow_pids").glob("*")]

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"slow workers still running: {pids}"
        time.sleep(0.2)


def test_resources_a_case_asks_ray_for():
    from dataclasses import replace

    from benchbench.case import Case, Settings
    from benchbench.executors.ray import case_resources, whole_node_cpus

    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0}},
        {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 1.0}},
    ]
    assert whole_node_cpus(nodes) == 4.0
    cpu = Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,))
    assert case_resources(cpu, None, whole_node_cpus(nodes))["num_cpus"] == 4.0  # threads: all → a whole node
    assert case_resources(replace(cpu, threads=2, devices=2))["num_cpus"] == 4  # per rank
    # XLA's CPU device runs on the node's CPUs like a cpu case (it asked for 1 CPU before)
    assert case_resources(replace(cpu, device="xla"), None, whole_node_cpus(nodes))["num_cpus"] == 4.0
    gpu = replace(
        cpu,
        device="cuda",
        devices=2,
        settings=Settings(resources={"num_cpus": 3, "accelerator_type": "A100", "custom": {"tpu_host": 1}}),
    )
    assert case_resources(gpu, {"special": 1}) == {
        "num_cpus": 3,
        "num_gpus": 2,
        "resources": {"accelerator_type:A100": 0.001, "tpu_host": 1, "special": 1},
    }
