"""The task body the cluster executors (Ray, submitit) run on a node: one case through the
local worker path there (:func:`benchbench.executors.local.run_case`), with the node's facts
in the record, and a reaper that kills the case's worker if the task dies without cleaning up.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import psutil

from benchbench.case import Case
from benchbench.executors import profile_files as profiles
from benchbench.results import Record, utc_now


def node_facts(with_ray: bool = True) -> dict:
    """This node as the record should show it: a cluster run is a hardware comparison."""
    from benchbench.hardware import environment

    facts = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu_model": environment.cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }
    if not with_ray:  # another executor (submitit) runs the same task body
        return facts
    try:
        import ray

        ctx = ray.get_runtime_context()
        facts["ray_node_id"] = ctx.get_node_id()
        facts["ray_node_ip"] = ray.util.get_node_ip_address()
        facts["ray_gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
        facts["accelerator_ids"] = {k: list(v) for k, v in ctx.get_accelerator_ids().items() if v}
        facts["ray_node_resources"] = next(
            (n.get("Resources") for n in ray.nodes() if n.get("NodeID") == facts["ray_node_id"]), None
        )
        held = ctx.get_assigned_resources()
        facts["ray_assigned_resources"] = held
        total = (facts["ray_node_resources"] or {}).get("CPU")
        if total and held.get("CPU", 0) < total:
            facts["cpu_note"] = (
                f"this case held {held.get('CPU', 0):g} of the node's {total:g} Ray CPUs: "
                f"other tasks may have run on this node at the same time"
            )
    except Exception as e:  # facts are a bonus; never lose a record for them
        facts["ray_error"] = f"{type(e).__name__}: {e}"
    return facts


# A sidecar per task: if the Ray worker running the task dies without cleaning up (killed,
# cancelled by force, its node shut down), it kills the case's worker process group, which
# would otherwise run on unwatched (no timeout, no memory limit). The case file's path,
# unique per task, is on the worker's command line. It removes the task's temporary directory too.
_REAPER = """
import os, shutil, signal, sys, time
import psutil
ppid, mark, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def alive():
    try:
        return psutil.Process(ppid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
while alive():
    time.sleep(0.5)
for p in psutil.process_iter(["cmdline"]):
    if mark in (p.info["cmdline"] or []):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
shutil.rmtree(tmp, ignore_errors=True)
"""


def _start_reaper(case_path: Path, tmp: Path):
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(case_path), str(tmp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def run_on_node(case_dict: dict, extra_paths: list[str], with_ray: bool = True) -> tuple[dict, str, dict | None]:
    """The Ray task body: one case through the local worker path on this node.
    Returns (record as a dict, the case's log text, its profile files: profiles.pack)."""
    from benchbench import probe
    from benchbench.executors import local

    case = Case.from_dict(case_dict)
    tmp = Path(tempfile.mkdtemp(prefix="benchbench-ray-"))
    log_path = tmp / f"{case.case_id}.log"
    traces = None
    try:
        reason = probe.skip_reason(case)  # this node's devices, not the driver's
        if reason is not None:
            record = Record(
                case=case.to_dict(),
                status="skipped",
                reason=f"{reason} (on this node)",
                started_at=utc_now(),
                ended_at=utc_now(),
            )
            record.host = socket.gethostname()
            log = ""
        else:
            reaper = _start_reaper(tmp / ".work" / f"{case.case_id}.case.json", tmp)
            try:  # a ".work" dir: the worker writes profile files to its sibling tmp/profiles
                record = local.run_case(case, tmp / ".work", log_path, extra_paths)
            finally:
                reaper.kill()
                reaper.wait()
            log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
            traces = profiles.pack(tmp / profiles.DIR, case.case_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record.runtime["node"] = node_facts(with_ray)
    return record.to_dict(), log, traces
