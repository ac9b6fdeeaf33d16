"""The HTML page: header, tables, figure slots, one embedded Plotly bundle.

All HTML is built here with every user string passed through ``html.escape``; figure
JSON goes into one ``application/json`` block with every ``<`` written as ``\\u003c``,
so no string inside it can close the script element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from benchbench.report.assets import CSS, JS
from benchbench.report.frame import Run
from benchbench.units import esc, fmt_ms

# No network at all: scripts and styles are inline, images only data:/blob: (Plotly's
# own download button).
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"


@dataclass
class Section:
    id: str
    title: str
    note: str = ""  # trusted HTML built here or in __init__ (user strings escaped)
    figures: list = field(default_factory=list)  # [(slug, plotly Figure)]
    body: str = ""  # trusted HTML
    wide: bool = False  # one figure per row


def _isnum(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def td(text: str, value=None, cls: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    if value is not None and _isnum(value):
        attrs += f' data-v="{value!r}"' if isinstance(value, float) else f' data-v="{value}"'
    return f"<td{attrs}>{text}</td>"


def _mib(b) -> tuple[str, float | None]:
    return (f"{b / 2**20:,.0f}", b / 2**20) if _isnum(b) else ("", None)


def _note(r) -> str:
    if r.status != "ok":
        return esc(r.reason)
    notes = []
    if r.noisy:
        notes.append("noisy (IQR > 10%)")
    if r.target_met is False:
        notes.append(f"CI target not met ({esc(r.stop_reason)})")
    if not _isnum(r.ci_low_s) and _isnum(r.median_s):
        notes.append("CI n/a (too few samples)")
    return "; ".join(notes)


def html_table(table_id: str, heads: list[tuple[str, bool]], rows: list[str], sortable: bool = True) -> str:
    th = "".join(f'<th scope="col"{" class=num" if num else ""}>{label}</th>' for label, num in heads)
    cls = ' class="sortable"' if sortable else ""
    return (
        f'<div class="table-wrap"><table id="{table_id}"{cls}><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def variant_columns(df: pd.DataFrame) -> list[tuple[str, object]]:
    """Size, non-zero share and fidelity columns (label, cell maker), shown when the frame
    compares variants (more than one, or one other than fp32) and the records carry them."""
    if df.empty or set(df["variant"]) <= {"fp32"}:
        return []
    cols = []

    def has(col):
        return col in df and bool(df[col].notna().any())

    if has("serialized_bytes"):
        cols.append(("size MiB", lambda r: td(*_mib2(r.serialized_bytes), "num")))
    if has("nonzero_params"):

        def nz(r):
            share = r.nonzero_params / r.params if _isnum(r.nonzero_params) and _isnum(r.params) and r.params else None
            return td(f"{share * 100:.1f}" if share is not None else "", share, "num")

        cols.append(("non-zero %", nz))
    if has("top1_agreement"):
        cols.append(
            (
                "top-1 agree % vs fp32",
                lambda r: td(
                    f"{r.top1_agreement * 100:.1f}" if _isnum(r.top1_agreement) else "", r.top1_agreement, "num"
                ),
            )
        )
        cols.append(
            (
                "max |Δ| vs fp32",
                lambda r: td(f"{r.max_abs_diff:.3g}" if _isnum(r.max_abs_diff) else "", r.max_abs_diff, "num"),
            )
        )
    return cols


def _mib2(b) -> tuple[str, float | None]:
    return (f"{b / 2**20:,.2f}", b / 2**20) if _isnum(b) else ("", None)


def _ci_cell(r) -> str:
    """±CI95 with what it covers: several worker processes (a re-run), or one process only (marked *)."""
    if not _isnum(r.rel_ci):
        return td("", None, "num")
    k = getattr(r, "processes", 1) or 1
    between = getattr(r, "interval_scope", "") == "between-process"
    text = f"{r.rel_ci * 100:.1f}" + ("" if between else "*")
    title = (
        f"95% interval of the median over {k} worker processes: covers a re-run"
        if between
        else "95% interval within one worker process only: a re-run in a new process may differ by more"
    )
    return f'<td class="num" data-v="{r.rel_ci!r}" title="{esc(title)}">{esc(text)}</td>'


def summary_table(df: pd.DataFrame, baseline: str | None) -> str:
    show_origin = bool((df["origin"] != "").any())
    heads = [
        ("status", False),
        ("model", False),
        ("framework", False),
        ("variant", False),
        ("mode", False),
        ("batch", True),
        ("device", False),
    ]
    if show_origin:
        heads.append(("machine · run", False))
    show_device = bool(df["device_peak_bytes"].notna().any())  # no column of blanks on CPU-only runs
    heads += [("samples/s", True), ("p50 ms", True), ("p99 ms", True), ("±CI95 %", True), ("host RSS MiB", True)]
    show_above = "host_above_build_bytes" in df and bool(df["host_above_build_bytes"].notna().any())
    if show_above:  # the peak without the framework's own footprint
        heads.append(("above build MiB", True))
    if show_device:
        heads.append(("device MiB", True))
    show_energy = "j_per_sample" in df and bool(df["j_per_sample"].notna().any())
    if show_energy:
        heads.append(("J/sample", True))
    variant_cols = variant_columns(df)
    heads += [(label, True) for label, _ in variant_cols]
    if baseline is not None:
        heads.append((f"speed-up vs {esc(baseline)}", True))
    heads.append(("note", False))
    rows = []
    for r in df.itertuples():
        cells = [
            td(esc(r.status), cls=f"status-{esc(r.status)}"),
            td(esc(r.model)),
            td(esc(r.framework)),
            td(esc(r.variant)),
            td(esc(r.mode)),
            td(str(r.batch_size), r.batch_size, "num"),
            f'<td title="{esc(r.device_name)}">{esc(r.device)}</td>',
        ]
        if show_origin:
            cells.append(td(esc(r.origin)))
        thr = r.throughput
        rss, rss_v = _mib(r.host_peak_rss_bytes)
        dev, dev_v = _mib(r.device_peak_bytes)
        cells += [
            td(f"{thr:,.1f}" if _isnum(thr) else "", thr, "num"),
            td(fmt_ms(r.p50_s) if _isnum(r.p50_s) else "", r.p50_s, "num"),
            _p99_cell(r),
            _ci_cell(r),
            td(rss, rss_v, "num"),
        ]
        if show_above:
            cells.append(td(*_mib(r.host_above_build_bytes), "num"))
        if show_device:
            cells.append(td(dev, dev_v, "num"))
        if show_energy:
            cells.append(_energy_cell(r))
        cells += [cell(r) for _, cell in variant_cols]
        if baseline is not None:
            cells.append(td(f"×{r.speedup:.2f}" if _isnum(r.speedup) else "", r.speedup, "num"))
        cells.append(td(_note(r), cls="wrap"))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    count = f"{len(rows)} of {len(rows)} cases"
    return (
        '<div class="filter"><label for="bb-filter">Filter</label>'
        '<input id="bb-filter" type="search" placeholder="words to match, e.g. resnet18 train" '
        'data-filter="bb-summary" data-count="bb-count" autocomplete="off">'
        f'<output id="bb-count">{count}</output></div>' + html_table("bb-summary", heads, rows)
    )


def _p99_cell(r) -> str:
    """p99 of single iterations; of block means it is marked † and says so (not a latency p99)."""
    if not _isnum(r.p99_s):
        return td("")
    basis = getattr(r, "percentiles_of", "single iterations")
    if basis == "single iterations":
        return td(fmt_ms(r.p99_s), r.p99_s, "num")
    return f'<td class="num" data-v="{r.p99_s!r}" title="p99 of {esc(basis)}">{fmt_ms(r.p99_s)}†</td>'


def _energy_cell(r) -> str:
    """J per sample of the case's primary domain, its source in the tooltip; "n/a" with
    the reason where it was not measured (never a 0)."""
    if _isnum(r.j_per_sample):
        return (
            f'<td class="num" data-v="{r.j_per_sample!r}" title="source: {esc(r.energy_source)}">'
            f"{r.j_per_sample:.4g}</td>"
        )
    if r.status == "ok" and r.energy_reason:
        return f'<td class="num" title="unavailable: {esc(r.energy_reason)}">n/a</td>'
    return "<td></td>"


def failures_table(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    heads = [
        ("status", False),
        ("case", False),
        ("device", False),
        ("machine", False),
        ("reason", False),
        ("log", False),
    ]
    rows = []
    for r in bad.itertuples():
        case = f"{esc(r.framework)}/{esc(r.model)}/bs{r.batch_size}/{esc(r.mode)}/{esc(r.variant)}"
        rows.append(
            "<tr>"
            + "".join(
                [
                    td(esc(r.status), cls=f"status-{esc(r.status)}"),
                    td(case),
                    td(esc(r.device)),
                    td(esc(r.machine) + f" · {esc(r.run)}"),
                    td(esc(r.reason), cls="wrap"),
                    td(f"<code>{esc(r.run)}/{esc(r.log)}</code>" if r.log else ""),
                ]
            )
            + "</tr>"
        )
    return html_table("bb-failures", heads, rows)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def environment_details(envs: list[tuple[str, dict]]) -> str:
    parts = []
    for i, (run, env) in enumerate(envs):
        rows = "".join(
            f'<tr><td class="key">{esc(k)}</td><td class="wrap">{esc(_plain(v))}</td></tr>' for k, v in _flatten(env)
        )
        parts.append(
            f"<details{' open' if i == 0 else ''}><summary>run {esc(run)} on {esc(env.get('host'))}"
            f'</summary><div class="table-wrap"><table>{rows}</table></div></details>'
        )
    return "".join(parts)


def _plain(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, list):
        return ", ".join(_plain(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return "none" if not v else ", ".join(f"{k}: {_plain(x)}" for k, x in v.items())
    return str(v)


def _when(values) -> str:
    stamps = sorted(str(v) for v in values if v)
    if not stamps:
        return ""

    def short(s):
        try:
            return datetime.fromisoformat(s).strftime("%Y-%m-%d %H:%M %Z").strip()
        except ValueError:
            return s

    first, last = short(stamps[0]), short(stamps[-1])
    return first if first == last else f"{first} – {last}"


def header(runs: list[Run], df: pd.DataFrame, baseline: str | None) -> tuple[str, str]:
    """(page title text, header HTML)."""
    suites = sorted({run.suite for run in runs})
    title = "benchbench report: " + ", ".join(suites)
    items = [("suite" + ("s" if len(suites) > 1 else ""), ", ".join(suites))]
    items.append(("run" + ("s" if len(runs) > 1 else ""), ", ".join(run.name for run in runs)))
    when = _when(
        [t for run in runs for t in ((run.info or {}).get("created_at"), (run.info or {}).get("updated_at"))]
        + list(df["started_at"])
        + list(df["ended_at"])
    )
    if when:
        items.append(("dates", when))
    machines = []
    for run in runs:
        env = run.environment or {}
        cpu = env.get("cpu") or {}
        desc = f"{env.get('host') or run.host or 'unknown host'}: {cpu.get('model') or 'CPU n/a'}"
        if cpu.get("usable_cores"):
            desc += f", {cpu['usable_cores']} cores"
        if env.get("ram_bytes"):
            desc += f", {env['ram_bytes'] / 2**30:.0f} GiB RAM"
        gpus = [
            g.get("name")
            for fw in (env.get("frameworks") or {}).values()
            if isinstance(fw, dict)
            for g in ((fw.get("devices") or {}).get("cuda") or {}).get("gpus") or []
            if isinstance(g, dict)
        ]
        if gpus:
            desc += ", " + ", ".join(sorted(set(map(str, gpus))))
        machines.append(desc)
    items.append(("machine" + ("s" if len(set(machines)) > 1 else ""), "; ".join(dict.fromkeys(machines))))
    versions = {}
    for run in runs:
        env = run.environment or {}
        for name, ver in (env.get("packages") or {}).items():
            if ver:
                versions.setdefault(name, set()).add(str(ver))
        py = (env.get("python") or {}).get("version")
        if py:
            versions.setdefault("python", set()).add(str(py))
    if versions:
        items.append(("versions", ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in versions.items())))
    counts = df["status"].value_counts()
    items.append(("cases", f"{len(df)}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "skipped"))))
    if baseline is not None:
        items.append(("baseline", f"variant {baseline}: speed-up = its median time / the case's"))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    return title, f'<h1>{esc(title)}</h1><dl class="meta">{dl}</dl>'


def figures_json(sections: list[Section]) -> str:
    parts = []
    for s in sections:
        for i, (_, fig) in enumerate(s.figures):
            parts.append(f'{{"id":"fig-{s.id}-{i}","fig":{fig.to_json()}}}')
    return ("[" + ",".join(parts) + "]").replace("<", "\\u003c")


def render(title: str, header_html: str, sections: list[Section], plotly_js: str) -> str:
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        figs = "".join(
            f'<div class="fig" id="fig-{s.id}-{i}" data-slug="{esc(slug)}"></div>'
            for i, (slug, _) in enumerate(s.figures)
        )
        fig_html = f'<div class="figs{" wide" if s.wide else ""}">{figs}</div>' if figs else ""
        note = f'<p class="note">{s.note}</p>' if s.note else ""
        body.append(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>{note}{s.body}{fig_html}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="generator" content="benchbench report">'
        f"<title>{esc(title)}</title><style>{CSS}</style>\n"
        f"<script>{plotly_js}</script>\n</head><body>"
        f"<header>{header_html}</header><nav>{nav}</nav><main>{''.join(body)}</main>\n"
        f'<script type="application/json" id="bb-figures">{figures_json(sections)}</script>\n'
        f"<script>{JS}</script></body></html>\n"
    )
