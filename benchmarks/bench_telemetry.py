"""Telemetry overhead: does sampling at 100 Hz change the throughput benchbench reports?

Case: seed_cnn, batch 8, input 3×64×64, CPU, inference, fp32, threads = every core this
process may use. Both sides run the real worker path in this process
(``benchbench.worker.run(case)``: backend prepare, warm-up, the timed loop, statistics),
the same case with the same settings except ``telemetry_hz``:

* on — 100 Hz (the maximum): the sampler thread polls every source this machine has
  (the worker's and the machine's CPU time; RAPL and NVML where present) 100 times a
  second, from just before the first iteration to just after the timed loop;
* off — 0: no sampler thread at all.

One untimed round first runs both sides and is thrown away (the first case in a process
pays one-time costs: allocator growth, oneDNN primitive caches). Then each round runs
both, in alternating order; per-round ratio = on / off throughput
(``stats["throughput"]``, samples/s over the timed window). PASS when the median ratio
over the rounds lies in 0.99–1.01. The ``other`` column is the CPU (in cores) that other
processes used during each side; rounds marked ``*`` were disturbed and are left out
of the median when at least 4 quiet rounds remain (see ``_common.py``).

    python benchmarks/bench_telemetry.py [--rounds 7] [--seconds 2] [--threads N] [--hz 100] [--check]

``--paired N`` measures the same thing with less noise: on this VM two workers of the
same case differ by up to ±15% (allocation, thread placement), far more than the effect
sought. So one case is prepared once, and its step is timed in N pairs of short blocks
(``--seconds`` each), one with the sampler, one without, in ABBA order — each block
through the worker's own path (``Telemetry.for_case``, ``measure`` with the sampler as
the timed window, ``Telemetry.report``). Per-pair ratio = on / off throughput; the verdict
is on the median over the quiet pairs.

    python benchmarks/bench_telemetry.py --paired 30 --seconds 1

Exit status is 0 unless ``--check`` is given and the result is FAIL (then 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from benchbench import backends
from benchbench.case import Case, Settings
from benchbench.measure.stats import median_ci
from benchbench.measure.telemetry import Telemetry
from benchbench.measure.timing import measure
from benchbench.worker import run

from _common import OtherLoad, fmt_load, verdict

LOW, HIGH = 0.99, 1.01
MODEL, BATCH, SHAPE, SEED = "seed_cnn", 8, (3, 64, 64), 0
HZ_ON = 100.0


def side(hz: float, threads: int, seconds: float):
    settings = Settings(min_time=seconds, max_time=seconds, seed=SEED, telemetry_hz=hz)
    case = Case("torch", MODEL, BATCH, "cpu", "inference", "fp32", SHAPE, threads=threads, settings=settings)
    rec = run(case)
    if rec.status != "ok":
        raise SystemExit(f"case {rec.status}: {rec.reason}")
    return rec


def paired(pairs: int, threads: int, seconds: float, hz_on: float) -> bool:
    settings = Settings(min_time=seconds, max_time=seconds, warmup_iters=2, warmup_max_time=2.0, seed=SEED)
    case = Case("torch", MODEL, BATCH, "cpu", "inference", "fp32", SHAPE, threads=threads, settings=settings)
    prepared = backends.get("torch").prepare(case)

    def block(hz: float):
        c = dataclasses.replace(case, settings=dataclasses.replace(settings, telemetry_hz=hz))
        with Telemetry.for_case(c, prepared.runtime) as tel, prepared.context():
            timing = measure(prepared.step, c.settings, clock=tel.edge_clock(), timed_window=tel.sampling)
            telemetry, _ = tel.report(BATCH * timing.iterations, timing.timed_wall_s)
        return BATCH * timing.iterations / timing.timed_wall_s, telemetry

    print(f"paired blocks in one prepared case: {pairs} pairs × {seconds:g} s per block, ABBA order")
    print(f"{'pair':>5}  {'order':<8} {'on/s':>10} {'off/s':>10} {'ratio':>7}  {'ticks':>5} {'missed':>6}  other")
    block(hz_on), block(0.0)  # thrown away
    ratios, busy = [], []
    for r in range(pairs):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        got, load = {}, {}
        for name in order:
            with OtherLoad() as load[name]:
                got[name] = block(hz_on if name == "on" else 0.0)
        (on, tel), (off, _) = got["on"], got["off"]
        other, disturbed = fmt_load(load["on"].cores, load["off"].cores)
        ratios.append(on / off)
        busy.append(disturbed)
        print(
            f"{r + 1:>5}  {'>'.join(order):<8} {on:>10,.0f} {off:>10,.0f} {on / off:>7.3f}  "
            f"{tel['ticks_in_window']:>5} {tel['missed_ticks']:>6}  {other}",
            flush=True,
        )
    q = sorted(r for r, b in zip(ratios, busy) if not b) or sorted(ratios)
    ci = median_ci(q)
    print(
        f"pair ratios ({len(q)} used): min {q[0]:.3f}, quartiles {q[len(q) // 4]:.3f} / {q[(3 * len(q)) // 4]:.3f}, "
        f"max {q[-1]:.3f}; 95% CI of the median " + (f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "n/a (too few pairs)")
    )
    return verdict(f"telemetry {hz_on:g} Hz / off (paired blocks)", ratios, busy, LOW, HIGH, min_quiet=8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per side per round")
    ap.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads (default: every core; fewer leaves the sampler a core of its own)",
    )
    ap.add_argument("--hz", type=float, default=HZ_ON, help="sampler rate of the 'on' side (default 100, the maximum)")
    ap.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="N pairs of on/off blocks in one prepared case instead of whole workers",
    )
    args = ap.parse_args(argv)
    hz_on = args.hz

    threads = args.threads or len(os.sched_getaffinity(0))
    rounds = "" if args.paired else f", {args.rounds} rounds × {args.seconds:g} s per side"
    print(f"{MODEL} bs{BATCH} input {'×'.join(map(str, SHAPE))} cpu inference fp32, threads={threads}, "
          f"torch {torch.__version__}{rounds}; telemetry {hz_on:g} Hz vs off")  # fmt: skip
    if args.paired:
        ok = paired(args.paired, threads, args.seconds, hz_on)
        return 1 if (args.check and not ok) else 0
    print(f"{'round':>5}  {'order':<8} {'on/s':>10} {'off/s':>10} {'ratio':>7}  {'ticks':>5} {'missed':>6}  other")
    side(hz_on, threads, 0.5), side(0.0, threads, 0.5)  # the thrown-away warm-up round
    ratios, busy, last_on = [], [], None
    for r in range(args.rounds):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        got, load = {}, {}
        for name in order:
            with OtherLoad() as load[name]:
                got[name] = side(hz_on if name == "on" else 0.0, threads, args.seconds)
        on, off = got["on"], got["off"]
        ratio = on.stats["throughput"] / off.stats["throughput"]
        other, disturbed = fmt_load(load["on"].cores, load["off"].cores)
        ratios.append(ratio)
        busy.append(disturbed)
        last_on = on
        print(f"{r + 1:>5}  {'>'.join(order):<8} {on.stats['throughput']:>10,.0f} {off.stats['throughput']:>10,.0f} "
              f"{ratio:>7.3f}  {on.telemetry['ticks_in_window']:>5} {on.telemetry['missed_ticks']:>6}  {other}",
              flush=True)  # fmt: skip

    t = last_on.telemetry
    share = t["sampler_cpu_s"] / t["sampler_span_s"] * 100
    print(
        f"sampler thread's own CPU time (last 'on' side): {t['sampler_cpu_s'] * 1e3:.1f} ms over "
        f"{t['sampler_span_s']:.2f} s = {share:.2f}% of one core"
    )
    sources = ", ".join(f"{k} ({v['status']})" for k, v in t["sources"].items())
    print(
        f"sampler (last 'on' side): {t['achieved_hz']:.1f} Hz achieved over {t['window_s']:.2f} s; sources: {sources}"
    )
    cpu = last_on.energy.get("cpu", {})
    print(f"energy (last 'on' side): cpu {cpu.get('source')}"
          + (f": {cpu['avg_w']:.1f} W, {cpu['j_per_sample'] * 1e3:.3f} mJ/sample" if cpu.get("energy_j")
             else f" ({cpu.get('reason')})"))  # fmt: skip
    ok = verdict(f"telemetry {hz_on:g} Hz / off", ratios, busy, LOW, HIGH, min_quiet=4)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
