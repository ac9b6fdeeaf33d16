"""PyTorch against TensorFlow on this machine: the paired models, measured by benchbench.

Cases: each model of ``--models`` (torchvision names; on tensorflow the same
architecture from keras.applications, see ``registry.TORCHVISION_TO_KERAS``), batch 8,
CPU, inference, fp32, input (3, 224, 224) — NCHW for torch, NHWC for TensorFlow —
threads = every core this process may use on both sides (TensorFlow's inter-op pool as
the backend sets it: PyTorch's default count, capped at the intra-op threads).

Each case runs as ``benchbench run`` runs it: in its own worker process
(``executors.local.run_case``), so the two frameworks never share a process (importing
torchvision after TensorFlow segfaults here, and two thread pools in one process would
disturb each other). One invocation runs several rounds; in each, every model runs on
both frameworks, the order alternating from round to round. Figures: the records'
``stats["throughput"]`` (samples/s); per model the median over rounds of each and of
the per-round ratio tensorflow / torch (> 1: TensorFlow faster). Parameter counts and
FLOPs per sample come from the same records (both count convolutions and matmuls,
2 × MACs). The ``other`` column is the CPU (cores) other processes used while each case
ran (its worker's own CPU excluded); ``*`` marks a disturbed case.

    python benchmarks/bench_frameworks.py [--rounds 3] [--models resnet50,mobilenet_v2,...]

Prints figures only (no verdict); exit status 1 if a case did not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchbench.case import Case, Settings
from benchbench.executors import local

import _common
from _common import fmt_load

MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny")
BATCH, SHAPE = 8, (3, 224, 224)
SETTINGS = Settings(warmup_iters=2, min_time=2.0, max_time=6.0, min_iters=8, timeout=600)
FRAMEWORKS = ("torch", "tensorflow")


class WorkerLoad(_common.OtherLoad):
    """Other processes' CPU while a case ran, not counting this process or its (waited-for)
    worker: ``OtherLoad`` counts only this process as its own."""

    def __enter__(self):
        self._t_children = _children_cpu_s()
        return super().__enter__()

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        super().__exit__(*exc)
        if self.cores is not None and wall > 0:
            self.cores = max(0.0, self.cores - (_children_cpu_s() - self._t_children) / wall)
        return False


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run_one(framework: str, model: str, work: Path):
    case = Case(framework, model, BATCH, "cpu", "inference", "fp32", SHAPE, settings=SETTINGS)
    with WorkerLoad() as load:
        rec = local.run_case(case, work / ".work", work / f"{case.case_id}.log")
    return rec, load.cores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated torchvision names")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    threads = len(os.sched_getaffinity(0))
    print(f"bs{BATCH} cpu inference fp32, input 3×224×224 (tensorflow: NHWC), threads={threads}, "
          f"one worker process per case, {args.rounds} rounds")  # fmt: skip
    print(f"{'round':>5}  {'model':<16} {'order':<20} {'torch/s':>9} {'tf/s':>9} {'tf/torch':>8}  other")
    got: dict[tuple[str, str], list[float]] = {}
    ratios: dict[str, list[float]] = {m: [] for m in models}
    facts: dict[tuple[str, str], dict] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-frameworks-") as tmp:
        for r in range(args.rounds):
            for i, model in enumerate(models):
                order = FRAMEWORKS if (r + i) % 2 == 0 else FRAMEWORKS[::-1]
                tput, load = {}, {}
                for fw in order:
                    rec, load[fw] = run_one(fw, model, Path(tmp))
                    if rec.status != "ok":
                        print(f"{fw}/{model}: {rec.status}: {rec.reason}", file=sys.stderr)
                        failed = True
                        continue
                    tput[fw] = rec.stats["throughput"]
                    got.setdefault((model, fw), []).append(tput[fw])
                    facts[model, fw] = rec.model
                other, _ = fmt_load(load.get("torch"), load.get("tensorflow"))
                if len(tput) == 2:
                    ratios[model].append(tput["tensorflow"] / tput["torch"])
                    print(
                        f"{r + 1:>5}  {model:<16} {'>'.join(order):<20} {tput['torch']:>9.1f} "
                        f"{tput['tensorflow']:>9.1f} {ratios[model][-1]:>8.3f}  {other}",
                        flush=True,
                    )

    print()
    print(f"median over {args.rounds} rounds, samples/s (bs{BATCH}, cpu, inference, fp32)")
    print(f"{'model':<16} {'torch':>9} {'tensorflow':>11} {'tf/torch':>9}  {'params torch / tf':>23}  "
          f"{'GFLOPs/sample torch / tf':>26}")  # fmt: skip
    for model in models:
        if not ratios[model]:
            print(f"{model:<16} (did not run on both frameworks)")
            continue
        t, f = (statistics.median(got[model, fw]) for fw in FRAMEWORKS)
        pt, pf = (facts[model, fw]["params"] for fw in FRAMEWORKS)
        ft, ff = (facts[model, fw].get("flops_per_sample") for fw in FRAMEWORKS)
        flops = "/".join("n/a" if v is None else f"{v / 1e9:.3f}" for v in (ft, ff))
        print(
            f"{model:<16} {t:>9.1f} {f:>11.1f} {statistics.median(ratios[model]):>9.3f}  "
            f"{pt:>11,} / {pf:>11,}  {flops:>26}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
