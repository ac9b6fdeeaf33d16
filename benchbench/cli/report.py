"""``benchbench report``: one self-contained HTML report from run directories."""

from __future__ import annotations

from benchbench.errors import EXIT_OK


def add_parser(sub) -> None:
    rp = sub.add_parser("report", help="build one self-contained HTML report from one or more run directories")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to merge (runs, machines)")
    rp.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="output HTML (default: report.html in the run directory, ./report.html for several)",
    )
    rp.add_argument("--baseline", metavar="VARIANT", help="add the speed-up of each case over this variant")
    rp.add_argument(
        "--format",
        choices=["png", "svg", "pdf"],
        help="also write every figure as a static file in FILE's <stem>-figures/ "
        "(needs kaleido and Chrome/Chromium; exit 2 without them)",
    )
    rp.add_argument(
        "--hardware",
        action="store_true",
        help="add the hardware comparison: samples/s, samples/J, samples/$, MFU, roofline",
    )
    rp.add_argument(
        "--reference",
        metavar="DEVICE",
        help="--hardware: normalise to the machine whose label contains this (default: the first)",
    )
    rp.add_argument(
        "--devices",
        metavar="FILE",
        action="append",
        help="--hardware: a device catalogue file added to the built-in one (repeatable)",
    )
    rp.add_argument(
        "--store",
        metavar="URL",
        help="add a History section: each case's trend over its runs in this history store "
        "(change points, gate alerts, commits)",
    )
    rp.add_argument(
        "--history-metric",
        default="throughput",
        choices=["throughput", "latency_p99", "memory", "energy_per_sample"],
        help="--store: the metric the trends show (default throughput)",
    )


def cmd_report(args) -> int:
    from benchbench.report import build_report, static

    path = build_report(
        args.run_dirs,
        args.out,
        baseline=args.baseline,
        fmt=args.format,
        hardware=args.hardware,
        reference=args.reference,
        devices=args.devices,
        store=args.store,
        history_metric=args.history_metric,
    )
    print(path)
    if args.format:
        print(static.figures_dir(path))
    return EXIT_OK
