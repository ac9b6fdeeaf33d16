"""The report's energy section: energy per sample with its source, the unavailable
domains with their reasons, and what the telemetry sampler saw over the timed window
(power in W, utilisation in %). Reads only the stored records (``energy`` and
``telemetry``, see :mod:`benchbench.measure.telemetry`); every stored string is escaped.

An unknown figure stays unknown: a domain whose energy could not be measured is listed
with its reason, never drawn as a zero bar.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from benchbench.report.colours import variant_colour
from benchbench.report.figures import base_layout, case_category, case_hover, esc, order_rows, sig, slug
from benchbench.report.frame import num
from benchbench.report.page import Section, html_table, td

MAX_SERIES_CASES = 12  # time series drawn for at most this many cases (all are in results.jsonl)
DOMAIN_LABEL = {"gpu": "GPU (NVML)", "cpu": "CPU packages (RAPL)"}
SOURCE_NOTE = {
    "nvml-energy-counter": "NVML total-energy counter, differenced over the window",
    "nvml-power-integral": "NVML power samples integrated over the window",
    "rapl": "RAPL package energy counters, differenced over the window",
}
# (series key test, figure title, y-axis title)
SERIES_KINDS = (
    (lambda k: k.endswith("power_w"), "Power over the timed window", "power (W)"),
    (lambda k: k.endswith("_pct"), "Utilisation over the timed window", "utilisation (%)"),
)
SERIES_NAMES = {
    "cpu.process_cpu_pct": "worker CPU (% of one core)",
    "cpu.system_cpu_pct": "machine CPU (% of all cores)",
    "nvml.power_w": "GPU power (NVML gauge)",
    "nvml.counter_power_w": "GPU power (from the energy counter)",
    "nvml.gpu_util_pct": "GPU utilisation",
    "nvml.mem_util_pct": "GPU memory-bus utilisation",
}
# the machine-wide and secondary readings dotted, so a case's lines tell apart by style
SERIES_DASH = {"cpu.system_cpu_pct": "dot", "nvml.mem_util_pct": "dot", "nvml.counter_power_w": "dot"}
NOTE = (
    "Energy covers the timed window only (warm-up excluded), per domain, from the best source the "
    "machine has: a hardware energy counter differenced over the window, else power samples integrated "
    "over it; the source is named on every figure. Above idle: the total minus the idle power measured "
    "before the case (<code>telemetry: {idle_baseline_s: …}</code>) times the window. Unavailable domains "
    "are listed with the reason, never counted as zero."
)


def _records_by_row(runs) -> dict[tuple[str, str], object]:
    return {(str(run.path), str((rec.case or {}).get("case_id", ""))): rec for run in runs for rec in run.records}


def energy_rows(df: pd.DataFrame, recs: dict) -> list[tuple[object, str, dict]]:
    """(frame row, domain, the record's energy entry) for every ok case and domain it
    reports; ``recs``: :func:`_records_by_row`."""
    out = []
    for r in order_rows(df[df["status"] == "ok"]).itertuples():
        rec = recs.get((r.run_dir, r.case_id))
        energy = getattr(rec, "energy", None) or {}
        primary = energy.get("primary")
        domains = [d for d in ("gpu", "cpu") if isinstance(energy.get(d), dict)]
        domains.sort(key=lambda d: d != primary)
        out += [(r, d, energy[d]) for d in domains]
    return out


def _energy_hover(entry: dict, domain: str) -> str:
    lines = [
        f"energy ({DOMAIN_LABEL.get(domain, esc(domain))}): {sig(num(entry.get('energy_j')), ' J')} over "
        f"the timed window · source {esc(entry.get('source'))}",
        f"average {sig(num(entry.get('avg_w')), ' W')} · {sig(num(entry.get('j_per_sample')), ' J/sample')}"
        f" · {sig(num(entry.get('samples_per_j')), ' samples/J')}",
    ]
    if num(entry.get("above_idle_j_per_sample")) is not None:
        lines.append(
            f"above idle ({sig(num(entry.get('idle_w')), ' W')} idle): "
            f"{sig(num(entry['above_idle_j_per_sample']), ' J/sample')}"
        )
    if entry.get("note"):  # a MIG slice: the whole GPU's; several GPUs: their sum
        lines.append(esc(entry["note"]))
    for w in entry.get("warnings") or []:
        lines.append("warning: " + esc(w))
    return "<br>".join(lines)


def per_sample_figure(rows: list[tuple[object, str, dict]]) -> list[tuple[str, go.Figure]]:
    """Bars of J per sample, one figure per energy domain measured (a GPU case's CPU
    packages too, where RAPL is readable), colour = variant."""
    measured = [(r, d, e) for r, d, e in rows if num(e.get("j_per_sample")) is not None]
    out = []
    for domain in ("gpu", "cpu"):
        part = [(r, e) for r, d, e in measured if d == domain]
        if not part:
            continue
        cats = list(dict.fromkeys(case_category(r) for r, _ in part))
        fig = go.Figure(
            layout=base_layout(
                f"Energy per sample, {DOMAIN_LABEL[domain]}",
                "model · batch size · device · mode",
                "energy per sample (J/sample, timed window)",
                barmode="group",
            )
        )
        series: dict[str, list] = {}
        for r, e in part:
            series.setdefault(r.series, []).append((r, e))
        for name, items in series.items():
            fig.add_bar(
                name=esc(name),
                offsetgroup=esc(name),
                x=[case_category(r) for r, _ in items],
                y=[num(e["j_per_sample"]) for _, e in items],
                marker=dict(color=variant_colour(items[0][0].variant)),
                hovertext=[case_hover(r) + "<br>" + _energy_hover(e, domain) for r, e in items],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats)
        out.append((slug("energy", domain), fig))
    return out


def series_figures(df: pd.DataFrame, recs: dict) -> tuple[list[tuple[str, go.Figure]], int, int]:
    """Power and utilisation time series of the timed window for the first
    ``MAX_SERIES_CASES`` ok cases that have them; (figures, cases drawn, cases with series)."""
    with_series = []
    for r in order_rows(df[df["status"] == "ok"]).itertuples():
        series = ((getattr(recs.get((r.run_dir, r.case_id)), "telemetry", None) or {}).get("series")) or {}
        if len(series.get("t_s") or []) > 1:
            with_series.append((r, series))
    drawn = with_series[:MAX_SERIES_CASES]
    out = []
    for test, title, axis in SERIES_KINDS:
        fig = go.Figure(layout=base_layout(title, "time since the timed window began (s)", axis))
        for r, series in drawn:
            label = " · ".join(
                [esc(r.model), f"bs{r.batch_size}", esc(r.device), esc(r.mode), esc(r.series)]
                + ([esc(r.origin)] if r.origin else [])
            )
            for key in sorted(k for k in series if k != "t_s" and test(k)):
                ys = series[key]
                if not any(num(v) is not None for v in ys):
                    continue
                name = f"{label} — {esc(SERIES_NAMES.get(key, key))}"
                fig.add_scatter(
                    x=series["t_s"],
                    y=ys,
                    mode="lines",
                    name=name,
                    legendgroup=esc(r.case_id),
                    line=dict(width=1.5, color=variant_colour(r.variant), dash=SERIES_DASH.get(key)),
                    hovertemplate=f"{name}<br>%{{x:.2f}} s: %{{y:.4g}}<extra></extra>",
                )
        if fig.data:
            fig.update_layout(legend=dict(y=-0.28))  # below the axis title: the names are long
            out.append((slug("telemetry", axis.split(" ")[0]), fig))
    return out, len(drawn), len(with_series)


def _table_html(rows: list[tuple[object, str, dict]]) -> str:
    measured = [(r, d, e) for r, d, e in rows if num(e.get("energy_j")) is not None]
    parts = []
    if measured:
        idle = any(num(e.get("above_idle_j_per_sample")) is not None for _, _, e in measured)
        heads = [
            ("model", False),
            ("variant", False),
            ("mode", False),
            ("batch", True),
            ("device", False),
            ("domain", False),
            ("source", False),
            ("avg W", True),
            ("J/sample", True),
            ("samples/J", True),
        ]
        heads += [("idle W", True), ("above idle J/sample", True)] if idle else []
        heads.append(("note", False))
        body = []
        for r, d, e in measured:
            jps, spj, w = num(e.get("j_per_sample")), num(e.get("samples_per_j")), num(e.get("avg_w"))
            above, idle_w = num(e.get("above_idle_j_per_sample")), num(e.get("idle_w"))
            note = "; ".join(esc(x) for x in ([e["note"]] if e.get("note") else []) + (e.get("warnings") or []))
            if idle and above is None:
                note = "; ".join(x for x in (note, "above idle: " + esc(e.get("idle_reason") or "unavailable")) if x)
            idle_cells = (
                [
                    td(sig(idle_w) if idle_w is not None else "", idle_w, "num"),
                    td(f"{above:.4g}" if above is not None else "", above, "num"),
                ]
                if idle
                else []
            )
            body.append("<tr>" + "".join([
                td(esc(r.model)), td(esc(r.variant)), td(esc(r.mode)), td(str(r.batch_size), r.batch_size, "num"),
                td(esc(r.device) + (f" @ {esc(r.origin)}" if r.origin else "")), td(esc(DOMAIN_LABEL.get(d, d))),
                f'<td title="{esc(SOURCE_NOTE.get(e.get("source"), ""))}">{esc(e.get("source"))}</td>',
                td(sig(w) if w is not None else "", w, "num"),
                td(f"{jps:.4g}" if jps is not None else "", jps, "num"),
                td(f"{spj:,.4g}" if spj is not None else "", spj, "num"),
                *idle_cells,
                td(note, cls="wrap"),
            ]) + "</tr>")  # fmt: skip
        parts.append(html_table("bb-energy", heads, body))
    missing: dict[tuple[str, str], int] = {}
    for _, d, e in rows:
        if num(e.get("energy_j")) is None:
            key = (d, str(e.get("reason") or "no reason recorded"))
            missing[key] = missing.get(key, 0) + 1
    if missing:
        items = "".join(
            f"<li>{esc(DOMAIN_LABEL.get(d, d))}: unavailable in {n} case{'s' if n > 1 else ''} — {esc(why)}</li>"
            for (d, why), n in sorted(missing.items())
        )
        parts.append(f'<ul class="unavailable">{items}</ul>')
    return "".join(parts)


def section(runs, df: pd.DataFrame) -> Section | None:
    """The "Energy and telemetry" section, or None when no ok record carries either."""
    if df.empty:
        return None
    recs = _records_by_row(runs)
    rows = energy_rows(df, recs)
    figs = per_sample_figure(rows)
    series, drawn, total = series_figures(df, recs)
    if not rows and not series:
        return None
    note = NOTE
    if series:
        note += (
            f" Time series: the sampler's readings inside the timed window (downsampled to at most 300 "
            f"points), for {drawn} of the {total} cases that have them; every case's series is in "
            f"<code>results.jsonl</code> (<code>telemetry.series</code>)."
        )
    return Section(
        "energy", "Energy and telemetry", note=note, figures=figs + series, body=_table_html(rows), wide=True
    )
