"""Input pipelines on this CPU: loader images/s for torch (DataLoader + transforms.v2)
and tf.data (+ Keras preprocessing layers) with 0/1/2 workers and each augmentation
preset, and end to end vs model alone for seed_cnn training.

    python benchmarks/bench_pipeline.py [--images 2000] [--size 256] [--batch 32]
                                        [--max-time 4] [--keep DIR]

Runs a generated suite through ``benchbench run`` (one worker process per case, the
harness's own timing rules) over a generated set (made once) and prints two tables from
the records. The load average before and after is printed: on a shared machine the
absolute figures move with it; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: bench-pipeline
matrix:
  framework: [torch, tensorflow]
  model: [seed_cnn]
  batch_size: [{batch}]
  mode: [data, train]
defaults:
  warmup_iters: 2
  warmup_max_time: 20
  min_time: 1
  max_time: {max_time}
  min_iters: 8
  telemetry: {{hz: 0}}
  data: {{source: generated, images: {images}, size: {size}, preset: [none, light, seed, heavy], num_workers: [0, 1, 2]}}
"""


def _suite(args) -> str:
    return SUITE.format(batch=args.batch, max_time=args.max_time, images=args.images, size=args.size)


def _train_suite(args) -> str:
    """Training only with the seed preset (the articles' augmentation), workers 0/1/2."""
    return (
        _suite(args)
        .replace("mode: [data, train]", "mode: [train]")
        .replace("preset: [none, light, seed, heavy]", "preset: seed")
    )


def _run(text: str, work: Path, name: str, cache: Path) -> list[dict]:
    suite = work / f"{name}.yaml"
    suite.write_text(text)
    env = {**os.environ, "BENCHBENCH_DATA_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--out", str(work / "out"),
                           "--json"], capture_output=True, text=True, cwd=REPO, env=env)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-time", type=float, default=4)
    ap.add_argument("--keep", metavar="DIR", help="keep the run directories here")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "data-cache"
    print(f"machine: {os.cpu_count()} CPUs, load average before {_load()}", flush=True)
    loaders = _run(_suite(args).replace("mode: [data, train]", "mode: [data]"), work, "loaders", cache)
    trains = _run(_train_suite(args), work, "train", cache)
    print(f"load average after {_load()}\n")

    print(
        f"Loader alone (images/s, median-based throughput; batch {args.batch}, {args.images} JPEGs "
        f"{args.size}px → 224px; CPU = cores used by the worker and its loader processes)"
    )
    print(f"{'preset':8} {'framework':11} " + " ".join(f"{f'w{w} img/s':>10} {'cpu':>5}" for w in (0, 1, 2)))
    table: dict = {}
    for r in loaders:
        if r["status"] != "ok":
            print("  ", r["case"]["framework"], r["case"]["data"]["preset"], r["status"], r["reason"])
            continue
        d = r["case"]["data"]
        table[(d["preset"], r["case"]["framework"], d["num_workers"])] = r["pipeline"]
    for preset in ("none", "light", "seed", "heavy"):
        for fw in ("torch", "tensorflow"):
            cells = []
            for w in (0, 1, 2):
                p = table.get((preset, fw, w))
                cells.append(f"{p['loader_rate']:>10.1f} {p['cpu_cores_used']:>5.2f}" if p else f"{'—':>10} {'':>5}")
            print(f"{preset:8} {fw:11} " + " ".join(cells))

    print("\nseed_cnn training, preset seed: end to end vs the model alone (same worker, one after another)")
    print(f"{'framework':11} {'workers':>7} {'loader':>8} {'model':>8} {'e2e':>8} {'e2e/model':>9}  bound")
    for r in sorted(trains, key=lambda r: (r["case"]["framework"], r["case"]["data"]["num_workers"])):
        if r["status"] != "ok":
            print(f"{r['case']['framework']:11} {r['status']}: {r['reason']}")
            continue
        p = r["pipeline"]
        print(
            f"{r['case']['framework']:11} {r['case']['data']['num_workers']:>7} {p['loader_rate']:>8.1f} "
            f"{p['model_rate']:>8.1f} {p['end_to_end_rate']:>8.1f} {p['end_to_end_vs_model']:>9.2f}  {p['text']}"
        )
    print(f"\nrun directories: {work / 'out'}")


if __name__ == "__main__":
    main()
