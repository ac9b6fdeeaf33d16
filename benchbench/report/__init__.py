"""The HTML report: stored records in, one self-contained offline HTML file out.

``build_report(run_dirs, out_path)`` reads run directories (records, environment.json,
run.json) and writes a page with Plotly's JavaScript embedded once. Imports no
framework: :mod:`frame` makes tidy frames, :mod:`figures` the Plotly figures,
:mod:`page` the HTML, :mod:`static` optional PNG/SVG/PDF copies through kaleido.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchbench.errors import UserError
from benchbench.report import frame as data
from benchbench.report import page
from benchbench.report.page import Section

REPORT_FILE = "report.html"


def default_out(run_dirs) -> Path:
    """report.html in the run directory for one run, ./report.html for several."""
    dirs = [Path(p).parent if Path(p).is_file() else Path(p) for p in run_dirs]
    return dirs[0] / REPORT_FILE if len({d.resolve() for d in dirs}) == 1 else Path(REPORT_FILE)


def sections(runs: list[data.Run], df, baseline: str | None) -> list[Section]:
    """The page's sections in order; a section without data is left out."""
    from benchbench.report import figures

    ok = data.ok_rows(df)
    out = []
    if not df.empty:
        out.append(
            Section(
                "summary",
                "Summary",
                body=page.summary_table(df, baseline),
                note="Click a column header to sort; type in the box to filter. samples/s is "
                "measured over the whole timed window; latency is per batch.",
            )
        )
    out.append(
        Section(
            "throughput",
            "Throughput",
            figures=figures.throughput(ok),
            wide=True,
            note="Bars: throughput at the median iteration time (batch size / median). Error bars: the median's "
            "95% confidence interval turned into throughput (batch / CI high … batch / CI low); none where "
            "too few samples. Colour: variant; fill pattern: framework.",
        )
    )
    out.append(
        Section(
            "latency",
            "Latency distributions",
            figures=figures.latency(ok),
            note="Boxes from the raw per-iteration times of each case (ms per batch): median, "
            "quartiles, whiskers at 1.5 IQR, outliers as points.",
        )
    )
    out.append(
        Section(
            "scaling",
            "Batch-size scaling",
            figures=figures.scaling(ok),
            note="Throughput at the median and p50 latency against batch size. Colour: variant; "
            "line: solid inference, dashed train; marker: device.",
        )
    )
    out.append(
        Section(
            "frameworks",
            "Framework comparison",
            figures=figures.frameworks(ok),
            wide=True,
            note="The same case on each framework (throughput at the median, 95% CI).",
        )
    )
    out.append(
        Section(
            "memory",
            "Memory",
            figures=figures.memory(df),
            wide=True,
            note="Peak RSS of the worker process (framework import and model build included) and "
            "the device allocator's peak where the device has one.",
        )
    )
    from benchbench.report import energy  # energy per sample with its source, the sampler's time series

    out.append(energy.section(runs, df) or Section("energy", "Energy and telemetry"))
    from benchbench.report import profile  # top operators of the profiled cases

    out.append(profile.section(runs) or Section("profiles", "Profiles"))
    from benchbench.report import pipeline  # loader rate vs workers against the model's (data: cases)

    out.append(pipeline.section(runs) or Section("pipeline", "Input pipeline"))
    from benchbench.report import quality  # mode fit: learning curves, speed vs quality, time to target

    out.append(quality.section(runs) or Section("quality", "Quality"))
    if not df.empty and (df["status"] != "ok").any():
        out.append(Section("failures", "Failed and skipped cases", body=page.failures_table(df)))
    envs = data.environments(runs)
    if envs:
        out.append(Section("environment", "Environment", body=page.environment_details(envs)))
    return [s for s in out if s.figures or s.body]


def build_report(
    run_dirs,
    out_path=None,
    baseline: str | None = None,
    fmt: str | None = None,
    hardware: bool = False,
    reference: str | None = None,
    devices=None,
    store: str | None = None,
    history_metric: str = "throughput",
) -> Path:
    """Write the HTML report of ``run_dirs`` to ``out_path`` (default: see
    :func:`default_out`) and return its path. With ``fmt`` (png, svg or pdf) also write
    each figure to ``<stem>-figures/``; a missing kaleido or Chrome is a UserError
    raised before anything is written. ``hardware`` adds the hardware comparison
    (:mod:`benchbench.report.hardware`) normalised to the ``reference`` device, with the
    catalogue files ``devices`` added to the built-in one, and for ``generate`` cases the
    decoding section (:mod:`benchbench.report.decoding`). ``store`` (a history store URL)
    adds each case's trend over its stored runs (``history_metric``)."""
    try:
        import plotly.offline
    except ImportError:
        raise UserError("report: plotly is not installed (pip install plotly)") from None
    from benchbench.report import static

    run_dirs = list(run_dirs)
    runs = data.load_runs(run_dirs)
    if fmt is not None:
        static.check(fmt)
    baseline = baseline or data.suite_baseline(runs)  # --baseline, else the suites' baseline: when it compares
    df = data.cases_frame(runs, baseline)
    secs = sections(runs, df, baseline)
    if hardware:
        from benchbench.hardware import catalogue as hw
        from benchbench.report import hardware as hw_section
        from benchbench.suite import catalogue as suite_catalogue  # each run's suite catalogue:, then --devices files

        catalogue = hw.load_catalogue(suite_catalogue.run_files(r.path for r in runs) + list(devices or []))
        secs.insert(min(1, len(secs)), hw_section.section(runs, reference, catalogue))
        from benchbench.report import decoding  # generate cases: TTFT vs TPOT, MBU, J/token, tokens/$

        decode = decoding.section(runs, catalogue)
        if decode is not None:
            secs.insert(min(2, len(secs)), decode)
    if store is not None:
        from benchbench.history.store import open_existing
        from benchbench.report import history

        s = open_existing(store, "report --store")
        try:
            hist = history.section(history.run_series(runs, s, history_metric), s.display_url)
        finally:
            s.close()
        if hist is not None:
            secs.insert(next((i for i, x in enumerate(secs) if x.id in ("failures", "environment")), len(secs)), hist)
    title, head = page.header(runs, df, baseline)
    text = page.render(title, head, secs, plotly.offline.get_plotlyjs())
    out = Path(out_path) if out_path is not None else default_out(run_dirs)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        raise UserError(
            f"report: cannot write {out} ({e.strerror or type(e).__name__}"
            + (f": {e.filename}" if e.filename and str(e.filename) != str(tmp) else "")
            + ")"
        ) from None
    if fmt is not None:
        static.export([f for s in secs for f in s.figures], static.figures_dir(out), fmt)
    return out


__all__ = ["REPORT_FILE", "build_report", "default_out"]
