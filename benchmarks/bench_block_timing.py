"""Single-iteration timing against block means: what the p99 of a short iteration really is.

Case: seed_mlp, batch 1, CPU, inference, fp32, input (10,) — about 15 µs an iteration. Each
round times it twice through the real worker path (``benchbench.worker.run``, in-process),
in alternating order:

* single — today's rule (``measure.timing.choose_block_size``): an iteration of 10 µs or more
  is timed on its own (a clock reading costs ~0.1 µs), so the samples are iterations and their
  p99 is a latency p99;
* blocks — the rule before issue 17 (blocks of at least 1 ms: ~50–70 iterations here), so each
  sample is a block mean and its "p99" is the p99 of block means.

Per round: the block size, p50 and p99 of each side, the clock's cost as the p50 ratio
single/blocks (PASS when the median ratio lies in 0.97–1.03: timing single iterations costs
nothing measurable) and the p99 ratio single/blocks — how far the p99 of block means is from
the latency p99, either way: averaging ~50 iterations can hide the slow ones (an understated
tail), while one preemption of a few ms inflates a whole block mean, and 1% of the blocks
is far more often hit than 1% of the iterations (an overstated tail on a busy machine). ``other``: CPU cores other processes used during each side (rounds over
``BUSY_CORES`` are marked ``*`` and left out when at least 3 quiet rounds remain).

    python benchmarks/bench_block_timing.py [--rounds 5] [--seconds 2] [--threads 1] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from benchbench.case import Case, Settings
from benchbench.measure import timing
from benchbench.worker import run

from _common import OtherLoad, fmt_load, verdict

OLD_MIN_BLOCK_TIME = 1e-3  # s: the block rule before issue 17
LOW, HIGH = 0.97, 1.03


def measure_side(side: str, threads: int, seconds: float) -> dict:
    """The record's block size, p50 and p99 (s) for one side."""
    settings = Settings(min_time=seconds, max_time=seconds, processes=1, telemetry_hz=0, target_rel_ci=1e-6)
    case = Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,), threads=threads, settings=settings)
    rule = timing.choose_block_size
    if side == "blocks":
        timing.choose_block_size = lambda per_iter_s: rule(per_iter_s, OLD_MIN_BLOCK_TIME)  # type: ignore[assignment]
    try:
        rec = run(case)
    finally:
        timing.choose_block_size = rule  # type: ignore[assignment]
    if rec.status != "ok":
        raise SystemExit(f"{side}: case {rec.status}: {rec.reason}")
    return {"block": rec.timing["block_size"], "p50": rec.stats["p50"], "p99": rec.stats["p99"], "n": rec.stats["n"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per side per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="exit 1 when the p50 ratio is outside 0.97–1.03")
    args = ap.parse_args(argv)

    print(
        f"seed_mlp bs1 cpu inference fp32, threads={args.threads}, torch {torch.__version__}, "
        f"{args.rounds} rounds × {args.seconds:g} s per side"
    )
    head = f"{'round':>5}  {'order':<14} {'single p50/p99 µs':>19} {'blocks ×B p50/p99 µs':>24} {'p50 s/b':>8} {'p99 s/b':>8}  other"
    print(head)
    p50s, p99s, busy = [], [], []
    for r in range(args.rounds):
        order = ["single", "blocks"] if r % 2 == 0 else ["blocks", "single"]
        got, load = {}, {}
        for side in order:
            with OtherLoad() as load[side]:
                got[side] = measure_side(side, args.threads, args.seconds)
        s, b = got["single"], got["blocks"]
        assert s["block"] == 1, s  # ~15 µs: timed one by one under today's rule
        p50s.append(s["p50"] / b["p50"])
        p99s.append(s["p99"] / b["p99"])
        other, disturbed = fmt_load(load["single"].cores, load["blocks"].cores)
        busy.append(disturbed)
        print(
            f"{r + 1:>5}  {'>'.join(order):<14} {s['p50'] * 1e6:>9.2f}/{s['p99'] * 1e6:<9.2f} "
            f"×{b['block']:<4} {b['p50'] * 1e6:>8.2f}/{b['p99'] * 1e6:<9.2f} {p50s[-1]:>8.3f} {p99s[-1]:>8.2f}  {other}",
            flush=True,
        )
    quiet = [x for x, d in zip(p99s, busy) if not d] or p99s
    print(
        f"p99 of single iterations / p99 of block means: median {statistics.median(quiet):.2f}× "
        f"over {len(quiet)} round(s) (1.00 would mean block means gave the latency p99)"
    )
    ok = verdict("single-iteration timing cost (p50 single/blocks)", p50s, busy, LOW, HIGH, min_quiet=3)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
