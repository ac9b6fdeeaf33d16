"""Data-parallel cases (``devices: N``): one case over N devices, and how well it scales.

``batch_size`` is per device: a step processes ``N × batch_size`` samples, and the
record's ``stats`` (throughput, ms per sample) are for that global batch.
``runtime.data_parallel`` adds the per-device throughput and the scaling efficiency
against one device, ``global / (N × single)``, where *single* is the same case on one
device (same per-device batch, same cores or GPU, no data-parallel wrapper), measured
in the same job just before (torch) or just after (TensorFlow) the N-device window.

- torch: ``python -m torch.distributed.run --standalone --nproc-per-node N -m
  benchbench.worker.data_parallel …`` (torchrun) starts N rank processes; gloo on CPUs, NCCL on
  GPUs (rank r on ``cuda:r``). A train step runs under ``DistributedDataParallel``
  (gradients all-reduced in backward); every step, train or inference, then ends with an
  all-reduce of one value, so the slowest rank sets the step time. Each rank times with
  the same :func:`benchbench.measure.timing.measure`; its clock is rank 0's reading,
  broadcast, so every rank takes the same stop decisions and runs the same number of
  steps. Rank 0 writes the record. On CPUs with ``threads: all`` each rank is pinned to its
  own share of the usable cores (``cores // N``; fewer cores than ranks: ranks share, the
  record says so); with ``threads: T`` each rank runs T threads, unpinned.
- TensorFlow: ``tf.distribute.MirroredStrategy`` in the worker process, over N GPUs, or
  on CPUs over N *logical* CPU devices (``tf.config.set_logical_device_configuration``).
  Logical CPU devices share one thread pool and the same cores: on a CPU this measures the
  strategy's overhead, not a speed-up (the record says so).

Nothing here imports a framework at module level: the worker and the rank processes do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from benchbench.case import Case
from benchbench.results import Record, utc_now, write_json

STEP_SYNC_NOTE = ("every step ends with an all-reduce of one value across all ranks (after DDP's gradient "
                  "all-reduce in train mode), so the slowest rank sets the step time; every rank's timing "
                  "clock is rank 0's reading, broadcast, so all ranks stop after the same step")
CPU_TF_NOTE = ("MirroredStrategy over logical CPU devices of one CPU: the replicas share the same cores "
               "and thread pool, so this measures the strategy's overhead, not a speed-up")


# --- pure helpers (tested without a framework) -------------------------------------------

def rank_cores(rank: int, devices: int, cores: list[int]) -> list[int]:
    """The cores rank ``rank`` of ``devices`` is pinned to: an equal share, in order; with
    fewer cores than ranks, one core each, shared round-robin."""
    cores = sorted(cores)
    if len(cores) < devices:
        return [cores[rank % len(cores)]]
    k = len(cores) // devices
    return cores[rank * k:(rank + 1) * k]


def scaling(global_throughput: float | None, single_throughput: float | None, devices: int,
            single_reason: str | None = None) -> dict:
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
            f"no one-device figure: {single_reason}" if single_reason else "no throughput measured")
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
    return None


def combine(multi: Record, single: Record | None, case: Case, how: dict) -> Record:
    """The N-device record with its scaling figures (``runtime.data_parallel``)."""
    dp = multi.runtime.setdefault("data_parallel", {})
    dp.update(how)
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
        }
    multi.case = case.to_dict()
    return multi


# --- in the worker process ---------------------------------------------------------------

def run(case: Case, trace_dir: str | None = None) -> Record:
    """One ``devices: N`` case, called by ``benchbench.worker`` instead of ``worker.run``."""
    gpus = _torch_gpu_count if case.framework == "torch" else _tf_gpu_count
    reason = skip_reason(case, gpus if case.device.startswith("cuda") else None)
    if reason is not None:
        return Record(case=case.to_dict(), status="skipped", reason=reason, started_at=utc_now(), ended_at=utc_now())
    if case.framework == "tensorflow":
        return _run_tensorflow(case, trace_dir)
    return _run_torch(case, trace_dir)


def _torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _tf_gpu_count() -> int:
    from benchbench.backends.tf_runtime import tf

    return len(tf.config.list_physical_devices("GPU"))


def _run_torch(case: Case, trace_dir: str | None) -> Record:
    backend = "nccl" if case.device.startswith("cuda") else "gloo"
    single = _torchrun(case, 1, trace_dir)
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
    return combine(multi, single, case, how)


def _torchrun(case: Case, nproc: int, trace_dir: str | None) -> Record:
    """Launch ``nproc`` ranks with torchrun; rank 0's record (or a failed one)."""
    work = Path(tempfile.mkdtemp(prefix="benchbench-ddp-"))
    case_path, result_path = work / "case.json", work / "result.json"
    case_path.write_text(json.dumps(case.to_dict()), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--module", "benchbench.worker.data_parallel", str(case_path), str(result_path), trace_dir or ""]
    print(f"benchbench: {' '.join(cmd)}", flush=True)
    started = utc_now()
    try:
        code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
        if result_path.exists():
            return Record.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        what = "the one-device run" if nproc == 1 else f"{nproc} ranks"
        return Record(case=case.to_dict(), status="failed", started_at=started, ended_at=utc_now(),
                      reason=f"torchrun ({what}) exited with code {code} without a record; see the case log")
    finally:
        for p in (case_path, result_path):
            p.unlink(missing_ok=True)
        work.rmdir()


def _run_tensorflow(case: Case, trace_dir: str | None) -> Record:
    from benchbench import worker

    multi = worker.run(case, trace_dir)  # the backend's hook builds the MirroredStrategy (tf_device)
    if multi.status == "skipped":
        return multi
    single = worker.run(dataclasses.replace(case, devices=1), trace_dir)
    cpu = case.device.split(":")[0] == "cpu"
    how = {
        "devices": case.devices,
        "per_device_batch": case.batch_size,
        "global_batch": case.batch_size * case.devices,
        "method": f"tf.distribute.MirroredStrategy over {case.devices} "
        + ("logical CPU devices" if cpu else "GPUs"),
        "step_sync": "strategy.run inside one tf.function; the replicas' outputs are summed "
        "(strategy.reduce) and copied to the host, so the step ends when every replica has",
        "single_device_how": "the same case on one device without a strategy (same threads), "
        "measured in the same worker process just after the N-device window",
    }
    if cpu:
        how["note"] = CPU_TF_NOTE
    return combine(multi, single, case, how)


def tf_device(case: Case, make_device):
    """The TensorFlow backend's device for ``devices: N``: a MirroredStrategy over N GPUs,
    or over N logical CPU devices. ``make_device(kind, name, strategy)`` is its _Device."""
    from benchbench.backends.base import Skip
    from benchbench.backends.tf_runtime import tf

    n = case.devices
    kind = case.device.split(":")[0]
    if kind == "cpu":
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:  # the runtime already started (the one-device run after the N-device one)
            pass
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise Skip(f"devices: {n}: TensorFlow's runtime already started with {have} logical CPU device(s)")
        tf.config.set_visible_devices([], "GPU")
        names = [f"/CPU:{i}" for i in range(n)]
        return make_device("cpu", "/CPU:0", tf.distribute.MirroredStrategy(
            devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device="/CPU:0")))
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < n:
        raise Skip(f"devices: {n} needs {n} GPUs; {len(gpus)} visible to TensorFlow")
    for g in gpus[:n]:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:
            pass
    return make_device("cuda", "/GPU:0", tf.distribute.MirroredStrategy(devices=[f"/GPU:{i}" for i in range(n)]))


# --- in a rank process (started by torchrun) ------------------------------------------------

def wrap_ddp(model, device, runtime: dict):
    """The torch backend's hook for a train step: DistributedDataParallel when this process is
    a rank of a process group with more than one member; the model itself otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return model
    from torch.nn.parallel import DistributedDataParallel

    runtime["ddp"] = {"world_size": dist.get_world_size(), "backend": dist.get_backend()}
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_main(argv: list[str]) -> int:
    case_path, result_path = argv[0], argv[1]
    trace_dir = argv[2] if len(argv) > 2 and argv[2] else None
    case = Case.from_dict(json.loads(Path(case_path).read_text(encoding="utf-8")))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    kind = case.device.split(":")[0]
    rank_case = case
    placement: dict = {"rank": rank, "world_size": world}
    if kind == "cpu" and case.threads is None:  # threads: all: each rank its share of the cores
        usable = sorted(os.sched_getaffinity(0))
        mine = rank_cores(local, case.devices, usable)
        os.sched_setaffinity(0, mine)
        _set_thread_env(len(mine))
        placement.update(cores=mine, shared_cores=len(usable) < case.devices)
    elif kind == "cpu":  # threads: T per rank, not pinned: a cluster executor counted T × N CPUs
        _set_thread_env(case.threads)
        placement.update(cores=None, threads_per_rank=case.threads)
    else:
        rank_case = dataclasses.replace(case, device=f"cuda:{local}")
        placement["device"] = rank_case.device
    print(f"benchbench rank {rank}/{world} pid {os.getpid()}: {placement}", flush=True)

    import torch
    import torch.distributed as dist

    if world > 1:
        if kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    record = _rank_record(rank_case, case, world, placement)
    if rank == 0:
        write_json(result_path, record.to_dict())
    if world > 1:
        if record.status != "ok":  # the other ranks may wait in a collective: torchrun ends them
            sys.stdout.flush()
            os._exit(1)
        dist.destroy_process_group()
    return 0


def _set_thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _collectives(kind: str, world: int):
    """(broadcast of rank 0's float, barrier all-reduce, gather of a picklable) for this group."""
    if world == 1:
        return (lambda v: v), (lambda: None), (lambda obj: [obj])
    import torch
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if kind == "cuda" else torch.device("cpu")
    buf = torch.zeros(1, dtype=torch.float64, device=dev)
    one = torch.ones(1, device=dev)

    def broadcast(v: float) -> float:
        buf.fill_(v)
        dist.broadcast(buf, src=0)
        return float(buf.item())  # .item() waits for the collective on a GPU too

    def barrier() -> None:
        dist.all_reduce(one)
        if kind == "cuda":
            torch.cuda.synchronize()

    def gather(obj):
        out = [None] * world
        dist.all_gather_object(out, obj)
        return out

    return broadcast, barrier, gather


def _rank_record(rank_case: Case, case: Case, world: int, placement: dict) -> Record:
    """worker.run for one rank: same backend, same timing loop, synchronised clock and steps."""
    import contextlib
    import time
    import traceback

    from benchbench import backends
    from benchbench.backends.base import Skip
    from benchbench.measure.stats import summarize
    from benchbench.measure.telemetry import Telemetry
    from benchbench.measure.timing import measure
    from benchbench.worker import one_line, host_memory

    kind = case.device.split(":")[0]
    rank0 = placement["rank"] == 0
    broadcast, barrier, gather = _collectives(kind, world)
    rec = Record(case=case.to_dict(), status="failed", started_at=utc_now())
    global_batch = case.batch_size * world
    try:
        prepared = backends.get("torch").prepare(rank_case)  # train: the backend wraps DDP (wrap_ddp)
        rec.runtime = prepared.runtime
        rec.runtime["placement"] = placement
        rec.cold_start = dict(prepared.cold_start)
        prepared.reset_peak_memory()
        step = synced_step(prepared.step, barrier)
        tel = Telemetry.for_case(rank_case, prepared.runtime) if rank0 else None
        with tel if tel is not None else contextlib.nullcontext():
            local = tel.edge_clock() if tel is not None else time.perf_counter
            window = tel.sampling if tel is not None else None
            with prepared.context():
                timing = measure(step, case.settings, clock=SyncedClock(local, broadcast), timed_window=window)
            if tel is not None:
                rec.telemetry, rec.energy = tel.report(global_batch * timing.iterations, timing.timed_wall_s)
        memory = {**host_memory(), **prepared.device_memory()}
        ranks = gather({"rank": placement["rank"], **memory, **{k: v for k, v in placement.items() if k != "rank"}})
        rec.memory = {**memory, "ranks": ranks} if world > 1 else memory
        if world > 1:
            rec.memory["note"] = "host and device figures above are rank 0's; every rank's in ranks"
        rec.samples = timing.samples
        rec.timing = timing.to_dict()
        rec.cold_start["first_iter_s"] = timing.first_iter_s
        rec.stats = summarize(timing.samples, global_batch).to_dict()
        rec.model = prepared.model_facts()
        if case.settings.profile:
            rec.runtime["profile"] = {"available": False, "reason": "profiling is not implemented for "
                                      "data-parallel (devices > 1) torch cases yet"}
        rec.status = "ok"
    except Skip as e:
        rec.status, rec.reason = "skipped", str(e)
    except Exception as e:
        rec.reason = one_line(e)
        traceback.print_exc()
    rec.ended_at = utc_now()
    return rec


if __name__ == "__main__":
    raise SystemExit(rank_main(sys.argv[1:]))
