"""A torchrun rank of a data-parallel torch case (``devices: N``):

    python -m torch.distributed.run --standalone --nproc-per-node N --module benchbench.worker.rank \\
        CASE.json RESULT.json [TRACE_DIR]

(:func:`benchbench.worker.data_parallel.run` starts it.) The rank pins itself to its share
of the cores (or its GPU), joins the process group and measures through the worker's one
path, :func:`benchbench.worker.core.measure_case`, passing in what differs in a rank: its
device, the lock-step timing (:func:`benchbench.worker.data_parallel.lockstep_measure`: warm-up
on rank 0's broadcast clock, a planned window opened and closed by a barrier, nothing
exchanged inside it), telemetry on rank 0 only, every rank's memory figures and its placement.
Rank 0 writes the record. torchrun with one rank (the one-device baseline) runs the same code,
its collectives no-ops.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from pathlib import Path

from benchbench.case import Case
from benchbench.results import write_json
from benchbench.worker import core
from benchbench.worker.data_parallel import lockstep_measure, one_device_copy, rank_cores


def rank_main(argv: list[str]) -> int:
    """One rank: ``CASE.json RESULT.json [TRACE_DIR]``; rank 0 writes the record."""
    case_path, result_path = argv[0], argv[1]
    trace_dir = argv[2] if len(argv) > 2 and argv[2] else None
    case = Case.from_dict(json.loads(Path(case_path).read_text(encoding="utf-8")))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    kind = case.device.split(":")[0]
    device = None
    placement: dict = {"rank": rank, "world_size": world, "pid": os.getpid()}
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
        device = f"cuda:{local}"
        placement["device"] = device
    print(f"benchbench rank {rank}/{world} pid {os.getpid()}: {placement}", flush=True)

    import torch
    import torch.distributed as dist

    if world > 1:
        if kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    # torchrun with one rank measures the baseline (on rank 0's share): the one-device copy
    measured = case if world == case.devices else one_device_copy(case)
    broadcast, barrier, gather = _collectives(kind, world)

    def memory(mine: dict) -> dict:
        ranks = gather({"rank": rank, **mine, **{k: v for k, v in placement.items() if k != "rank"}})
        if world == 1:
            return mine
        return {**mine, "ranks": ranks, "note": "host and device figures above are rank 0's; every rank's in ranks"}

    with _rank_trace_dir(rank, trace_dir, measured) as where:
        record = core.measure_case(
            measured,
            trace_dir=where,
            device=device,
            telemetry=rank == 0,
            # every rank, and the one-device baseline (a world of one): synchronised at the window's edges
            timer=functools.partial(lockstep_measure, broadcast=broadcast, barrier=barrier),
            memory=memory,
            runtime={"placement": placement},
        )
    if rank == 0:
        write_json(result_path, record.to_dict())
    if world > 1:
        if record.status != "ok":  # the other ranks may wait in a collective: torchrun ends them
            sys.stdout.flush()
            os._exit(1)
        dist.destroy_process_group()
    return 0


@contextlib.contextmanager
def _rank_trace_dir(rank: int, trace_dir: str | None, case: Case):
    """Where a rank's trace goes: rank 0's in the run's profiles; the other ranks run the same
    profiled window (its steps all-reduce with rank 0's) and their traces are dropped."""
    if rank == 0 or trace_dir is None or not case.settings.profile:
        yield trace_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"benchbench-rank{rank}-") as tmp:
        yield tmp


def _set_thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _collectives(kind: str, world: int):
    """(broadcast of rank 0's float, barrier, gather of a picklable) for this group: the barrier
    is an all-reduce of one value (and, on GPUs, a device synchronisation), used only at the
    edges of the timed window."""
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


if __name__ == "__main__":
    raise SystemExit(rank_main(sys.argv[1:]))
