"""The worker side: one Case in, one Record out, in a fresh process.

- :mod:`core`: ``measure_case``, the one path from a case to its record for every process
  that measures (``run``: one device, with the defaults), and ``main``, the entry point
  ``python -m benchbench.worker CASE.json RESULT.json``.
- :mod:`data_parallel`: ``devices: N`` cases — the one-device baseline in a process of its
  own, the N-device window (torchrun ranks; TensorFlow's MirroredStrategy in the worker),
  the scaling figures. It imports no other worker module: ``main`` passes it ``measure_case``.
- :mod:`rank`: a torchrun rank (``--module benchbench.worker.rank``): ``measure_case`` with
  the rank's clock, barrier, telemetry, memory gather and placement.
- :mod:`server`: a preloaded fork server whose children run ``core.main``.
"""

from benchbench.worker.core import host_memory, main, measure_case, one_line, run

__all__ = ["host_memory", "main", "measure_case", "one_line", "run"]
