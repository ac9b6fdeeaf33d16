"""The report's profile section: per profiled case (``profile: true`` or ``benchbench
profile``), the top operators by self time on the host and on the device, and where its
trace is. Reads only the stored records; every stored string is escaped."""

from __future__ import annotations

import os
from pathlib import Path

from benchbench.report.page import Section, esc, html_table, td

NOTE = (
    "Operators by self time (time inside the operator, not in the operators it calls) over a short "
    "window of extra iterations after the timed window, so profiler overhead never touches the timing "
    "figures. PyTorch: torch.profiler, per aten operator. TensorFlow: TensorFlow's profiler, per op type "
    "summed over the graph's ops. Share: of the total self time on that side. Open the Chrome trace in "
    "chrome://tracing or ui.perfetto.dev; a TensorFlow .xplane.pb in TensorBoard's profile plugin or xprof."
)


def profiled(runs) -> list[tuple[object, object, dict]]:
    """(run, record, runtime.profile) for each record that asked for a profile."""
    out = []
    for run in runs:
        for rec in run.records:
            prof = (rec.runtime or {}).get("profile")
            if isinstance(prof, dict):
                out.append((run, rec, prof))
    return out


def _where(path: str | None, run_dir: Path) -> str:
    """A stored path, relative to the run directory when it lies inside it."""
    if not path:
        return ""
    try:
        rel = os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())
    except ValueError:  # another drive
        return path
    return path if rel.startswith("..") else rel


def ops_table(table_id: str, ops: list[dict]) -> str:
    heads = [("#", True), ("operator", False), ("calls", True), ("self time (ms)", True), ("share", True)]
    rows = []
    for i, o in enumerate(ops, 1):
        self_s, share = o.get("self_s"), o.get("share")
        rows.append("<tr>" + "".join([
            td(str(i), i, "num"),
            td(esc(o.get("op")), cls="wrap"),
            td(esc(o.get("calls")), o.get("calls"), "num"),
            td(f"{self_s * 1e3:,.3f}" if isinstance(self_s, (int, float)) else "—", self_s, "num"),
            td(f"{share:.1%}" if isinstance(share, (int, float)) else "—", share, "num"),
        ]) + "</tr>")  # fmt: skip
    return html_table(table_id, heads, rows)


def _case_block(n: int, run, rec, prof: dict) -> str:
    case = rec.case or {}
    label = (
        f"{case.get('framework')}/{case.get('model')}/bs{case.get('batch_size')}/{case.get('device')}/"
        f"{case.get('mode')}/{case.get('variant')}"
    )
    head = f"<h3>{esc(label)} <small>{esc(rec.case_id)} · {esc(run.host or run.name)}</small></h3>"
    if not prof.get("available"):
        return head + f"<p>Profile unavailable: {esc(prof.get('reason'))}</p>"
    parts = [head, f"<p>{esc(prof.get('iterations'))} iterations under {esc(prof.get('tool'))}.</p>"]
    for key, side in (("top_host_ops", "host"), ("top_device_ops", "device")):
        ops = prof.get(key)
        if ops:
            parts.append(f"<h4>Top {side} operators by self time</h4>" + ops_table(f"profile-{n}-{side}", ops))
        else:
            why = prof.get("device_ops_reason") if side == "device" else prof.get("top_ops_reason")
            parts.append(f"<p>Top {side} operators: unavailable ({esc(why or 'none recorded')}).</p>")
    files = []
    for key, what in (("trace", "Chrome trace"), ("xspace", "TensorFlow XSpace")):
        if prof.get(key):
            files.append(f"{what}: <code>{esc(_where(prof[key], run.path))}</code>")
        elif prof.get(f"{key}_reason"):
            files.append(f"{what}: unavailable ({esc(prof[f'{key}_reason'])})")
    if files:
        parts.append("<p>" + "<br>".join(files) + "</p>")
    return "".join(parts)


def section(runs) -> Section | None:
    """The "Profiles" section, or None when no record was profiled."""
    found = profiled(runs)
    if not found:
        return None
    body = "".join(_case_block(n, run, rec, prof) for n, (run, rec, prof) in enumerate(found))
    return Section("profiles", "Profiles: top operators", note=NOTE, body=body)
