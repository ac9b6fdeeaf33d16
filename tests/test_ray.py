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
RAY_ENV = {"RAY_AUTH_MODE": "disabled",  # loopback only: nothing outside the namespace can reach it
           "RAY_USAGE_STATS_ENABLED": "0"}

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
"""


class Cluster:
    """A Ray head node (and more nodes on demand) in namespaces of their own."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="bbray")  # short: Ray's socket paths must stay < 108 bytes
        self.root = os.geteuid() == 0
        cmd = ["unshare", *([] if self.root else ["--map-root-user"]), "--net", "--pid", "--fork",
               "--mount-proc", "sh", "-c", "ip link set lo up && echo up && exec sleep 100000"]
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
        return ["nsenter", "-t", str(self.init_pid), *([] if self.root else ["-U", "--preserve-credentials"]),
                "-n", "-p", "-m", f"--wd={cwd}"]

    def ray_start(self, *args, timeout=120):
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        proc = subprocess.run([*self.enter(self.temp), ray_bin, "start", "--node-ip-address", "127.0.0.1",
                               "--disable-usage-stats", "--temp-dir", self.temp, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def bb(self, *args, cwd, timeout=300):
        """The real CLI inside the cluster's namespaces."""
        return subprocess.run([*self.enter(cwd), sys.executable, "-m", "benchbench", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=self.env)

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


def suite(path, name, models, batch_sizes=(1,)):
    text = SUITE.format(name=name, models=json.dumps(list(models)), batch_sizes=json.dumps(list(batch_sizes)))
    return write(path / f"{name}.yaml", text)


def records(out):
    return results.read_records(run_dir_of(out))


def test_local_and_ray_run_the_same_case_set(cluster, raydir):
    s = suite(raydir, "same", ["seed_mlp"], [1, 2])
    # the local run goes alongside (only the case sets are compared, not the numbers)
    local = subprocess.Popen([sys.executable, "-m", "benchbench", "run", str(s), "--out", str(raydir / "local")],
                             cwd=raydir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    viaray = cluster.bb("run", s, "--out", raydir / "ray", "--executor", "ray", "--address", ADDRESS, cwd=raydir)
    assert local.wait(timeout=300) == 0, local.stderr.read()
    assert viaray.returncode == 0, viaray.stderr
    assert "Traceback" not in viaray.stderr
    a, b = records(raydir / "local"), records(raydir / "ray")
    assert {r.case_id for r in a} == {r.case_id for r in b} and len(b) == 2
    assert all(r.status == "ok" and r.stats["n"] >= 8 for r in b)
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


def test_retry_lost_and_placement_by_a_custom_resource_on_a_second_node(cluster, raydir):
    cluster.ray_start("--address", ADDRESS, "--num-cpus", "1", "--resources", '{"special": 1}',
                      "--dashboard-agent-listen-port", "0")
    s = suite(raydir, "once", ["ray_models:kill_parent_once"])
    proc = cluster.bb("run", s, "--out", raydir / "out", "--executor", "ray", "--address", ADDRESS,
                      "--retry-lost", "--ray-resources", '{"special": 1}', cwd=raydir)
    assert proc.returncode == 0, proc.stderr
    assert (raydir / "ray_models.killed").exists()  # the first attempt was lost
    [rec] = records(raydir / "out")
    assert rec.status == "ok", rec.reason
    assert rec.runtime["node"]["ray_node_resources"].get("special") == 1  # placed on the second node
    assert rec.runtime["node"]["ray_node_resources"].get("CPU") == 1


def test_ray_options_are_checked_before_anything_runs(workdir):
    s = suite(workdir, "opts", ["seed_mlp"])
    bad = bb("run", s, "--out", workdir / "out", "--executor", "ray", "--ray-resources", "{special: 1}", cwd=workdir)
    assert bad.returncode == 2 and "--ray-resources" in bad.stderr and "Traceback" not in bad.stderr
    alone = bb("run", s, "--out", workdir / "out", "--retry-lost", cwd=workdir)
    assert alone.returncode == 2 and "need --executor ray" in alone.stderr
    assert not (workdir / "out").exists()
