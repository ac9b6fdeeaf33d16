"""The quality section (mode ``fit``, issue 19): learning curves, speed against quality,
time and energy to target per machine. Reads records only; imports no framework.

- A table of every fit-mode case: the seeds that met the target, the median time,
  samples and energy to it with their spread over the seeds, the training throughput,
  validation accuracy and macro-F1 and (variants) their change against the trained fp32
  model, and the inference throughput of what the fit produced.
- Learning curves, one figure per case that trains (fp32, the transfer pair): loss and
  accuracy per epoch, training and validation, one shade per seed; the target dashed.
- Speed against quality, one figure per model (and data set): inference samples/s (x)
  against validation F1 (y), one point per variant and framework; the Pareto front (no
  other point both faster and better) joined and marked.
- Time and energy to target per machine: the fits of each machine side by side.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchbench.report.colours import framework_colour, variant_colour
from benchbench.report.figures import base_layout, slug
from benchbench.report.page import Section, html_table, td

SEED_DASH = ("solid", "dot", "dash", "longdash", "dashdot", "longdashdot")


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _data_label(case: dict) -> str:
    return data_label(case.get("data") or {})


def data_label(data: dict) -> str:
    if data.get("source") == "sklearn":
        return f"sklearn {data.get('name')}"
    if data.get("source") == "folder":
        return f"folder {data.get('path')}"
    shift = f", hue shift {data['hue_shift']:g}" if data.get("hue_shift") else ""
    classes = data.get("classes")
    classes = len(classes) if isinstance(classes, list) else classes
    return f"generated {data.get('images')}×{data.get('size')}px, {classes} classes{shift}"


def rows(runs) -> list[dict]:
    """One row per fit-mode record (ok or not): what the table and the figures draw."""
    out = []
    for run in runs:
        for rec in run.records:
            case = rec.case or {}
            if case.get("mode") != "fit":
                continue
            q = getattr(rec, "quality", None) or {}
            per_seed = q.get("per_seed") or ([q] if q.get("kind") else [])
            out.append({
                "run": run.name, "machine": rec.host or run.host or "unknown host",
                "device": case.get("device"), "device_name": (rec.runtime or {}).get("device_name"),
                "framework": case.get("framework"), "model": case.get("model"), "variant": case.get("variant"),
                "batch_size": case.get("batch_size"), "data": _data_label(case), "status": rec.status,
                "reason": rec.reason, "kind": q.get("kind"), "target": q.get("target"),
                "seeds_run": q.get("seeds_run", len(per_seed)), "seeds_reached": q.get("seeds_reached"),
                "spread": q.get("spread") or {}, "time_to_target_s": q.get("time_to_target_s"),
                "samples_to_target": q.get("samples_to_target"), "energy_to_target_j": q.get("energy_to_target_j"),
                "energy_reason": next((s.get("energy_reason") for s in per_seed if s.get("energy_reason")), None),
                "train_throughput": q.get("train_throughput"), "metrics": q.get("metrics") or {},
                "delta": q.get("delta") or {}, "inference": q.get("inference_throughput"),
                "backbone": q.get("backbone") or {}, "per_seed": per_seed,
                "to_target_reason": q.get("to_target_reason"),
            })  # fmt: skip
    return out


def _fmt(x, spec: str, unit: str = "") -> str:
    v = _num(x)
    return "" if v is None else f"{v:{spec}}{unit}"


def _spread(r: dict, key: str, spec: str) -> str:
    s = r["spread"].get(key) or {}
    if (s.get("n") or 0) < 2:
        return ""
    return f" [{_fmt(s.get('min'), spec)}–{_fmt(s.get('max'), spec)}]"


def _to_target(r: dict) -> str:
    if r["status"] != "ok" or r["kind"] not in ("fit", "transfer"):
        return ""
    if r["time_to_target_s"] is None:
        return html.escape(r.get("to_target_reason") or ("no target" if r["target"] is None else "not reached"))
    return html.escape(_fmt(r["time_to_target_s"], ".2f") + _spread(r, "time_to_target_s", ".2f"))


def _energy(r: dict) -> str:
    if r["energy_to_target_j"] is not None:
        return html.escape(_fmt(r["energy_to_target_j"], ".4g") + _spread(r, "energy_to_target_j", ".4g"))
    if r["status"] == "ok" and r["kind"] in ("fit", "transfer") and r["energy_reason"]:
        return f'<span title="{html.escape(r["energy_reason"])}">n/a</span>'
    return ""


def table(data: list[dict]) -> str:
    heads = [("status", False), ("framework", False), ("model", False), ("variant", False), ("data", False),
             ("seeds reached", True), ("time to target s [min–max]", False), ("samples to target", True),
             ("energy to target J", False), ("train samples/s", True), ("val accuracy", True), ("val F1", True),
             ("Δ accuracy vs fp32", True), ("Δ F1 vs fp32", True), ("inference samples/s", True),
             ("note", False)]  # fmt: skip
    body = []
    order = {"fp32": 0, "frozen_backbone": 1, "finetune": 2}
    for r in sorted(
        data, key=lambda r: (r["model"], r["data"], r["framework"], order.get(r["variant"], 3), r["variant"])
    ):
        m, d = r["metrics"], r["delta"]
        reached = "" if r["seeds_reached"] is None else f"{r['seeds_reached']}/{r['seeds_run']}"
        note = r["reason"] if r["status"] != "ok" else ""
        if r["kind"] == "transfer" and r["backbone"]:
            bb = r["backbone"]
            note = f"backbone: {data_label(bb.get('data') or {})}"
        cells = [
            td(html.escape(r["status"]), cls=f"status-{html.escape(r['status'])}"),
            td(html.escape(str(r["framework"]))), td(html.escape(str(r["model"]))),
            td(html.escape(str(r["variant"]))), td(html.escape(r["data"])),
            td(reached, r["seeds_reached"], "num"), td(_to_target(r), cls="num"),
            td(_fmt(r["samples_to_target"], ",.0f"), _num(r["samples_to_target"]), "num"),
            td(_energy(r), cls="num"),
            td(_fmt(r["train_throughput"], ",.1f"), _num(r["train_throughput"]), "num"),
            td(_fmt(m.get("accuracy"), ".4f"), _num(m.get("accuracy")), "num"),
            td(_fmt(m.get("f1"), ".4f"), _num(m.get("f1")), "num"),
            td(_fmt(d.get("accuracy"), "+.4f"), _num(d.get("accuracy")), "num"),
            td(_fmt(d.get("f1"), "+.4f"), _num(d.get("f1")), "num"),
            td(_fmt(r["inference"], ",.1f"), _num(r["inference"]), "num"),
            td(html.escape(note or ""), cls="wrap" if r["status"] != "ok" else ""),
        ]  # fmt: skip
        body.append(f"<tr>{''.join(cells)}</tr>")
    return html_table("bb-quality", heads, body)


def learning_curves(data: list[dict]) -> list[tuple[str, go.Figure]]:
    out = []
    for r in data:
        if r["status"] != "ok" or r["kind"] not in ("fit", "transfer"):
            continue
        fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.12)
        colour = framework_colour(r["framework"])
        for i, seed in enumerate(r["per_seed"]):
            curve = seed.get("curve") or []
            epochs = [row["epoch"] for row in curve]
            dash = SEED_DASH[i % len(SEED_DASH)]
            label = f"seed {seed.get('seed')}"
            for col, (train_key, val_key) in ((1, ("train_loss", "val_loss")), (2, ("train_accuracy", "val_accuracy"))):
                for key, opacity in ((train_key, 0.45), (val_key, 1.0)):
                    part = "validation" if key.startswith("val") else "training"
                    fig.add_trace(go.Scatter(
                        x=epochs, y=[row.get(key) for row in curve], mode="lines+markers",
                        name=f"{label} · {part}", legendgroup=f"{label}{part}", showlegend=col == 1,
                        line=dict(color=colour, dash=dash, width=2 if part == "validation" else 1),
                        opacity=opacity,
                        hovertemplate=f"{html.escape(label)} · {part}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                        row=1, col=col)  # fmt: skip
        target = r["target"] or {}
        if target.get("metric") == "val_accuracy":
            fig.add_hline(y=target["value"], line=dict(color="#6b7280", dash="dash", width=1), row=1, col=2)
        elif target.get("metric") == "val_loss":
            fig.add_hline(y=target["value"], line=dict(color="#6b7280", dash="dash", width=1), row=1, col=1)
        name = f"{r['framework']} · {r['model']} · {r['variant']} · {r['data']}"
        fig.update_layout(**base_layout(f"Learning curve — {html.escape(name)}", "epoch", ""))
        fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
        fig.update_xaxes(title_text="epoch", row=1, col=2, dtick=1)
        fig.update_xaxes(dtick=1, row=1, col=1)
        out.append((slug("curve", r["framework"], r["model"], r["variant"], r["run"]), fig))
    return out


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher x and higher y),
    ordered by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def speed_quality(data: list[dict]) -> list[tuple[str, go.Figure]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in data:
        if r["status"] == "ok" and _num(r["inference"]) and _num(r["metrics"].get("f1")) is not None:
            groups[(r["model"], r["data"], r["machine"])].append(r)
    several_machines = len({k[2] for k in groups}) > 1
    out = []
    for (model, dataset, machine), group in sorted(groups.items()):
        pts = [(float(r["inference"]), float(r["metrics"]["f1"])) for r in group]
        front = set(pareto(pts))
        fig = go.Figure()
        for i, r in enumerate(group):
            x, y = pts[i]
            fig.add_trace(go.Scatter(
                x=[x], y=[y], mode="markers+text", text=[html.escape(r["variant"])], textposition="top center",
                name=f"{html.escape(r['variant'])} · {html.escape(r['framework'])}",
                marker=dict(size=13 if i in front else 9, color=variant_colour(r["variant"]),
                            symbol="circle" if r["framework"] == "torch" else "square",
                            line=dict(width=2 if i in front else 0, color="#111827")),
                hovertemplate=(f"{html.escape(r['variant'])} · {html.escape(r['framework'])}<br>"
                               "%{x:,.1f} samples/s, F1 %{y:.4f}" + (" (Pareto front)" if i in front else "")
                               + "<extra></extra>")))  # fmt: skip
        ordered = [pts[i] for i in sorted(front, key=lambda i: pts[i][0])]
        fig.add_trace(go.Scatter(x=[p[0] for p in ordered], y=[p[1] for p in ordered], mode="lines",
                                 name="Pareto front", line=dict(color="#111827", dash="dot", width=1),
                                 hoverinfo="skip"))  # fmt: skip
        where = f" · {html.escape(machine)}" if several_machines else ""
        fig.update_layout(**base_layout(f"Speed vs quality — {html.escape(model)} · {html.escape(dataset)}{where}",
                                        "inference samples/s (validation batch)", "validation macro-F1"))  # fmt: skip
        fig.update_xaxes(type="log")
        out.append((slug("speed-quality", model, dataset, machine), fig))
    return out


def per_machine(data: list[dict]) -> str:
    """Time and energy to target of each fit, machine by machine."""
    fits = [r for r in data if r["status"] == "ok" and r["kind"] in ("fit", "transfer") and r["target"] is not None]
    machines = sorted({r["machine"] for r in fits})
    if not fits:
        return ""
    heads = [("case", False)] + [(f"{html.escape(m)}: time s · energy J", False) for m in machines]
    by_case: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in fits:
        by_case[(r["framework"], r["model"], r["variant"], r["data"], r["device"])][r["machine"]] = r
    body = []
    for key, where in sorted(by_case.items()):
        cells = [td(html.escape(" · ".join(map(str, key))))]
        for m in machines:
            r = where.get(m)
            cells.append(td(f"{_to_target(r)} · {_energy(r) or ''}" if r else ""))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return "<h3>Time and energy to target, per machine</h3>" + html_table("bb-quality-machines", heads, body)


def section(runs) -> Section | None:
    data = rows(runs)
    if not data:
        return None
    return Section(
        "quality",
        "Quality: time to target, compression's cost",
        body=table(data) + per_machine(data),
        figures=speed_quality(data) + learning_curves(data),
        wide=True,
        note="Mode fit. Time to target: from the first training step to the end of the evaluation that met the "
        "target (evaluations included, build and data preparation not), the median over the seeds that met it, "
        "[min–max] over them. Variants: the fp32 model trained to the target, the variant applied to its weights; "
        "accuracy and macro-F1 (scikit-learn) on the validation part, Δ against that fp32 model (the median over "
        "the seeds of each seed's difference, not the difference of the medians). Inference "
        "samples/s: what the fit produced, on a validation batch (the record's stats). Speed vs quality: the "
        "Pareto front (no other point both faster and better) is joined and its points outlined; circles torch, "
        "squares tensorflow. Energy n/a: the machine gives no energy source (hover for why).",
    )
