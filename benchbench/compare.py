"""Regression verdicts between runs and over history: ``compare``, ``history``, ``check``.

Pure functions over records and series; the store only supplies them.

The rules (what keeps the gate from crying wolf):

* **Ratio of medians** per case and metric, oriented so that > 1 is always *worse*
  for the reader's table (``ratio`` is candidate / base of the raw figure; ``worse``
  says which direction hurts).
* **Without history** only the within-run spread is known (the 95% CI of each median,
  from its samples), and it understates run-to-run noise. The interval of the ratio is
  then widened by ``WITHIN_RUN_MULTIPLE`` (×3) and a verdict needs the change to clear
  both the threshold and that interval. Such verdicts are labelled *unconfirmed*.
* **With history** (≥ ``MIN_HISTORY`` earlier runs of the same case on the same
  context) the interval uses the between-run spread: the robust CV of the series'
  medians, 1.4826 · MAD / median.
* A verdict is *regressed* / *improved* when the change is at least the threshold and
  the interval excludes no change; *unchanged* when the whole interval lies within
  ± threshold; *inconclusive* otherwise (too noisy to say either way).
* **Many cases × metrics at once.** Each row's interval is a 95% one, so among 100 rows
  of unchanged code a few would exclude "no change" by chance. Every row with an
  interval also gets the p-value of "no change" from the same spread, and a
  regressed / improved row stands only when it also passes Benjamini–Hochberg at
  ``fdr`` (5%) across all the comparison's rows; one that does not becomes
  *inconclusive*, with a note saying so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from benchbench.results import Record
from benchbench.store import Run, case_label, context_facts, fingerprint

DEFAULT_THRESHOLD = 0.05  # a 5% change is the smallest that matters
WITHIN_RUN_MULTIPLE = 3.0  # conservative widening of the within-run interval
Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # power 80% for the minimum detectable change
MIN_HISTORY = 5
HISTORY_WINDOW = 30
MAD_TO_SIGMA = 1.4826
MEMORY_WITHIN_RUN_REL = 0.01  # one reading per run: assume ±1% when no history says more

# metric name → (how to read it from a record, True when higher is better)
METRICS = ("throughput", "latency_p99", "memory", "energy_per_sample")
HIGHER_IS_BETTER = {"throughput": True, "latency_p99": False, "memory": False, "energy_per_sample": False}
VERDICTS = ("regressed", "improved", "unchanged", "inconclusive", "new", "missing")


def metric_value(record: Record, metric: str) -> float | None:
    stats = record.stats or {}
    if metric == "throughput":
        v = stats.get("throughput")
    elif metric == "latency_p99":
        v = stats.get("p99")
    elif metric == "memory":
        v = (record.memory or {}).get("host_peak_rss_bytes")
    elif metric == "energy_per_sample":
        energy = record.energy or {}
        v = (energy.get(energy.get("primary")) or {}).get("j_per_sample") if energy.get("primary") else None
    else:
        raise ValueError(metric)
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def within_run_rel(record: Record, metric: str) -> float | None:
    """Relative 95% half-width of a figure from the run's own samples; None if unknown."""
    stats = record.stats or {}
    if metric in ("throughput", "latency_p99"):
        rel = stats.get("rel_ci")
        if rel is None:
            return None
        return float(rel) * (1.5 if metric == "latency_p99" else 1.0)  # a tail is noisier than the median
    if metric == "memory":
        return MEMORY_WITHIN_RUN_REL
    return None  # energy: one integral per run, its noise shows only between runs


# --- robust statistics -------------------------------------------------------------------

def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median of nothing")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def mad(xs: list[float]) -> float:
    m = median(xs)
    return median([abs(x - m) for x in xs])


def robust_cv(xs: list[float]) -> float | None:
    """Between-run CV of a series' medians: 1.4826 · MAD / median (None with < 3 values)."""
    if len(xs) < 3:
        return None
    m = median(xs)
    if m <= 0:
        return None
    return MAD_TO_SIGMA * mad(xs) / m


def min_detectable_change(cv: float | None, n: int) -> float | None:
    """The smallest step one new run shows against a baseline of ``n`` runs at 95%
    confidence with 80% power: (z₀.₉₇₅ + z₀.₈) · CV · √(1 + 1/n)."""
    if cv is None or n < 1:
        return None
    return (Z95 + Z80) * cv * math.sqrt(1 + 1 / n)


def benjamini_hochberg(pvalues: list[float], q: float) -> list[bool]:
    """Which hypotheses are rejected with the false discovery rate held at ``q``."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    cutoff = -1
    for rank, i in enumerate(order, 1):
        if pvalues[i] <= q * rank / m:
            cutoff = rank
    out = [False] * m
    for rank, i in enumerate(order, 1):
        if rank <= cutoff:
            out[i] = True
    return out


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


MAD_EFFICIENCY = 0.37  # the MAD's efficiency at the normal: n values → ≈ 0.37·(n−1) degrees of freedom


def t_as_z(t: float, nu: float) -> float:
    """A t statistic with ``nu`` degrees of freedom as an equally likely normal z
    (z = √(ν·ln(1 + t²/ν))·(1 − 1/(4ν))): p-values from a spread estimated from a few
    runs get the heavier tails they have. Checked by simulation: with 30 lognormal runs
    and the MAD, P(p < 0.01) = 0.9% (the plain normal gives 1.9%)."""
    if nu <= 0.5:
        return t
    return math.copysign(math.sqrt(nu * math.log1p(t * t / nu)) * (1 - 1 / (4 * nu)), t)


# --- one comparison ----------------------------------------------------------------------

@dataclass
class Row:
    case_id: str
    label: str
    metric: str
    base: float | None
    cand: float | None
    ratio: float | None  # cand / base
    low: float | None  # interval of the ratio
    high: float | None
    change: float | None  # signed relative change, + = worse
    verdict: str
    confirmed: bool  # between-run noise from history (False: within-run only, "unconfirmed")
    noise: str  # "within-run" | "between-run (n=…)" | ""
    note: str = ""
    p: float | None = None  # two-sided p-value of "no change", from the interval's spread


def ratio_p_value(ratio: float, low: float, high: float) -> float | None:
    """The two-sided p-value of "no change" for a ratio whose ≈95% interval (symmetric in
    log) is [low, high]: the spread is read back from the interval's width."""
    if not (ratio > 0 and 0 < low < high):
        return None
    sigma = math.log(high / low) / 2 / Z95
    return min(1.0, 2 * normal_sf(abs(math.log(ratio)) / sigma))


def control_fdr(rows: list[Row], fdr: float) -> None:
    """Give each row with an interval its p-value, then demote to *inconclusive* every
    regressed / improved row that Benjamini–Hochberg at ``fdr`` over those rows rejects."""
    tested = []
    for r in rows:
        if r.ratio is not None and r.low is not None and r.high is not None:
            r.p = ratio_p_value(r.ratio, r.low, r.high)
            if r.p is not None:
                tested.append(r)
    passed = benjamini_hochberg([r.p for r in tested], fdr)
    for r, ok in zip(tested, passed):
        if r.verdict in ("regressed", "improved") and not ok:
            was = r.verdict
            r.verdict = "inconclusive"
            r.note = (f"{was} alone (p={r.p:.2g}), not across the {len(tested)} comparisons "
                      f"(Benjamini–Hochberg, FDR {fdr:g})" + (f"; {r.note}" if r.note else ""))


def judge(ratio: float, rel_spread: float, worse_when_higher: bool, threshold: float) -> tuple[str, float, float]:
    """Verdict and interval of a ratio whose log has half-width ``rel_spread`` (≈95%)."""
    lo, hi = ratio * math.exp(-rel_spread), ratio * math.exp(rel_spread)
    worse = ratio > 1 if worse_when_higher else ratio < 1
    change = abs(ratio - 1)
    if change >= threshold and (lo > 1 or hi < 1):
        return ("regressed" if worse else "improved"), lo, hi
    if lo >= 1 / (1 + threshold) and hi <= 1 + threshold:
        return "unchanged", lo, hi
    return "inconclusive", lo, hi


def compare_runs(base: Run, cand: Run, *, threshold: float = DEFAULT_THRESHOLD, store=None,
                 metrics: tuple[str, ...] = METRICS, window: int = HISTORY_WINDOW,
                 fdr: float = 0.05) -> "Comparison":
    """Per case and metric, the verdict of ``cand`` against ``base``. With ``store``,
    the series' earlier runs (same case, same context) give the between-run noise; the
    false discovery rate over all rows is held at ``fdr``."""
    b_by = {r.case_id: r for r in base.records}
    c_by = {r.case_id: r for r in cand.records}
    rows: list[Row] = []
    histories: dict = {}
    if store is not None:  # every case's series in one go
        histories = store.series_many([(c.case_id, cand.fingerprint_of(c)) for c in cand.records if c.status == "ok"],
                                      before=cand.created_at, exclude=(cand.run_id,), limit=window)
    for cid in list(dict.fromkeys([*b_by, *c_by])):
        b, c = b_by.get(cid), c_by.get(cid)
        label = case_label((c or b).case)
        if b is None or b.status != "ok":
            if c is not None and c.status == "ok":
                note = "" if b is None else f"base {b.status}: {b.reason or ''}".strip()
                rows.append(Row(cid, label, "*", None, None, None, None, None, None, "new", False, "", note))
            continue
        if c is None or c.status != "ok":
            note = "not in candidate" if c is None else f"candidate {c.status}: {c.reason or ''}".strip()
            rows.append(Row(cid, label, "*", None, None, None, None, None, None, "missing", False, "", note))
            continue
        history = histories.get((cid, cand.fingerprint_of(c))) if store is not None else None
        for metric in metrics:
            if metric_value(b, metric) is None and metric_value(c, metric) is None:
                continue  # not measured here (e.g. energy without RAPL/NVML): no row
            rows.append(_compare_metric(cid, label, metric, b, c, history, threshold))
    control_fdr(rows, fdr)
    return Comparison(base=base, cand=cand, rows=rows, threshold=threshold,
                      context_diff=context_difference(base, cand))


def _compare_metric(cid, label, metric, b: Record, c: Record, history, threshold) -> Row:
    hib = HIGHER_IS_BETTER[metric]
    bv, cv = metric_value(b, metric), metric_value(c, metric)
    if bv is None or cv is None:
        where = "base" if bv is None else "candidate"
        return Row(cid, label, metric, bv, cv, None, None, None, None, "inconclusive", False, "",
                   f"not measured in {where}")
    ratio = cv / bv
    change = (1 / ratio - 1) if hib else (ratio - 1)  # + = worse
    between = None
    if history:
        values = [v for v in (_history_value(h, metric) for h in history) if v is not None]
        if len(values) >= MIN_HISTORY:
            between = (robust_cv(values), len(values))
    if between is not None and between[0] is not None:
        # two single runs, each with the series' between-run noise (log scale ≈ relative)
        spread = Z95 * math.sqrt(2) * between[0]
        wb, wc = within_run_rel(b, metric) or 0.0, within_run_rel(c, metric) or 0.0
        spread = max(spread, math.hypot(wb, wc))
        verdict, lo, hi = judge(ratio, spread, not hib, threshold)
        return Row(cid, label, metric, bv, cv, ratio, lo, hi, change, verdict, True, f"between-run (n={between[1]})")
    wb, wc = within_run_rel(b, metric), within_run_rel(c, metric)
    if wb is None or wc is None:
        if metric == "energy_per_sample":
            spread = WITHIN_RUN_MULTIPLE * 0.05  # no spread known at all: assume ±5% per run
        else:
            return Row(cid, label, metric, bv, cv, ratio, None, None, change, "inconclusive", False, "within-run",
                       "too few samples for a confidence interval")
    else:
        spread = WITHIN_RUN_MULTIPLE * math.hypot(wb, wc)
    verdict, lo, hi = judge(ratio, spread, not hib, threshold)
    return Row(cid, label, metric, bv, cv, ratio, lo, hi, change, verdict, False, "within-run")


def _history_value(h: dict, metric: str) -> float | None:
    if metric == "throughput":
        return h.get("throughput")
    if metric == "latency_p99":
        return h.get("p99_s")
    if metric == "memory":
        return h.get("peak_rss_bytes")
    if metric == "energy_per_sample" and "energy_j_per_sample" in h:
        return h.get("energy_j_per_sample")
    if "record" not in h:
        return None
    import json

    return metric_value(Record.from_dict(json.loads(h["record"])), metric)


def context_difference(base: Run, cand: Run) -> dict:
    """Context facts that differ between two runs: {key: (base, cand)}."""
    def facts(run: Run) -> dict:
        for r in run.records:
            if r.status == "ok":
                return context_facts(r, run.environment)
        return context_facts(run.records[0], run.environment) if run.records else {}

    fb, fc = facts(base), facts(cand)
    return {k: (fb.get(k), fc.get(k)) for k in sorted(set(fb) | set(fc)) if fb.get(k) != fc.get(k)}


@dataclass
class Comparison:
    base: Run
    cand: Run
    rows: list[Row]
    threshold: float
    context_diff: dict = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        return any(r.verdict == "regressed" for r in self.rows)

    def counts(self) -> dict:
        out = {v: 0 for v in VERDICTS}
        for r in self.rows:
            out[r.verdict] += 1
        return out

    def to_dict(self) -> dict:
        return {
            "base": {"run_id": self.base.run_id, "source": self.base.source, "commit": self.base.commit},
            "candidate": {"run_id": self.cand.run_id, "source": self.cand.source, "commit": self.cand.commit},
            "threshold": self.threshold,
            "context_differs": {k: list(v) for k, v in self.context_diff.items()},
            "counts": self.counts(),
            "regressed": self.regressed,
            "rows": [asdict(r) for r in self.rows],
        }


# --- rendering ---------------------------------------------------------------------------

def _fmt_value(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    if metric == "throughput":
        return f"{v:.4g}/s"
    if metric == "latency_p99":
        return f"{v * 1e3:.4g} ms"
    if metric == "memory":
        return f"{v / 2**20:.1f} MiB"
    if metric == "energy_per_sample":
        return f"{v:.4g} J"
    return f"{v:.4g}"


def _verdict_text(r: Row) -> str:
    if r.verdict in ("new", "missing"):
        return r.verdict
    return r.verdict + ("" if r.confirmed else " (unconfirmed)")


def table_rows(cmp: Comparison) -> list[list[str]]:
    out = []
    for r in cmp.rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3f}"
        interval = "—" if r.low is None else f"[{r.low:.3f}, {r.high:.3f}]"
        out.append([r.label, r.metric, _fmt_value(r.metric, r.base), _fmt_value(r.metric, r.cand), ratio, interval,
                    _verdict_text(r), r.note or r.noise])
    return out


HEADERS = ["case", "metric", "base", "candidate", "ratio", "interval", "verdict", "noise / note"]


def render_markdown(cmp: Comparison) -> str:
    lines = [f"### benchbench compare: `{cmp.cand.run_id}` vs `{cmp.base.run_id}`", ""]
    if cmp.context_diff:
        lines.append("> **Warning:** the runs' contexts differ: " + "; ".join(
            f"{k}: {a} → {b}" for k, (a, b) in cmp.context_diff.items()))
        lines.append("")
    counts = cmp.counts()
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n) + f" (threshold {cmp.threshold:.0%})")
    lines.append("")
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "---|" * len(HEADERS))
    icons = {"regressed": "🔴 ", "improved": "🟢 ", "inconclusive": "❔ "}
    for r, cells in zip(cmp.rows, table_rows(cmp)):
        cells = list(cells)
        cells[6] = icons.get(r.verdict, "") + cells[6]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_table(cmp: Comparison, title: str | None = None):
    from rich.table import Table

    t = Table(title=title or f"{cmp.cand.run_id} vs {cmp.base.run_id} (threshold {cmp.threshold:.0%})")
    for h in HEADERS:
        t.add_column(h, justify="right" if h in ("base", "candidate", "ratio") else "left")
    style = {"regressed": "bold red", "improved": "green", "inconclusive": "yellow"}
    for r, cells in zip(cmp.rows, table_rows(cmp)):
        t.add_row(*cells, style=style.get(r.verdict))
    return t


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


def summarize_series(case_id, context, label, metric, rows: list[dict], threshold: float, *,
                     change_points: bool = False, alerts: bool = False, persist_k: int = 2, persist_m: int = 3,
                     window: int = HISTORY_WINDOW, fdr: float = 0.05) -> SeriesSummary:
    """A series' noise and detectable change; with ``change_points`` also its change
    points (benchbench.changepoints: PELT via ruptures), with ``alerts`` the nights the
    gate would have flagged on this series alone (no BH across series)."""
    kept = [(h, _history_value(h, metric)) for h in rows]
    kept = [(h, v) for h, v in kept if v is not None]
    values = [v for _, v in kept]
    cv = robust_cv(values)
    mdc = min_detectable_change(cv, max(len(values) - 1, 1)) if cv is not None else None
    out = SeriesSummary(case_id, context, label, metric, len(values), median(values) if values else None,
                        values[-1] if values else None, cv, mdc, mdc is not None and mdc > threshold,
                        values, [h["run_id"] for h, _ in kept], [h.get("created_at") for h, _ in kept],
                        [h.get("git_commit") for h, _ in kept])
    hib = HIGHER_IS_BETTER[metric]
    if change_points:
        from dataclasses import asdict as _asdict

        from benchbench import changepoints

        out.change_points = [_asdict(c) for c in changepoints.detect(values, hib, out.run_ids, out.commits)]
    if alerts:
        out.alerts = gate_alerts(values, hib, threshold, persist_k, persist_m, window, fdr)
    return out


def gate_alerts(values: list[float], higher_is_better: bool, threshold: float, persist_k: int = 2,
                persist_m: int = 3, window: int = HISTORY_WINDOW, fdr: float = 0.05) -> list[int]:
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
    metric: str
    value: float
    baseline: float | None
    change: float | None  # + = worse
    p: float | None
    persistent: int  # how many of the last m runs were beyond the threshold, worse
    verdict: str  # regressed | improved | unchanged | too noisy | insufficient history
    commit: str | None
    mdc: float | None = None
    baseline_commit: str | None = None  # the newest baseline run's: what ``check --confirm`` compares against
    confirm: str | None = None  # what the ab confirm step found (check --confirm)


def check_latest(store, run_id: str, *, threshold: float = DEFAULT_THRESHOLD, window: int = HISTORY_WINDOW,
                 persist_k: int = 2, persist_m: int = 3, fdr: float = 0.05,
                 metrics: tuple[str, ...] = METRICS, confirm: bool = False) -> list[CheckRow]:
    """Screen run ``run_id`` against each series' robust baseline: the median and MAD of
    up to ``window`` runs before the last ``persist_m`` on the same context. A series is
    flagged only when (1) the newest change passes Benjamini–Hochberg at ``fdr`` across
    all cases × metrics, (2) it is at least ``threshold`` worse, and (3) at least
    ``persist_k`` of the last ``persist_m`` runs (newest included) were that much worse."""
    run = store.load_run(run_id)
    pending: list[tuple[CheckRow, Screen]] = []
    rows: list[CheckRow] = []
    fps = {rec.case_id: run.fingerprint_of(rec) for rec in run.records if rec.status == "ok"}
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
            base_vals = [v for v in (_history_value(h, metric) for h in older) if v is not None]
            row = CheckRow(rec.case_id, fp, case_label(rec.case), metric, value, None, None, None, 0,
                           "insufficient history", run.commit,
                           baseline_commit=older[-1].get("git_commit") if older else None)
            if len(base_vals) < MIN_HISTORY:
                rows.append(row)
                continue
            sc = screen(base_vals, [v for v in (_history_value(h, metric) for h in recent) if v is not None],
                        hib, threshold, fdr)
            row.baseline, row.change, row.p, row.persistent, row.mdc = (
                sc.baseline, sc.change, sc.p, sc.worse_runs if confirm else sc.persistent, sc.mdc)
            pending.append((row, sc))
            rows.append(row)
    for (row, _), verdict in zip(pending, decide([sc for _, sc in pending], threshold, persist_k, fdr, confirm)):
        row.verdict = verdict
    return rows


@dataclass
class Screen:
    """One series' newest value against its robust baseline (pure numbers)."""

    baseline: float
    change: float  # relative, + = worse
    p: float  # one-sided: the chance that noise makes the newest run this much worse
    persistent: int  # recent runs (newest included) worse by the threshold, each p < alpha
    mdc: float | None
    worse_runs: int = 0  # recent runs worse by the threshold, whatever their p (the confirm-mode screen)


def screen(base_vals: list[float], recent_vals: list[float], higher_is_better: bool, threshold: float,
           alpha: float) -> Screen:
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
    return Screen(base, change, p, persistent, min_detectable_change(cv, len(base_vals)),
                  sum(1 for w in ws if w[0] >= threshold))


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
        return ["regressed" if sc.change >= threshold and sc.worse_runs >= persist_k
                else "too noisy" if sc.mdc is not None and sc.mdc > threshold
                else "improved" if sc.change <= -threshold / (1 + threshold) and sc.p >= 1 - fdr
                else "unchanged" for sc in screens]
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
