"""Simulated nights through the check gate's own functions (benchbench.history.gate.screen and
decide, benchbench.history.ab.judge_pairs for the confirm step): how often the gate cries wolf
on unchanged series, and how fast it catches a step.

    python benchmarks/nightly_sim.py [--series 20] [--nights 1000] [--confirm-nights 10000] [--seed 1]

Model (issue 7). Each series' nightly median is lognormal around its true value with a
between-run CV of 5%; 5% of nights are bad (an outlier, +20…60% slower). The gate checks
every night against the last 30 runs: a 5% floor, persistence K of M, BH at 5% across
the 20 series of a check. No store, no clock: pure numbers, seeded.

The confirm step (``check --confirm``, screen in confirm mode: see gate.decide)
re-measures each flagged series with ``ab``: paired rounds of the baseline build (the
newest run before the persistence window, night t−M: check's ``baseline_commit``) and
tonight's build, interleaved in one job. Interleaving cancels what varies between nights
(the 5% between-run noise, the bad nights), so each round's figure is drawn from the
*within-run* noise model: lognormal with CV 1.5% per round and side (a round is a whole
worker process, so this stands for its start-up and layout effects too). The last row
adds, as a sensitivity check, 5% of rounds with one side disturbed by +20…60% (a burst
of other load during one worker). The verdict is ab's own function: paired t-test on the
log ratios, p < 0.01 and an effect of at least half the 5% threshold.

Caught within 5 nights: the step lands on night s; the gate's verdicts on nights s … s+4
(A step more than M nights old is compared with an already slow baseline build, so it
is the first M+1 checks that can confirm it.)
"""

from __future__ import annotations

import argparse
import math
import random

from benchbench.history.ab import judge_pairs
from benchbench.history.gate import decide, screen

WINDOW, THRESHOLD, FDR = 30, 0.05, 0.05


class Model:
    def __init__(self, cv=0.05, bad_rate=0.05, within_cv=0.015, round_bad_rate=0.05, rounds=5):
        self.cv, self.bad_rate, self.within_cv = cv, bad_rate, within_cv
        self.round_bad_rate, self.rounds = round_bad_rate, rounds

    def night(self, rng: random.Random, true: float) -> float:
        v = true * math.exp(rng.gauss(0, self.cv))
        if rng.random() < self.bad_rate:
            v *= 1 + rng.uniform(0.2, 0.6)
        return v  # a latency: higher is worse

    def confirm(self, rng: random.Random, true_a: float, true_b: float) -> bool:
        """One ab confirm of B against A: True when ab says regressed."""
        a, b = [], []
        for _ in range(self.rounds):
            x = true_a * math.exp(rng.gauss(0, self.within_cv))
            y = true_b * math.exp(rng.gauss(0, self.within_cv))
            if rng.random() < self.round_bad_rate:
                hit = 1 + rng.uniform(0.2, 0.6)
                if rng.random() < 0.5:
                    x *= hit
                else:
                    y *= hit
            a.append(x)
            b.append(y)
        return judge_pairs(a, b, False, THRESHOLD)["verdict"] == "regressed"


def gate(
    rng, model: Model, hist: list[list[float]], builds: list[list[float]], k: int, m: int, confirm: bool
) -> tuple[list[str], int]:
    """Verdicts for one check and how many confirms ran. ``builds``: each night's true
    value (the build that ran), aligned with ``hist``."""
    screens = [screen(h[:-m][-WINDOW:], h[-m:], False, THRESHOLD, FDR) for h in hist]
    verdicts = decide(screens, THRESHOLD, k, FDR, confirm=confirm)
    confirms = 0
    if confirm:
        for i, v in enumerate(verdicts):
            if v == "regressed":
                confirms += 1
                a = builds[i][-1 - m]  # the newest baseline run's build: check's baseline_commit
                if not model.confirm(rng, a, builds[i][-1]):
                    verdicts[i] = "not confirmed"
    return verdicts, confirms


def false_alarms(rng, model: Model, n_series: int, nights: int, k: int, m: int, confirm: bool) -> tuple[int, int, int]:
    hist = [[model.night(rng, 1.0) for _ in range(WINDOW + m)] for _ in range(n_series)]
    builds = [[1.0] * (WINDOW + m) for _ in range(n_series)]
    alarms = confirms = 0
    for _ in range(nights):
        for h, b in zip(hist, builds):
            h.append(model.night(rng, 1.0))
            b.append(1.0)
            del h[0], b[0]
        verdicts, c = gate(rng, model, hist, builds, k, m, confirm)
        alarms += "regressed" in verdicts
        confirms += c
    return alarms, nights, confirms


def detection(rng, model: Model, n_series: int, step: float, k: int, m: int, confirm: bool, within=5) -> dict:
    """Every series gets the step on the same night; caught = regressed within ``within`` nights."""
    hist = [[model.night(rng, 1.0) for _ in range(WINDOW + m)] for _ in range(n_series)]
    builds = [[1.0] * (WINDOW + m) for _ in range(n_series)]
    caught, noisy = [False] * n_series, [False] * n_series
    for _ in range(within):
        for h, b in zip(hist, builds):
            h.append(model.night(rng, 1.0 + step))
            b.append(1.0 + step)
            del h[0], b[0]
        verdicts, _ = gate(rng, model, hist, builds, k, m, confirm)
        for i, v in enumerate(verdicts):
            caught[i] |= v == "regressed"
            noisy[i] |= v == "too noisy"
    said = sum(1 for c, n in zip(caught, noisy) if n and not c)
    return {
        "caught": sum(caught) / n_series,
        "said_too_noisy": said / n_series,
        "silently_missed": (n_series - sum(caught) - said) / n_series,
    }


def row(rng, model, n_series, nights, k, m, confirm, label) -> str:
    alarms, n, confirms = false_alarms(rng, model, n_series, nights, k, m, confirm)
    cells = [label, f"{alarms} / {n:,}", f"{1000 * alarms / n:.2f}", f"{confirms / n:.2f}" if confirm else "—"]
    for step in (0.05, 0.10, 0.20):
        d = detection(rng, model, 400, step, k, m, confirm)
        cells.append(
            f"{d['caught']:.0%} / {d['said_too_noisy']:.0%} / {d['silently_missed']:.1%}"
            if step < 0.2
            else f"{d['caught']:.0%}"
        )
    return "| " + " | ".join(cells) + " |"


# (K, M, confirm, ab rounds, share of ab rounds disturbed on one side)
CONFIGS = [
    (2, 3, False, 0, 0.0),
    (3, 3, False, 0, 0.0),
    (2, 3, True, 5, 0.0),
    (2, 4, True, 5, 0.0),
    (2, 4, True, 7, 0.0),
    (3, 5, True, 5, 0.0),
    (2, 4, True, 7, 0.05),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--nights", type=int, default=1000, help="checks simulated without the confirm step")
    ap.add_argument(
        "--confirm-nights",
        type=int,
        default=10000,
        help="checks simulated with the confirm step (its alarms are rare: count many)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cv", type=float, default=0.05, help="between-run CV of a night's median")
    ap.add_argument("--within-cv", type=float, default=0.015, help="within-run CV of an ab round's figure")
    ap.add_argument("--bad-rate", type=float, default=0.05, help="share of bad nights")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print(
        f"between-run CV {a.cv:.0%}, bad nights {a.bad_rate:.0%}, {a.series} series per check, window {WINDOW}, "
        f"floor {THRESHOLD:.0%}, BH {FDR}; ab rounds: within-run CV {a.within_cv:.1%}; seed {a.seed}\n"
    )
    print(
        "| gate | false alarms / checks | per 1,000 | confirms per check | +5% caught / too noisy / missed "
        "| +10% caught / too noisy / missed | +20% caught |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, m, confirm, rounds, disturbed in CONFIGS:
        model = Model(a.cv, a.bad_rate, a.within_cv, disturbed, rounds)
        label = (
            f"{k}/{m} + ab confirm, {rounds} rounds" + (f", {disturbed:.0%} rounds disturbed" if disturbed else "")
            if confirm
            else f"{k}/{m}, no confirm"
        )
        print(row(rng, model, a.series, a.confirm_nights if confirm else a.nights, k, m, confirm, label), flush=True)


if __name__ == "__main__":
    main()
