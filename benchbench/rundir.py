"""Run directories: the one place that knows their files, their ``Run``, and how to load one.

A run directory ``results/<suite>/<UTC stamp>-<id>/`` holds:

| file | what |
| --- | --- |
| ``suite.yaml`` | the exact suite text that ran (``--resume`` runs it again) |
| ``run.json`` | planned case ids, ``running`` / ``complete`` / ``incomplete``, what is missing |
| ``environment.json`` | the machine and software (:mod:`benchbench.hardware.environment`) |
| ``results.jsonl`` | one record per case, appended as each case ends |
| ``processes/<case_id>.jsonl`` | each finished worker process of a case not yet combined |
| ``devices.yaml`` | the suite's own device catalogue entries, when it names one |
| ``logs/<case_id>.log`` | each worker's output |

The runner writes them; the report, the history store and the suite catalogue read them
through :func:`load_run` / :func:`load_runs` here.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from benchbench.errors import UserError
from benchbench.results import ENVIRONMENT_FILE, RESULTS_FILE, Record, read_records, write_json

RUN_FILE = "run.json"
SUITE_FILE = "suite.yaml"
CATALOGUE_FILE = "devices.yaml"
PROCESSES_DIR = "processes"
LOGS_DIR = "logs"
WORK_DIR = ".work"

__all__ = [
    "CATALOGUE_FILE",
    "ENVIRONMENT_FILE",
    "LOGS_DIR",
    "PROCESSES_DIR",
    "RESULTS_FILE",
    "RUN_FILE",
    "Run",
    "SUITE_FILE",
    "WORK_DIR",
    "is_run_dir",
    "load_run",
    "load_runs",
    "new_run_dir",
    "read_info",
    "resume_plan",
    "write_info",
]


@dataclass
class Run:
    """One run: from a run directory (``path``) or from a history store (``path`` None)."""

    run_id: str
    suite: str | None
    created_at: str | None
    records: list[Record]
    environment: dict = field(default_factory=dict)  # environment.json ({} when absent)
    info: dict = field(default_factory=dict)  # run.json ({} when absent)
    path: Path | None = None
    source: str = ""  # where it was read from, for messages

    @property
    def name(self) -> str:
        return self.run_id

    @property
    def host(self) -> str | None:
        return (self.environment or {}).get("host")

    @property
    def commit(self) -> str | None:
        return ((self.environment or {}).get("git") or {}).get("commit")


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def load_run(path: str | os.PathLike) -> Run:
    """A run directory (or its results.jsonl) as a Run; a clear error for anything else."""
    p = Path(path)
    if p.is_file() and p.name == RESULTS_FILE:
        p = p.parent
    if not p.is_dir():
        raise UserError(f"{path}: no such run directory")
    if not (p / RESULTS_FILE).exists():
        raise UserError(f"{path}: not a run directory (no {RESULTS_FILE})")
    records = read_records(p)
    env = _read_json(p / ENVIRONMENT_FILE)
    info = _read_json(p / RUN_FILE)
    created = (
        info.get("created_at")
        or env.get("captured_at")
        or min((r.started_at for r in records if r.started_at), default=None)
    )
    suite = info.get("suite") or p.parent.name or p.name
    return Run(
        run_id=p.name,
        suite=suite,
        created_at=created,
        records=records,
        environment=env,
        info=info,
        path=p,
        source=str(p),
    )


def load_runs(paths: Iterable[str | os.PathLike]) -> list[Run]:
    """Each path a run directory (or its results.jsonl); the same run twice counts once."""
    runs, seen = [], set()
    for raw in paths:
        run = load_run(raw)
        assert run.path is not None
        key = run.path.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(run)
    return runs


# --- writing -----------------------------------------------------------------------------


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_dir(out_root: Path, suite_name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = out_root / suite_name / f"{stamp}-{secrets.token_hex(3)}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise UserError(
            f"--out {out_root}: cannot create the run directory {run_dir} ({e.strerror or type(e).__name__})"
        ) from None
    return run_dir


def read_info(run_dir: Path) -> dict | None:
    path = run_dir / RUN_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_info(run_dir: Path, info: dict) -> None:
    write_json(run_dir / RUN_FILE, info)


def resume_plan(run_dir: Path) -> tuple[Path, list[str]]:
    """(the suite file that ran, the planned case ids) of an earlier run directory."""
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run directory")
    info = read_info(run_dir)
    suite_path = run_dir / SUITE_FILE
    if info is None or not suite_path.exists():
        raise UserError(f"--resume {run_dir}: not a benchbench run directory (no {RUN_FILE} / {SUITE_FILE})")
    return suite_path, list(info.get("planned") or [])
