"""Data-parallel cases (``devices: N``): one case over N devices, and how well it scales.

``batch_size`` is per device: a step processes ``N × batch_size`` samples, and the
record's ``stats`` (throughput, ms per sample) are for that global batch.
``runtime.data_parallel`` adds the per-device throughput and the scaling efficiency
against one device, ``global / (N × single)``, where *single* is the same case on one
device (same per-device batch, same cores or GPU, no data-parallel wrapper), measured
in a process of its own in the same job, just before the N-device window.

Every process that measures runs the worker's one path, :func:`benchbench.worker.core.measure_case`
(variant, fidelity, memory, failure labels, profile); what differs in a rank is passed in.

- torch: ``python -m torch.distributed.run --standalone --nproc-per-node N --module
  benchbench.worker.rank …`` (torchrun) starts N rank processes (:mod:`benchbench.worker.rank`);
  gloo on CPUs, NCCL on GPUs (rank r on ``cuda:r``). A train step runs under
  ``DistributedDataParallel`` composed with the variant (``benchbench.backends.torch.wrap_ddp``:
  gradients all-reduced in backward); every step, train or inference, then ends with an
  all-reduce of one value, so the slowest rank sets the step time. Each rank times with
  the same :func:`benchbench.measure.timing.measure`; its clock is rank 0's reading,
  broadcast, so every rank takes the same stop decisions and runs the same number of
  steps. Rank 0 samples telemetry, profiles (every rank runs the profiled steps) and writes
  the record. On CPUs with ``threads: all`` each rank is pinned to its own share of the
  usable cores (``cores // N``; fewer cores than ranks: ranks share, the record says so);
  with ``threads: T`` each rank runs T threads, unpinned. The one-device baseline is
  torchrun with one rank, on rank 0's share.
- TensorFlow: ``tf.distribute.MirroredStrategy`` in the worker process, over N GPUs, or
  on CPUs over N *logical* CPU devices (``tf.config.set_logical_device_configuration``,
  in ``benchbench.backends.tensorflow``). Logical CPU devices share one thread pool and the
  same cores: on a CPU this measures the strategy's overhead, not a speed-up (the record
  says so). The one-device baseline is a worker of its own (``python -m benchbench.worker``
  on the ``devices: 1`` copy), started before this process starts TensorFlow's runtime:
  the logical devices cannot change once it runs.

Nothing here imports a framework at module level: the worker and the rank processes do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchbench.case import Case
from benchbench.results import Record, utc_now

STEP_SYNC_NOTE = (
    "every step ends with an all-reduce of one value across all ranks (after DDP's gradient "
    "all-reduce in train mode), so the slowest rank sets the step time; every rank's timing "
    "clock is rank 0's reading, broadcast, so all ranks stop after the same step"
)
CPU_TF_NOTE = (
    "MirroredStrategy over logical CPU devices of one CPU: the replicas share the same cores "
    "and thread pool, so this measures the strategy's overhead, not a speed-up"
)


# --- pure helpers (tested without a framework) -------------------------------------------


def rank_cores(rank: int, devices: int, cores: list[int]) -> list[int]:
    """The cores rank ``rank`` of ``devices`` is pinned to: an equal share, in order; with
    fewer cores than ranks, one core each, shared round-robin."""
    cores = sorted(cores)
    if len(cores) < devices:
        return [cores[rank % len(cores)]]
    k = len(cores) // devices
    return cores[rank * k : (rank + 1) * k]


def scaling(
    global_throughput: float | None, single_throughput: float | None, devices: int, single_reason: str | None = None
) -> dict:
    """Global and per-device throughput and the scaling efficiency against one device."""
    out = {
        "throughput_global": global_throughput,
        "throughput_per_device": global_throughput / devices if global_throughput else None,
        "throughput_single_device": single_throughput,
        "scaling_efficiency": None,
        "speedup": None,
    }
    if global_throughput and single_throughput:
        out["speedup"] = global_throughput / single_throughput
        out["scaling_efficiency"] = global_throughput / (devices * single_throughput)
    else:
        out["scaling_efficiency_reason"] = (
            f"no one-device figure: {single_reason}" if single_reason else "no throughput measured"
        )
    return out


class SyncedClock:
    """Rank 0's clock on every rank: ``local()`` read, then ``broadcast`` from rank 0.
    ``measure()`` decides warm-up, block size and stop from its clock alone, so equal
    readings mean equal decisions: no rank waits in a collective the others never reach."""

    def __init__(self, local: Callable[[], float], broadcast: Callable[[float], float]):
        self.local, self.broadcast = local, broadcast

    def __call__(self) -> float:
        return self.broadcast(self.local())


def synced_step(step: Callable[[], None], barrier: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        step()
        barrier()

    return run


def skip_reason(case: Case, gpu_count: Callable[[], int] | None = None) -> str | None:
    """Why a ``devices: N`` case cannot run here (None: it can)."""
    kind, _, index = case.device.partition(":")
    n = case.devices
    if kind == "tpu":
        return f"devices: {n} on a TPU is not implemented (data-parallel cases run on cpu or cuda)"
    if kind == "cuda":
        if index:
            return f"devices: {n} with device {case.device}: use device: cuda (ranks take cuda:0…cuda:{n - 1})"
        have = gpu_count() if gpu_count else None
        if have is not None and have < n:
            return f"devices: {n} needs {n} CUDA GPUs; {have} visible"
    if case.framework not in ("torch", "tensorflow"):
        return f"devices: {n} is not implemented for {case.framework}"
    if case.framework == "torch" and case.data is not None:
        return (
            f"devices: {n} with a data: pipeline is not implemented for torch: each rank would need its "
            "own shard of the loader, and the loader-only and model-only windows are not run in lock-step"
        )
    return None


def one_device_copy(case: Case) -> Case:
    """The baseline's case: the same case on one device. Not profiled: only its throughput
    is kept (``runtime.data_parallel.single_device``)."""
    return dataclasses.replace(case, devices=1, settings=dataclasses.replace(case.settings, profile=False))


def combine(
    multi: Record, single: Record | None, case: Case, how: dict, pids: tuple[int | None, int | None] = (None, None)
) -> Record:
    """The N-device record with its scaling figures (``runtime.data_parallel``); ``pids``:
    the processes that measured the N-device and the one-device windows."""
    dp = multi.runtime.setdefault("data_parallel", {})
    dp.update(how)
    dp["pid"] = pids[0]
    base = None
    reason = None
    if single is None:
        reason = "not measured"
    elif single.status != "ok":
        reason = f"one-device run {single.status}: {single.reason}"
    else:
        base = (single.stats or {}).get("throughput")
    glob = (multi.stats or {}).get("throughput") if multi.status == "ok" else None
    dp.update(scaling(glob, base, case.devices, reason))
    if single is not None:
        st = single.stats or {}
        dp["single_device"] = {
            "status": single.status,
            "reason": single.reason,
            "median_s": st.get("median"),
            "throughput": st.get("throughput"),
            "n": st.get("n"),
            "threads": (single.runtime or {}).get("threads"),
            "stop_reason": (single.timing or {}).get("stop_reason"),
            "pid": pids[1],
        }
    multi.case = case.to_dict()
    return multi


# --- in the worker process ---------------------------------------------------------------


def run(case: Case, trace_dir: str | None, measure: Callable[..., Record]) -> Record:
    """One ``devices: N`` case, called by ``benchbench.worker.core.main`` instead of ``run``.
    ``measure`` is the worker's one path, ``core.measure_case``, passed in so that this
    module stays below :mod:`core` (:mod:`rank`, a rank's entry, imports both): TensorFlow
    measures the N-device window with it in this process."""
    gpus = _torch_gpu_count if case.framework == "torch" else _tf_gpu_count
    reason = skip_reason(case, gpus if case.device.startswith("cuda") else None)
    if reason is not None:
        return Record(case=case.to_dict(), status="skipped", reason=reason, started_at=utc_now(), ended_at=utc_now())
    if case.framework == "tensorflow":
        return _run_tensorflow(case, trace_dir, measure)
    return _run_torch(case, trace_dir)


def _torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _tf_gpu_count() -> int:
    from benchbench.framework.tf_runtime import tf

    return len(tf.config.list_physical_devices("GPU"))


def _run_torch(case: Case, trace_dir: str | None) -> Record:
    backend = "nccl" if case.device.startswith("cuda") else "gloo"
    single = _torchrun(case, 1, None)  # the rank measures the one-device copy (not profiled)
    if single.status == "skipped":
        return combine(single, None, case, {})
    multi = _torchrun(case, case.devices, trace_dir)
    how = {
        "devices": case.devices,
        "per_device_batch": case.batch_size,
        "global_batch": case.batch_size * case.devices,
        "method": ("torch DistributedDataParallel" if case.mode == "train" else "replicated model")
        + f", {case.devices} processes launched with torchrun, {backend} backend",
        "process_group_backend": backend,
        "step_sync": STEP_SYNC_NOTE,
        "single_device_how": "the same case in one process (no DDP, no collectives) on rank 0's cores or "
        "GPU with the same per-device batch, measured in the same job just before the N-device window",
    }
    return combine(multi, single, case, how, (_rank_pid(multi), _rank_pid(single)))


def _rank_pid(rec: Record) -> int | None:
    return ((rec.runtime or {}).get("placement") or {}).get("pid")


def _torchrun(case: Case, nproc: int, trace_dir: str | None) -> Record:
    """Launch ``nproc`` ranks with torchrun; rank 0's record (or a failed one)."""
    what = "torchrun (the one-device run)" if nproc == 1 else f"torchrun ({nproc} ranks)"
    args = [
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--module",
        "benchbench.worker.rank",
    ]
    return _launch(args, case, what, [trace_dir or ""])[0]


def _launch(args: list[str], case: Case, what: str, extra: list[str] = ()) -> tuple[Record, int]:
    """``python ARGS CASE.json RESULT.json EXTRA…`` in a child process (its output in the case
    log): the record it wrote (or a failed one) and its pid."""
    work = Path(tempfile.mkdtemp(prefix="benchbench-dp-"))
    case_path, result_path = work / "case.json", work / "result.json"
    case_path.write_text(json.dumps(case.to_dict()), encoding="utf-8")
    cmd = [sys.executable, *args, str(case_path), str(result_path), *extra]
    print(f"benchbench: {' '.join(cmd)}", flush=True)
    started = utc_now()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        try:
            code = proc.wait()
        except BaseException:  # interrupted: the child goes too (as subprocess.run does)
            proc.kill()
            proc.wait()
            raise
        if result_path.exists():
            return Record.from_dict(json.loads(result_path.read_text(encoding="utf-8"))), proc.pid
        return Record(
            case=case.to_dict(),
            status="failed",
            started_at=started,
            ended_at=utc_now(),
            reason=f"{what} exited with code {code} without a record; see the case log",
        ), proc.pid
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_tensorflow(case: Case, trace_dir: str | None, measure: Callable[..., Record]) -> Record:
    # the baseline first, in a worker of its own: this process has not started TensorFlow's
    # runtime yet (its logical CPU devices are still free to set) and holds no device memory
    single, single_pid = _launch(["-m", "benchbench.worker"], one_device_copy(case), "the one-device worker")
    if single.status == "skipped":
        return combine(single, None, case, {})
    multi = measure(case, trace_dir=trace_dir)  # the backend builds the MirroredStrategy
    cpu = case.device.split(":")[0] == "cpu"
    how = {
        "devices": case.devices,
        "per_device_batch": case.batch_size,
        "global_batch": case.batch_size * case.devices,
        "method": f"tf.distribute.MirroredStrategy over {case.devices} " + ("logical CPU devices" if cpu else "GPUs"),
        "step_sync": "strategy.run inside one tf.function; the replicas' outputs are summed "
        "(strategy.reduce) and copied to the host, so the step ends when every replica has",
        "single_device_how": "the same case on one device without a strategy (same threads), measured in its "
        "own worker process (python -m benchbench.worker) in the same job just before the N-device window",
    }
    if cpu:
        how["note"] = CPU_TF_NOTE
    return combine(multi, single, case, how, (os.getpid(), single_pid))
