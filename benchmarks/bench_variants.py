"""Compression and precision variants on this CPU: what each buys and what it costs.

Cases: each model of ``--models`` × each variant of ``--variants``, batch 8, CPU,
inference, input 3×224×224, threads = every core this process may use. Each case runs
as ``benchbench run`` runs it, in its own worker process (``executors.local.run_case``);
one invocation runs ``--rounds`` rounds, the variant order reversed every other round.
Figures, all from the records: throughput (``stats["throughput"]``, samples/s; median
over rounds) and the per-round speed-up over fp32 (median); saved size
(``model["serialized_bytes"]``), parameters and the non-zero share, and fidelity against
fp32 on the fixed seeded batch of 64 (``fidelity["top1_agreement"]``, ``max_abs_diff``).
The ``other`` column: CPU cores other processes used while the case ran (``*``: busy).

    python benchmarks/bench_variants.py [--rounds 2] [--models resnet18,seed_cnn] [--variants fp32,bf16,...]

Prints figures only (no verdict); exit status 1 if a case did not run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchbench.case import Case, Settings
from benchbench.executors import local

from _common import fmt_load
from bench_frameworks import WorkerLoad

MODELS = ("resnet18", "seed_cnn")
VARIANTS = ("fp32", "bf16", "int8_dynamic", "int8_static", "prune:0.5", "channel_prune")
BATCH, SHAPE = 8, (3, 224, 224)
SETTINGS = Settings(warmup_iters=2, min_time=2.0, max_time=6.0, min_iters=8, timeout=900, telemetry_hz=0)


def run_one(model: str, variant: str, work: Path):
    case = Case("torch", model, BATCH, "cpu", "inference", variant, SHAPE, settings=SETTINGS)
    with WorkerLoad() as load:
        rec = local.run_case(case, work / ".work", work / f"{case.case_id}.log")
    return rec, load.cores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; fp32 first (the reference)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    print(f"torch bs{BATCH} cpu inference, input 3×224×224, one worker process per case, {args.rounds} rounds")
    thr: dict[tuple[str, str], list[float]] = {}
    speedup: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], object] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-variants-") as tmp:
        for r in range(args.rounds):
            for model in models:
                order = variants if r % 2 == 0 else variants[::-1]
                got = {}
                for v in order:
                    rec, cores = run_one(model, v, Path(tmp))
                    if rec.status != "ok":
                        print(f"{model}/{v}: {rec.status}: {rec.reason}", file=sys.stderr)
                        failed = True
                        continue
                    got[v] = rec.stats["throughput"]
                    thr.setdefault((model, v), []).append(got[v])
                    last[model, v] = rec
                    print(f"round {r + 1} {model:<10} {v:<14} {got[v]:>9.1f}/s  other {fmt_load(cores)[0]}", flush=True)
                for v in got:
                    if "fp32" in got:
                        speedup.setdefault((model, v), []).append(got[v] / got["fp32"])

    print()
    print(f"median over {args.rounds} rounds; fidelity vs fp32 on a fixed seeded batch of 64")
    print(
        f"{'model':<10} {'variant':<14} {'samples/s':>10} {'×fp32':>6} {'size MiB':>9} {'params':>11} "
        f"{'non-zero':>8} {'top-1 agree':>11} {'max |Δ|':>9}"
    )
    for model in models:
        for v in variants:
            rec = last.get((model, v))
            if rec is None:
                print(f"{model:<10} {v:<14} (did not run)")
                continue
            m, f = rec.model, rec.fidelity
            sp = statistics.median(speedup[model, v]) if speedup.get((model, v)) else None
            top1, diff = f.get("top1_agreement"), f.get("max_abs_diff")
            print(
                f"{model:<10} {v:<14} {statistics.median(thr[model, v]):>10.1f} "
                f"{'' if sp is None else f'{sp:.2f}':>6} {m['serialized_bytes'] / 2**20:>9.2f} {m['params']:>11,} "
                f"{m['nonzero_params'] / m['params'] * 100:>7.1f}% "
                f"{'n/a' if top1 is None else f'{top1 * 100:.1f}%':>11} {'n/a' if diff is None else f'{diff:.3g}':>9}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
