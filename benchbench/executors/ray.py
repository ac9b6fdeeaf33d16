"""Run a suite's cases as Ray tasks across a cluster (``benchbench run … --executor ray``).

Each case is one Ray task that asks for what the case needs (a whole GPU per device for
``cuda``, a ``TPU`` resource for ``tpu``, ``threads`` CPUs for ``cpu`` — every CPU of the
smallest node with ``threads: all`` — then the suite's per-case ``resources:`` and any
``--ray-resources``) and, on whichever node Ray places it, runs the very same worker
subprocess path as the local executor (:func:`benchbench.executors.local.run_case`):
timeouts, memory limits and crash handling are identical. The task returns the record
and the case's log; the driver writes both into the run directory as cases finish, in
completion order. Ray is imported only here, and only when this executor is used.

- A GPU task asks for ``num_gpus=1``: Ray never gives one GPU to two tasks at a time,
  so GPU measurements never contend.
- Whether a case can run (device present, framework installed) is decided on its node,
  not on the driver; a case that no live node could ever take is a skipped record.
- A node or worker lost mid-case is a failed record with Ray's reason; with
  ``retry_lost`` the driver submits it once more first (``runtime.attempts``,
  ``runtime.lost_attempts`` say so).
- Ctrl-C / SIGTERM cancels what remains; finished records are already on disk.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.executors import profile_files as profiles
from benchbench.executors.remote import run_on_node
from benchbench.results import Record, utc_now

CANCEL_GRACE_S = 10.0  # after Ctrl-C: time for cancelled tasks to kill their workers


def whole_node_cpus(nodes: list[dict]) -> float:
    """What a ``threads: all`` CPU case asks for: every CPU of the cluster's smallest live node
    (so any node can take it, and on nodes of that size it runs alone)."""
    sizes = [n.get("Resources", {}).get("CPU", 0) for n in nodes if n.get("Alive")]
    sizes = [c for c in sizes if c > 0]
    return min(sizes) if sizes else 1


def case_resources(case: Case, extra: dict | None = None, node_cpus: float = 1) -> dict:
    """The Ray resources one case asks for: ``{"num_cpus": …, "num_gpus": …, "resources": {…}}``.
    Derived from the case (cpu: its threads — or ``node_cpus``, a whole node, with ``threads:
    all``, per rank of a data-parallel case; cuda: one whole GPU per device; tpu: a ``TPU``), then
    the suite's ``resources:`` (num_cpus, num_gpus, accelerator_type, custom), then ``extra``."""
    extra = dict(extra or {})
    res = case.settings.resources or {}
    kind = case.device.split(":", 1)[0]
    req: dict = {"num_cpus": 1, "num_gpus": 0, "resources": {}}
    if kind in ("cpu", "xla"):  # xla: XLA's CPU device, as CPU-bound as a cpu case
        ranks = case.devices if case.framework == "torch" else 1  # torch: T threads per rank process
        req["num_cpus"] = case.threads * ranks if case.threads else node_cpus
    elif kind == "cuda":
        req["num_gpus"] = case.devices  # whole GPUs only: at most one case per GPU at a time
    elif kind == "tpu":
        req["resources"]["TPU"] = 1
    if res.get("num_cpus") is not None:
        req["num_cpus"] = res["num_cpus"]
    if res.get("num_gpus") is not None:
        req["num_gpus"] = res["num_gpus"]
    if res.get("accelerator_type"):  # Ray's own convention for a GPU model (ray.util.accelerators)
        req["resources"][f"accelerator_type:{res['accelerator_type']}"] = 0.001
    req["resources"].update(res.get("custom") or {})
    req["resources"].update(extra)
    return req


def _node_can_take(node: dict, req: dict) -> bool:
    have = node.get("Resources") or {}
    need = {"CPU": req["num_cpus"], "GPU": req["num_gpus"], **req["resources"]}
    return all(have.get(k, 0) >= v for k, v in need.items() if v)


def _describe(req: dict) -> str:
    parts = [f"CPU {req['num_cpus']:g}"]
    if req["num_gpus"]:
        parts.append(f"GPU {req['num_gpus']:g}")
    parts += [f"{k} {v:g}" for k, v in sorted(req["resources"].items())]
    return ", ".join(parts)


def _placement_problem(case: Case, req: dict, nodes: list[dict]) -> str | None:
    """Why no live node of the cluster could ever take ``case`` (None: some node can)."""
    device = case.device
    if device.startswith("cuda:"):
        return (
            f"device {device} names a GPU index; under --executor ray Ray assigns the GPU "
            f"(CUDA_VISIBLE_DEVICES): use device: cuda"
        )
    alive = [n for n in nodes if n.get("Alive")]
    if any(_node_can_take(n, req) for n in alive):
        return None
    return f"no node of the Ray cluster offers {_describe(req)} (alive nodes: {len(alive)})"


def _lost_reason(e: BaseException, retried: bool) -> str:
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    text = f"lost on the Ray cluster: {type(e).__name__}: {first}"[:400]
    return text + ("; retried once, lost again" if retried else "; not retried (--retry-lost retries once)")


class RayExecutor:
    """Runs cases as Ray tasks. ``address``: None starts a local Ray instance, ``"auto"``
    joins the cluster this machine belongs to, ``HOST:PORT`` joins that one.
    ``resources``: extra Ray resources every case asks for (e.g. ``{"special": 1}`` or
    ``{"accelerator_type:A100": 0.001}`` for a GPU model)."""

    def __init__(self, address: str | None = None, *, retry_lost: bool = False, resources: dict | None = None):
        self.address = address
        self.retry_lost = retry_lost
        self.resources = dict(resources or {})
        self._started = False

    def _connect(self):
        try:
            import ray
        except ImportError as e:
            raise UserError(f"--executor ray needs Ray: pip install 'benchbench[ray]' ({e})") from None
        if not ray.is_initialized():
            import logging

            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                ray.init(
                    address=self.address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
                )
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = self.address or "a new local instance"
                raise UserError(f"--executor ray: cannot start or reach Ray at {where}: {e}") from None
            finally:  # Ray installs its own (SIGTERM: abort with a stack dump); the runner's come back
                for sig, handler in handlers.items():
                    if handler is not None:
                        try:
                            signal.signal(sig, handler)
                        except ValueError:  # not the main thread
                            pass
            self._started = True
        return ray

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def run_many(
        self,
        cases: list[Case],
        run_dir: Path,
        extra_paths: list[str],
        on_start: Callable[[int, int, Case], None] | None = None,
    ) -> Iterator[Record]:
        """Submit every case, yield records in completion order. Each yielded record's log
        is already in ``run_dir/logs``. Closing the iterator (or an exception such as
        KeyboardInterrupt while waiting) cancels what has not finished."""
        ray = self._connect()
        from ray import exceptions as rex

        task = ray.remote(run_on_node)
        nodes = ray.nodes()
        node_cpus = whole_node_cpus(nodes)
        logs = run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pending: dict = {}
        try:
            for i, case in enumerate(cases, 1):
                if on_start:
                    on_start(i, len(cases), case)
                req = case_resources(case, self.resources, node_cpus)
                problem = _placement_problem(case, req, nodes)
                if problem is not None:
                    yield self._finish(
                        Record(
                            case=case.to_dict(),
                            status="skipped",
                            reason=problem,
                            started_at=utc_now(),
                            ended_at=utc_now(),
                        ),
                        "",
                        run_dir,
                    )
                    continue

                def submit(case=case, req=req):
                    return task.options(
                        num_cpus=req["num_cpus"],
                        num_gpus=req["num_gpus"],
                        resources=req["resources"] or None,
                        max_retries=0,
                        retry_exceptions=False,
                        name=f"benchbench {case.label}",
                    ).remote(case.to_dict(), list(extra_paths))

                # retries are the driver's (not Ray's max_retries), so the record can say how many
                pending[submit()] = (case, utc_now(), time.monotonic(), submit, req, [])
            while pending:
                try:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                except SystemError as e:  # a signal handler's exception (Ctrl-C, SIGTERM), wrapped by Ray
                    if e.__cause__ is not None:
                        raise e.__cause__ from None
                    raise
                for ref in ready:
                    case, started, t0, submit, req, lost = pending.pop(ref)
                    try:
                        rec_dict, log, traces = ray.get(ref)
                        record = profiles.land(Record.from_dict(rec_dict), traces, run_dir)
                    except (
                        rex.WorkerCrashedError,
                        rex.NodeDiedError,
                        rex.OwnerDiedError,
                        rex.ObjectLostError,
                        rex.RaySystemError,
                        rex.RayTaskError,
                        rex.TaskCancelledError,
                    ) as e:
                        retriable = not isinstance(e, (rex.RayTaskError, rex.TaskCancelledError))
                        if retriable and self.retry_lost and not lost:
                            lost.append(_lost_reason(e, False).split("; not retried")[0])
                            pending[submit()] = (case, started, t0, submit, req, lost)
                            continue
                        record = Record(
                            case=case.to_dict(),
                            status="failed",
                            started_at=started,
                            ended_at=utc_now(),
                            reason=_lost_reason(e, bool(lost)),
                        )
                        record.duration_s = time.monotonic() - t0
                        log = f"benchbench (ray driver): {record.reason}\n{e}\n"
                    record.runtime["attempts"] = len(lost) + 1
                    if lost:
                        record.runtime["lost_attempts"] = list(lost)
                    record.runtime["ray_request"] = req
                    yield self._finish(record, log, run_dir)
        finally:
            if pending:
                self._cancel(ray, list(pending))

    @staticmethod
    def _finish(record: Record, log: str, run_dir: Path) -> Record:
        path = run_dir / "logs" / f"{record.case_id}.log"
        with open(path, "a", encoding="utf-8") as f:
            f.write(log)
        record.runtime["log"] = str(path.relative_to(run_dir))
        record.runtime.setdefault("executor", "ray")
        return record

    @staticmethod
    def _cancel(ray, refs: list) -> None:
        """Cancel politely first (KeyboardInterrupt in the task: run_case kills its worker's
        process group), then by force whatever is still running after a grace period."""
        for ref in refs:
            try:
                ray.cancel(ref, force=False)
            except Exception:
                pass
        deadline = time.monotonic() + CANCEL_GRACE_S
        left = refs
        while left and time.monotonic() < deadline:
            try:
                _, left = ray.wait(left, num_returns=len(left), timeout=0.5)
            except Exception:
                break
        for ref in left:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass


def from_args(address: str | None, retry_lost: bool, resources_json: str | None) -> RayExecutor:
    """The executor for ``benchbench run --executor ray [--address …] [--retry-lost] [--ray-resources JSON]``."""
    import json

    resources = {}
    if resources_json:
        try:
            resources = json.loads(resources_json)
        except json.JSONDecodeError as e:
            raise UserError(
                f"--ray-resources {resources_json!r}: not JSON ({e.msg}); e.g. '{{\"special\": 1}}'"
            ) from None
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in resources.items()
        ):
            raise UserError(
                f"--ray-resources {resources_json!r}: must be an object of resource name → "
                f"positive number, e.g. '{{\"special\": 1}}'"
            )
    return RayExecutor(address, retry_lost=retry_lost, resources=resources)
