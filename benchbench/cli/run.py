"""``benchbench run``: a suite's cases through an executor into a run directory, the summary
table, the report, and the history store when asked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchbench.cli.common import Progress, err, write_run_report
from benchbench.errors import EXIT_CASES_FAILED, EXIT_INTERRUPTED, EXIT_OK, UserError


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="run a suite: records, environment and a summary in a run directory")
    r.add_argument("suite", nargs="?", help="suite YAML (optional with --resume: the run's own copy is used)")
    r.add_argument("--out", default="results", help="root directory for run directories (default: results)")
    r.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="EXPR",
        help="key=glob[,key=glob] (keys: framework model batch_size device mode variant case_id) "
        "or a substring of the case label; repeat for OR",
    )
    r.add_argument("--dry-run", action="store_true", help="print the expanded cases and what would be skipped")
    r.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run: only its missing cases run")
    r.add_argument("--strict", action="store_true", help="exit 1 when any case failed or was skipped")
    r.add_argument("--json", action="store_true", help="print the records as JSON lines on stdout")
    r.add_argument(
        "--verbose",
        action="store_true",
        help="copy each case's worker log (framework start-up lines, tracebacks) to stderr",
    )
    r.add_argument(
        "--store",
        metavar="URL",
        help="after the run, append it to this history store (sqlite:///FILE, postgresql://…, or a file path)",
    )
    r.add_argument(
        "--executor",
        choices=["local", "ray", "submitit"],
        default="local",
        help="local: one worker subprocess at a time here (default); ray: each case a Ray task; "
        "submitit: each case a submitit job (Slurm, or local)",
    )
    r.add_argument(
        "--address", metavar="auto|HOST:PORT", help="ray: the cluster to join (default: start a local Ray instance)"
    )
    r.add_argument("--retry-lost", action="store_true", help="ray: run a case lost with its node/worker once more")
    r.add_argument(
        "--ray-resources", metavar="JSON", help="ray: extra resources every case asks for, e.g. '{\"special\": 1}'"
    )
    r.add_argument(
        "--submitit-cluster",
        choices=["local", "slurm"],
        help="submitit: where jobs run (default: Slurm when sbatch is found, else local)",
    )
    r.add_argument("--slurm-partition", metavar="NAME", help="submitit: the Slurm partition")
    r.add_argument(
        "--slurm-params", metavar="JSON", help='submitit: more slurm_* parameters, e.g. \'{"slurm_account": "x"}\''
    )


def cmd_run(args) -> int:
    from benchbench import probe, runner
    from benchbench.cli import display
    from benchbench.suite.schema import load_suite

    run_dir = None
    if args.resume:
        run_dir = Path(args.resume)
        suite_path, planned = runner.resume_plan(run_dir)
        suite = load_suite(suite_path)
        if args.suite:
            given = load_suite(args.suite)
            if given.content_hash != suite.content_hash:
                raise UserError(
                    f"{args.suite} differs from the suite that {run_dir} ran; "
                    f"--resume uses {suite_path} (omit SUITE or pass that file)"
                )
        by_id = {c.case_id: c for c in suite.cases}
        cases = [by_id[i] for i in planned if i in by_id]
        if args.filter:
            cases = runner.select(tuple(cases), args.filter)
    else:
        if not args.suite:
            raise UserError("run: a SUITE file is required (or --resume RUN_DIR)")
        suite = load_suite(args.suite)
        cases = runner.select(suite.cases, args.filter)

    out = display.console(sys.stderr if args.json else sys.stdout)
    if args.dry_run:
        rows = [(c, probe.skip_reason(c)) for c in cases]
        out.print(display.case_table(rows, f"suite {suite.name}: {len(cases)} cases"))
        skipped = sum(1 for _, s in rows if s)
        out.print(f"{len(cases)} cases: {len(cases) - skipped} to run, {skipped} skipped")
        return EXIT_OK

    from benchbench.executors.local import LocalExecutor

    executor = LocalExecutor()
    if args.executor == "ray":
        from benchbench.executors import ray as ray_executor

        executor = ray_executor.from_args(args.address, args.retry_lost, args.ray_resources)
    elif args.address or args.retry_lost or args.ray_resources:
        raise UserError("--address, --retry-lost and --ray-resources need --executor ray")
    if args.executor == "submitit":
        from benchbench.executors import submitit as submitit_executor

        executor = submitit_executor.from_args(args.submitit_cluster, args.slurm_partition, args.slurm_params)
    elif args.submitit_cluster or args.slurm_partition or args.slurm_params:
        raise UserError("--submitit-cluster, --slurm-partition and --slurm-params need --executor submitit")
    if run_dir is None:
        run_dir = runner.new_run_dir(Path(args.out), suite)
    err(f"run directory: {run_dir}")

    progress = Progress(len(cases))

    def on_record(rec):
        progress.advance(rec)
        log = run_dir / rec.runtime.get("log", "") if rec.runtime.get("log") else None
        if args.verbose and log is not None and log.is_file():
            err(f"--- log of {rec.case_id} ({log}) ---\n{log.read_text(errors='replace').rstrip()}")
        if args.json:
            print(json.dumps(rec.to_dict()), flush=True)

    with progress:
        try:
            result = runner.run(suite, cases, run_dir, on_start=progress.start, on_record=on_record, executor=executor)
        finally:
            executor.close()

    out.print(display.summary_table(result.records, f"suite {suite.name}: {run_dir}"))
    for line in display.skipped_lines(result.records):
        out.print(line)
    from benchbench.cli import history as cli_history

    stored = cli_history.store_after_run(args.store, run_dir) if args.store else False
    write_run_report(run_dir, args.store if stored else None)
    counts = f"{result.count('ok')} ok, {result.count('failed')} failed, {result.count('skipped')} skipped"
    if result.interrupted:
        err(f"interrupted: {counts}; records kept in {run_dir}; finish with: benchbench run --resume {run_dir}")
        return EXIT_INTERRUPTED
    err(f"{counts}; results in {run_dir}")
    if args.strict and (result.count("failed") or result.count("skipped")):
        return EXIT_CASES_FAILED
    return EXIT_OK
