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
  gradients all-reduced in backward); inference ranks run independently. Each rank times with
  :func:`lockstep_measure`: the warm-up by :func:`benchbench.measure.timing.measure`'s rules on
  rank 0's broadcast clock (untimed), then a window planned alike on every rank, opened and
  closed by a barrier, with nothing exchanged inside it — so every rank runs the same steps,
  and the window ends when the slowest rank has. Rank 0 samples telemetry, profiles (every
  rank runs the profiled steps) and writes the record. On CPUs with ``threads: all`` each rank is pinned to its own share of the
  usable cores (``cores // N``; fewer cores than ranks: ranks share, the record says so);
  with ``threads: T`` each rank runs T threads, unpinned. The one-device baseline is
  torchrun with one rank, on rank 0's share, through the same :func:`lockstep_measure`.
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

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from benchbench.case import Case, Settings
from benchbench.measure.stats import rel_ci_halfwidth
from benchbench.measure.timing import Timing, measure
from benchbench.results import Record, utc_now

STEP_SYNC_NOTE = (
    "synchronised at the timed window's edges only: warm-up on rank 0's broadcast clock, then a window "
    "planned alike on every rank, opened and closed by a barrier, nothing exchanged inside it (in train "
    "mode DDP's gradient all-reduce is the step's own); the one-device baseline runs the same code"
)
THROUGHPUT_NOTE = (
    "throughput_global and throughput_single_device: samples per step × timed steps / the timed "
    "window's wall time (edge to edge: the slowest rank's end included), the same formula on both sides; "
    "stats are rank 0's own samples"
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


WINDOW_GROWTH = 0.5  # a further window adds half the samples so far (the CI is checked at its edge)


def first_window(per_block: float, s: Settings) -> int:
    """Blocks in the first timed window: ``min_time`` of them at ``per_block`` s each, within
    ``max_time`` — but at least ``min_iters`` (which wins over ``max_time``, as in
    :func:`measure`) and at most ``max_iters``. A function of its arguments alone: every rank
    plans the same window."""
    n = math.ceil(s.min_time / per_block) if per_block > 0 else s.min_iters
    if per_block > 0:
        n = min(n, math.floor(s.max_time / per_block))
    return max(1, min(max(n, s.min_iters), s.max_iters))


def lockstep_measure(
    step: Callable[[], None],
    settings: Settings,
    clock: Callable[[], float] = time.perf_counter,
    timed_window: Callable[[], AbstractContextManager] | None = None,
    *,
    broadcast: Callable[[float], float],
    barrier: Callable[[], None],
) -> Timing:
    """The timing of a data-parallel rank — and of the one-device baseline, with a world of one
    (``broadcast`` the identity, ``barrier`` a no-op): the same code, so the two pay the same costs.

    1. The first iteration, the warm-up and one block run by :func:`measure`'s own rules on rank
       0's clock, broadcast (:class:`SyncedClock`; untimed): every rank takes the same decisions
       (warm-up length, block size) and learns rank 0's time per block.
    2. The timed window is planned from there, the same on every rank: ``min_time`` of blocks, at
       least ``min_iters``, within ``max_iters`` and ``max_time``.
    3. A barrier opens the window and one closes it; in between each rank runs its steps and reads
       its own clock, with no collective of its own (in train mode DDP's gradient all-reduce is the
       work itself). The window's wall time runs from the opening barrier to the closing one: it
       ends when the slowest rank has.
    4. At the closing edge rank 0 decides (its samples, ``target_rel_ci``, ``max_time``) whether
       another window follows, and how long, and broadcasts that: the only exchange besides the
       barriers. ``timed_wall_s`` sums the windows' edge-to-edge times."""
    s = settings
    plan = measure(
        step,
        dataclasses.replace(s, min_time=0.0, min_iters=1, max_iters=1, stop_on_ci=False),
        clock=SyncedClock(clock, broadcast),
    )
    block = plan.block_size
    per_block = plan.samples[-1] * block  # rank 0's, broadcast: the same figure on every rank
    samples: list[float] = []
    wall = 0.0
    n = first_window(per_block, s)
    stop = ""
    with timed_window() if timed_window is not None else contextlib.nullcontext():
        while n > 0:
            barrier()
            start = clock()
            for _ in range(n):
                b0 = clock()
                for _ in range(block):
                    step()
                samples.append((clock() - b0) / block)
            barrier()
            wall += clock() - start
            stop, more = _next_window(samples, wall, s)
            n = int(broadcast(float(more)))  # rank 0's decision, at the window's edge
    rel = rel_ci_halfwidth(sorted(samples))
    return Timing(
        samples=samples,
        block_size=block,
        first_iter_s=plan.first_iter_s,
        warmup_iters=plan.warmup_iters + plan.iterations,  # the planning block is warm-up too
        warmup_s=plan.warmup_s + plan.timed_wall_s,
        warmup_settled=plan.warmup_settled,
        timed_wall_s=wall,
        iterations=len(samples) * block,
        stop_reason=stop,
        target_met=rel is not None and rel <= s.target_rel_ci,
        final_rel_ci=rel,
    )


def _next_window(samples: list[float], wall: float, s: Settings) -> tuple[str, int]:
    """(stop reason, 0) or ("", blocks of the next window), from this rank's samples (rank 0's
    decision is the one broadcast)."""
    n = len(samples)
    per_block = wall / n
    if wall < s.min_time and n < s.max_iters and per_block > 0:  # planned from a slower block: top up
        return "", max(1, min(math.ceil((s.min_time - wall) / per_block), s.max_iters - n))
    if not s.stop_on_ci:
        return "share_done", 0  # one process's share of a case measured in several
    rel = rel_ci_halfwidth(sorted(samples))
    if rel is not None and rel <= s.target_rel_ci:
        return "ci_target_met", 0
    if n >= s.max_iters:
        return "max_iters", 0
    if wall >= s.max_time:
        return "max_time", 0
    more = min(max(1, math.ceil(n * WINDOW_GROWTH)), s.max_iters - n)
    more = min(more, max(1, math.floor((s.max_time - wall) / per_block)))
    return "", more


def skip_reason(case: Case, gpu_count: Callable[[], int] | None = None) -> str | None:
    """Why a ``devices: N`` case cannot run here (None: it can)."""
    kind, _, index = case.device.partition(":")
    n = case.devices
    if kind in ("tpu", "xla"):
        where = "a TPU" if kind == "tpu" else "XLA's CPU device"
        return f"devices: {n} on {where} is not implemented (data-parallel cases run on cpu or cuda)"
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


def window_throughput(rec: Record, samples_per_step: int) -> float | None:
    """Samples per second over a record's timed window: ``samples_per_step`` × its timed
    iterations / the window's wall time (for ranks: edge to edge, the slowest rank included);
    the record's own throughput where its timing says neither."""
    timing = rec.timing or {}
    iters, wall = timing.get("iterations"), timing.get("timed_wall_s")
    if isinstance(iters, (int, float)) and isinstance(wall, (int, float)) and iters > 0 and wall > 0:
        return samples_per_step * iters / wall
    return (rec.stats or {}).get("throughput")


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
        base = window_throughput(single, case.batch_size)
    glob = window_throughput(multi, case.batch_size * case.devices) if multi.status == "ok" else None
    dp.update(scaling(glob, base, case.devices, reason))
    dp["throughput_note"] = THROUGHPUT_NOTE
    if single is not None:
        st = single.stats or {}
        dp["single_device"] = {
            "status": single.status,
            "reason": single.reason,
            "median_s": st.get("median"),
            "throughput": base,  # over its timed window, as throughput_single_device
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
        "GPU with the same per-device batch, timed by the same code as the ranks (lockstep_measure), "
        "measured in the same job just before the N-device window",
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
