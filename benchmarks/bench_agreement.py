"""Agreement with torch.utils.benchmark: does benchbench's median match PyTorch's own timer?

Case: torchvision resnet18 (random weights), batch 32, CPU, inference, fp32, input
(3, 224, 224), threads = every core this process may use, for both sides.

One process runs several rounds; each round times, in alternating order,

* benchbench — ``benchbench.worker.run(case)`` in-process with
  ``Settings(min_time=3, max_time=12)``: the real worker path. Figure: the record's
  median ms per batch (``stats["ms_per_batch"]``).
* torch.utils.benchmark — the same model (``torch_models.build``, same seed, eval
  mode), same input, ``Timer(stmt="model(x)", num_threads=N).blocked_autorange(
  min_run_time=3)`` median, after an untimed warm-up of 2 calls (blocked_autorange
  adds one more while sizing its block; a resnet18 forward is steady by the 2nd). benchbench's torch backend enters ``torch.inference_mode()`` once around
  its whole loop and its step is ``model(x)`` (plus a no-op sync on CPU); here the
  Timer is likewise called inside one ``torch.inference_mode()`` block, which its
  statement sees because timeit runs it in this thread (checked at start-up).
  Timer's ``num_threads`` defaults to 1, so it is passed explicitly.

Per-round ratio = benchbench median / Timer median; PASS when the median ratio over
the rounds lies in 0.97–1.03. The ``other`` column is the CPU (cores) other processes
used during each side; rounds marked ``*`` are left out when 2 quiet rounds remain.

    python benchmarks/bench_agreement.py [--rounds 3] [--check]

Exit status is 0 unless ``--check`` is given and the result is FAIL (then 1).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.utils.benchmark import Timer

from benchbench.case import Case, Settings
from benchbench.models.torch_models import build
from benchbench.worker import run

from _common import OtherLoad, fmt_load, verdict

LOW, HIGH = 0.97, 1.03
MODEL, BATCH, SHAPE, SEED = "resnet18", 32, (3, 224, 224), 0
MIN_TIME, MAX_TIME = 3.0, 12.0


def bench_benchbench(threads: int) -> tuple[float, str]:
    """benchbench's median ms/batch, and how its loop ended."""
    settings = Settings(min_time=MIN_TIME, max_time=MAX_TIME, seed=SEED)
    case = Case("torch", MODEL, BATCH, "cpu", "inference", "fp32", SHAPE, threads=threads, settings=settings)
    rec = run(case)
    if rec.status != "ok":
        raise SystemExit(f"benchbench case {rec.status}: {rec.reason}")
    t = rec.timing
    return rec.stats["ms_per_batch"], f"n={rec.stats['n']}×{t['block_size']} {t['stop_reason']}"


def bench_timer(threads: int) -> tuple[float, str]:
    """torch.utils.benchmark's median ms/batch over the same forward call."""
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = build(MODEL, SHAPE).eval()
    x = torch.randn((BATCH, *SHAPE), generator=torch.Generator().manual_seed(SEED))
    timer = Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        for _ in range(2):  # untimed warm-up
            model(x)
        m = timer.blocked_autorange(min_run_time=MIN_TIME)
    return m.median * 1e3, f"n={len(m.times)}×{m.number_per_run}"


def check_timer_sees_inference_mode() -> None:
    probe = Timer(stmt="assert torch.is_inference_mode_enabled()", num_threads=1)
    with torch.inference_mode():
        probe.timeit(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    args = ap.parse_args(argv)

    check_timer_sees_inference_mode()
    threads = len(os.sched_getaffinity(0))
    print(f"{MODEL} bs{BATCH} cpu inference fp32, threads={threads}, torch {torch.__version__}, {args.rounds} rounds")
    print(
        f"{'round':>5}  {'order':<17} {'benchbench ms':>13} {'Timer ms':>9} {'ratio':>6}  "
        f"{'other':<11} samples (benchbench | Timer)"
    )
    ratios, busy = [], []
    for r in range(args.rounds):
        sides = {"benchbench": bench_benchbench, "timer": bench_timer}
        order = ["benchbench", "timer"] if r % 2 == 0 else ["timer", "benchbench"]
        got, load = {}, {}
        for name in order:
            with OtherLoad() as load[name]:
                got[name] = sides[name](threads)
        ratio = got["benchbench"][0] / got["timer"][0]
        other, disturbed = fmt_load(load["benchbench"].cores, load["timer"].cores)
        ratios.append(ratio)
        busy.append(disturbed)
        print(
            f"{r + 1:>5}  {'>'.join(order):<17} {got['benchbench'][0]:>13.1f} "
            f"{got['timer'][0]:>9.1f} {ratio:>6.3f}  {other:<11} "
            f"{got['benchbench'][1]} | {got['timer'][1]}",
            flush=True,
        )

    ok = verdict("agreement", ratios, busy, LOW, HIGH, min_quiet=2)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
