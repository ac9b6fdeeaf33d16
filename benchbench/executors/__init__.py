"""Executors run cases in isolation and yield their records: :mod:`local` (worker
subprocesses on this machine, the default), :mod:`ray` (a Ray cluster), :mod:`submitit`
(Slurm, or local jobs). :mod:`remote` is the task body both cluster executors run on a node.

Every executor is an :class:`Executor`: the runner has one loop over ``run_many``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from benchbench.case import Case
from benchbench.results import Record

OnStart = Callable[[int, int, Case], None]


class Executor(Protocol):
    def run_many(
        self, cases: list[Case], run_dir: Path, extra_paths: list[str], on_start: OnStart | None = None
    ) -> Iterator[Record]:
        """Run each case in a fresh worker process; yield one record per case (ok, failed or
        skipped: never an exception for a case), in completion order, each with its log in
        ``run_dir/logs``. Closing the iterator (or an exception such as KeyboardInterrupt
        while it waits) stops what has not finished."""
        ...

    def close(self) -> None:
        """Release what the executor holds (a cluster connection); records are kept."""
        ...
