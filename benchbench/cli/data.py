"""``benchbench data generate DIR --images N --size 256 [--classes K] [--seed S]``: a
seeded synthetic JPEG set in class folders (benchbench.pipelines.generate), so suites with a
real input pipeline run offline. Imports no framework."""

from __future__ import annotations

import sys

from benchbench.errors import UserError


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="input-pipeline data: generate a seeded synthetic image set")
    d_sub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    g = d_sub.add_parser("generate", help="write seeded synthetic JPEGs into DIR/class_NNN/ (DIR must be new or empty)")
    g.add_argument("dir", metavar="DIR")
    g.add_argument("--images", type=int, required=True, metavar="N", help="number of images")
    g.add_argument("--size", type=int, default=256, metavar="PX", help="side in pixels (default 256)")
    g.add_argument("--classes", type=int, default=2, metavar="K", help="class folders (default 2)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="the generator's seed (default 0)")


def cmd_data(args) -> int:
    from benchbench.pipelines.generate import generate

    if args.images < 1 or args.size < 8 or args.classes < 1 or args.seed < 0:
        raise UserError("data generate: need --images >= 1, --size >= 8, --classes >= 1, --seed >= 0")
    try:
        manifest = generate(args.dir, args.images, args.size, args.classes, args.seed)
    except FileExistsError as e:
        raise UserError(f"data generate: {e}: choose a new or empty directory") from None
    except OSError as e:
        raise UserError(f"data generate: {args.dir}: {e.strerror or e}") from None
    print(
        f"{args.dir}: {manifest['images']} images, {args.size}×{args.size} JPEG, "
        f"{args.classes} classes, seed {args.seed}",
        file=sys.stderr,
    )
    return 0


COMMANDS = {"data": cmd_data}
