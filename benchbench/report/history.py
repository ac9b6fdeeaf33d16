"""The history report (``benchbench history --report FILE``): one trend figure per series
— each run's figure over time, the change points (benchbench.history.changepoints: PELT via
ruptures) as dashed lines with the level ratio and the commit at which the new level
starts, the nights the gate would have flagged (check's own screen, this series alone)
as red crosses, and each run's commit in the hover. One self-contained HTML file."""

from __future__ import annotations

import html
from pathlib import Path

from benchbench.report.assets import CSS

# where the samples are block means their p99 is no latency percentile: such runs have none
P99_NOTE = (
    " latency p99: only runs whose samples are single iterations have one; a case timed in blocks of "
    "iterations (iterations under 10 µs) records block means, whose p99 is not a latency percentile, "
    "so its runs are left out of the latency_p99 trend."
)
UNITS = {
    "throughput": ("samples/s", 1.0),
    "latency_p99": ("ms", 1e3),
    "memory": ("MiB", 1 / 2**20),
    "energy_per_sample": ("J/sample", 1.0),
}


def trend_figure(s):
    """A Plotly figure of one gate.SeriesSummary (summarized with change_points=True)."""
    import plotly.graph_objects as go

    unit, scale = UNITS[s.metric]
    x = [c or f"run {i + 1}" for i, c in enumerate(s.created_at or [None] * len(s.values))]
    y = [v * scale for v in s.values]
    commits = [(c or "?")[:10] for c in (s.commits or [None] * len(s.values))]
    hover = [f"{rid}<br>commit {c}" for rid, c in zip(s.run_ids, commits)]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers",
            name=s.metric.replace("_", " "),
            text=hover,
            hovertemplate="%{text}<br>%{y:.4g} " + unit + "<extra></extra>",
            line={"color": "#1f77b4"},
        )
    )
    if s.alerts:
        fig.add_trace(
            go.Scatter(
                x=[x[i] for i in s.alerts],
                y=[y[i] for i in s.alerts],
                mode="markers",
                name="gate alert",
                marker={"symbol": "x", "size": 12, "color": "#d62728"},
                text=[hover[i] for i in s.alerts],
                hovertemplate="gate alert<br>%{text}<extra></extra>",
            )
        )
    for cp in s.change_points:
        i = cp["index"]
        colour = "#d62728" if cp["worse"] else "#2ca02c"
        fig.add_shape(
            type="line",
            x0=x[i],
            x1=x[i],
            y0=0,
            y1=1,
            yref="paper",
            line={"dash": "dash", "color": colour, "width": 1.5},
        )
        fig.add_annotation(
            x=x[i],
            y=1,
            yref="paper",
            yanchor="bottom",
            showarrow=False,
            text=f"×{cp['ratio']:.3f} at {(cp['commit'] or cp['run_id'] or '?')[:10]}",
            font={"color": colour, "size": 11},
        )
    fig.update_layout(
        title={"text": html.escape(s.label), "font": {"size": 14}},
        height=360,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        yaxis_title=f"{s.metric} ({unit})",
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
    )
    return fig


def _note(s) -> str:
    cv = "—" if s.between_run_cv is None else f"{s.between_run_cv:.1%}"
    mdc = "—" if s.min_detectable_change is None else f"{s.min_detectable_change:.1%}"
    cps = (
        "; ".join(
            f"×{c['ratio']:.3f} ({'worse' if c['worse'] else 'better'}) from {(c['commit'] or c['run_id'] or '?')[:10]}"
            for c in s.change_points
        )
        or "none"
    )
    return (
        f"{s.runs} runs, between-run CV {cv}, minimum detectable change {mdc}"
        + (" (too noisy to gate at the threshold)" if s.too_noisy else "")
        + f"; change points: {cps}; gate alerts: {len(s.alerts)}"
        + (";" + P99_NOTE if s.metric == "latency_p99" else "")
    )


def write_report(path: str | Path, summaries: list, title: str) -> Path:
    figs = []
    for k, s in enumerate(summaries):
        div = trend_figure(s).to_html(
            full_html=False,
            include_plotlyjs=True if k == 0 else False,
            config={"displaylogo": False, "responsive": True},
        )
        figs.append(f'<section><p class="note">{html.escape(_note(s))}</p>{div}</section>')
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><header><h1>{html.escape(title)}"
        f"</h1><p>Change points: PELT (Killick et al. 2012) via the ruptures library, l1 cost on the log "
        f"series, penalty 2·σ̂·ln n. Gate alerts: the nights <code>benchbench check</code> would have "
        f"flagged on each series alone (no Benjamini–Hochberg across series).</p></header><main>"
        + "".join(figs)
        + "</main></body></html>"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


# --- the run report's history section ------------------------------------------------------

MAX_TRENDS = 12  # trend figures in a run report (the history command draws them all)


def run_series(runs, store, metric: str = "throughput", window: int = 30, threshold: float = 0.05) -> list:
    """gate.SeriesSummary of each ok case of ``runs`` (report.data.Run) in ``store``,
    on the record's own context (machine, device, driver, framework versions), its last
    ``window`` stored runs, with change points (when ruptures is installed) and the nights
    the gate would have flagged. Series with fewer than two stored runs are left out."""
    from benchbench.case import case_label
    from benchbench.history import changepoints, gate
    from benchbench.history.store import context_facts, fingerprint

    keys: dict[tuple[str, str], str] = {}
    for run in runs:
        for rec in run.records:
            if rec.status == "ok":
                key = (rec.case_id, fingerprint(context_facts(rec, run.environment)))
                keys.setdefault(key, case_label(rec.case or {}))
    if not keys:
        return []
    found = store.series_many(list(keys), limit=window)
    cps = changepoints.available()
    out = []
    for (case_id, context), label in keys.items():
        out.append(
            gate.summarize_series(
                case_id,
                context,
                label,
                metric,
                found.get((case_id, context)) or [],
                threshold,
                change_points=cps,
                alerts=True,
                window=window,
            )
        )
    return [s for s in out if s.runs >= 2]


def section(summaries: list, store_url: str):
    """The run report's "History" section (report.page.Section), or None without series."""
    from benchbench.report.page import Section

    if not summaries:
        return None
    shown = summaries[:MAX_TRENDS]
    notes = "".join(f"<li>{html.escape(s.label)}: {html.escape(_note(s))}</li>" for s in shown)
    more = (
        f" Showing {len(shown)} of {len(summaries)} series; <code>benchbench history --store … --report "
        f"FILE</code> draws them all."
        if len(summaries) > len(shown)
        else ""
    )
    note = (
        f"Each case of this report in the history store <code>{html.escape(store_url)}</code> on the same "
        f"context (machine, device, driver, framework versions), its last runs: change points by PELT "
        f"(ruptures), dashed; red crosses: runs the nightly gate (<code>benchbench check</code>, this series "
        f"alone) would have flagged.{more}"
    )
    figs = [(f"trend-{s.case_id}-{s.context}"[:60], trend_figure(s)) for s in shown]
    return Section("history", "History", note=note, figures=figs, body=f"<ul>{notes}</ul>", wide=True)
