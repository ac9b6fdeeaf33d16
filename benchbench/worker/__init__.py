"""The worker side: one Case in, one Record out, in a fresh process.

:mod:`core` turns a case into a record (``run``); :mod:`data_parallel` runs ``devices: N``
cases. ``python -m benchbench.worker CASE.json RESULT.json`` is the entry point.
"""

from benchbench.worker.core import host_memory, main, one_line, run

__all__ = ["host_memory", "main", "one_line", "run"]
