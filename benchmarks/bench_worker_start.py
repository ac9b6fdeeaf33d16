"""What a worker process costs before it measures: spawned interpreter vs fork server.

For each framework, runs a tiny case (seed_mlp, batch 1, CPU, inference, min_time 0.05 s)
in fresh worker processes through the executor's own ``run_case``, alternating a spawned
interpreter (``python -m benchbench.worker``) and a child forked from the preloaded server
(``benchbench.worker.server``), ROUNDS times each. A process's *start cost* is its wall time
(``duration_s``, request to record) minus what the worker measured itself (model build,
first iteration, warm-up, timed window): interpreter start, imports, writing the record.
The case runs as a case's second process, so FLOPs, size and fidelity (measured once per
case, in its first process) are not counted.

    python benchmarks/bench_worker_start.py [--rounds 7] [--frameworks torch tensorflow]

Prints one line per round and, per framework, the median start cost of each method, their
ratio and the server's own one-time start (its preload). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchbench.case import Case, Settings
from benchbench.executors.local import WorkerServer, run_case, worker_env


def start_cost(rec) -> float:
    t = rec.timing or {}
    c = rec.cold_start or {}
    measured = sum(
        float(x or 0.0) for x in (c.get("build_s"), c.get("first_iter_s"), t.get("warmup_s"), t.get("timed_wall_s"))
    )
    return float(rec.duration_s) - measured


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--frameworks", nargs="+", default=["torch", "tensorflow"])
    args = ap.parse_args()
    # process 2 of the case: FLOPs, size and fidelity (process 1's work, once per case) are not
    # part of what is measured here
    settings = Settings(min_time=0.05, max_time=0.2, warmup_iters=1, min_iters=8, telemetry_hz=0, process=2)
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        root = Path(tmp)
        for fw in args.frameworks:
            case = Case(
                framework=fw,
                model="seed_mlp",
                batch_size=1,
                device="cpu",
                mode="inference",
                variant="fp32",
                input_shape=(10,),
                settings=settings,
            )
            server = WorkerServer(fw, worker_env(case, []), root / f"server-{fw}.log")
            costs: dict[str, list[float]] = {"spawn": [], "forkserver": []}
            try:
                for i in range(args.rounds):
                    order = ("spawn", "forkserver") if i % 2 == 0 else ("forkserver", "spawn")
                    line = []
                    for how in order:
                        rec = run_case(
                            case, root / "work", root / f"{fw}.log", [], server=server if how == "forkserver" else None
                        )
                        if rec.status != "ok":
                            raise SystemExit(f"{fw} {how}: {rec.status}: {rec.reason}")
                        costs[how].append(start_cost(rec))
                        line.append(f"{how} {costs[how][-1]:.3f} s")
                    print(f"{fw} round {i + 1}: " + ", ".join(line), flush=True)
            finally:
                server.close()
            spawn, fork = statistics.median(costs["spawn"]), statistics.median(costs["forkserver"])
            print(
                f"{fw}: start cost per process, median of {args.rounds}: spawn {spawn:.3f} s, fork server "
                f"{fork:.3f} s ({spawn / fork:.0f}× less); the server's one-time start {server.start_s:.2f} s "
                f"(preload {server.preload_s:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
