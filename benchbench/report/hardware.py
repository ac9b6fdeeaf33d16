"""The report's hardware section (``benchbench report A/ B/ --hardware``): the same cases
on several machines side by side — samples/s, samples/J, samples/$ and MFU per model,
each normalised to a reference device — and a roofline of the devices' roofs with the
achieved FLOP/s of each case.

Reads stored records only (through :mod:`benchbench.hardware.catalogue`); imports no framework.
"""

from __future__ import annotations

import json
import socket

import plotly.graph_objects as go

from benchbench.case import case_label
from benchbench.errors import UserError
from benchbench.hardware import catalogue as hw
from benchbench.report.figures import base_layout, esc, slug
from benchbench.report.page import Section, html_table, td

METRICS = (("throughput", "samples/s"), ("samples_per_j", "samples/J"),
           ("samples_per_usd", "samples/$"), ("mfu", "MFU"))  # fmt: skip
# what a case's label adds to model, mode, variant and batch when the rows differ in it
EXTRA_FIELDS = ("input_shape", "threads", "optimizer", "devices", "data")


def rows(runs, catalogue=None, pricing: hw.Pricing | None = None) -> list[dict]:
    """Derived figures per ok-or-not record of every run; a CPU case gets this machine's
    estimated peak (its physical cores this process may use) only when its run happened on
    this host (see :func:`hw.resolve`)."""
    local_cpu, _ = hw.local_cpu_spec()
    return hw.derive_runs(runs, catalogue, pricing, local_cpu, socket.gethostname())


def _key(r: dict) -> str:
    return r.get("case_key") or hw.pair_key(r)


def machine(r: dict) -> str:
    return r.get("machine") or f"{r['device']} · {r.get('host') or r['run']}"


def label_machines(data: list[dict]) -> list[dict]:
    """``machine`` per row: device · host, with the run's name where one host has several runs."""
    runs: dict = {}
    for r in data:
        runs.setdefault(machine(r), set()).add(r["run"])
    for r in data:
        base = machine(r)
        r["machine"] = f"{base} · {r['run']}" if len(runs[base]) > 1 else base
    return data


def _named(r: dict) -> str:
    return f"{r.get('case_label') or case_label(r)} (case {r.get('case_id')}, run {r.get('run')})"


def ambiguities(data: list[dict]) -> dict[tuple[str, str], str]:
    """(machine, case key) → why it cannot be paired: the machine has more than one record
    of that case (e.g. the same case on cuda:0 and cuda:1, or in two runs of one host that
    share a label), and picking one would be a guess."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in data:
        groups.setdefault((machine(r), _key(r)), []).append(r)
    return {k: f"ambiguous: {k[0]} has {len(rs)} records of this case: " + " and ".join(_named(r) for r in rs)
            for k, rs in groups.items() if len(rs) > 1}  # fmt: skip


def normalise(data: list[dict], reference: str | None) -> tuple[list[dict], str | None]:
    """Add ``<metric>_rel``: each figure over the reference machine's figure for the same
    case — everything that defines it but the device (framework, model, batch, mode,
    variant, input shape, threads, optimizer, device count, data: :func:`hw.pair_key`). The
    reference is the first machine whose label contains ``reference`` (case-insensitive);
    without one, the first machine. A ``reference`` that matches no machine is an error
    naming those there are. A pair that is ambiguous (either machine holds two records of
    the case) gets no ratio: ``rel_reason`` names both records."""
    machines = list(dict.fromkeys(machine(r) for r in data))
    if not machines:
        return data, None
    ref = next((m for m in machines if reference and reference.lower() in m.lower()), None)
    if ref is None and reference:
        raise UserError(f"--reference {reference!r} matches none of the machines in these runs: " + "; ".join(machines))
    ref = ref or machines[0]
    clash = ambiguities(data)
    base = {_key(r): r for r in data if machine(r) == ref}
    for r in data:
        key = _key(r)
        why = clash.get((machine(r), key)) or clash.get((ref, key))
        b = None if why else base.get(key)
        if why:
            r["rel_reason"] = why
        for m, _ in METRICS:
            v, bv = r.get(m), (b or {}).get(m)
            r[f"{m}_rel"] = v / bv if (v is not None and bv) else None
    return data, ref


def extras(r: dict, varying: tuple[str, ...]) -> str:
    """Each field of ``varying`` as the case sets it, for a label."""
    parts = []
    for k in varying:
        v = r.get(k)
        if k == "input_shape" and v:
            parts.append("×".join(str(x) for x in v))
        elif k == "threads":
            parts.append(f"{v if v is not None else 'all'} threads")
        elif k == "optimizer" and r.get("mode") == "train":
            parts.append(str(v))
        elif k == "devices":
            parts.append(f"×{v or 1} devices")
        elif k == "data":
            parts.append("synthetic data" if not v else f"data {json.dumps(v, sort_keys=True, default=str)}")
    return " ".join(parts)


def case_text(r: dict, varying: tuple[str, ...] = ()) -> str:
    """model mode variant bsN, and each field of ``varying`` as the case sets it."""
    more = extras(r, varying)
    return f"{r.get('model')} {r.get('mode')} {r.get('variant')} bs{r.get('batch_size')}" + (f" {more}" if more else "")


def varying_fields(data: list[dict]) -> tuple[str, ...]:
    """The case fields beyond model, mode, variant and batch in which the rows differ."""

    def seen(k):
        return {json.dumps(r.get(k) if k != "devices" else (r.get(k) or 1), sort_keys=True, default=str)
                for r in data}  # fmt: skip

    return tuple(k for k in EXTRA_FIELDS if len(seen(k)) > 1)


def _fmt(v, rel=None, pct=False) -> str:
    if v is None:
        return "—"
    text = f"{v:.1%}" if pct else f"{v:.4g}"
    return text + (f" <small>(×{rel:.2f})</small>" if rel is not None else "")


def table(data: list[dict]) -> str:
    varying = varying_fields(data)
    heads = [("machine", False), ("case", False), ("mode", False), ("variant", False), ("batch", True),
             ("samples/s", True), ("samples/J", True), ("samples/$", True), ("achieved FLOP/s", True),
             ("MFU", True), ("peak basis / why a figure is missing", False)]  # fmt: skip
    body = []
    for r in data:
        why = r.get("mfu_note") or r.get("mfu_reason") or r.get("device_basis") or ""
        if r.get("mode") == "train" and r.get("flops_basis"):
            why += f"; FLOPs: {r['flops_basis']}"
        if r.get("rel_reason"):
            why += f"; no ratio: {r['rel_reason']}"
        if r.get("energy_note"):
            why += f"; samples/J: {r['energy_note']}"
        if r.get("samples_per_j") is None and r.get("samples_per_j_reason"):
            why += f"; samples/J: {r['samples_per_j_reason']}"
        if r.get("samples_per_usd") is None and r.get("samples_per_usd_reason"):
            why += f"; samples/$: {r['samples_per_usd_reason']}"
        model = " ".join(x for x in (str(r.get("model")), extras(r, varying)) if x)
        cells = [td(esc(machine(r))), td(esc(model)), td(esc(r.get("mode"))), td(esc(r.get("variant"))),
                 td(esc(r.get("batch_size")), r.get("batch_size"), "num")]  # fmt: skip
        for m in ("throughput", "samples_per_j", "samples_per_usd"):
            cells.append(td(_fmt(r.get(m), r.get(f"{m}_rel")), r.get(m), "num"))
        cells.append(td(_fmt(r.get("achieved_flops")), r.get("achieved_flops"), "num"))
        cells.append(td(_fmt(r.get("mfu"), r.get("mfu_rel"), pct=True), r.get("mfu"), "num"))
        cells.append(td(esc(why.lstrip("; ")), cls="wrap"))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return html_table("hardware-table", heads, body)


def bars(data: list[dict], metric: str, label: str) -> go.Figure | None:
    ok = [r for r in data if r.get(metric) is not None]
    if not ok:
        return None
    varying = varying_fields(data)
    fig = go.Figure()
    for m in dict.fromkeys(machine(r) for r in ok):
        part = [r for r in ok if machine(r) == m]
        fig.add_bar(name=m, x=[case_text(r, varying) for r in part],
                    y=[r[metric] for r in part],
                    customdata=[r.get(f"{metric}_rel") for r in part],
                    hovertemplate=f"%{{x}}<br>{label} %{{y:.4g}} (×%{{customdata:.2f}} vs reference)<extra>{esc(m)}</extra>")  # fmt: skip
    fig.update_layout(**base_layout(f"{label} per case and machine", "case", label), barmode="group")
    if metric == "mfu":
        fig.update_yaxes(tickformat=".0%")
    return fig


def roofline(data: list[dict], catalogue) -> go.Figure | None:
    """Each device's roof (min(peak, bandwidth × intensity)) at the precision its cases ran
    at, and each case's achieved FLOP/s as a horizontal dotted line: the record does not
    measure memory traffic, so a case's arithmetic intensity (its x) is unknown."""
    seen: dict = {}
    for r in data:
        if r.get("achieved_flops") and r.get("peak_flops"):
            seen.setdefault((r["device_id"], r["precision"]), []).append(r)
    if not seen:
        return None
    by_id = {d.id: d for d in catalogue}
    fig = go.Figure()
    xs = [2 ** (i / 4) for i in range(-8, 4 * 12)]  # 1/4 … 4096 FLOP/byte
    for (dev_id, prec), cases in seen.items():
        spec = by_id.get(dev_id)
        peak = cases[0]["peak_flops"]
        bw = spec.memory_bandwidth_bps if spec else None
        name = f"{cases[0]['device']} {prec} roof"
        if bw:
            fig.add_scatter(x=xs, y=[min(peak, bw * x) for x in xs], mode="lines", name=name)
        else:
            fig.add_scatter(x=[xs[0], xs[-1]], y=[peak, peak], mode="lines", name=f"{name} (no bandwidth figure)")
        for r in cases:
            fig.add_scatter(x=[xs[0], xs[-1]], y=[r["achieved_flops"]] * 2, mode="lines", line=dict(dash="dot"),
                            name=f"{r['model']} {r['mode']} bs{r['batch_size']} on {r['device']}: "
                                 f"{r['achieved_flops']:.3g} FLOP/s ({r['mfu']:.1%})")  # fmt: skip
    fig.update_layout(**base_layout("Roofline: device roofs and achieved FLOP/s", "arithmetic intensity (FLOP/byte)",
                                    "FLOP/s"))  # fmt: skip
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def section(runs, reference: str | None = None, catalogue=None, pricing: hw.Pricing | None = None) -> Section:
    catalogue = hw.load_catalogue() if catalogue is None else catalogue
    pricing = pricing or hw.Pricing()
    data = [r for r in rows(runs, catalogue, pricing) if r.get("status") == "ok"]
    data, ref = normalise(label_machines(data), reference)
    figs = []
    for metric, label in METRICS:
        fig = bars(data, metric, label)
        if fig is not None:
            figs.append((slug("hardware", metric), fig))
    roof = roofline(data, catalogue)
    if roof is not None:
        figs.append((slug("hardware", "roofline"), roof))
    clash = sorted({r["rel_reason"] for r in data if r.get("rel_reason")})
    note = (f"Derived from the stored records and the device catalogue (dense vendor peaks; "
            f"benchbench/hardware/devices.yaml, extend with ${hw.ENV_VAR}). Ratios (×) are against "
            f"<b>{esc(ref)}</b>, for the same case: every field that defines it but the device (batch, "
            f"mode, variant, input shape, threads, optimizer, device count, data). Achieved FLOP/s = FLOPs "
            f"per sample × samples/s: the forward count in inference; in train the counted forward + backward "
            f"(only the parameters that train), or where not counted (TensorFlow) 3 × forward, labelled. "
            f"MFU = achieved / the peak at the case's precision of every device it ran on (devices: N on GPUs: "
            f"N × the peak, N × the price). CPU peaks are estimates from /proc/cpuinfo for the physical cores "
            f"(SMT siblings once), fp32 from the FMA width, bf16/fp16/int8 from the ISA flags (AMX, "
            f"AVX512_BF16/FP16, VNNI): upper bounds, and only for runs made on this host. samples/$: "
            f"{esc(pricing.describe())}. A dash is a figure whose input is missing: the last column says which.")  # fmt: skip
    if clash:
        note += " Not paired (ambiguous): " + "; ".join(esc(c) for c in clash) + "."
    return Section("hardware", "Hardware comparison", note=note, figures=figs, body=table(data) if data else "",
                   wide=True)  # fmt: skip
