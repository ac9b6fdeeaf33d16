"""The profiled window of a TensorFlow case (``profile: true``): a few iterations under
TensorFlow's profiler, after the timed window and never inside it.

The profiler writes an XSpace (``<logdir>/plugins/profile/<run>/<host>.xplane.pb``, what
TensorBoard's profile plugin and xprof open). TensorFlow's own converters
(``xspace_to_tools_data``, the functions behind that plugin) turn it into

* ``framework_op_stats``: per-op self time on the host and on the device → the record's
  top operators by self time, summed per op type (``_MklNativeConv2D``, ``MatMul`` …) like
  torch.profiler's per-operator table;
* ``trace_viewer@``: a Chrome trace JSON (chrome://tracing, Perfetto) saved next to it.

Where a converter is missing or fails, the record keeps the XSpace path and says why the
table or the trace is unavailable. Imported only in TensorFlow worker processes.
"""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

PROFILE_ITERS = 5  # iterations in the profiled window, as for torch
PROFILE_TOP = 15  # operators kept per table in the record
TOOL = "tf.profiler (tf.profiler.experimental.start/stop)"


def logdir_for(trace_path) -> str:
    """``<profiles>/<case_id>.trace.json`` → ``<profiles>/<case_id>.tfprofile`` (the XSpace's logdir)."""
    path = str(trace_path)
    stem = path[: -len(".trace.json")] if path.endswith(".trace.json") else os.path.splitext(path)[0]
    return stem + ".tfprofile"


def _converter():
    """TensorFlow's XSpace converter, or (None, why not)."""
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

        return plugin.xspace_to_tools_data, None
    except (ImportError, AttributeError) as e:
        return None, f"this TensorFlow has no XSpace converter (_pywrap_profiler_plugin.xspace_to_tools_data: {e})"


def op_rows(tables: list[dict], where: str, top: int = PROFILE_TOP, calls: dict | None = None) -> list[dict]:
    """Top op types by self time from ``framework_op_stats``'s DataTable JSON, ``where``
    ``Host`` or ``Device``. ``share``: the profiler's own fraction of the total self time
    on that side, idle excluded (its table may list only the first few hundred ops).
    ``calls``: executions per op type counted in the Chrome trace, which replace the
    table's occurrences (those count a fused op once per op it fused: Conv2D+BiasAdd twice)."""
    table = next((t for t in tables if not any(_cells(t, r).get("type") == "IDLE" for r in t["rows"])),
                 tables[-1])  # fmt: skip
    share_col = "host_total_self_time_percent" if where == "Host" else "device_total_self_time_percent"
    agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row in table["rows"]:
        r = _cells(table, row)
        if r.get("host_or_device") != where or r.get("type") in (None, "IDLE"):
            continue
        a = agg[r["type"]]
        a[0] += r.get("occurrences") or 0
        a[1] += (r.get("total_self_time") or 0) / 1e6  # µs → s
        a[2] += r.get(share_col) or 0
    rows = [{"op": op, "calls": int((calls or {}).get(op, n)), "self_s": self_s, "share": share}
            for op, (n, self_s, share) in agg.items() if self_s > 0]  # fmt: skip
    rows.sort(key=lambda r: r["self_s"], reverse=True)
    return rows[:top]


def _cells(table: dict, row: dict) -> dict:
    cols = [c["id"] for c in table["cols"]]
    return dict(zip(cols, [c.get("v") if isinstance(c, dict) else None for c in row["c"]]))


def profile_window(step, device_kind: str, trace_path, iters: int = PROFILE_ITERS, top: int = PROFILE_TOP) -> dict:
    """Run ``step`` ``iters`` times under TensorFlow's profiler; return what the record keeps
    (``runtime.profile``): top ops by self time, the Chrome trace and the XSpace paths."""
    import tensorflow as tf

    logdir = logdir_for(trace_path)
    # the default options (host tracer level 2: every TensorFlow op; device tracer on; no
    # Python tracer); TF 2.21 ignores an explicit ProfilerOptions ("expects an i value")
    tf.profiler.experimental.start(logdir)
    try:
        for i in range(iters):
            with tf.profiler.experimental.Trace("benchbench_step", step_num=i, _r=1):
                step()
    finally:
        tf.profiler.experimental.stop()
    xspaces = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    out = {"tool": TOOL, "iterations": iters, "trace": None, "xspace": xspaces[0] if xspaces else None,
           "top_host_ops": None, "top_device_ops": None}  # fmt: skip
    if not xspaces:
        out["trace_reason"] = out["top_ops_reason"] = f"the profiler wrote no .xplane.pb under {logdir}"
        return out
    convert, why = _converter()
    if convert is None:
        out["trace_reason"] = out["top_ops_reason"] = why
        return out

    data, ok = convert(xspaces, "trace_viewer@", {})
    calls = None
    if ok and data:
        with open(trace_path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        out["trace"] = str(trace_path)
        calls = trace_counts(data)
    else:
        out["trace_reason"] = f"trace_viewer conversion failed: {_text(data)}"

    data, ok = convert(xspaces, "framework_op_stats", {})
    if not (ok and data):
        out["top_ops_reason"] = f"framework_op_stats conversion failed: {_text(data)}"
        return out
    tables = json.loads(data)
    tables = tables if isinstance(tables, list) else [tables]
    out["top_host_ops"] = op_rows(tables, "Host", top, calls)
    out["calls_source"] = ("host: Chrome trace events per op type" if calls else "host: framework_op_stats "
                           "occurrences") + "; device: framework_op_stats occurrences"  # fmt: skip
    if device_kind == "cpu":
        out["device_ops_reason"] = "cpu case: the host ops are the device ops"
    else:
        out["top_device_ops"] = op_rows(tables, "Device", top)
        if not out["top_device_ops"]:
            out["top_device_ops"] = None
            out["device_ops_reason"] = f"the profiler recorded no {device_kind} device ops"
    return out


def trace_counts(data) -> dict[str, int]:
    """Complete events (``ph: X``) per name in a Chrome trace: how often each op ran."""
    counts: dict[str, int] = defaultdict(int)
    for e in json.loads(data).get("traceEvents") or []:
        if e.get("ph") == "X" and isinstance(e.get("name"), str):
            counts[e["name"]] += 1
    return dict(counts)


def _text(data) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    return " ".join(text.split())[:200] or "no output"
