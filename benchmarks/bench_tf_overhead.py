"""TensorFlow harness overhead: does benchbench report the throughput a bare loop sees?

Case: seed_cnn, batch 32, CPU, inference, fp32 (a compiled ``tf.function``), input
(3, 224, 224) — fed as NHWC (32, 224, 224, 3) — threads = every core this process may
use (TensorFlow's intra-op pool; inter-op as the backend sets it, set once for the whole
process before TensorFlow starts).

One process runs several rounds; each round times, in alternating order,

* benchbench — ``benchbench.worker.run(case)`` in-process: the real worker path (the
  tensorflow backend's prepare, warm-up, timed loop whose step ends with a value copied
  to the host, statistics). Figure: the record's ``stats["throughput"]``.
* bare — the same model (``keras_models.build``, same seed, same input values), compiled
  the same way, ``tf.function(lambda x: model(x, training=False))``, called in a plain
  ``for`` loop between two ``time.perf_counter()`` calls after an untimed warm-up, each
  call ending with ``.numpy()`` on its output (without it TensorFlow may return before
  the work is done; see the backend's step).

Per-round ratio = benchbench / bare throughput; PASS when the median ratio over the
rounds lies in 0.97–1.03. The ``other`` column is the CPU (cores) other processes used
during each side; rounds marked ``*`` are left out when at least 4 quiet rounds remain
(see ``_common.py``).

    python benchmarks/bench_tf_overhead.py [--rounds 7] [--seconds 3] [--check]

Exit status is 0 unless ``--check`` is given and the result is FAIL (then 1).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np

from benchbench.backends import tensorflow as tf_backend  # sets TensorFlow's environment first
from benchbench.case import Case, Settings
from benchbench.models import keras_models
from benchbench.worker import run

from _common import OtherLoad, fmt_load, verdict

tf, keras = tf_backend.tf, tf_backend.keras

LOW, HIGH = 0.97, 1.03
MODEL, BATCH, SHAPE, SEED = "seed_cnn", 32, (3, 224, 224), 0


def bench_benchbench(seconds: float) -> float:
    """samples/s reported by the real worker path (in-process)."""
    settings = Settings(min_time=seconds, max_time=seconds, seed=SEED)
    case = Case("tensorflow", MODEL, BATCH, "cpu", "inference", "fp32", SHAPE, settings=settings)
    rec = run(case)
    if rec.status != "ok":
        raise SystemExit(f"benchbench case {rec.status}: {rec.reason}")
    return rec.stats["throughput"]


def bench_bare(seconds: float) -> float:
    """samples/s of a bare perf_counter loop around the same compiled forward pass."""
    keras.utils.set_random_seed(SEED)
    model = keras_models.build(MODEL, SHAPE)
    rng = np.random.default_rng(SEED)
    x = tf.identity(rng.standard_normal((BATCH, *keras_models.keras_input_shape(SHAPE)), dtype=np.float32))
    forward = tf.function(lambda inputs: model(inputs, training=False))
    forward(x).numpy()  # trace and first call: untimed, as benchbench's
    t0 = time.perf_counter()  # untimed warm-up, also sizes the timed loop
    n_warm = 0
    while n_warm < 3 or time.perf_counter() - t0 < 0.5:
        forward(x).numpy()
        n_warm += 1
    iters = max(5, round(seconds * n_warm / (time.perf_counter() - t0)))
    t0 = time.perf_counter()
    for _ in range(iters):
        forward(x).numpy()
    elapsed = time.perf_counter() - t0
    return BATCH * iters / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per side per round")
    ap.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    args = ap.parse_args(argv)

    intra, inter = tf_backend.thread_counts(None)
    tf_backend.set_threads(intra, inter)  # once, before TensorFlow starts: both sides share it
    print(f"{MODEL} bs{BATCH} cpu inference fp32 (tf.function), input NHWC {BATCH}×224×224×3, "
          f"threads={intra} (inter-op {inter}), tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"{args.rounds} rounds × {args.seconds:g} s per side")  # fmt: skip
    print(f"{'round':>5}  {'order':<16} {'benchbench/s':>13} {'bare/s':>13} {'ratio':>7}  other")
    ratios, busy = [], []
    for r in range(args.rounds):
        sides = {"benchbench": bench_benchbench, "bare": bench_bare}
        order = ["benchbench", "bare"] if r % 2 == 0 else ["bare", "benchbench"]
        got, load = {}, {}
        for name in order:
            with OtherLoad() as load[name]:
                got[name] = sides[name](args.seconds)
            keras.backend.clear_session()  # the previous side's model goes before the next is built
            gc.collect()
        ratio = got["benchbench"] / got["bare"]
        other, disturbed = fmt_load(load["benchbench"].cores, load["bare"].cores)
        ratios.append(ratio)
        busy.append(disturbed)
        print(
            f"{r + 1:>5}  {'>'.join(order):<16} {got['benchbench']:>13,.1f} "
            f"{got['bare']:>13,.1f} {ratio:>7.3f}  {other}",
            flush=True,
        )

    ok = verdict("tf overhead", ratios, busy, LOW, HIGH, min_quiet=4)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
