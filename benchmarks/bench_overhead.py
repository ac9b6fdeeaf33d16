"""Harness overhead: does benchbench report the throughput a bare loop sees?

Case: seed_mlp, batch 32, CPU, inference, fp32, input (10,), threads = every core
this process may use. The forward pass is ~30 µs, so any per-iteration cost the
harness adds (the step closure, the block loop, the clock) shows up here first.

One process runs several rounds; each round times, in alternating order,

* benchbench — ``benchbench.worker.run(case)`` in-process: the real worker path
  (backend prepare, warm-up, blocked timed loop, statistics). Figure: the record's
  ``stats["throughput"]`` (samples/s over the timed window).
* bare — the same model (``torch_models.build``, same seed), same input, same
  ``torch.set_num_threads``, ``model(x)`` under ``torch.inference_mode()`` in a plain
  ``for`` loop between two ``time.perf_counter()`` calls, after an untimed warm-up.

Per-round ratio = benchbench / bare throughput; PASS when the median ratio over the
rounds lies in 0.97–1.03. The ``other`` column is the CPU (in cores) that other
processes used during each side; rounds marked ``*`` were disturbed and are left out
of the median when at least 4 quiet rounds remain (see ``_common.py``).

    python benchmarks/bench_overhead.py [--rounds 7] [--seconds 1.5] [--check]

Exit status is 0 unless ``--check`` is given and the result is FAIL (then 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from benchbench.case import Case, Settings
from benchbench.models.torch_models import build
from benchbench.worker import run

from _common import OtherLoad, fmt_load, verdict

LOW, HIGH = 0.97, 1.03
BATCH, SHAPE, SEED = 32, (10,), 0


def bench_benchbench(threads: int, seconds: float) -> float:
    """samples/s reported by the real worker path (in-process)."""
    settings = Settings(min_time=seconds, max_time=seconds, seed=SEED)
    case = Case("torch", "seed_mlp", BATCH, "cpu", "inference", "fp32", SHAPE, threads=threads, settings=settings)
    rec = run(case)
    if rec.status != "ok":
        raise SystemExit(f"benchbench case {rec.status}: {rec.reason}")
    return rec.stats["throughput"]


def bench_bare(threads: int, seconds: float) -> float:
    """samples/s of a bare perf_counter loop around the same forward call."""
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = build("seed_mlp", SHAPE).eval()
    x = torch.randn((BATCH, *SHAPE), generator=torch.Generator().manual_seed(SEED))
    with torch.inference_mode():
        t0 = time.perf_counter()  # untimed warm-up, also sizes the timed loop
        n_warm = 0
        while time.perf_counter() - t0 < 0.2:
            for _ in range(100):
                model(x)
            n_warm += 100
        iters = max(1, int(seconds * n_warm / (time.perf_counter() - t0)))
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        elapsed = time.perf_counter() - t0
    return BATCH * iters / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per side per round")
    ap.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    args = ap.parse_args(argv)

    threads = len(os.sched_getaffinity(0))
    print(
        f"seed_mlp bs{BATCH} cpu inference fp32, threads={threads}, torch {torch.__version__}, "
        f"{args.rounds} rounds × {args.seconds:g} s per side"
    )
    print(f"{'round':>5}  {'order':<16} {'benchbench/s':>13} {'bare/s':>13} {'ratio':>7}  other")
    ratios, busy = [], []
    for r in range(args.rounds):
        sides = {"benchbench": bench_benchbench, "bare": bench_bare}
        order = ["benchbench", "bare"] if r % 2 == 0 else ["bare", "benchbench"]
        got, load = {}, {}
        for name in order:
            with OtherLoad() as load[name]:
                got[name] = sides[name](threads, args.seconds)
        ratio = got["benchbench"] / got["bare"]
        other, disturbed = fmt_load(load["benchbench"].cores, load["bare"].cores)
        ratios.append(ratio)
        busy.append(disturbed)
        print(
            f"{r + 1:>5}  {'>'.join(order):<16} {got['benchbench']:>13,.0f} "
            f"{got['bare']:>13,.0f} {ratio:>7.3f}  {other}",
            flush=True,
        )

    ok = verdict("overhead", ratios, busy, LOW, HIGH, min_quiet=4)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
