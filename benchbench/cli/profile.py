"""``benchbench profile SUITE --case ID [--out DIR]``: one case of a suite, measured as
usual and then profiled (``profile: true`` for that case only) into a new run directory:
the record, the top operators by self time printed here, the trace in ``profiles/``."""

from __future__ import annotations

import dataclasses
import difflib
import sys
from pathlib import Path

from benchbench.errors import EXIT_CASES_FAILED, EXIT_INTERRUPTED, EXIT_OK, UserError


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="run one case of a suite with profiling on: top ops by self time, a trace")
    p.add_argument("suite", help="suite YAML")
    p.add_argument(
        "--case",
        required=True,
        metavar="ID",
        help="the case: its case_id (or a unique prefix of it) or its label, as `run --dry-run` shows",
    )
    p.add_argument("--out", default="results", help="root directory for the run directory (default: results)")


def find_case(cases, wanted: str):
    """The case whose case_id, unique case_id prefix or label is ``wanted``; UserError naming
    the near misses otherwise."""
    exact = [c for c in cases if wanted in (c.case_id, c.label)]
    if len(exact) == 1:
        return exact[0]
    prefixed = [c for c in cases if c.case_id.startswith(wanted)] if wanted else []
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise UserError(f"--case {wanted}: ambiguous, matches " + ", ".join(c.case_id for c in prefixed[:5]))
    near = difflib.get_close_matches(wanted, [c.case_id for c in cases] + [c.label for c in cases], n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else "; `benchbench run SUITE --dry-run` lists them"
    raise UserError(f"--case {wanted}: no such case in the suite ({len(cases)} cases){hint}")


def format_profile(prof: dict | None) -> list[str]:
    """The record's ``runtime.profile`` as text lines: the top ops and where the trace is."""
    if not prof:
        return ["no profile in the record"]
    if not prof.get("available"):
        return [f"profile unavailable: {prof.get('reason')}"]
    lines = [f"profiled {prof.get('iterations')} iterations with {prof.get('tool')}"]
    for key, title in (("top_host_ops", "host"), ("top_device_ops", "device")):
        ops = prof.get(key)
        if not ops:
            why = prof.get("device_ops_reason") if key == "top_device_ops" else prof.get("top_ops_reason")
            lines.append(f"top {title} ops: unavailable ({why})" if why else f"top {title} ops: none")
            continue
        lines.append(f"top {title} ops by self time:")
        lines.append(f"  {'op':48} {'calls':>7} {'self ms':>10} {'share':>7}")
        for o in ops[:10]:
            lines.append(f"  {o['op'][:48]:48} {o['calls']:>7} {o['self_s'] * 1e3:>10.2f} {o['share']:>7.1%}")
    for key in ("trace", "xspace"):
        if prof.get(key):
            lines.append(f"{key}: {prof[key]}")
        elif prof.get(f"{key}_reason"):
            lines.append(f"{key}: unavailable ({prof[f'{key}_reason']})")
    return lines


def cmd_profile(args) -> int:
    from benchbench import runner
    from benchbench.cli.common import write_run_report
    from benchbench.suite.schema import load_suite

    suite = load_suite(args.suite)
    case = find_case(suite.cases, args.case)
    case = dataclasses.replace(case, settings=dataclasses.replace(case.settings, profile=True))
    run_dir = runner.new_run_dir(Path(args.out), suite)
    print(f"run directory: {run_dir}", file=sys.stderr, flush=True)
    print(f"profiling {case.label} ({case.case_id})", file=sys.stderr, flush=True)
    result = runner.run(suite, [case], run_dir)
    if result.interrupted:
        print(f"interrupted; finish with: benchbench run --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    record = result.records[0]
    if record.status != "ok":
        print(f"{record.status}: {record.reason}", file=sys.stderr)
        return EXIT_CASES_FAILED
    for line in format_profile(record.runtime.get("profile")):
        print(line)
    write_run_report(run_dir)
    return EXIT_OK
