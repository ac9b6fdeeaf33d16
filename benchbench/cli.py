"""The commands. Thin: parse arguments, call the library, print. User mistakes end
here as one line per problem on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import benchbench
from benchbench import cli_data, cli_history, cli_profile
from benchbench.errors import EXIT_CASES_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, UserError


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchbench", description=benchbench.__doc__)
    p.add_argument("--version", action="version", version=f"benchbench {benchbench.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite: records, environment and a summary in a run directory")
    r.add_argument("suite", nargs="?", help="suite YAML (optional with --resume: the run's own copy is used)")
    r.add_argument("--out", default="results", help="root directory for run directories (default: results)")
    r.add_argument("--filter", action="append", default=[], metavar="EXPR",
                   help="key=glob[,key=glob] (keys: framework model batch_size device mode variant case_id) "
                        "or a substring of the case label; repeat for OR")
    r.add_argument("--dry-run", action="store_true", help="print the expanded cases and what would be skipped")
    r.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run: only its missing cases run")
    r.add_argument("--strict", action="store_true", help="exit 1 when any case failed or was skipped")
    r.add_argument("--json", action="store_true", help="print the records as JSON lines on stdout")
    r.add_argument("--verbose", action="store_true",
                   help="copy each case's worker log (framework start-up lines, tracebacks) to stderr")
    r.add_argument("--store", metavar="URL", help="after the run, append it to this history store "
                   "(sqlite:///FILE, postgresql://…, or a file path)")
    r.add_argument("--executor", choices=["local", "ray", "submitit"], default="local",
                   help="local: one worker subprocess at a time here (default); ray: each case a Ray task; "
                        "submitit: each case a submitit job (Slurm, or local)")
    r.add_argument("--address", metavar="auto|HOST:PORT",
                   help="ray: the cluster to join (default: start a local Ray instance)")
    r.add_argument("--retry-lost", action="store_true", help="ray: run a case lost with its node/worker once more")
    r.add_argument("--ray-resources", metavar="JSON",
                   help='ray: extra resources every case asks for, e.g. \'{"special": 1}\'')
    r.add_argument("--submitit-cluster", choices=["local", "slurm"],
                   help="submitit: where jobs run (default: Slurm when sbatch is found, else local)")
    r.add_argument("--slurm-partition", metavar="NAME", help="submitit: the Slurm partition")
    r.add_argument("--slurm-params", metavar="JSON", help='submitit: more slurm_* parameters, e.g. \'{"slurm_account": "x"}\'')

    v = sub.add_parser("validate", help="check a suite and print its case count")
    v.add_argument("suite")

    ls = sub.add_parser("list", help="list models, variants, devices, modes or frameworks")
    ls.add_argument("what", choices=["models", "variants", "devices", "modes", "frameworks"])
    ls.add_argument("--framework", default="torch")
    ls.add_argument("--all", action="store_true", help="models: list every timm model too")

    sub.add_parser("schema", help="print the JSON Schema of the suite format")
    d = sub.add_parser("devices", help="CPU (RAPL readable?), GPUs (NVML) and TPUs of this machine")
    d.add_argument("--json", action="store_true", help="print the inventory as JSON")

    rp = sub.add_parser("report", help="build one self-contained HTML report from one or more run directories")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to merge (runs, machines)")
    rp.add_argument("-o", "--out", metavar="FILE",
                    help="output HTML (default: report.html in the run directory, ./report.html for several)")
    rp.add_argument("--baseline", metavar="VARIANT", help="add the speed-up of each case over this variant")
    rp.add_argument("--format", choices=["png", "svg", "pdf"],
                    help="also write every figure as a static file in FILE's <stem>-figures/ "
                         "(needs kaleido and Chrome/Chromium; exit 2 without them)")
    rp.add_argument("--hardware", action="store_true",
                    help="add the hardware comparison: samples/s, samples/J, samples/$, MFU, roofline")
    rp.add_argument("--reference", metavar="DEVICE",
                    help="--hardware: normalise to the machine whose label contains this (default: the first)")
    rp.add_argument("--devices", metavar="FILE", action="append",
                    help="--hardware: a device catalogue file added to the built-in one (repeatable)")
    rp.add_argument("--store", metavar="URL",
                    help="add a History section: each case's trend over its runs in this history store "
                         "(change points, gate alerts, commits)")
    rp.add_argument("--history-metric", default="throughput",
                    choices=["throughput", "latency_p99", "memory", "energy_per_sample"],
                    help="--store: the metric the trends show (default throughput)")
    cli_history.add_parsers(sub)  # store import, compare, history, check
    cli_profile.add_parser(sub)  # profile SUITE --case ID
    cli_data.add_parser(sub)  # data generate DIR
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "schema": cmd_schema, "devices": cmd_devices,
                "report": cmd_report, "profile": cli_profile.cmd_profile, **cli_history.COMMANDS,
                **cli_data.COMMANDS}[args.command](args)
    except UserError as e:
        for line in e.problems:
            _err(line)
        if str(e) not in e.problems:
            _err(f"error: {e}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except OSError as e:  # a file the user named that cannot be read or written: say which and why
        if e.filename is None:
            raise
        _err(f"error: {e.filename}: {e.strerror or type(e).__name__}")
        return EXIT_USER_ERROR


def cmd_validate(args) -> int:
    from benchbench.suite import load_suite

    suite = load_suite(args.suite)
    print(f"{args.suite}: ok, suite {suite.name!r}, {len(suite.cases)} cases")
    return EXIT_OK


def cmd_devices(args) -> int:
    from benchbench import devices

    inv = devices.inventory()
    print(json.dumps(inv, indent=2) if args.json else devices.format_inventory(inv))
    return EXIT_OK


def cmd_schema(args) -> int:
    from benchbench.suite import suite_json_schema

    json.dump(suite_json_schema(), sys.stdout, indent=2)
    print()
    return EXIT_OK


def cmd_list(args) -> int:
    from benchbench import probe, registry

    if args.what == "frameworks":
        for name, desc in registry.FRAMEWORKS.items():
            err = probe.probe_error(name)
            print(f"{name:12} {desc}" + (f"  [unavailable: {err}]" if err else ""))
    elif args.what == "modes":
        for name, desc in registry.MODES.items():
            print(f"{name:12} {desc}")
    elif args.what == "variants":
        from benchbench.variants.listing import support_lines

        print("\n".join(support_lines()))
    elif args.what == "devices":
        info = probe.probe(args.framework)
        if info is None:
            raise UserError(probe.probe_error(args.framework))
        for kind, dev in info["devices"].items():
            state = "available" if dev.get("available") else f"unavailable: {dev.get('reason')}"
            extra = ""
            if kind == "cpu":
                extra = f" ({dev.get('name')})"
            for gpu in dev.get("gpus", []):
                mem = gpu.get("memory_bytes")
                size = f"{mem / 2**30:.1f} GiB" if mem else "memory n/a"
                extra += f"\n  cuda:{gpu.get('index')} {gpu.get('name')} {size} uuid={gpu.get('uuid')}"
            print(f"{kind:6} {state}{extra}")
    else:
        for m in registry.SEED_MODELS.values():
            print(f"{m.name:12} seed   input {'×'.join(map(str, m.input_shape))}: {m.description}")
        info = probe.probe(args.framework)
        if info is None:
            _err(f"zoo models unavailable: {probe.probe_error(args.framework)}")
        else:
            source = info.get("model_source", "torchvision")
            aliases = info.get("aliases") or {}
            for name in info["models"]:
                print(f"{name:12} {source}")
            for alias, target in sorted(aliases.items()):
                print(f"{alias:12} alias of {target}")
            timm = info.get("timm_models")
            if timm is None:
                print(f"timm:NAME    {info.get('timm_reason') or 'timm is not installed'}")
            elif args.all:
                for name in timm:
                    print(f"timm:{name}")
            else:
                print(f"timm:NAME    {len(timm)} timm models, e.g. timm:{timm[0]} (list them with --all)")
        kind = "a keras.Model" if args.framework == "tensorflow" else "an nn.Module"
        print(f"pkg.module:callable   your own function returning {kind} (input shape from the suite)")
    return EXIT_OK


def cmd_run(args) -> int:
    from benchbench import display, runner
    from benchbench.suite import load_suite

    run_dir = None
    if args.resume:
        run_dir = Path(args.resume)
        suite_path, planned = runner.resume_plan(run_dir)
        suite = load_suite(suite_path)
        if args.suite:
            given = load_suite(args.suite)
            if given.content_hash != suite.content_hash:
                raise UserError(f"{args.suite} differs from the suite that {run_dir} ran; "
                                f"--resume uses {suite_path} (omit SUITE or pass that file)")
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
        rows = [(c, runner.skip_reason(c)) for c in cases]
        out.print(display.case_table(rows, f"suite {suite.name}: {len(cases)} cases"))
        skipped = sum(1 for _, s in rows if s)
        out.print(f"{len(cases)} cases: {len(cases) - skipped} to run, {skipped} skipped")
        return EXIT_OK

    executor = None
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
    _err(f"run directory: {run_dir}")

    progress = _Progress(len(cases))

    def on_record(rec):
        progress.advance(rec)
        log = run_dir / rec.runtime.get("log", "") if rec.runtime.get("log") else None
        if args.verbose and log is not None and log.is_file():
            _err(f"--- log of {rec.case_id} ({log}) ---\n{log.read_text(errors='replace').rstrip()}")
        if args.json:
            print(json.dumps(rec.to_dict()), flush=True)

    with progress:
        try:
            result = runner.run(suite, cases, run_dir, on_start=progress.start, on_record=on_record,
                                executor=executor)
        finally:
            if executor is not None:
                executor.close()

    out.print(display.summary_table(result.records, f"suite {suite.name}: {run_dir}"))
    for line in display.skipped_lines(result.records):
        out.print(line)
    stored = cli_history.store_after_run(args.store, run_dir) if args.store else False
    _write_run_report(run_dir, args.store if stored else None)
    counts = f"{result.count('ok')} ok, {result.count('failed')} failed, {result.count('skipped')} skipped"
    if result.interrupted:
        _err(f"interrupted: {counts}; records kept in {run_dir}; finish with: benchbench run --resume {run_dir}")
        return EXIT_INTERRUPTED
    _err(f"{counts}; results in {run_dir}")
    if args.strict and (result.count("failed") or result.count("skipped")):
        return EXIT_CASES_FAILED
    return EXIT_OK


def cmd_report(args) -> int:
    from benchbench.report import build_report, static

    path = build_report(args.run_dirs, args.out, baseline=args.baseline, fmt=args.format,
                        hardware=args.hardware, reference=args.reference, devices=args.devices,
                        store=args.store, history_metric=args.history_metric)
    print(path)
    if args.format:
        print(static.figures_dir(path))
    return EXIT_OK


def _write_run_report(run_dir: Path, store: str | None = None) -> None:
    """report.html in the run directory (with each case's history when the run was
    stored). A failure here never costs the run: one line on stderr, the records stay,
    the exit code is the run's."""
    try:
        from benchbench.report import REPORT_FILE, build_report

        path = build_report([run_dir], run_dir / REPORT_FILE, store=store)
    except Exception as e:
        detail = (str(e).strip().splitlines() or [""])[0]
        _err(f"report not written ({type(e).__name__}: {detail}); try again: benchbench report {run_dir}")
        return
    _err(f"report: {path}")


class _Progress:
    """A rich progress bar on stderr when it is a terminal; one line per case otherwise."""

    def __init__(self, total: int):
        self.total = total
        self.tty = sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), transient=True, console=Console(file=sys.stderr))
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, i: int, n: int, case) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"[{i}/{n}] {case.label}")

    def advance(self, rec) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
        else:
            c = rec.case
            _err(f"{rec.status:8} {c['framework']}/{c['model']}/bs{c['batch_size']}/{c['device']}/{c['mode']}/"
                 f"{c['variant']}" + (f": {rec.reason}" if rec.reason else ""))
