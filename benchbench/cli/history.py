"""The nightly-tracking commands: ``store import``, ``compare``, ``history``, ``check``,
and ``run --store``'s storing step. Thin, like cli.py: parse, call store/compare, print."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchbench.cli.common import err as _err
from benchbench.errors import EXIT_OK, UserError
from benchbench.history import gate

EXIT_REGRESSION = 1  # a regression, a broken case, or a run in which nothing was measured

ALLOW_BROKEN_HELP = (
    "a case that was ok and now failed, was skipped or is absent is still shown as broken, "
    "but does not fail the command (for suites that expect churn); nothing measured at all still does"
)


def _threshold(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction (0.05) or a percentage (5%)") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 0 and 1 (exclusive), e.g. 0.05 or 5%")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return v


STORE_HELP = (
    "history store: a SQLAlchemy URL (sqlite:///FILE, postgresql://…) or a file path (default: results/history.db)"
)


def add_parsers(sub) -> None:
    st = sub.add_parser("store", help="the history store: import run directories")
    st_sub = st.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    si = st_sub.add_parser("import", help="append run directories' records and environment to the store")
    si.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    si.add_argument("--store", metavar="URL", help=STORE_HELP)

    se = st_sub.add_parser("export", help="one run as github-action-benchmark or pytest-benchmark JSON, CSV or Parquet")
    se.add_argument("ref", metavar="RUN", help="run directory or store reference (latest, latest~N, run id, commit)")
    se.add_argument(
        "--format",
        required=True,
        choices=["github-bigger", "github-smaller", "pytest-benchmark", "csv", "parquet"],
        help="github-bigger: customBiggerIsBetter (throughput); github-smaller: "
        "customSmallerIsBetter (latency p99, memory, energy); pytest-benchmark: its "
        "--benchmark-json layout; csv / parquet: a row per case",
    )
    se.add_argument("--store", metavar="URL", help=STORE_HELP)
    se.add_argument("-o", "--out", metavar="FILE", help="output file (default: stdout; parquet needs -o)")

    c = sub.add_parser(
        "compare",
        help="verdicts per case and metric: CAND against BASE (exit 1 on a regression, a broken case, "
        "or nothing measured in CAND)",
    )
    c.add_argument(
        "base",
        metavar="BASE",
        help="run directory, or a store reference: latest, latest~N, YYYY-MM-DD, run id, git commit",
    )
    c.add_argument("cand", metavar="CAND", help="run directory or store reference (as BASE)")
    c.add_argument("--store", metavar="URL", help=STORE_HELP + "; also gives the between-run noise")
    c.add_argument("--suite", help="store references: only runs of this suite")
    c.add_argument("--threshold", type=_threshold, default=0.05, help="smallest change that matters (default 5%%)")
    c.add_argument(
        "--fdr",
        type=_threshold,
        default=0.05,
        help="false discovery rate across cases × metrics (Benjamini–Hochberg; default 0.05)",
    )
    c.add_argument("--allow-broken", action="store_true", help=ALLOW_BROKEN_HELP)
    fmt = c.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table (for a PR comment)")
    fmt.add_argument("--json", action="store_true", help="the comparison as JSON")

    h = sub.add_parser("history", help="each series in the store: runs, between-run CV, minimum detectable change")
    h.add_argument("--store", metavar="URL", help=STORE_HELP)
    h.add_argument("--suite", help="only runs of this suite")
    h.add_argument("--case", metavar="FILTER", help="a substring or glob of the case label, or a case_id")
    h.add_argument(
        "--metric", default="throughput", choices=["throughput", "latency_p99", "memory", "energy_per_sample"]
    )
    h.add_argument(
        "--threshold", type=_threshold, default=0.05, help="flag series whose detectable change is above this"
    )
    h.add_argument(
        "--window",
        type=_positive_int,
        default=30,
        help="the last N runs of each series (default 30, as check's baseline)",
    )
    h.add_argument("--json", action="store_true")
    h.add_argument(
        "--report",
        metavar="FILE",
        help="also write the trend figures (change points, gate alerts, commits) as one self-contained HTML file",
    )
    h.add_argument("--persist", default="2/3", metavar="K/M", help="the gate alerts' persistence (default 2/3)")

    k = sub.add_parser(
        "check",
        help="the nightly gate: the newest run against each series' robust baseline "
        "(exit 1 on a regression, a broken case, or nothing measured)",
    )
    k.add_argument("--store", metavar="URL", help=STORE_HELP)
    k.add_argument("--latest", action="store_true", help="check the newest run (the default)")
    k.add_argument("--run", metavar="REF", help="check this run instead (latest~N, run id, git commit)")
    k.add_argument("--suite", help="only runs of this suite")
    k.add_argument("--threshold", type=_threshold, default=0.05, help="practical floor (default 5%%)")
    k.add_argument("--window", type=_positive_int, default=30, help="baseline runs (default 30)")
    k.add_argument(
        "--persist", metavar="K/M", help="K of the last M runs must be worse (default 2/3; with --confirm 2/4)"
    )
    k.add_argument(
        "--fdr", type=_threshold, default=0.05, help="false discovery rate across cases × metrics (default 0.05)"
    )
    k.add_argument("--json", action="store_true")
    k.add_argument("--allow-broken", action="store_true", help=ALLOW_BROKEN_HELP)
    k.add_argument(
        "--confirm",
        action="store_true",
        help="re-measure flagged cases with ab (--confirm-a/--confirm-b) before failing",
    )
    k.add_argument(
        "--confirm-a",
        metavar="PYTHON",
        help="--confirm: the baseline's interpreter; {commit} in it "
        'is replaced by each flag\'s baseline commit, e.g. "$HOME/venvs/{commit}/bin/python"',
    )
    k.add_argument("--confirm-b", metavar="PYTHON", help="--confirm: the candidate's interpreter (tonight's venv)")
    k.add_argument("--confirm-rounds", type=_positive_int, default=7, help="--confirm: paired rounds (default 7)")
    k.add_argument(
        "--confirm-out",
        metavar="DIR",
        default="results",
        help="--confirm: root for the ab records and logs (default results: results/ab/…)",
    )

    ab = sub.add_parser(
        "ab",
        help="the confirm step: each case alternately under interpreters A and B, "
        "paired rounds, a verdict (exit 1 on a regression, a case a side failed every round, "
        "or nothing measured)",
    )
    ab.add_argument("suite", metavar="SUITE", help="suite YAML")
    ab.add_argument(
        "--a",
        required=True,
        metavar="PYTHON",
        help='baseline interpreter, e.g. /old/venv/bin/python or "FLAG=1 /old/venv/bin/python"',
    )
    ab.add_argument("--b", required=True, metavar="PYTHON", help="candidate interpreter (as --a)")
    ab.add_argument("--a-env", action="append", default=[], metavar="K=V", help="environment for A (repeatable)")
    ab.add_argument("--b-env", action="append", default=[], metavar="K=V", help="environment for B (repeatable)")
    ab.add_argument("--rounds", type=_positive_int, default=5, help="paired rounds per case (default 5)")
    ab.add_argument(
        "--threshold", type=_threshold, default=0.05, help="practical floor (default 5%%): a verdict needs half of it"
    )
    ab.add_argument("--alpha", type=_threshold, default=0.01, help="significance of the paired test (default 0.01)")
    ab.add_argument("--filter", action="append", default=[], metavar="EXPR", help="as in run; repeat for OR")
    ab.add_argument("--out", default="results", help="root for results/ab/<stamp>/ (records, logs, ab.json)")
    ab.add_argument(
        "--allow-broken",
        action="store_true",
        help="a case one side failed in every round is still shown as broken, but does not fail the command",
    )
    afmt = ab.add_mutually_exclusive_group()
    afmt.add_argument("--markdown", action="store_true")
    afmt.add_argument("--json", action="store_true")


def _open(url, reading: str | None = None):
    """The store at ``url``; ``reading`` (the command's name) when it must already exist."""
    from benchbench.history.store import Store, open_existing

    return open_existing(url, reading) if reading else Store(url)


def cmd_store_export(args) -> int:
    from benchbench.history.exports import export

    store = _open(args.store, "store export") if args.store or not Path(args.ref).exists() else None
    try:
        run = _load(args.ref, store, None)
    finally:
        if store is not None:
            store.close()
    text = export(run, args.format, args.out)
    if text is None:
        print(args.out)
    elif args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(args.out)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_store(args) -> int:
    from benchbench.history.store import import_runs

    if args.store_command == "export":
        return cmd_store_export(args)
    s = _open(args.store)
    try:
        for run_id, n, added in import_runs(s, args.run_dirs):
            print(f"{run_id}: {added} of {n} records stored ({n - added} already there)")
    finally:
        s.close()
    _err(f"store: {s.display_url}")
    return EXIT_OK


def _load(ref: str, store, suite):
    from benchbench.rundir import load_run as load_run_dir

    if Path(ref).exists():
        return load_run_dir(ref)
    if store is None:
        raise UserError(
            f"{ref}: no such run directory (store references like 'latest' need --store or results/history.db)"
        )
    return store.load_run(store.resolve(ref, suite))


def cmd_compare(args) -> int:
    from benchbench.cli import display
    from benchbench.history import compare
    from benchbench.history.store import DEFAULT_URL, resolve_url

    store = None
    default_db = Path(resolve_url(DEFAULT_URL).split(":///", 1)[1])
    if args.store or default_db.exists():
        store = _open(args.store, "compare")
    try:
        base = _load(args.base, store, args.suite)
        cand = _load(args.cand, store, args.suite)
        cmp = compare.compare_runs(base, cand, threshold=args.threshold, store=store, fdr=args.fdr)
    finally:
        if store is not None:
            store.close()
    if cmp.context_diff:
        _err(
            "warning: the runs' contexts differ, verdicts may reflect the machine, not the change: "
            + "; ".join(f"{k}: {a} → {b}" for k, (a, b) in cmp.context_diff.items())
        )
    measured = [r for r in cmp.rows if r.ratio is not None]
    if measured and not any(r.confirmed for r in measured):
        _err(
            "note: no history for these series and single-process records: verdicts use the within-run spread ×3 "
            "and are unconfirmed"
        )
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2))
    elif args.markdown:
        print(compare.render_markdown(cmp), end="")
    else:
        display.console(sys.stdout).print(compare.render_table(cmp))
        c = cmp.counts()
        print(", ".join(f"{n} {v}" for v, n in c.items() if n))
        for r in cmp.broken:
            print(f"broken: {r.label}: {r.note}")
    return _gate_exit(
        cmp.regressed, len(cmp.broken), cmp.nothing_measured_line() if cmp.nothing_measured else None, args
    )


def _gate_exit(regressed: bool, broken: int, nothing_measured: str | None, args) -> int:
    """The exit code of a gating command: 1 on a regression, on nothing measured (said on
    stderr, always), and on a broken case unless --allow-broken (said on stderr either way)."""
    if nothing_measured:
        _err(nothing_measured)
    if broken:
        if args.allow_broken:
            _err(f"{broken} broken case(s) allowed by --allow-broken")
        else:
            _err(f"{broken} broken case(s): ok before, not measured now (--allow-broken to accept)")
    failing = regressed or nothing_measured is not None or (broken and not args.allow_broken)
    return EXIT_REGRESSION if failing else EXIT_OK


def _case_matches(label: str, case_id: str, pattern: str | None) -> bool:
    import fnmatch

    return pattern is None or pattern in label or case_id == pattern or fnmatch.fnmatchcase(label, pattern)


def _persist(text: str) -> tuple[int, int]:
    try:
        k, m = (int(x) for x in text.split("/"))
        if not 1 <= k <= m:
            raise ValueError
    except ValueError:
        raise UserError(f"--persist {text!r}: expected K/M with 1 ≤ K ≤ M, e.g. 2/3") from None
    return k, m


def cmd_history(args) -> int:
    from benchbench.history import changepoints, compare

    k, m = _persist(args.persist)
    cps = changepoints.available()
    if not cps:
        _err("note: no change points: they need the ruptures library (pip install ruptures)")
    s = _open(args.store, "history")
    try:
        out = []
        suite_runs = {r["run_id"] for r in s.runs(args.suite)} if args.suite else None
        for ser in s.all_series(args.suite):
            if not _case_matches(ser["label"], ser["case_id"], args.case):
                continue
            rows = s.series(ser["case_id"], ser["context"], limit=None if suite_runs is not None else args.window)
            if suite_runs is not None:
                rows = [r for r in rows if r["run_id"] in suite_runs][-args.window :]
            out.append(
                gate.summarize_series(
                    ser["case_id"],
                    ser["context"],
                    ser["label"],
                    args.metric,
                    rows,
                    args.threshold,
                    change_points=cps,
                    alerts=True,
                    persist_k=k,
                    persist_m=m,
                    window=args.window,
                )
            )
    finally:
        s.close()
    if not out:
        raise UserError(
            "history: no series match"
            + (f" --case {args.case!r}" if args.case else "")
            + (f" in suite {args.suite!r}" if args.suite else "")
        )
    if args.report:
        from benchbench.report.history import write_report

        path = write_report(
            args.report, out, f"benchbench history: {args.metric}" + (f" (suite {args.suite})" if args.suite else "")
        )
        _err(f"history report: {path}")
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(x) for x in out], indent=2))
        return EXIT_OK
    from rich.table import Table

    from benchbench.cli import display

    t = Table(title=f"history: {args.metric} per series (threshold {args.threshold:.0%})")
    for col in (
        "case",
        "context",
        "runs",
        "median",
        "latest",
        "between-run CV",
        "min. detectable change",
        "change points",
        "note",
    ):
        t.add_column(col)
    for x in out:
        cv = "—" if x.between_run_cv is None else f"{x.between_run_cv:.1%}"
        mdc = "—" if x.min_detectable_change is None else f"{x.min_detectable_change:.1%}"
        note = (
            "too noisy to gate at the threshold"
            if x.too_noisy
            else "fewer than 3 runs"
            if x.between_run_cv is None
            else ""
        )
        cps = (
            ", ".join(f"×{c['ratio']:.3f} at {(c['commit'] or c['run_id'] or '?')[:10]}" for c in x.change_points)
            or "—"
        )
        t.add_row(
            x.label,
            x.context[:8],
            str(x.runs),
            compare.fmt_value(x.metric, x.median),
            compare.fmt_value(x.metric, x.latest),
            cv,
            mdc,
            cps,
            note,
        )
    display.console(sys.stdout).print(t)
    return EXIT_OK


def cmd_check(args) -> int:

    k, m = _persist(args.persist or ("2/4" if args.confirm else "2/3"))
    if args.confirm and not (args.confirm_a and args.confirm_b):
        raise UserError(
            "--confirm needs --confirm-a PYTHON (the baseline's environment) and --confirm-b PYTHON (the candidate's)"
        )
    s = _open(args.store, "check")
    try:
        run_id = s.resolve(args.run or "latest", args.suite)
        check = gate.check_run(
            s,
            run_id,
            threshold=args.threshold,
            window=args.window,
            persist_k=k,
            persist_m=m,
            fdr=args.fdr,
            confirm=args.confirm,
        )
        rows = check.rows
        if args.confirm:
            confirm_flagged(s, run_id, rows, args)
    finally:
        s.close()
    regressed = check.regressed
    if args.json:
        from dataclasses import asdict

        print(
            json.dumps(
                {
                    "run_id": run_id,
                    "regressed": bool(regressed),
                    "broken": bool(check.broken),
                    "nothing_measured": check.nothing_measured is not None,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
    else:
        counts: dict = {}
        for r in rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        order = sorted(counts, key=lambda v: (v != "broken", v))
        print(f"check {run_id}: " + (", ".join(f"{counts[v]} {v}" for v in order) or "no verdicts"))
        if check.broken:
            print("broken (ok before, not measured in this run):")
            for r in check.broken:
                print(f"  {r.label}: {r.note}")
        by_commit: dict = {}
        for r in regressed:
            by_commit.setdefault(r.commit or "unknown commit", []).append(r)
        for commit, rs in by_commit.items():
            print(f"regressions at {commit}:")
            for r in rs:
                print(
                    f"  {r.label} {r.metric}: {r.change:+.1%} worse than the baseline "
                    f"(p={r.p:.2g}, {r.persistent}/{m} recent runs; baseline commit "
                    f"{r.baseline_commit or 'unknown'})" + (f"; {r.confirm}" if r.confirm else "")
                )
        for r in rows:
            if r.verdict == "not confirmed":
                print(f"  not confirmed by ab: {r.label} {r.metric} ({r.change:+.1%} in the screen; {r.confirm})")
        for r in rows:
            if r.verdict == "too noisy":
                print(f"  too noisy to gate: {r.label} {r.metric} (detectable change {r.mdc:.1%})")
    return _gate_exit(bool(regressed), len(check.broken), check.nothing_measured, args)


def _ab_progress(case, i, side) -> None:
    _err(f"ab: {case.label} round {i + 1} {side}")


def cmd_ab(args) -> int:
    import os

    from benchbench import probe, runner
    from benchbench.history import ab
    from benchbench.suite.schema import load_suite

    suite = load_suite(args.suite)
    cases = runner.select(suite.cases, args.filter)
    extra_paths = [os.getcwd(), str(Path(suite.path).resolve().parent)]
    a = ab.parse_side("A", args.a, args.a_env)
    b = ab.parse_side("B", args.b, args.b_env)
    for side in (a, b):
        ab.probe_side(side, extra_paths)
    if a.describe() == b.describe():
        _err("note: A and B are the same command: expect unchanged (an A/A test of the machine's noise)")
    res = ab.run_ab(
        cases,
        a,
        b,
        rounds=args.rounds,
        out_dir=ab.new_out_dir(args.out),
        extra_paths=extra_paths,
        threshold=args.threshold,
        alpha=args.alpha,
        skip_reason=probe.skip_reason,
        on_round=_ab_progress,
    )
    return _print_ab(res, args)


def _print_ab(res, args) -> int:
    from benchbench.cli import display
    from benchbench.history import ab

    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    elif args.markdown:
        print(ab.render_markdown(res), end="")
    else:
        display.console(sys.stdout).print(ab.render_table(res))
        for label, reason in res.skipped:
            print(f"skipped {label}: {reason}")
        print(", ".join(f"{n} {v}" for v, n in res.counts().items()) or "no case ran")
    _err(f"ab records and logs: {res.out_dir}")
    return _gate_exit(res.regressed, len(res.broken), res.nothing_measured, args)


def confirm_flagged(store, run_id: str, rows, args) -> None:
    """``check --confirm``: re-measure each flagged case with ab (baseline interpreter A,
    candidate B, paired rounds); a flag ab does not confirm becomes "not confirmed".
    ``{commit}`` in --confirm-a is replaced by each flag's baseline commit (in --confirm-b
    by the checked run's), so a CI job that keeps an environment per commit can point
    at them: ``--confirm-a "$HOME/venvs/{commit}/bin/python"``."""
    import os

    from benchbench import probe
    from benchbench.case import Case
    from benchbench.history import ab

    flagged = [r for r in rows if r.verdict == "regressed"]
    if not flagged:
        return
    run = store.load_run(run_id)
    by_id = {r.case_id: r for r in run.records}
    extra = [os.getcwd()]
    groups: dict = {}
    for r in flagged:  # one ab job per baseline commit
        groups.setdefault(r.baseline_commit if "{commit}" in args.confirm_a else None, []).append(r)
    for base_commit, group in groups.items():
        a_text = args.confirm_a.replace("{commit}", base_commit or "unknown")
        b_text = args.confirm_b.replace("{commit}", run.commit or "unknown")
        if base_commit is None and "{commit}" in args.confirm_a:
            for r in group:
                r.confirm = "confirm could not run: the baseline run has no git commit"
            continue
        a, b = ab.parse_side("A", a_text), ab.parse_side("B", b_text)
        for side in (a, b):
            ab.probe_side(side, extra)
        cases = [Case.from_dict(by_id[cid].case) for cid in dict.fromkeys(r.case_id for r in group)]
        _err(
            f"confirm: {len(cases)} flagged case(s), {args.confirm_rounds} paired rounds of "
            f"A ({a.describe()}) and B ({b.describe()})"
        )
        res = ab.run_ab(
            cases,
            a,
            b,
            rounds=args.confirm_rounds,
            out_dir=ab.new_out_dir(args.confirm_out),
            extra_paths=extra,
            threshold=args.threshold,
            skip_reason=probe.skip_reason,
            on_round=_ab_progress,
        )
        verdicts = {(r.case_id, r.metric): r for r in res.rows}
        for row in group:
            got = verdicts.get((row.case_id, row.metric)) or verdicts.get((row.case_id, "*"))
            if got is None or got.verdict in ("failed", "broken"):
                row.confirm = "confirm could not measure: " + (got.note if got else "case skipped")
                continue  # cannot re-measure: the screen's verdict stands
            row.confirm = (
                f"ab {got.verdict}: B/A {got.ratio:.3f}, p={got.p:.2g}, {res.rounds} rounds"
                if got.ratio is not None
                else f"ab {got.verdict}: {got.note}"
            )
            if got.verdict != "regressed":
                row.verdict = "not confirmed"
        _err(f"confirm records and logs: {res.out_dir}")


def store_after_run(url: str, run_dir) -> bool:
    """``run --store``: a store failure never costs the run (one line on stderr, False)."""
    try:
        from benchbench.history.store import Store
        from benchbench.rundir import load_run as load_run_dir

        s = Store(url)
        try:
            added = s.add_run(load_run_dir(run_dir))
        finally:
            s.close()
    except Exception as e:  # noqa: BLE001 - the run is on disk whatever happens here
        detail = (str(e).strip().splitlines() or [""])[0]
        _err(
            f"not stored ({type(e).__name__}: {detail}); the run is kept: "
            f"benchbench store import {run_dir} --store {url}"
        )
        return False
    _err(f"stored {added} records in {s.display_url}")
    return True


COMMANDS = {"store": cmd_store, "compare": cmd_compare, "history": cmd_history, "check": cmd_check, "ab": cmd_ab}
__all__ = ["add_parsers", "COMMANDS", "store_after_run"]
