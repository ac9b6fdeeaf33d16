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
* **Several worker processes** (records with ``processes.interval_scope`` "between-process"):
  each record's interval already covers a re-run, so the ratio's interval combines them as
  they are, without the ×3 (labelled *between-process*, not unconfirmed).
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
* **Broken is a verdict.** A case ok in the base and failed, skipped or absent in the
  candidate is *broken*, with the candidate's reason: the gate fails on it (``compare``
  exit 1 unless ``--allow-broken``), and broken rows come first. A case measured in
  neither run is *failed* when either run failed it (shown, not gated: there is no
  measurement it lost), and gives no row when both skipped it. A candidate with no ok
  record at all measured nothing: ``nothing_measured``, which ``compare`` always fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from benchbench.case import case_label
from benchbench.history.robust import Z95, benjamini_hochberg, ratio_p_value, robust_cv
from benchbench.history.store import Run, context_facts, run_fingerprint
from benchbench.measure.stats import latency_p99
from benchbench.results import Record

DEFAULT_THRESHOLD = 0.05  # a 5% change is the smallest that matters
WITHIN_RUN_MULTIPLE = 3.0  # conservative widening of the within-run interval
MIN_HISTORY = 5
HISTORY_WINDOW = 30
MEMORY_WITHIN_RUN_REL = 0.01  # one reading per run: assume ±1% when no history says more

# metric name → (how to read it from a record, True when higher is better)
METRICS = ("throughput", "latency_p99", "memory", "energy_per_sample")
HIGHER_IS_BETTER = {"throughput": True, "latency_p99": False, "memory": False, "energy_per_sample": False}
VERDICTS = ("broken", "regressed", "improved", "unchanged", "inconclusive", "new", "failed")
STAR_VERDICTS = ("broken", "new", "failed")  # whole-case rows (metric "*"), no figures


def metric_value(record: Record, metric: str) -> float | None:
    stats = record.stats or {}
    if metric == "throughput":
        v = stats.get("throughput")
    elif metric == "latency_p99":  # none where the samples are block means (stats.latency_p99)
        v, _ = latency_p99(stats, record.timing)
    elif metric == "memory":
        v = (record.memory or {}).get("host_peak_rss_bytes")
    elif metric == "energy_per_sample":
        energy = record.energy or {}
        v = (energy.get(energy.get("primary")) or {}).get("j_per_sample") if energy.get("primary") else None
    else:
        raise ValueError(metric)
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def unavailable_reason(record: Record, metric: str) -> str:
    """Why ``metric_value`` is None for ``record`` (as far as the record tells)."""
    if metric == "latency_p99":
        return latency_p99(record.stats, record.timing)[1] or "unavailable"
    return "not measured"


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


def between_process_rel(record: Record, metric: str) -> float | None:
    """Relative 95% half-width of a figure whose interval spans several worker processes
    (and so covers a re-run); None for one process, older records and other metrics."""
    if metric not in ("throughput", "latency_p99"):
        return None
    if (record.processes or {}).get("interval_scope") != "between-process":
        return None
    rel = (record.stats or {}).get("rel_ci")
    return None if rel is None else float(rel) * (1.5 if metric == "latency_p99" else 1.0)


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


def control_fdr(rows: list[Row], fdr: float) -> None:
    """Give each row with an interval its p-value, then demote to *inconclusive* every
    regressed / improved row that Benjamini–Hochberg at ``fdr`` over those rows rejects."""
    tested, p_values = [], []
    for r in rows:
        if r.ratio is not None and r.low is not None and r.high is not None:
            r.p = ratio_p_value(r.ratio, r.low, r.high)
            if r.p is not None:
                tested.append(r)
                p_values.append(r.p)
    passed = benjamini_hochberg(p_values, fdr)
    for r, ok in zip(tested, passed):
        if r.verdict in ("regressed", "improved") and not ok:
            was = r.verdict
            r.verdict = "inconclusive"
            r.note = (
                f"{was} alone (p={r.p:.2g}), not across the {len(tested)} comparisons "
                f"(Benjamini–Hochberg, FDR {fdr:g})" + (f"; {r.note}" if r.note else "")
            )


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


def compare_runs(
    base: Run,
    cand: Run,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    store=None,
    metrics: tuple[str, ...] = METRICS,
    window: int = HISTORY_WINDOW,
    fdr: float = 0.05,
) -> Comparison:
    """Per case and metric, the verdict of ``cand`` against ``base``. With ``store``,
    the series' earlier runs (same case, same context) give the between-run noise; the
    false discovery rate over all rows is held at ``fdr``."""
    b_by = {r.case_id: r for r in base.records}
    c_by = {r.case_id: r for r in cand.records}
    rows: list[Row] = []
    histories: dict = {}
    if store is not None:  # every case's series in one go
        histories = store.series_many(
            [(c.case_id, run_fingerprint(cand, c)) for c in cand.records if c.status == "ok"],
            before=cand.created_at,
            exclude=(cand.run_id,),
            limit=window,
        )
    for cid in list(dict.fromkeys([*b_by, *c_by])):
        b, c = b_by.get(cid), c_by.get(cid)
        label = case_label((c or b_by[cid]).case)  # c, else b: the case is in one run at least
        if b is None or b.status != "ok":
            if c is not None and c.status == "ok":
                note = "" if b is None else f"base {b.status}: {b.reason or ''}".strip()
                rows.append(Row(cid, label, "*", None, None, None, None, None, None, "new", False, "", note))
            elif "failed" in (getattr(b, "status", None), getattr(c, "status", None)):
                parts = [f"{w} {r.status}: {r.reason or ''}".strip() for w, r in (("base", b), ("candidate", c)) if r]
                rows.append(
                    Row(cid, label, "*", None, None, None, None, None, None, "failed", False, "", "; ".join(parts))
                )
            continue  # skipped in both (or skipped in one, absent from the other): nothing lost
        if c is None or c.status != "ok":
            rows.append(Row(cid, label, "*", None, None, None, None, None, None, "broken", False, "", broken_note(c)))
            continue
        history = histories.get((cid, run_fingerprint(cand, c))) if store is not None else None
        for metric in metrics:
            if metric_value(b, metric) is None and metric_value(c, metric) is None:
                continue  # not measured here (e.g. energy without RAPL/NVML): no row
            rows.append(_compare_metric(cid, label, metric, b, c, history, threshold))
    control_fdr(rows, fdr)
    rows.sort(key=lambda r: r.verdict != "broken")  # broken first, otherwise in case order (stable)
    return Comparison(base=base, cand=cand, rows=rows, threshold=threshold, context_diff=context_difference(base, cand))


def broken_note(c: Record | None) -> str:
    """Why a case that was measured before is not now: the candidate's status and the
    worker's reason, or that the candidate has no record of it."""
    if c is None:
        return "not in candidate"
    return f"candidate {c.status}: {c.reason or 'no reason given'}"


def _compare_metric(cid, label, metric, b: Record, c: Record, history, threshold) -> Row:
    hib = HIGHER_IS_BETTER[metric]
    bv, cv = metric_value(b, metric), metric_value(c, metric)
    if bv is None or cv is None:
        where, rec = ("base", b) if bv is None else ("candidate", c)
        why = unavailable_reason(rec, metric)
        note = f"not measured in {where}" if why == "not measured" else f"{where}: {why}"
        return Row(cid, label, metric, bv, cv, None, None, None, None, "inconclusive", False, "", note)
    ratio = cv / bv
    change = (1 / ratio - 1) if hib else (ratio - 1)  # + = worse
    between = None
    if history:
        values = [v for v in (history_value(h, metric) for h in history) if v is not None]
        if len(values) >= MIN_HISTORY:
            between = (robust_cv(values), len(values))
    if between is not None and between[0] is not None:
        # two single runs, each with the series' between-run noise (log scale ≈ relative)
        spread = Z95 * math.sqrt(2) * between[0]
        spread = max(spread, math.hypot(within_run_rel(b, metric) or 0.0, within_run_rel(c, metric) or 0.0))
        verdict, lo, hi = judge(ratio, spread, not hib, threshold)
        return Row(cid, label, metric, bv, cv, ratio, lo, hi, change, verdict, True, f"between-run (n={between[1]})")
    pb, pc = between_process_rel(b, metric), between_process_rel(c, metric)
    if pb is not None and pc is not None:
        # both intervals already cover a re-run (several worker processes): used as they are
        spread = math.hypot(pb, pc)
        verdict, lo, hi = judge(ratio, spread, not hib, threshold)
        k = f"{(b.processes or {}).get('processes')}+{(c.processes or {}).get('processes')}"
        return Row(cid, label, metric, bv, cv, ratio, lo, hi, change, verdict, True, f"between-process ({k})")
    wb, wc = within_run_rel(b, metric), within_run_rel(c, metric)
    if wb is None or wc is None:
        if metric == "energy_per_sample":
            spread = WITHIN_RUN_MULTIPLE * 0.05  # no spread known at all: assume ±5% per run
        else:
            return Row(
                cid,
                label,
                metric,
                bv,
                cv,
                ratio,
                None,
                None,
                change,
                "inconclusive",
                False,
                "within-run",
                "too few samples for a confidence interval",
            )
    else:
        spread = WITHIN_RUN_MULTIPLE * math.hypot(wb, wc)
    verdict, lo, hi = judge(ratio, spread, not hib, threshold)
    return Row(cid, label, metric, bv, cv, ratio, lo, hi, change, verdict, False, "within-run")


def history_value(h: dict, metric: str) -> float | None:
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

    @property
    def broken(self) -> list[Row]:
        """Cases ok in the base that the candidate lost (failed, skipped or absent)."""
        return [r for r in self.rows if r.verdict == "broken"]

    @property
    def nothing_measured(self) -> bool:
        """The candidate has no ok record at all: nothing was measured, whatever the rows say."""
        return not any(r.status == "ok" for r in self.cand.records)

    def nothing_measured_line(self) -> str:
        return nothing_measured_line(self.cand.run_id, self.cand.records)

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
            "broken": bool(self.broken),
            "nothing_measured": self.nothing_measured,
            "rows": [asdict(r) for r in self.rows],
        }


def nothing_measured_line(run_id: str, records: list[Record]) -> str:
    """One line: a run in which no case was measured, and what its records were instead."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    what = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
    first = next((r for r in records if r.reason), None)
    why = f"; first reason: {first.reason}" if first else ""
    return f"nothing was measured in {run_id}: no case has an ok record ({what}{why})"


# --- rendering ---------------------------------------------------------------------------


def fmt_value(metric: str, v: float | None) -> str:
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
    if r.verdict in STAR_VERDICTS:
        return r.verdict
    return r.verdict + ("" if r.confirmed else " (unconfirmed)")


def table_rows(cmp: Comparison) -> list[list[str]]:
    out = []
    for r in cmp.rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3f}"
        interval = "—" if r.low is None else f"[{r.low:.3f}, {r.high:.3f}]"
        out.append(
            [
                r.label,
                r.metric,
                fmt_value(r.metric, r.base),
                fmt_value(r.metric, r.cand),
                ratio,
                interval,
                _verdict_text(r),
                r.note or r.noise,
            ]
        )
    return out


HEADERS = ["case", "metric", "base", "candidate", "ratio", "interval", "verdict", "noise / note"]


def render_markdown(cmp: Comparison) -> str:
    lines = [f"### benchbench compare: `{cmp.cand.run_id}` vs `{cmp.base.run_id}`", ""]
    if cmp.context_diff:
        lines.append(
            "> **Warning:** the runs' contexts differ: "
            + "; ".join(f"{k}: {a} → {b}" for k, (a, b) in cmp.context_diff.items())
        )
        lines.append("")
    counts = cmp.counts()
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n) + f" (threshold {cmp.threshold:.0%})")
    lines.append("")
    if cmp.nothing_measured:
        lines += [f"> **Nothing measured:** {cmp.nothing_measured_line()}", ""]
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "---|" * len(HEADERS))
    icons = {"broken": "💥 ", "regressed": "🔴 ", "improved": "🟢 ", "inconclusive": "❔ ", "failed": "⚠️ "}
    for r, cells in zip(cmp.rows, table_rows(cmp)):
        cells = list(cells)
        cells[6] = icons.get(r.verdict, "") + cells[6]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# how a verdict looks in a terminal table (compare, ab)
VERDICT_STYLE = {
    "broken": "bold red reverse",
    "regressed": "bold red",
    "improved": "green",
    "inconclusive": "yellow",
    "failed": "red",
}


def render_table(cmp: Comparison, title: str | None = None):
    from rich.table import Table

    t = Table(title=title or f"{cmp.cand.run_id} vs {cmp.base.run_id} (threshold {cmp.threshold:.0%})")
    for h in HEADERS:
        t.add_column(h, justify="right" if h in ("base", "candidate", "ratio") else "left")
    for r, cells in zip(cmp.rows, table_rows(cmp)):
        t.add_row(*cells, style=VERDICT_STYLE.get(r.verdict))
    return t
