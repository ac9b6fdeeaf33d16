"""Terminal rendering: case tables, the run summary, progress. Units appear only here."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchbench.case import Case
from benchbench.measure.stats import SINGLE, block_sizes, percentiles_of
from benchbench.results import Record
from benchbench.units import fmt_bytes, fmt_ms


def console(stream=None) -> Console:
    stream = stream or sys.stdout
    tty = stream.isatty()
    return Console(file=stream, width=None if tty else 200, highlight=False, soft_wrap=not tty)


def case_table(rows: list[tuple[Case, str | None]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("#", "case_id", "framework", "model", "batch", "device", "mode", "variant", "input", "plan"):
        t.add_column(col, justify="right" if col in ("#", "batch") else "left")
    for i, (c, skip) in enumerate(rows, 1):
        t.add_row(
            str(i),
            c.case_id,
            c.framework,
            escape(c.model),
            str(c.batch_size),
            c.device,
            c.mode,
            c.variant,
            "×".join(map(str, c.input_shape)) + (f" {c.data.label}" if c.data is not None else ""),
            escape(f"skip: {skip}") if skip else "run",
        )
    return t


def _seconds(x: float | None) -> str:
    return "n/a" if x is None else (fmt_ms(x) + " ms" if x < 1 else f"{x:,.1f} s")


def generate_note(gen: dict | None) -> str:
    """Generate mode: TTFT (with its interval) and the single-token p99 beside the table's
    decode rate (its samples/s column is decode tokens/s, its ms column the time per token)."""
    if not gen:
        return ""
    ttft, tpot = gen.get("ttft_s") or {}, gen.get("tpot_s") or {}
    rel = ttft.get("rel_ci")
    text = f"TTFT {_seconds(ttft.get('median'))}" + (f" ±{rel * 100:.1f}%" if rel is not None else "")
    if tpot.get("p99") is not None:
        text += f", per-token p99 {_seconds(tpot['p99'])}"
    if gen.get("decode_tokens_per_s"):
        text += f", {gen['decode_tokens_per_s']:,.1f} decode tok/s"
    return text


def quality_note(q: dict | None) -> str:
    """Fit mode: time to target (median and range over the seeds that met it, how many did),
    or a variant's validation F1 and its change against fp32."""
    if not q:
        return ""
    if q.get("kind") in ("fit", "transfer"):
        target = q.get("target") or {}
        spread = (q.get("spread") or {}).get("time_to_target_s") or {}
        head = f"{target.get('metric')} ≥ {target.get('value')}" if target else "no target"
        if not target:
            return f"{head}: {q.get('epochs_run')} epochs, val F1 {(q.get('final') or {}).get('val_f1', 'n/a')}"
        if not q.get("seeds_reached"):
            return f"{head} not reached (0/{q.get('seeds_run')} seeds)"
        text = f"{head} in {_seconds(q.get('time_to_target_s'))} ({q['seeds_reached']}/{q.get('seeds_run')} seeds"
        if spread.get("n", 0) > 1:
            text += f", {_seconds(spread.get('min'))}–{_seconds(spread.get('max'))}"
        return text + ")"
    metrics, delta = q.get("metrics") or {}, q.get("delta") or {}
    if metrics.get("f1") is None:
        return ""
    text = f"val F1 {metrics['f1']:.3f}"
    return text + (f" ({delta['f1']:+.3f} vs fp32)" if delta.get("f1") is not None else "")


def note(rec: Record) -> str:
    if rec.status != "ok":
        return rec.reason or ""
    notes = [rec.pipeline["text"]] if getattr(rec, "pipeline", None) and rec.pipeline.get("text") else []
    notes += [n for n in (generate_note(rec.generate), quality_note(rec.quality)) if n]
    if rec.stats and rec.stats.get("noisy"):
        notes.append("noisy (IQR > 10%)")
    if rec.timing and not rec.timing.get("target_met"):
        rel = rec.timing.get("final_rel_ci")
        target = rec.case.get("settings", {}).get("target_rel_ci")
        got = f"±{rel * 100:.1f}%" if rel is not None else "undefined"
        notes.append(f"CI {got} > target ±{target * 100:g}%" if target else f"CI {got}: target not met")
    if rec.timing and not rec.timing.get("warmup_settled"):
        notes.append("warm-up not settled")
    return "; ".join(notes)


def skipped_lines(records: list[Record]) -> list[str]:
    """Skipped cases grouped by reason: one line per reason, not one row per case."""
    groups: dict[str, list[str]] = {}
    for r in records:
        if r.status == "skipped":
            groups.setdefault(r.reason or "", []).append(r.case["device"])
    return [
        escape(f"{len(devs)} skipped ({', '.join(sorted(set(devs)))}): {reason}") for reason, devs in groups.items()
    ]


def between_process(rec: Record) -> bool:
    """Whether the record's interval spans several worker processes (covers a re-run)."""
    return (rec.processes or {}).get("interval_scope") == "between-process"


WITHIN_ONLY_NOTE = (
    "* the interval is of one worker process only: a re-run in a new process may differ by "
    "more (set processes: 5 or auto)"
)


BLOCK_MEANS_NOTE = (
    "† p99 of block means: iterations under 10 µs are timed in blocks, each sample the mean of one; "
    "not a latency percentile (the record has no latency p99)"
)


def of_block_means(rec: Record) -> bool:
    """Whether the record's samples (and so its percentiles) are block means."""
    return rec.status == "ok" and percentiles_of(block_sizes(rec.timing)) != SINGLE


def host_rss(memory: dict | None) -> str:
    """The worker's peak RSS, and (+N MiB) the part above the RSS as the model build started."""
    if not memory:
        return ""
    above = memory.get("host_peak_above_build_start_bytes")
    text = fmt_bytes(memory.get("host_peak_rss_bytes"))
    return text + (f" (+{above / 2**20:,.0f})" if above is not None else "")


def summary_table(records: list[Record], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    cols = [
        ("case", "left"),
        ("status", "left"),
        ("samples/s", "right"),
        ("ms/batch p50", "right"),
        ("p99", "right"),
        ("±CI95", "right"),
        ("procs", "right"),
        ("iters", "right"),
        ("peak RSS (+above build)", "right"),
        ("dev peak", "right"),
        ("note", "left"),
    ]
    for name, justify in cols:
        t.add_column(name, justify=justify)
    for r in records:
        if r.status == "skipped":
            continue
        c = r.case
        label = escape(
            f"{c['framework']} {c['model']} bs{c['batch_size']} {c['device']} {c['mode']} {c['variant']}"
            + (f" {c['data']['preset']} w{c['data']['num_workers']}" if c.get("data") else "")
        )
        s = r.stats or {}
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "skipped": "[yellow]skipped[/]"}[r.status]
        rel = s.get("rel_ci")
        t.add_row(
            label,
            status,
            f"{s['throughput']:,.1f}" if s.get("throughput") else "",
            fmt_ms(s.get("median")) if s else "",
            (fmt_ms(s.get("p99")) + ("†" if of_block_means(r) else "")) if s else "",
            (f"{rel * 100:.1f}%" + ("" if between_process(r) else "*")) if rel is not None else ("n/a" if s else ""),
            str((r.processes or {}).get("processes") or 1) if s else "",
            str(r.timing.get("iterations")) if r.timing else "",
            host_rss(r.memory),
            fmt_bytes(r.memory.get("device_peak_allocated_bytes"))
            if r.memory.get("device_peak_allocated_bytes")
            else "",
            escape(note(r)),
        )
    notes = [WITHIN_ONLY_NOTE] if any(r.status == "ok" and not between_process(r) for r in records) else []
    notes += [BLOCK_MEANS_NOTE] if any(of_block_means(r) for r in records) else []
    if notes:
        t.caption = "\n".join(notes)
        t.caption_justify = "left"
    return t
