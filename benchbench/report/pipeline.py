"""The input-pipeline section: loader rate against workers, beside the model's rate.

One figure per augmentation preset (and batch size, device when several): x = loader
workers, y = images/s. Solid: the loader alone (data-mode cases, else the loader-only
rate each end-to-end record carries); dashed: the model alone on device tensors; dotted
markers: end to end. Where the solid line is below the dashed one the case is
input-bound. Reads records only; imports no framework.
"""

from __future__ import annotations

import html
from collections import defaultdict
from statistics import median

import plotly.graph_objects as go

from benchbench.report.colours import framework_colour
from benchbench.report.figures import base_layout, slug
from benchbench.report.page import Section

DASH = {"loader": "solid", "model": "dash", "end to end": "dot"}


def rows(runs) -> list[dict]:
    """One row per ok record with a pipeline: the config and its rates."""
    out = []
    for run in runs:
        for rec in run.records:
            p = getattr(rec, "pipeline", None) or {}
            cfg = p.get("config")
            if rec.status != "ok" or not cfg:
                continue
            c = rec.case
            out.append({"framework": c["framework"], "model": c["model"], "mode": c["mode"],
                        "batch_size": c["batch_size"], "device": c["device"], "preset": cfg["preset"],
                        "workers": cfg["num_workers"], "loader": p.get("loader_rate"),
                        "model_rate": p.get("model_rate"), "end_to_end": p.get("end_to_end_rate"),
                        "bound": p.get("text")})  # fmt: skip
    return out


def _series(group: list[dict]) -> dict[tuple, dict[int, list[float]]]:
    """(kind, framework, model) -> workers -> rates."""
    series: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    loader_from_data = {r["framework"] for r in group if r["mode"] == "data"}
    for r in group:
        if r["loader"] and (r["mode"] == "data" or r["framework"] not in loader_from_data):
            series[("loader", r["framework"], "")][r["workers"]].append(r["loader"])
        if r["mode"] != "data":
            for kind, key in (("model", "model_rate"), ("end to end", "end_to_end")):
                if r[key]:
                    series[(kind, r["framework"], r["model"])][r["workers"]].append(r[key])
    return series


def figures(data: list[dict]) -> list[tuple[str, go.Figure]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in data:
        groups[(r["preset"], r["batch_size"], r["device"])].append(r)
    several = {k: len({g[i] for g in groups}) > 1 for i, k in enumerate(("preset", "batch", "device"))}
    out = []
    for (preset, batch, device), group in sorted(groups.items()):
        fig = go.Figure()
        for (kind, fw, model), by_workers in sorted(_series(group).items()):
            xs = sorted(by_workers)
            ys = [median(by_workers[x]) for x in xs]
            name = f"{kind} · {fw}" + (f" · {model}" if model else "")
            fig.add_trace(go.Scatter(
                x=xs, y=ys, name=name, mode="lines+markers" if kind != "end to end" else "markers+lines",
                line=dict(color=framework_colour(fw), dash=DASH[kind], width=2 if kind == "loader" else 1.5),
                marker=dict(symbol="circle" if kind == "loader" else "diamond" if kind == "model" else "x"),
                hovertemplate=f"{html.escape(name)}<br>workers %{{x}}: %{{y:,.1f}} img/s<extra></extra>"))  # fmt: skip
        title = (
            f"preset {preset}"
            + (f", batch {batch}" if several["batch"] else "")
            + (f", {device}" if several["device"] else "")
        )
        fig.update_layout(**base_layout(f"Loader vs model rate — {title}", "loader workers", "images/s"))
        fig.update_xaxes(tickmode="array", tickvals=sorted({r["workers"] for r in group}))
        out.append((slug("pipeline", preset, str(batch), device), fig))
    return out


def bound_table(data: list[dict]) -> str:
    lines = [r for r in data if r["mode"] != "data" and r["bound"]]
    if not lines:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(r['framework'])}</td><td>{html.escape(r['model'])}</td>"
        f"<td>{html.escape(r['preset'])}</td><td>{r['workers']}</td><td>{html.escape(r['bound'])}</td></tr>"
        for r in sorted(lines, key=lambda r: (r["framework"], r["model"], r["preset"], r["workers"]))
    )
    return (
        "<table><thead><tr><th>framework</th><th>model</th><th>preset</th><th>workers</th>"
        f"<th>bound</th></tr></thead><tbody>{body}</tbody></table>"
    )


def section(runs) -> Section | None:
    data = rows(runs)
    if not data:
        return None
    return Section(
        "pipeline",
        "Input pipeline: loader vs model",
        figures=figures(data),
        body=bound_table(data),
        wide=True,
        note="Solid: the loader alone (images/s); dashed: the model alone on tensors already on the device; "
        "dotted: end to end (loader, host→device copy and model step in one timed iteration). All three "
        "come from the same worker, measured one after another. Solid below dashed: input-bound.",
    )
