"""Change points in a history series (``benchbench history``, the trend figure).

The method is PELT — Killick, Fearnhead & Eckley, *Optimal detection of changepoints with
a linear computational cost*, JASA 2012 — as implemented by the ``ruptures`` library
(Truong, Oudre & Vayatis, *Selective review of offline change point detection methods*,
Signal Processing 2020; https://centre-borelli.github.io/ruptures-docs/), applied to the
log of the series (a step of +10% is the same size at any level):

* cost ``l1``: the segments differ in their median (robust: a bad night — an outlier —
  costs its distance, not its square, so it does not buy a segment of its own);
* penalty per change point: pen = 2 · σ̂ · ln n, with σ̂ the robust noise level from first
  differences (1.4826 · MAD(Δ) / √2: a step moves one difference only, so it does not
  inflate σ̂). The BIC of a Laplace-noise median shift (two parameters per change point,
  scale b ≈ 0.8 σ) would be b · ln n; the factor 2.5 over it was chosen by simulation
  (40-run series, between-run CV 5%, 5% bad nights +20…60%): 1.3% of unchanged series
  show a spurious change point, a +10% step is found (±2 runs) in 72%, +20% in 97%
  (with ``l2`` and the BIC penalty 2 · σ̂² · ln n, 69% of unchanged series had one);
* ``min_size`` 3: a segment is at least 3 runs, so one bad night is not a change point.

Each change point is reported with the run at which the new level starts, the ratio of
the medians after / before and whether that is worse (direction of the metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchbench.errors import UserError

MIN_SIZE = 3
MIN_RUNS = 2 * MIN_SIZE  # shorter series cannot hold a change point


@dataclass
class ChangePoint:
    index: int  # position in the series of the first run at the new level
    run_id: str | None
    commit: str | None
    before: float  # median of the segment before
    after: float  # median of the segment after
    ratio: float  # after / before
    worse: bool


def _ruptures():
    try:
        import ruptures
    except ImportError:
        raise UserError("change points need the ruptures library: pip install ruptures") from None
    return ruptures


def available() -> bool:
    try:
        _ruptures()
    except UserError:
        return False
    return True


def noise_sigma(logs: list[float]) -> float:
    """Robust noise level of a log series from its first differences."""
    from benchbench.history.robust import MAD_TO_SIGMA, mad

    diffs = [b - a for a, b in zip(logs, logs[1:])]
    if len(diffs) < 2:
        return 0.0
    return MAD_TO_SIGMA * mad(diffs) / math.sqrt(2)


def penalty(n: int, sigma: float) -> float:
    return 2 * sigma * math.log(n)


def detect(
    values: list[float],
    higher_is_better: bool,
    run_ids: list[str] | None = None,
    commits: list[str | None] | None = None,
    min_sigma: float = 1e-4,
) -> list[ChangePoint]:
    """Change points of a series (oldest first); [] when it is too short or flat."""
    from benchbench.history.robust import median

    if len(values) < MIN_RUNS or any(v is None or v <= 0 for v in values):
        return []
    import numpy as np

    logs = [math.log(v) for v in values]
    sigma = max(noise_sigma(logs), min_sigma)  # a perfectly flat series: only a real step counts
    algo = _ruptures().Pelt(model="l1", min_size=MIN_SIZE, jump=1).fit(np.asarray(logs).reshape(-1, 1))
    ends = algo.predict(pen=penalty(len(logs), sigma))[:-1]  # the last "end" is len(values)
    out, start = [], 0
    bounds = [*ends, len(values)]
    for k, cut in enumerate(ends):
        before = median(values[start:cut])
        after = median(values[cut : bounds[k + 1]])
        ratio = after / before
        out.append(
            ChangePoint(
                cut,
                run_ids[cut] if run_ids else None,
                commits[cut] if commits else None,
                before,
                after,
                ratio,
                ratio < 1 if higher_is_better else ratio > 1,
            )
        )
        start = cut
    return out
