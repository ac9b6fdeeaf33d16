"""TensorFlow and Keras, imported once with TensorFlow's environment set (the import shim):
``tf``, ``keras``, and the thread settings that must be made before TensorFlow's runtime
starts. Everything on the TensorFlow side (backend, variants, the tf.data pipeline, the
data-parallel strategy) imports TensorFlow from here. Imported only in worker and probe
processes.
"""

from __future__ import annotations

import os
import sys


def _import_tensorflow():
    """Import TensorFlow and Keras with their start-up noise kept off a terminal.

    ``TF_CPP_MIN_LOG_LEVEL=1`` drops TensorFlow's C++ INFO lines (cpu_feature_guard, XLA's
    "compiled cluster", grappler) and keeps warnings and errors. The oneDNN and absl lines
    are written before that setting is read, straight to file descriptor 2: when that is a
    terminal (an in-process caller such as a benchmark script) it points at /dev/null during
    the import. In a worker, fd 2 is the case's log file and the lines land there; the probe's
    output is captured by its parent.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    quiet = "tensorflow" not in sys.modules and _isatty(2)
    if quiet:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    try:
        import tensorflow as tf  # first: without it, the error names tensorflow, not keras

        # isort: split
        import keras
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    return tf, keras


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


tf, keras = _import_tensorflow()
# a model's exception reaches the record as raised: Keras's traceback filter would rewrap it
# as "Exception encountered when calling …" with terminal colour codes in the message
keras.config.disable_traceback_filtering()


def torch_default_interop_threads() -> int:
    """PyTorch's default inter-op pool size (c10 ``TaskThreadPoolBase::defaultNumThreads``):
    the physical cores when fewer than the logical ones, else the logical ones."""
    import psutil

    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return physical if 0 < physical < logical else logical


def thread_counts(threads: int | None) -> tuple[int, int]:
    """(intra-op, inter-op) threads for a case's ``threads`` (None: every usable core).
    Inter-op is PyTorch's default count, capped at intra-op: PyTorch runs ops one after
    another (its inter-op pool idles in eager mode) while TensorFlow runs independent graph
    ops at once, so an uncapped pool would let a ``threads: 1`` case use more cores."""
    intra = threads or len(os.sched_getaffinity(0))
    return intra, min(torch_default_interop_threads(), intra)


def set_threads(intra: int, inter: int) -> None:
    """Must run before TensorFlow's runtime starts (the first op, device listing or trace)."""
    cfg = tf.config.threading
    try:
        cfg.set_intra_op_parallelism_threads(intra)
        cfg.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the runtime already runs in this process (an in-process caller)
        have = (cfg.get_intra_op_parallelism_threads(), cfg.get_inter_op_parallelism_threads())
        if have != (intra, inter):
            raise RuntimeError(
                f"TensorFlow's runtime already started in this process with intra/inter-op threads "
                f"{have[0]}/{have[1]}; this case needs {intra}/{inter} (run it in its own process)"
            ) from None
