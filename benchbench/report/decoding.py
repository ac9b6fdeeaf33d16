"""The report's decoding section (``benchbench report A/ B/ --hardware``, when the runs hold
``generate`` cases): per machine and variant, TTFT and time per output token, MBU next to the
prefill's MFU, energy per token and tokens per dollar, a TTFT-vs-time-per-token view, and bars.

Reads stored records only; imports no framework. The record shape it reads (``mode:
generate``; the block is :func:`benchbench.measure.generate.summary`'s):

* ``case``: ``mode == "generate"``, ``model``, ``variant``, ``batch_size`` (concurrent
  sequences), ``prompt_len``, ``new_tokens``, ``device``, ``devices``;
* ``generate.ttft_s`` / ``generate.tpot_s``: statistics in seconds (``median``, ``p50``,
  ``p90``, ``p99``; TPOT of single decode steps);
* ``generate.decode_tokens_per_s``, ``generate.output_tokens_per_s`` (prefill included),
  ``generate.batch``, ``generate.prompt_len``, ``generate.new_tokens``;
* ``generate.weights_read_per_step_bytes``, ``generate.kv_read_per_step_bytes``,
  ``generate.kv_cache_bytes``, ``generate.prefill_flops`` (``prefill_flops_note`` when none);
* ``energy``: the primary domain's ``avg_w`` (W over the timed runs) and its ``source``;
* ``runtime.device_name`` (matched against the device catalogue) and the variant's precision.

Derived, each ``None`` with ``<name>_reason`` when an input is missing (never 0):

* MBU and the prefill's MFU: :func:`benchbench.hardware.decoding.figures` (bytes read per
  decode step / median TPOT / peak bandwidth; prefill FLOPs / median TTFT / peak FLOP/s at
  the case's precision), against N × one device's peaks for a ``devices: N`` case;
* J/token: the record's energy per output token (a generate case's energy block counts output
  tokens, prefill's included), else the measured average power / output tokens per second;
* tokens/$ = output tokens per second priced as samples/$ is (:func:`catalogue.derive`: cloud
  $/hour, or the purchase over its lifetime plus energy).
"""

from __future__ import annotations

import socket
from pathlib import Path

import plotly.graph_objects as go

from benchbench.hardware import catalogue as hw
from benchbench.hardware import decoding as dec
from benchbench.report.figures import base_layout, esc, sig, slug
from benchbench.report.hardware import label_machines, machine
from benchbench.report.page import Section, html_table, td

MODE = "generate"
BARS = (("mbu", "MBU (decode)"), ("j_per_token", "J/token"), ("tokens_per_usd", "tokens/$"))
VARIANT_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon")


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _as_dict(rec) -> dict:
    return rec.to_dict() if hasattr(rec, "to_dict") else rec


def is_generate(record: dict) -> bool:
    return _get(record, "case", "mode") == MODE


def _peaks(record: dict, spec: hw.DeviceSpec | None) -> tuple[float | None, float | None, str | None, int, str | None]:
    """(peak bytes/s, peak FLOP/s at the case's precision, that precision, device count, why
    no FLOP peak) for the devices the case ran on."""
    count = hw.device_count(record)[0]
    prec, why = hw.precision(record)
    if spec is None:
        return None, None, prec, count, why
    bw = spec.memory_bandwidth_bps * count if spec.memory_bandwidth_bps else None
    one = spec.peak_flops.get(prec) if prec else None
    if prec and not one:
        why = f"{spec.name}: no {prec} peak in the catalogue"
    return bw, (one * count if one else None), prec, count, why


def row_of(record: dict, spec: hw.DeviceSpec | None, device_reason: str | None = None,
           pricing: hw.Pricing | None = None) -> dict:  # fmt: skip
    """The decoding figures of one ok generate record (a ``Record.to_dict()``)."""
    pricing = pricing or hw.Pricing()
    case = record.get("case") or {}
    gen = record.get("generate") or {}
    row: dict = {k: v for k, v in case.items() if k != "settings"}
    row.update(status=record.get("status"), device=spec.name if spec else hw.UNKNOWN,
               device_id=spec.id if spec else None, device_reason=None if spec else (device_reason or hw.UNKNOWN))  # fmt: skip
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        stats = gen.get(key) or {}
        for q in ("median", "p50", "p90", "p99"):
            row[f"{key.removesuffix('_s')}_{q}_s"] = stats.get(q)
    for key in ("decode_tokens_per_s", "output_tokens_per_s", "kv_cache_bytes", "prompt_len", "new_tokens"):
        row[key] = gen.get(key, row.get(key))
    row["batch"] = gen.get("batch", case.get("batch_size"))

    bw, flops, prec, count, flops_why = _peaks(record, spec)
    row.update(precision=prec, device_count=count, peak_bandwidth_bps=bw, peak_flops=flops)
    row.update(dec.figures(gen, bw, flops))
    # where the record had what a figure needs and only the device's peak is missing, say why
    no_device = f"device {hw.UNKNOWN}: {row['device_reason']}" if spec is None else None
    if row["mbu"] is None and row["decode_bytes_per_step"] is not None and no_device:
        row["mbu_reason"] = no_device
    has_prefill = gen.get("prefill_flops") is not None and (gen.get("ttft_s") or {}).get("median")
    if row["mfu_prefill"] is None and has_prefill and (no_device or flops_why):
        row["mfu_prefill_reason"] = no_device or flops_why
    if count > 1 and spec is not None:
        row["peak_note"] = f"against {count} × {spec.name}'s peaks"

    # J/token: the worker's own figure (a generate case's energy is per output token), else the
    # measured average power over output tokens per second
    primary = _get(record, "energy", "primary")
    dom = _get(record, "energy", primary) if primary else None
    dom = dom if isinstance(dom, dict) else {}
    avg_w, tps = dom.get("avg_w"), row.get("output_tokens_per_s")
    row["avg_w"], row["energy_source"] = avg_w, dom.get("source")
    if dom.get("j_per_sample"):
        row["j_per_token"] = dom["j_per_sample"]
        row["j_per_token_basis"] = f"energy over the timed runs / their output tokens ({dom.get('source')})"
    elif avg_w and tps:
        row["j_per_token"] = avg_w / tps
        row["j_per_token_basis"] = f"average power / output tokens per second ({dom.get('source')})"
    else:
        row["j_per_token"] = None
        row["j_per_token_reason"] = (dom.get("reason") or "no energy reading for the case's device in the record"
                                     if not avg_w else "no output tokens/s in the record")  # fmt: skip

    # tokens/$: output tokens/s priced exactly as samples/s is
    priced = hw.derive({"status": "ok", "case": case, "runtime": record.get("runtime") or {},
                        "energy": record.get("energy") or {}, "stats": {"throughput": tps}, "model": {}},
                       spec, device_reason, pricing)  # fmt: skip
    row["tokens_per_usd"] = priced.get("samples_per_usd")
    row["tokens_per_usd_basis"] = priced.get("samples_per_usd_basis")
    if row["tokens_per_usd"] is None:
        row["tokens_per_usd_reason"] = priced.get("samples_per_usd_reason")
    return row


def rows(runs, catalogue=None, pricing: hw.Pricing | None = None, local_cpu=None, local_host=None) -> list[dict]:
    """:func:`row_of` for every ok generate record of ``runs`` (report.frame.Run-like:
    ``records``, ``environment``, ``path``), with its run, host and machine label."""
    catalogue = hw.load_catalogue() if catalogue is None else catalogue
    local_host = socket.gethostname() if local_host is None else local_host
    out = []
    for run in runs:
        for rec in run.records:
            d = _as_dict(rec)
            if not is_generate(d) or d.get("status") != "ok":
                continue
            spec, why = hw.resolve(d, catalogue, run.environment, local_cpu, local_host)
            row = row_of(d, spec, why, pricing)
            row["run"] = Path(run.path).name
            row["host"] = (run.environment or {}).get("host")
            out.append(row)
    return label_machines(out)


# --- rendering ----------------------------------------------------------------------------------


def _ms(v) -> str:
    return "—" if v is None else f"{v * 1e3:.3g}"


def _num(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:.1%}" if pct else sig(v)


def _why(r: dict) -> str:
    parts = []
    for key, label in (("mbu", "MBU"), ("mfu_prefill", "prefill MFU"), ("j_per_token", "J/token"),
                       ("tokens_per_usd", "tokens/$")):  # fmt: skip
        if r.get(key) is None and r.get(f"{key}_reason"):
            parts.append(f"{label}: {r[f'{key}_reason']}")
    if r.get("peak_note"):
        parts.append(r["peak_note"])
    if r.get("j_per_token_basis"):
        parts.append(f"J/token: {r['j_per_token_basis']}")
    if r.get("tokens_per_usd_basis"):
        parts.append(f"tokens/$: {r['tokens_per_usd_basis']}")
    return "; ".join(parts)


def table(data: list[dict]) -> str:
    heads = [("machine", False), ("model", False), ("variant", False), ("batch", True), ("prompt + new", False),
             ("TTFT p50 ms", True), ("TPOT p50 ms", True), ("TPOT p90 ms", True), ("TPOT p99 ms", True),
             ("decode tokens/s", True), ("MBU", True), ("prefill MFU", True), ("J/token", True), ("tokens/$", True),
             ("why a figure is missing / basis", False)]  # fmt: skip
    body = []
    for r in data:
        cells = [td(esc(machine(r))), td(esc(r.get("model"))), td(esc(r.get("variant"))),
                 td(esc(r.get("batch")), r.get("batch"), "num"),
                 td(esc(f"{r.get('prompt_len')} + {r.get('new_tokens')}"))]  # fmt: skip
        for key in ("ttft_median_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s"):
            cells.append(td(_ms(r.get(key)), r.get(key), "num"))
        cells.append(td(_num(r.get("decode_tokens_per_s")), r.get("decode_tokens_per_s"), "num"))
        cells.append(td(_num(r.get("mbu"), pct=True), r.get("mbu"), "num"))
        cells.append(td(_num(r.get("mfu_prefill"), pct=True), r.get("mfu_prefill"), "num"))
        cells.append(td(_num(r.get("j_per_token")), r.get("j_per_token"), "num"))
        cells.append(td(_num(r.get("tokens_per_usd")), r.get("tokens_per_usd"), "num"))
        cells.append(td(esc(_why(r)), cls="wrap"))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return html_table("decoding-table", heads, body)


def _label(r: dict) -> str:
    return f"{r.get('model')} bs{r.get('batch')} {r.get('prompt_len')}+{r.get('new_tokens')}"


def ttft_vs_tpot(data: list[dict]) -> go.Figure | None:
    """One point per case: median time per output token (x) against median TTFT (y), a colour
    per machine and a symbol per variant; the bars span TPOT p50–p99 and TTFT p50–p90."""
    pts = [r for r in data if r.get("tpot_median_s") is not None and r.get("ttft_median_s") is not None]
    if not pts:
        return None
    variants = list(dict.fromkeys(str(r.get("variant")) for r in pts))
    fig = go.Figure()
    for m in dict.fromkeys(machine(r) for r in pts):
        for v in variants:
            part = [r for r in pts if machine(r) == m and str(r.get("variant")) == v]
            if not part:
                continue
            x = [r["tpot_median_s"] * 1e3 for r in part]
            y = [r["ttft_median_s"] * 1e3 for r in part]

            def spread(rs, hi, mid):
                return [((r.get(hi) or r[mid]) - r[mid]) * 1e3 for r in rs]

            fig.add_scatter(
                x=x, y=y, mode="markers", name=f"{esc(m)} · {esc(v)}",
                marker=dict(size=10, symbol=VARIANT_SYMBOLS[variants.index(v) % len(VARIANT_SYMBOLS)]),
                error_x=dict(type="data", symmetric=False, array=spread(part, "tpot_p99_s", "tpot_median_s"),
                             arrayminus=[0] * len(part), thickness=1),
                error_y=dict(type="data", symmetric=False, array=spread(part, "ttft_p90_s", "ttft_median_s"),
                             arrayminus=[0] * len(part), thickness=1),
                text=[esc(_label(r)) for r in part],
                customdata=[[_num(r.get("decode_tokens_per_s")), _num(r.get("mbu"), pct=True),
                             _ms(r.get("tpot_p99_s"))] for r in part],
                hovertemplate="%{text}<br>TPOT median %{x:.3g} ms (p99 %{customdata[2]} ms)<br>TTFT median %{y:.3g} ms"
                              "<br>decode %{customdata[0]} tokens/s · MBU %{customdata[1]}<extra>%{fullData.name}</extra>",
            )  # fmt: skip
    fig.update_layout(**base_layout("TTFT vs time per output token (median; bars to TPOT p99 and TTFT p90)",
                                    "time per output token (ms)", "time to first token (ms)"))  # fmt: skip
    return fig


def bars(data: list[dict], metric: str, label: str) -> go.Figure | None:
    ok = [r for r in data if r.get(metric) is not None]
    if not ok:
        return None
    fig = go.Figure()
    for m in dict.fromkeys(machine(r) for r in ok):
        part = [r for r in ok if machine(r) == m]
        fig.add_bar(name=esc(m), x=[esc(f"{_label(r)} {r.get('variant')}") for r in part], y=[r[metric] for r in part],
                    hovertemplate=f"%{{x}}<br>{label} %{{y:.4g}}<extra>{esc(m)}</extra>")  # fmt: skip
    fig.update_layout(**base_layout(f"{label} per generate case and machine", "case", label), barmode="group")
    if metric == "mbu":
        fig.update_yaxes(tickformat=".0%")
    return fig


NOTE = (
    "Generate cases only. TTFT: the prompt through the model with the KV cache on, first token chosen; "
    "TPOT: single decode steps (never block means); both device-synchronised. MBU = (weight + KV-cache bytes "
    "read per decode step) / median TPOT / the device's peak memory bandwidth; prefill MFU = prefill FLOPs / "
    "median TTFT / the peak at the case's precision (dense vendor peaks, benchbench/hardware/devices.yaml). "
    "J/token = energy over the timed runs / their output tokens (prefill included); tokens/$ prices output "
    "tokens per second as samples/$ is priced. A dash is a figure whose input is missing: the last column says why."
)


def section(runs, catalogue=None, pricing: hw.Pricing | None = None) -> Section | None:
    """The decoding section, or None when the runs hold no ok generate case."""
    local_cpu, _ = hw.local_cpu_spec()
    data = rows(runs, catalogue, pricing, local_cpu)
    if not data:
        return None
    figs = []
    scatter = ttft_vs_tpot(data)
    if scatter is not None:
        figs.append((slug("decoding", "ttft-tpot"), scatter))
    for metric, label in BARS:
        fig = bars(data, metric, label)
        if fig is not None:
            figs.append((slug("decoding", metric), fig))
    note = NOTE + f" Pricing: {esc((pricing or hw.Pricing()).describe())}."
    return Section("decoding", "Decoding: TTFT, time per token, MBU, J/token, tokens/$", note=note, figures=figs,
                   body=table(data), wide=True)  # fmt: skip
