"""Run a suite's cases as submitit jobs: on a Slurm cluster, or locally (``--executor submitit``).

Each case is one job whose body is the Ray executor's node-side function
(:func:`benchbench.executors.ray.run_on_node` without the Ray facts): on whichever node
runs the job, the very same worker subprocess path as the local executor — timeouts,
memory limits, crash handling — and the record carries that node's host facts. The
driver polls the jobs and writes each record and log into the run directory as it
finishes. submitit is imported only here, and only when this executor is used.

- ``cluster="slurm"`` (or auto-detected): every case is submitted at once and Slurm
  schedules them: a ``cuda`` case asks for ``gpus_per_node = devices``, a ``cpu`` case
  for ``cpus_per_task = threads`` (or ``resources.num_cpus``), and a ``threads: all`` CPU
  case for a whole node (``--exclusive``) so CPU cases never contend.
  ``--slurm-partition`` and ``--slurm-params JSON`` (any ``slurm_*`` submitit parameter,
  e.g. ``{"slurm_account": "x"}``) are passed on.
- ``cluster="local"``: submitit's LocalExecutor, one job at a time on this machine (two
  cases at once would contend); what the tests use.
- A job that dies, is killed or times out is a failed record with submitit's reason.
- Ctrl-C / SIGTERM cancels the jobs still queued or running; finished records are kept.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.executors import profile_files as profiles
from benchbench.results import Record, utc_now

POLL_S = 0.25
CANCEL_GRACE_S = 10.0
CLUSTERS = ("local", "slurm")


def job_parameters(case: Case, partition: str | None = None, extra: dict | None = None) -> dict:
    """The submitit (AutoExecutor) parameters one case's job asks for."""
    kind = case.device.split(":", 1)[0]
    res = case.settings.resources or {}
    factor = 2 if case.devices > 1 else 1  # a data-parallel case also measures its one-device run
    p: dict = {
        "name": f"benchbench-{case.case_id}",
        "nodes": 1,
        "tasks_per_node": 1,
        "timeout_min": math.ceil(factor * case.settings.timeout / 60) + 5,
    }
    if kind == "cuda":
        p["gpus_per_node"] = int(res.get("num_gpus") or case.devices)
    cpus = res.get("num_cpus") or case.threads
    if cpus:
        p["cpus_per_task"] = int(math.ceil(cpus))
    elif kind == "cpu":
        p["slurm_exclusive"] = True  # threads: all: the whole node, so no other case shares its cores
    if res.get("accelerator_type"):
        p["slurm_constraint"] = res["accelerator_type"]
    if partition:
        p["slurm_partition"] = partition
    p.update(extra or {})
    return p


def _reason(job, e: BaseException) -> str:
    """One line: the job's last error line (a traceback's), or submitit's own words without paths."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception", "Interrupt", "Exit"))]
    if errors:
        detail = errors[-1]
    else:
        detail = re.sub(r"\s*with path \S+", "", " ".join(lines[:2]))
        detail = re.sub(r"^Job \S+ \(task: \d+\)\s*", "", detail)
        if "has not produced any output" in detail:
            detail = f"the job's process died without a result ({detail}): killed, crashed or its node lost"
    return f"submitit job {job.job_id} failed: {type(e).__name__}: {detail}"[:400]


class SubmititExecutor:
    """Runs cases as submitit jobs (``cluster``: None = submitit's auto-detection)."""

    def __init__(
        self,
        cluster: str | None = None,
        partition: str | None = None,
        slurm_params: dict | None = None,
        poll_s: float = POLL_S,
    ):
        self.cluster, self.partition = cluster, partition
        self.slurm_params = dict(slurm_params or {})
        self.poll_s = poll_s

    def close(self) -> None:
        pass

    def _executor(self, folder: Path):
        try:
            import submitit
        except ImportError as e:
            raise UserError(f"--executor submitit needs submitit: pip install 'benchbench[submitit]' ({e})") from None
        try:
            return submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        except Exception as e:  # e.g. cluster="slurm" where sbatch is missing
            raise UserError(f"--executor submitit: cannot use cluster {self.cluster or 'auto'}: {e}") from None

    def run_many(
        self,
        cases: list[Case],
        run_dir: Path,
        extra_paths: list[str],
        on_start: Callable[[int, int, Case], None] | None = None,
    ) -> Iterator[Record]:
        from benchbench.executors.remote import run_on_node

        ex = self._executor(run_dir / "submitit")
        together = ex.cluster == "slurm"  # Slurm shares nodes out; locally, one case at a time
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        queue = list(enumerate(cases, 1))
        pending: dict = {}
        try:
            while queue or pending:
                while queue and (together or not pending):
                    i, case = queue.pop(0)
                    if on_start:
                        on_start(i, len(cases), case)
                    ex.update_parameters(**job_parameters(case, self.partition, self.slurm_params))
                    job = ex.submit(run_on_node, case.to_dict(), list(extra_paths), False)
                    pending[job] = (case, utc_now(), time.monotonic())
                done = [job for job in pending if job.done()]
                if not done:
                    time.sleep(self.poll_s)
                for job in done:
                    yield self._collect(job, *pending.pop(job), ex.cluster, run_dir)
        finally:
            if pending:
                self._cancel(list(pending))

    @staticmethod
    def _collect(job, case: Case, started: str, t0: float, cluster: str, run_dir: Path) -> Record:
        try:
            rec_dict, log, traces = job.result()
            record = profiles.land(Record.from_dict(rec_dict), traces, run_dir)
        except Exception as e:  # FailedJobError, UncompletedJobError: killed, timed out, node lost
            record = Record(
                case=case.to_dict(), status="failed", started_at=started, ended_at=utc_now(), reason=_reason(job, e)
            )
            record.duration_s = time.monotonic() - t0
            log = f"benchbench (submitit driver): {record.reason}\n{e}\n"
        path = run_dir / "logs" / f"{record.case_id}.log"
        with open(path, "a", encoding="utf-8") as f:
            f.write(log)
        record.runtime["log"] = str(path.relative_to(run_dir))
        record.runtime["executor"] = "submitit"
        record.runtime["submitit"] = {"cluster": cluster, "job_id": str(job.job_id)}
        return record

    def _cancel(self, jobs: list) -> None:
        """Cancel (locally: SIGINT, so the job kills its worker), then wait a little."""
        for job in jobs:
            try:
                job.cancel(check=False)
            except Exception:
                pass
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline and not all(self._done(j) for j in jobs):
            time.sleep(self.poll_s)

    @staticmethod
    def _done(job) -> bool:
        try:
            return job.done()
        except Exception:
            return True


def from_args(cluster: str | None, partition: str | None, params_json: str | None) -> SubmititExecutor:
    """The executor for ``benchbench run --executor submitit [--submitit-cluster …] [--slurm-partition …]``."""
    params = {}
    if params_json:
        try:
            params = json.loads(params_json)
        except json.JSONDecodeError as e:
            raise UserError(
                f'--slurm-params {params_json!r}: not JSON ({e.msg}); e.g. \'{{"slurm_account": "x"}}\''
            ) from None
        if not isinstance(params, dict) or not all(isinstance(k, str) and k.startswith("slurm_") for k in params):
            raise UserError(
                f"--slurm-params {params_json!r}: must be an object of slurm_* submitit parameters, "
                f'e.g. \'{{"slurm_account": "x"}}\''
            )
    return SubmititExecutor(cluster, partition, params)
