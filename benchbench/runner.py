"""Runs a suite's cases through an executor into a run directory (:mod:`benchbench.rundir`
says what it holds)."""

from __future__ import annotations

import fnmatch
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchbench import probe, rundir
from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.executors import Executor
from benchbench.hardware import environment
from benchbench.measure import combine
from benchbench.results import ENVIRONMENT_FILE, RESULTS_FILE, Record, append_record, read_records, write_json
from benchbench.rundir import now as _now
from benchbench.suite import catalogue as suite_catalogue
from benchbench.suite.schema import Suite

FILTER_KEYS = ("framework", "model", "batch_size", "device", "mode", "variant", "case_id")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the running case was stopped; finished records are on disk."""


# --- selecting cases -------------------------------------------------------------------


def parse_filter(expr: str) -> list[tuple[str | None, str]]:
    """``key=glob[,key=glob…]``: all terms must match; a term without ``=`` matches
    the case label (framework/model/bsN/device/mode/variant) as a glob or substring."""
    terms = []
    for raw in expr.split(","):
        term = raw.strip()
        if not term:
            raise UserError(f"--filter {expr!r}: empty term")
        if "=" in term:
            key, _, pattern = term.partition("=")
            key = key.strip()
            if key not in FILTER_KEYS:
                raise UserError(f"--filter {expr!r}: unknown key {key!r}; allowed: {', '.join(FILTER_KEYS)}")
            terms.append((key, pattern.strip()))
        else:
            terms.append((None, term))
    return terms


def _matches(case: Case, terms: list[tuple[str | None, str]]) -> bool:
    for key, pattern in terms:
        if key is None:
            if not (fnmatch.fnmatchcase(case.label, pattern) or pattern in case.label):
                return False
        else:
            value = case.case_id if key == "case_id" else getattr(case, key)
            if not fnmatch.fnmatchcase(str(value), pattern):
                return False
    return True


def select(cases: tuple[Case, ...], filters: list[str]) -> list[Case]:
    """Cases matching any of the filters (each a conjunction of terms); all if none."""
    if not filters:
        return list(cases)
    parsed = [parse_filter(f) for f in filters]
    chosen = [c for c in cases if any(_matches(c, t) for t in parsed)]
    if not chosen:
        example = f"labels look like {cases[0].label}; " if cases else ""
        raise UserError(
            f"--filter {' | '.join(filters)} matches none of the suite's {len(cases)} cases "
            f"({example}keys: {', '.join(FILTER_KEYS)})"
        )
    return chosen


# --- the run -----------------------------------------------------------------------------


@dataclass
class RunResult:
    run_dir: Path
    records: list[Record] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)


def new_run_dir(out_root: Path, suite: Suite) -> Path:
    return rundir.new_run_dir(out_root, suite.name)


def _probes_for_environment(frameworks: set[str]) -> dict:
    out = {}
    for fw in sorted(frameworks):
        info = probe.probe(fw)
        if info is None:
            out[fw] = {"available": False, "reason": probe.probe_error(fw)}
        else:
            out[fw] = {k: v for k, v in info.items() if k not in ("models", "timm_models")}
    return out


class _SigtermAsInterrupt:
    def __enter__(self):
        def handler(signum, frame):
            raise Interrupted(f"received {signal.Signals(signum).name}")

        try:
            self.old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def run(
    suite: Suite,
    cases: list[Case],
    run_dir: Path,
    *,
    on_start: Callable[[int, int, Case], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Run ``cases`` into ``run_dir``; cases already recorded there are not run again."""
    if executor is None:
        from benchbench.executors.local import LocalExecutor

        executor = LocalExecutor()
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / RESULTS_FILE
    done = {r.case_id for r in read_records(results_path)} if results_path.exists() else set()
    todo = [c for c in cases if c.case_id not in done]

    suite_path = run_dir / rundir.SUITE_FILE
    if not suite_path.exists():
        suite_path.write_text(suite.text, encoding="utf-8")
        suite_catalogue.save(suite.catalogue, run_dir)  # the suite's catalogue: entries, kept with the run
    run_info = rundir.read_info(run_dir) or {
        "suite": suite.name,
        "suite_sha256": suite.content_hash,
        "baseline": suite.baseline,  # the reference variant (report speed-up, fidelity)
        "created_at": _now(),
        "planned": [c.case_id for c in cases],
    }
    run_info.update(status="running", updated_at=_now())
    rundir.write_info(run_dir, run_info)
    if not (run_dir / ENVIRONMENT_FILE).exists():
        env = environment.collect(suite.text, _probes_for_environment({c.framework for c in cases}))
        write_json(run_dir / ENVIRONMENT_FILE, env)

    extra_paths = [os.getcwd(), str(Path(suite.path).resolve().parent)]
    result = RunResult(run_dir=run_dir)

    def finish(record: Record) -> None:
        append_record(results_path, record)
        result.records.append(record)
        _processes_file(run_dir, record.case_id).unlink(missing_ok=True)
        if on_record:
            on_record(record)

    kept = {c.case_id: _read_processes(run_dir, c.case_id) for c in todo}  # --resume: finished processes
    active = list(todo)
    try:
        with _SigtermAsInterrupt():
            while active:  # one pass: the next process of every unfinished case, in suite order
                by_id = {c.case_id: c for c in active}
                still: set[str] = set()
                jobs = [combine.process_case(c, len(kept[c.case_id]) + 1, kept[c.case_id]) for c in active]
                records = executor.run_many(jobs, run_dir, extra_paths, on_start=on_start)
                try:
                    for record in records:  # a case is decided as soon as its process ends
                        case = by_id[record.case_id]
                        done_here = kept[case.case_id]
                        if record.status != "ok":
                            finish(combine.failed_record(case, record, done_here))
                            continue
                        done_here.append(record)
                        more, why = combine.next_process(case, done_here)
                        if more:
                            path = _processes_file(run_dir, case.case_id)
                            path.parent.mkdir(exist_ok=True)
                            append_record(path, record)
                            still.add(case.case_id)
                        else:
                            finish(combine.combine_records(case, done_here, why))
                finally:
                    close = getattr(records, "close", None)
                    if close is not None:
                        close()  # stops what has not finished
                active = [c for c in active if c.case_id in still]
    except (KeyboardInterrupt, Interrupted):
        result.interrupted = True
    parts = run_dir / rundir.PROCESSES_DIR
    if parts.is_dir() and not any(parts.iterdir()):
        parts.rmdir()  # every case combined: no processes left over for a --resume
    recorded = done | {r.case_id for r in result.records}
    missing = [i for i in run_info["planned"] if i not in recorded]
    run_info.update(status="incomplete" if missing else "complete", missing=missing, updated_at=_now())
    rundir.write_info(run_dir, run_info)
    return result


def resume_plan(run_dir: Path) -> tuple[Path, list[str]]:
    """(the suite file that ran, the planned case ids) of an earlier run directory."""
    return rundir.resume_plan(run_dir)


def _processes_file(run_dir: Path, case_id: str) -> Path:
    return run_dir / rundir.PROCESSES_DIR / f"{case_id}.jsonl"


def _read_processes(run_dir: Path, case_id: str) -> list[Record]:
    """The finished processes of a case not yet combined (an interrupted run), in order."""
    path = _processes_file(run_dir, case_id)
    return [r for r in read_records(path) if r.status == "ok"] if path.exists() else []
