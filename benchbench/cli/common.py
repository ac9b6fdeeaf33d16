"""What the commands share: one-line messages on stderr, the run's report, the progress display."""

from __future__ import annotations

import sys
from pathlib import Path

from benchbench.case import case_label


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_run_report(run_dir: Path, store: str | None = None) -> None:
    """report.html in the run directory (with each case's history when the run was
    stored). A failure here never costs the run: one line on stderr, the records stay,
    the exit code is the run's."""
    try:
        from benchbench.report import REPORT_FILE, build_report

        path = build_report([run_dir], run_dir / REPORT_FILE, store=store)
    except Exception as e:
        detail = (str(e).strip().splitlines() or [""])[0]
        err(f"report not written ({type(e).__name__}: {detail}); try again: benchbench report {run_dir}")
        return
    err(f"report: {path}")


class Progress:
    """A rich progress bar on stderr when it is a terminal; one line per case otherwise."""

    def __init__(self, total: int):
        self.total = total
        self.tty = sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
                console=Console(file=sys.stderr),
            )
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
            err(f"{rec.status:8} {case_label(rec.case)}" + (f": {rec.reason}" if rec.reason else ""))
