"""Simulated nights through the check gate's statistics (benchbench.compare.screen and
decide): how often it cries wolf on unchanged series, how fast it catches a step.

    python benchmarks/nightly_sim.py [--series 20] [--nights 1000] [--seed 1]

Model (issue 7): each series' nightly median is lognormal around its true value with a
between-run CV of 5%; 5% of nights are bad (an outlier, +20…60% slower); the gate
checks every night against the last 30 runs with persistence 2/3, a 5% floor and
BH at 5% across the series. No store, no clock: pure numbers, seeded.
"""

from __future__ import annotations

import argparse
import math
import random

from benchbench.compare import decide, screen

WINDOW, PERSIST_K, PERSIST_M, THRESHOLD, FDR = 30, 2, 3, 0.05, 0.05


def night(rng: random.Random, true: float, cv: float, bad_rate: float) -> float:
    v = true * math.exp(rng.gauss(0, cv))
    if rng.random() < bad_rate:
        v *= 1 + rng.uniform(0.2, 0.6)
    return v  # a latency: higher is worse


def gate(histories: list[list[float]]) -> list[str]:
    screens = []
    for h in histories:
        recent, older = h[-PERSIST_M:], h[:-PERSIST_M][-WINDOW:]
        screens.append(screen(older, recent, False, THRESHOLD, FDR))
    return decide(screens, THRESHOLD, PERSIST_K, FDR)


def false_alarms(rng, n_series, nights, cv, bad_rate) -> tuple[int, int]:
    hist = [[night(rng, 1.0, cv, bad_rate) for _ in range(WINDOW + PERSIST_M)] for _ in range(n_series)]
    alarms = 0
    for _ in range(nights):
        for h in hist:
            h.append(night(rng, 1.0, cv, bad_rate))
            del h[0]
        alarms += "regressed" in gate(hist)
    return alarms, nights


def detection(rng, n_series, step, cv, bad_rate, within=5) -> dict:
    """Each series gets the step on the same night; caught = regressed within ``within`` nights."""
    hist = [[night(rng, 1.0, cv, bad_rate) for _ in range(WINDOW + PERSIST_M)] for _ in range(n_series)]
    caught, noisy = [False] * n_series, [False] * n_series
    for _ in range(within):
        for h in hist:
            h.append(night(rng, 1.0 + step, cv, bad_rate))
            del h[0]
        for i, v in enumerate(gate(hist)):
            caught[i] |= v == "regressed"
            noisy[i] |= v == "too noisy"
    silent = sum(1 for c, n in zip(caught, noisy) if not c and not n)
    return {"caught": sum(caught) / n_series, "said_too_noisy": sum(1 for c, n in zip(caught, noisy) if n and not c)
            / n_series, "silently_missed": silent / n_series}


def main() -> None:
    global PERSIST_K, PERSIST_M, FDR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--nights", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cv", type=float, default=0.05)
    ap.add_argument("--bad-rate", type=float, default=0.05)
    ap.add_argument("--persist", default="2/3", metavar="K/M")
    ap.add_argument("--fdr", type=float, default=0.05)
    a = ap.parse_args()
    FDR = a.fdr
    PERSIST_K, PERSIST_M = (int(x) for x in a.persist.split("/"))
    rng = random.Random(a.seed)
    alarms, n = false_alarms(rng, a.series, a.nights, a.cv, a.bad_rate)
    print(f"between-run CV {a.cv:.0%}, bad nights {a.bad_rate:.0%}, {a.series} series per check, "
          f"persistence {a.persist}, FDR {a.fdr}")
    print(f"false alarms: {alarms} of {n} checks (no step anywhere)")
    for step in (0.05, 0.10, 0.20):
        d = detection(rng, 200, step, a.cv, a.bad_rate)
        print(f"step +{step:.0%}: caught within 5 nights {d['caught']:.0%}, reported too noisy "
              f"{d['said_too_noisy']:.0%}, silently missed {d['silently_missed']:.0%}")


if __name__ == "__main__":
    main()
