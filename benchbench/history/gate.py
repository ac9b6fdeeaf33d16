"""Over history: each series' summary (``benchbench history``) and the nightly gate
(``benchbench check``): a new run screened against the baseline of earlier runs of the same
case on the same context, persistence over the latest runs, false-discovery control, and
the cases handed to ``ab`` to confirm.

Broken is a verdict here too (as in ``compare``): a case of the checked run that failed or
was skipped, and that was ok in one of the ``window`` earlier runs of the suite on the
same host, is *broken* (a row per case, metric ``*``, the worker's reason in ``note``),
and so is a case ok in the previous such run that the checked run lacks. A run with no ok
record at all measured nothing (:attr:`Check.nothing_measured`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchbench.case import case_label
from benchbench.history.compare import (
    DEFAULT_THRESHOLD,
    HIGHER_IS_BETTER,
    HISTORY_WINDOW,
    METRICS,
    MIN_HISTORY,
    broken_note,
    history_value,
    metric_value,
    nothing_measured_line,
)
from benchbench.history.robust import (
    MAD_EFFICIENCY,
    benjamini_hochberg,
    median,
    min_detectable_change,
    normal_sf,
    robust_cv,
    t_as_z,
)
from benchbench.history.store import Run, run_fingerprint
from benchbench.results import Record

# --- history -----------------------------------------------------------------------------


@dataclass
class SeriesSummary:
    case_id: str
    context: str
    label: str
    metric: str
    runs: int
    median: float | None
    latest: float | None
    between_run_cv: float | None
    min_detectable_change: float | None
    too_noisy: bool
    values: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    created_at: list[str | None] = field(default_factory=list)
    commits: list[str | None] = field(default_factory=list)
    change_points: list[dict] = field(default_factory=list)  # changepoints.ChangePoint as dicts
    alerts: list[int] = field(default_factory=list)  # indices where the gate (this series alone) said regressed


def summarize_series(
    case_id,
    context,
    label,
    metric,
    rows: list[dict],
    threshold: float,
    *,
    change_points: bool = False,
    alerts: bool = False,
    persist_k: int = 2,
    persist_m: int = 3,
    window: int = HISTORY_WINDOW,
    fdr: float = 0.05,
) -> SeriesSummary:
    """A series' noise and detectable change; with ``change_points`` also its change
    points (benchbench.history.changepoints: PELT via ruptures), with ``alerts`` the nights the
    gate would have flagged on this series alone (no BH across series)."""
    kept = [(h, v) for h in rows if (v := history_value(h, metric)) is not None]
    values = [v for _, v in kept]
    cv = robust_cv(values)
    mdc = min_detectable_change(cv, max(len(values) - 1, 1)) if cv is not None else None
    out = SeriesSummary(
        case_id,
        context,
        label,
        metric,
        len(values),
        median(values) if values else None,
        values[-1] if values else None,
        cv,
        mdc,
        mdc is not None and mdc > threshold,
        values,
        [h["run_id"] for h, _ in kept],
        [h.get("created_at") for h, _ in kept],
        [h.get("git_commit") for h, _ in kept],
    )
    hib = HIGHER_IS_BETTER[metric]
    if change_points:
        from dataclasses import asdict as _asdict

        from benchbench.history import changepoints

        out.change_points = [_asdict(c) for c in changepoints.detect(values, hib, out.run_ids, out.commits)]
    if alerts:
        out.alerts = gate_alerts(values, hib, threshold, persist_k, persist_m, window, fdr)
    return out


def gate_alerts(
    values: list[float],
    higher_is_better: bool,
    threshold: float,
    persist_k: int = 2,
    persist_m: int = 3,
    window: int = HISTORY_WINDOW,
    fdr: float = 0.05,
) -> list[int]:
    """Indices of the runs on which ``check`` would have flagged this series alone."""
    out = []
    for i in range(len(values)):
        hist = values[: i + 1]
        older = hist[:-persist_m][-window:]
        if len(older) < MIN_HISTORY:
            continue
        sc = screen(older, hist[-persist_m:], higher_is_better, threshold, fdr)
        if decide([sc], threshold, persist_k, fdr) == ["regressed"]:
            out.append(i)
    return out


# --- the nightly gate --------------------------------------------------------------------


@dataclass
class CheckRow:
    case_id: str
    context: str
    label: str
    metric: str  # "*" for a broken case
    value: float | None  # None for a broken case
    baseline: float | None
    change: float | None  # + = worse
    p: float | None
    persistent: int  # how many of the last m runs were beyond the threshold, worse
    verdict: str  # broken | regressed | improved | unchanged | too noisy | insufficient history
    commit: str | None
    mdc: float | None = None
    baseline_commit: str | None = None  # the newest baseline run's: what ``check --confirm`` compares against
    confirm: str | None = None  # what the ab confirm step found (check --confirm)
    note: str = ""  # broken: the worker's reason and the last run that measured the case


@dataclass
class Check:
    """One ``check``: its rows (broken ones first) and whether anything was measured."""

    run_id: str
    rows: list[CheckRow]
    nothing_measured: str | None = None  # the line saying so, when the run has no ok record

    @property
    def broken(self) -> list[CheckRow]:
        return [r for r in self.rows if r.verdict == "broken"]

    @property
    def regressed(self) -> list[CheckRow]:
        return [r for r in self.rows if r.verdict == "regressed"]


def check_latest(store, run_id: str, **kw) -> list[CheckRow]:
    """The rows of :func:`check_run` (broken cases first, then the screened series)."""
    return check_run(store, run_id, **kw).rows


def check_run(
    store,
    run_id: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    window: int = HISTORY_WINDOW,
    persist_k: int = 2,
    persist_m: int = 3,
    fdr: float = 0.05,
    metrics: tuple[str, ...] = METRICS,
    confirm: bool = False,
) -> Check:
    """Screen run ``run_id`` against each series' robust baseline: the median and MAD of
    up to ``window`` runs before the last ``persist_m`` on the same context. A series is
    flagged only when (1) the newest change passes Benjamini–Hochberg at ``fdr`` across
    all cases × metrics, (2) it is at least ``threshold`` worse, and (3) at least
    ``persist_k`` of the last ``persist_m`` runs (newest included) were that much worse."""
    run = store.load_run(run_id)
    pending: list[tuple[CheckRow, Screen]] = []
    rows: list[CheckRow] = []
    fps = {rec.case_id: run_fingerprint(run, rec) for rec in run.records if rec.status == "ok"}
    all_series = store.series_many(list(fps.items()), until=run.created_at, limit=window + persist_m)
    for rec in run.records:
        if rec.status != "ok":
            continue
        fp = fps[rec.case_id]
        series = all_series[(rec.case_id, fp)]
        ids = [h["run_id"] for h in series]
        if run_id not in ids:
            continue
        series = series[: ids.index(run_id) + 1]
        recent, older = series[-persist_m:], series[:-persist_m][-window:]
        for metric in metrics:
            value = metric_value(rec, metric)
            if value is None:
                continue
            hib = HIGHER_IS_BETTER[metric]
            base_vals = [v for v in (history_value(h, metric) for h in older) if v is not None]
            row = CheckRow(
                rec.case_id,
                fp,
                case_label(rec.case),
                metric,
                value,
                None,
                None,
                None,
                0,
                "insufficient history",
                run.commit,
                baseline_commit=older[-1].get("git_commit") if older else None,
            )
            if len(base_vals) < MIN_HISTORY:
                rows.append(row)
                continue
            sc = screen(
                base_vals, [v for v in (history_value(h, metric) for h in recent) if v is not None], hib, threshold, fdr
            )
            row.baseline, row.change, row.p, row.persistent, row.mdc = (
                sc.baseline,
                sc.change,
                sc.p,
                sc.worse_runs if confirm else sc.persistent,
                sc.mdc,
            )
            pending.append((row, sc))
            rows.append(row)
    for (row, _), verdict in zip(pending, decide([sc for _, sc in pending], threshold, persist_k, fdr, confirm)):
        row.verdict = verdict
    measured = any(rec.status == "ok" for rec in run.records)
    return Check(
        run_id,
        broken_rows(store, run, window) + rows,
        None if measured else nothing_measured_line(run_id, run.records),
    )


def broken_rows(store, run: Run, window: int = HISTORY_WINDOW) -> list[CheckRow]:
    """The cases ``run`` lost: not ok in it (failed, skipped) but ok in one of the
    ``window`` earlier runs of its suite on the same host, or ok in the newest of those
    and absent from ``run``. Earlier runs are read newest first, only as far as needed."""
    earlier_ids = [r["run_id"] for r in store.runs(run.suite)]
    earlier_ids = earlier_ids[: earlier_ids.index(run.run_id)] if run.run_id in earlier_ids else []
    tonight = {rec.case_id: rec for rec in run.records}
    open_ids = [cid for cid, rec in tonight.items() if rec.status != "ok"]  # lost, if ok before
    found: dict[str, tuple[Run, Record]] = {}  # case_id → (the newest earlier run with it ok, its record)
    absent: list[str] = []
    previous_seen = False
    for rid in reversed(earlier_ids[-window:]):
        if previous_seen and not open_ids:
            break
        old = store.load_run(rid)
        if run.host and old.host and old.host != run.host:
            continue  # another machine's run of the suite: not what this one measured
        ok = {rec.case_id: rec for rec in old.records if rec.status == "ok"}
        if not previous_seen:  # the newest earlier run: its ok cases should all be here
            previous_seen = True
            absent = [cid for cid in ok if cid not in tonight]
            found.update({cid: (old, ok[cid]) for cid in absent})
        for cid in [c for c in open_ids if c in ok]:
            found[cid] = (old, ok[cid])
            open_ids.remove(cid)
    out = []
    for cid in [c for c in tonight if c in found] + absent:
        old, old_rec = found[cid]
        rec = tonight.get(cid)
        note = broken_note(rec).replace("candidate", "this run", 1) + f" (ok in {old.run_id})"
        out.append(
            CheckRow(
                cid,
                run_fingerprint(old, old_rec),
                case_label((rec or old_rec).case),
                "*",
                None,
                None,
                None,
                None,
                0,
                "broken",
                run.commit,
                baseline_commit=old.commit,
                note=note,
            )
        )
    return out


@dataclass
class Screen:
    """One series' newest value against its robust baseline (pure numbers)."""

    baseline: float
    change: float  # relative, + = worse
    p: float  # one-sided: the chance that noise makes the newest run this much worse
    persistent: int  # recent runs (newest included) worse by the threshold, each p < alpha
    mdc: float | None
    worse_runs: int = 0  # recent runs worse by the threshold, whatever their p (the confirm-mode screen)


def screen(
    base_vals: list[float], recent_vals: list[float], higher_is_better: bool, threshold: float, alpha: float
) -> Screen:
    """``recent_vals``: the last M runs, oldest first, the newest last; ``base_vals``:
    the runs before them (≥ MIN_HISTORY)."""
    base = median(base_vals)
    cv = robust_cv(base_vals) or 0.0
    sigma = max(cv, 1e-9) * math.sqrt(1 + math.pi / (2 * len(base_vals)))  # + the baseline median's own error

    nu = MAD_EFFICIENCY * (len(base_vals) - 1)  # the MAD's few effective degrees of freedom

    def worse(v: float) -> tuple[float, float]:
        log_worse = math.log(base / v if higher_is_better else v / base)
        return math.expm1(log_worse), normal_sf(t_as_z(log_worse / sigma, nu))

    change, p = worse(recent_vals[-1])
    ws = [worse(v) for v in recent_vals]
    persistent = sum(1 for w in ws if w[0] >= threshold and w[1] < alpha)
    return Screen(
        base, change, p, persistent, min_detectable_change(cv, len(base_vals)), sum(1 for w in ws if w[0] >= threshold)
    )


def decide(screens: list[Screen], threshold: float, persist_k: int, fdr: float, confirm: bool = False) -> list[str]:
    """Verdicts for one check: Benjamini–Hochberg across all screened series × metrics,
    the practical floor and persistence; a series that cannot detect the threshold
    says so ("too noisy") unless its change is beyond what it can detect.

    ``confirm``: the screen only nominates, the ab confirm step (paired interleaved
    rounds, whose noise is the within-run noise, not the nights') decides. A series is
    then flagged when its newest run and at least ``persist_k`` of the recent ones are
    ``threshold`` worse than the baseline — no significance against the nightly noise
    asked, so series too noisy to gate night against night are still caught."""
    if confirm:
        return [
            "regressed"
            if sc.change >= threshold and sc.worse_runs >= persist_k
            else "too noisy"
            if sc.mdc is not None and sc.mdc > threshold
            else "improved"
            if sc.change <= -threshold / (1 + threshold) and sc.p >= 1 - fdr
            else "unchanged"
            for sc in screens
        ]
    noisy = [sc.mdc is not None and sc.mdc > threshold and sc.change < sc.mdc for sc in screens]
    rejected = benjamini_hochberg([sc.p for sc in screens], fdr)  # over every test made, noisy ones too
    out = []
    for i, sc in enumerate(screens):
        if noisy[i]:
            out.append("too noisy")
        elif rejected[i] and sc.change >= threshold and sc.persistent >= persist_k:
            out.append("regressed")
        elif sc.change <= -threshold / (1 + threshold) and sc.p >= 1 - fdr:
            out.append("improved")
        else:
            out.append("unchanged")
    return out
