"""Report build time and size for 1,000 generated records.

The records (``benchbench.report.synthetic.many_records``): 10 models × 5 batch sizes
× 2 devices × 2 modes × 5 variants, 30–200 samples each, about 4% failed and 4%
skipped, written to a run directory with ``append_record``. Timed: the whole
``build_report`` call (reading the records, frames, figures, HTML, writing the file),
in a fresh process state except for imports, which are done (and timed) first.

Targets: build < 10 s and file < 15 MB. PASS when both are met.

    python benchmarks/bench_report.py [--records 1000] [--rounds 3] [--check]

Exit status is 0 unless ``--check`` is given and a target is missed (then 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 10.0
TARGET_BYTES = 15 * 10**6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000, help="how many records (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="builds to time; the median is the figure (default 3)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    if args.records < 1 or args.rounds < 1:
        ap.error("--records and --rounds must be at least 1")

    t0 = time.perf_counter()
    import plotly.graph_objects  # noqa: F401  (imports are timed apart: a CLI call pays them once)

    from benchbench.report import build_report
    from benchbench.report.synthetic import many_records, write_run

    import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        records = many_records(args.records)
        run = write_run(Path(tmp) / "run", records, suite="bench")
        samples = sum(len(r.samples) for r in records)
        times, out = [], Path(tmp) / "report.html"
        for _ in range(args.rounds):
            t = time.perf_counter()
            build_report([run], out)
            times.append(time.perf_counter() - t)
        size = out.stat().st_size
    build_s = statistics.median(times)
    statuses = {s: sum(r.status == s for r in records) for s in ("ok", "failed", "skipped")}
    print(
        f"records: {len(records)} ({statuses['ok']} ok, {statuses['failed']} failed, "
        f"{statuses['skipped']} skipped), {samples:,} samples"
    )
    print(f"imports: {import_s:.2f} s (plotly, pandas, benchbench.report)")
    print(
        f"build:   median {build_s:.2f} s over {args.rounds} rounds "
        f"({', '.join(f'{t:.2f}' for t in times)})  target < {TARGET_S:.0f} s"
    )
    print(f"size:    {size / 1e6:.2f} MB ({size:,} bytes)  target < {TARGET_BYTES / 1e6:.0f} MB")
    ok = build_s + import_s < TARGET_S and size < TARGET_BYTES
    print("PASS" if ok else "FAIL")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
