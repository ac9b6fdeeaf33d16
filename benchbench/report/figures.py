"""Plotly figures from the tidy frame of :mod:`benchbench.report.frame`.

Every function returns a list of ``(slug, figure)`` pairs, empty when there is nothing
to draw (the page then leaves the section out). Every user string that reaches Plotly
(names, categories, hover text) is HTML-escaped first: Plotly renders its text as SVG
text and turns entities back into characters, so ``<script>`` shows as ``<script>``
while a tag smuggled into a model name cannot become markup (or a link).
"""

from __future__ import annotations

import math
import re

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchbench.measure.stats import percentile
from benchbench.report.colours import framework_colour, framework_pattern, variant_colour
from benchbench.units import esc as _esc
from benchbench.units import fmt_bytes, fmt_ms

HEIGHT = 440
MAX_BOX_POINTS = 2000  # above this a box is drawn from its quartiles (computed from all samples)
MODE_DASH = {"inference": "solid", "train": "dash"}
DEVICE_SYMBOL = {"cpu": "circle", "cuda": "square", "tpu": "diamond"}
MACHINE_SYMBOL = ("", "-open", "-dot", "-open-dot")  # the same device on another machine
THROUGHPUT_AXIS = "throughput at median time (samples/s)"


def esc(value) -> str:
    """Text for Plotly labels (quotes kept: Plotly does not parse attributes)."""
    return _esc(value, quote=False)


def slug(*parts: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return s[:60] or "figure"


# --- labels and hover ------------------------------------------------------------------


def device_label(r) -> str:
    return esc(r.device) + (f" @ {esc(r.origin)}" if r.origin else "")


def case_category(r, *, model=True, mode=True, variant=False) -> str:
    """An x-axis category: the case minus what the traces or the figure already tell."""
    parts = [f"bs{r.batch_size}", device_label(r)]
    if mode:
        parts.append(esc(r.mode))
    if variant:
        parts.append(esc(r.variant))
    return (f"{esc(r.model)}<br>" if model else "") + " · ".join(parts)


def sig(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.4g}{unit}" if abs(x) < 1e4 else f"{x:,.0f}{unit}"


def _isnum(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _count(x) -> str:
    """An integer field that pandas may have turned into a float (or NaN)."""
    if not _isnum(x):
        return "n/a"
    return str(int(x)) if float(x).is_integer() else esc(x)


def case_hover(r) -> str:
    """The whole case and its headline figures, as Plotly hover text (escaped)."""
    lines = [
        f"<b>{esc(r.model)}</b>  {esc(r.framework)} · {esc(r.variant)} · {esc(r.mode)}",
        f"batch {r.batch_size} · input {esc(r.input_shape)} · threads {_count(r.threads)}",
        f"device {esc(r.device)}" + (f" ({esc(r.device_name)})" if r.device_name else ""),
        f"machine {esc(r.machine)} · run {esc(r.run)}",
        f"case {esc(r.case_id)} · status {esc(r.status)}",
    ]
    if r.optimizer:
        lines[1] += f" · optimizer {esc(r.optimizer)}"
    if _isnum(r.median_s):
        ci = (
            f" (95% CI {fmt_ms(r.ci_low_s)}–{fmt_ms(r.ci_high_s)})"
            if _isnum(r.ci_low_s) and _isnum(r.ci_high_s)
            else " (CI n/a: too few samples)"
        )
        lines += [
            f"latency p50 {fmt_ms(r.median_s)} ms/batch{ci} · p99 {fmt_ms(r.p99_s)} ms{_p99_of(r)}",
            f"throughput at median {sig(r.thr_median)} samples/s"
            + (f" (CI {sig(r.thr_low)}–{sig(r.thr_high)})" if _isnum(r.thr_low) else ""),
            f"throughput over the timed window {sig(r.throughput)} samples/s · n={_count(r.n)}",
        ]
        if r.noisy:
            lines.append("noisy: IQR > 10% of the median")
        if r.target_met is False:
            lines.append(f"CI target not met (stopped on {esc(r.stop_reason)})")
    if _isnum(getattr(r, "speedup", None)):
        lines.append(f"speed-up vs baseline ×{r.speedup:.2f}")
    if _isnum(r.host_peak_rss_bytes):
        dev = fmt_bytes(int(r.device_peak_bytes)) if _isnum(r.device_peak_bytes) else "n/a"
        above = getattr(r, "host_above_build_bytes", None)
        above_text = f" ({fmt_bytes(int(above))} above the build start)" if _isnum(above) else ""
        lines.append(f"host peak RSS {fmt_bytes(int(r.host_peak_rss_bytes))}{above_text} · device peak {dev}")
    return "<br>".join(lines)


# --- layout helpers --------------------------------------------------------------------


def base_layout(title: str, xtitle: str, ytitle: str, **extra) -> dict:
    axis = dict(
        gridcolor="#e5e7eb",
        linecolor="#9ca3af",
        zerolinecolor="#d1d5db",
        automargin=True,
        ticks="outside",
        tickcolor="#9ca3af",
    )
    layout = dict(
        template="none",
        title=dict(text=title, x=0.005, xanchor="left", font=dict(size=15)),
        font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12, color="#1f2937"),
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        height=HEIGHT,
        margin=dict(l=10, r=10, t=48, b=10),
        showlegend=True,  # even for one series: the legend names the colour
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, xanchor="left"),
        hoverlabel=dict(namelength=-1, align="left", bgcolor="#ffffff", font=dict(size=12)),
        xaxis=dict(axis, title=dict(text=xtitle)),
        yaxis=dict(axis, title=dict(text=ytitle)),
    )
    layout.update(extra)
    return layout


def _wide(values) -> bool:
    """A log axis when the values span more than 30×."""
    vals = [v for v in values if _isnum(v) and v > 0]
    return bool(vals) and max(vals) / min(vals) > 30


def order_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["model", "mode", "device", "origin", "batch_size", "framework", "variant"], kind="stable")


def _ci_arrays(part: pd.DataFrame):
    plus = [h - m if _isnum(h) else None for h, m in zip(part["thr_high"], part["thr_median"])]
    minus = [m - lo if _isnum(lo) else None for lo, m in zip(part["thr_low"], part["thr_median"])]
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1.2, width=3, color="#374151")


def _p99_of(r) -> str:
    """'' for percentiles of single iterations; ' (of block means of B iterations)' otherwise."""
    basis = getattr(r, "percentiles_of", "single iterations")
    return "" if basis == "single iterations" else f" (of {esc(basis.split(':')[0])})"


def _latency_ci_ms(part: pd.DataFrame):
    plus = [(h - m) * 1e3 if _isnum(h) else None for h, m in zip(part["ci_high_s"], part["median_s"])]
    minus = [(m - lo) * 1e3 if _isnum(lo) else None for lo, m in zip(part["ci_low_s"], part["median_s"])]
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1.2, width=3)


def _several(df: pd.DataFrame, col: str) -> bool:
    return df[col].nunique() > 1


# --- throughput ------------------------------------------------------------------------


def throughput(ok: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """Grouped bars, one figure per mode: model × batch × device on x, a bar per
    framework/variant (colour = variant, pattern = framework), CI of the median as
    error bars converted to throughput bounds."""
    out = []
    if ok.empty:
        return out
    fw_patterns = _several(ok, "framework")
    for mode, part in order_rows(ok).groupby("mode", sort=False):
        cats = list(dict.fromkeys(case_category(r, mode=False) for r in part.itertuples()))
        fig = go.Figure(
            layout=base_layout(
                f"Throughput, {esc(mode)}",
                "model · batch size · device",
                THROUGHPUT_AXIS,
                barmode="group",
                bargap=0.2,
                bargroupgap=0.05,
            )
        )
        for (fw, variant), g in part.groupby(["framework", "variant"], sort=False):
            fig.add_bar(
                name=esc(g["series"].iloc[0]),
                legendgroup=esc(g["series"].iloc[0]),
                offsetgroup=f"{fw}/{variant}",
                x=[case_category(r, mode=False) for r in g.itertuples()],
                y=list(g["thr_median"]),
                error_y=_ci_arrays(g),
                marker=dict(
                    color=variant_colour(variant),
                    line=dict(width=0),
                    pattern=dict(shape=framework_pattern(fw)) if fw_patterns else None,
                ),
                hovertext=[case_hover(r) for r in g.itertuples()],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats)
        if _wide(part["thr_median"]):
            fig.update_yaxes(type="log", title_text=THROUGHPUT_AXIS + ", log")
        out.append((slug("throughput", mode), fig))
    return out


# --- latency distributions -------------------------------------------------------------


def _box_values(samples: list[float]) -> dict:
    ms = [s * 1e3 for s in samples]
    if len(ms) <= MAX_BOX_POINTS:
        return dict(y=[float(f"{v:.6g}") for v in ms])
    xs = sorted(ms)
    q1, med, q3 = percentile(xs, 25), percentile(xs, 50), percentile(xs, 75)
    iqr = q3 - q1
    lo = min(v for v in xs if v >= q1 - 1.5 * iqr)
    hi = max(v for v in xs if v <= q3 + 1.5 * iqr)
    return dict(q1=[q1], median=[med], q3=[q3], lowerfence=[lo], upperfence=[hi], mean=[sum(xs) / len(xs)])


def latency(ok: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """Box plots of the raw per-iteration times (ms per batch), one figure per model,
    one box per case, grouped by variant; beside each box, open diamonds mark the median of
    each of the case's worker processes, so a reader sees when processes disagree."""
    out = []
    rows = ok[ok["samples"].map(len) > 0] if not ok.empty else ok
    for model, part in order_rows(rows).groupby("model", sort=False):
        cats = list(dict.fromkeys(case_category(r, model=False) for r in part.itertuples()))
        fig = go.Figure(
            layout=base_layout(
                f"Latency distribution, {esc(model)}",
                "batch size · device · mode",
                "time per iteration (ms per batch)",
                boxmode="group",
                boxgroupgap=0.15,
                boxgap=0.25,
            )
        )
        for (_fw, variant), g in part.groupby(["framework", "variant"], sort=False):
            series = esc(g["series"].iloc[0])
            # the legend entry of the series: the boxes below name their own case
            fig.add_scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=series,
                legendgroup=series,
                marker=dict(symbol="square", size=11, color=variant_colour(variant)),
                hoverinfo="skip",
            )
        for r in part.itertuples():
            series = esc(r.series)
            values = _box_values(r.samples)
            note = f"<br>n={len(r.samples)} samples" + (
                f", each the mean of a block of {r.block_size} iterations" if r.block_size and r.block_size > 1 else ""
            )
            if "q1" in values:
                note += " (box drawn from the quartiles of all samples)"
                values["x"] = [case_category(r, model=False)]
            else:
                values["x0"] = case_category(r, model=False)
            fig.add_box(
                # box statistics hover with this name; outlier points with the whole case
                name=" · ".join([esc(r.model), series] + ([esc(r.origin)] if r.origin else [])),
                legendgroup=series,
                showlegend=False,
                offsetgroup=f"{r.framework}/{r.variant}",
                marker=dict(color=variant_colour(r.variant), size=3),
                line=dict(width=1.2),
                boxpoints="outliers",
                hoveron="boxes+points",
                hovertemplate="this iteration: %{y:.4g} ms<br>" + case_hover(r) + note + "<extra></extra>",
                **values,
            )
            if len(r.process_medians_s) > 1:  # each worker process's median: do the processes agree?
                fig.add_scatter(
                    x=[case_category(r, model=False)] * len(r.process_medians_s),
                    y=[m * 1e3 for m in r.process_medians_s],
                    mode="markers",
                    legendgroup=series,
                    showlegend=False,
                    offsetgroup=f"{r.framework}/{r.variant}",
                    name=f"{esc(r.model)} · {series}: process medians",
                    marker=dict(symbol="diamond-open", size=8, color="#222", line=dict(width=1.2)),
                    customdata=list(range(1, len(r.process_medians_s) + 1)),
                    hovertemplate="process %{customdata}: median %{y:.4g} ms<br>"
                    + case_hover(r)
                    + f"<br>{len(r.process_medians_s)} worker processes<extra></extra>",
                )
        fig.update_layout(scattermode="group")
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats)
        if _wide([s * 1e3 for s in part["median_s"]]):
            fig.update_yaxes(type="log", title_text="time per iteration (ms per batch), log")
        out.append((slug("latency", model), fig))
    return out


# --- batch-size scaling ----------------------------------------------------------------


def scaling(ok: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """Throughput and p50 latency against batch size, one figure per model, a line per
    device/mode/framework/variant (only lines with at least two batch sizes)."""
    out = []
    if ok.empty:
        return out
    line_key = ["model", "device", "origin", "mode", "framework", "variant"]
    sizes = ok.groupby(line_key)["batch_size"].transform("nunique")
    rows = ok[sizes > 1]
    for model, part in order_rows(rows).groupby("model", sort=False):
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
        layout = base_layout(f"Batch-size scaling, {esc(model)}", "", "", height=HEIGHT + 180)
        layout.pop("xaxis"), layout.pop("yaxis")
        fig.update_layout(**layout)
        batches = sorted(set(part["batch_size"]))
        origins = sorted(set(part["origin"]))
        for key, g in part.groupby(line_key[1:], sort=False):
            device, origin, mode, fw, variant = key
            g = g.sort_values("batch_size")
            r0 = next(g.itertuples())
            name = " · ".join([device_label(r0), esc(mode), esc(r0.series)])
            symbol = DEVICE_SYMBOL.get(device.split(":")[0], "triangle-up") + MACHINE_SYMBOL[origins.index(origin) % 4]
            style = dict(
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line=dict(color=variant_colour(variant), dash=MODE_DASH.get(mode, "dot"), width=2),
                marker=dict(symbol=symbol, size=8),
                hovertext=[case_hover(r) for r in g.itertuples()],
                hovertemplate="%{hovertext}<extra></extra>",
            )
            fig.add_scatter(
                x=list(g["batch_size"]), y=list(g["thr_median"]), error_y=_ci_arrays(g), row=1, col=1, **style
            )
            fig.add_scatter(
                x=list(g["batch_size"]),
                y=[m * 1e3 for m in g["median_s"]],
                row=2,
                col=1,
                error_y=_latency_ci_ms(g),
                showlegend=False,
                **style,
            )
        grid = dict(gridcolor="#e5e7eb", linecolor="#9ca3af", automargin=True, ticks="outside")
        fig.update_xaxes(type="log", tickvals=batches, ticktext=[str(b) for b in batches], **grid)
        fig.update_xaxes(title_text="batch size (samples per batch, log scale)", row=2, col=1)
        fig.update_yaxes(**grid)
        thr_log, lat_log = _wide(part["thr_median"]), _wide(part["median_s"])
        fig.update_yaxes(
            type="log" if thr_log else "linear",
            row=1,
            col=1,
            title_text="throughput at median (samples/s)" + (", log" if thr_log else ""),
        )
        fig.update_yaxes(
            type="log" if lat_log else "linear",
            row=2,
            col=1,
            title_text="p50 latency (ms per batch)" + (", log" if lat_log else ""),
        )
        out.append((slug("scaling", model), fig))
    return out


# --- frameworks ------------------------------------------------------------------------


def frameworks(ok: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """The same case on several frameworks, side by side (colour = framework)."""
    if ok.empty:
        return []
    key = ["model", "batch_size", "device", "origin", "mode", "variant", "input_shape"]
    n_fw = ok.groupby(key)["framework"].transform("nunique")
    rows = order_rows(ok[n_fw > 1])
    if rows.empty:
        return []
    cats = list(dict.fromkeys(case_category(r, variant=True) for r in rows.itertuples()))
    fig = go.Figure(
        layout=base_layout(
            "Framework comparison", "model · batch size · device · mode · variant", THROUGHPUT_AXIS, barmode="group"
        )
    )
    for fw, g in rows.groupby("framework", sort=True):
        fig.add_bar(
            name=esc(fw),
            offsetgroup=esc(fw),
            x=[case_category(r, variant=True) for r in g.itertuples()],
            y=list(g["thr_median"]),
            error_y=_ci_arrays(g),
            marker=dict(color=framework_colour(fw)),
            hovertext=[case_hover(r) for r in g.itertuples()],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats)
    if _wide(rows["thr_median"]):
        fig.update_yaxes(type="log", title_text=THROUGHPUT_AXIS + ", log")
    return [("frameworks", fig)]


# --- memory ----------------------------------------------------------------------------


def memory(df: pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """Peak host RSS of the worker, the part of it above the RSS as the model build started
    (the model, variant and working set, without the framework's own footprint) and peak
    device memory (MiB), a bar per case."""
    out = []
    for column, title, axis, name in (
        ("host_peak_rss_bytes", "Host memory: peak RSS of the worker", "peak host RSS (MiB)", "host"),
        ("host_above_build_bytes", "Host memory above the framework: peak RSS above the RSS as the model build "
         "started (model, variant, working set)", "peak host RSS above the build start (MiB)", "above"),
        ("device_peak_bytes", "Device memory: peak allocated", "peak device memory allocated (MiB)", "device"),
    ):  # fmt: skip
        if column not in df:
            continue
        rows = order_rows(df[df[column].notna()]) if not df.empty else df
        if rows.empty:
            continue
        cats = list(dict.fromkeys(case_category(r) for r in rows.itertuples()))
        fig = go.Figure(layout=base_layout(title, "model · batch size · device · mode", axis, barmode="group"))
        for (fw, variant), g in rows.groupby(["framework", "variant"], sort=False):
            fig.add_bar(
                name=esc(g["series"].iloc[0]),
                offsetgroup=f"{fw}/{variant}",
                x=[case_category(r) for r in g.itertuples()],
                y=[v / 2**20 for v in g[column]],
                marker=dict(
                    color=variant_colour(variant),
                    pattern=dict(shape=framework_pattern(fw)) if _several(rows, "framework") else None,
                ),
                hovertext=[case_hover(r) for r in g.itertuples()],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=cats)
        out.append((slug("memory", name), fig))
    return out
