"""Runs a suite's cases through an executor into a run directory.

A run directory holds ``suite.yaml`` (the exact text that ran), ``environment.json``,
``run.json`` (planned case ids and whether the run completed), ``results.jsonl``
(a record per case, appended as each case ends) and ``logs/<case_id>.log``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from benchbench import environment, probe, suite_catalogue
from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.results import ENVIRONMENT_FILE, RESULTS_FILE, Record, append_record, read_records, write_json
from benchbench.suite import Suite

RUN_FILE = "run.json"
SUITE_FILE = "suite.yaml"
FILTER_KEYS = ("framework", "model", "batch_size", "device", "mode", "variant", "case_id")
_sleep = time.sleep  # the cool-down between cases (tests replace it)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the running case was stopped; finished records are on disk."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        raise UserError(f"--filter {' | '.join(filters)} matches none of the suite's {len(cases)} cases "
                        f"({example}keys: {', '.join(FILTER_KEYS)})")
    return chosen


def skip_reason(case: Case) -> str | None:
    """Why ``case`` cannot run on this machine (decided without starting a worker)."""
    from benchbench.registry import variant_support

    return probe.device_skip_reason(case.framework, case.device) or variant_support(
        case.framework, case.variant, case.device, case.mode)


# --- the run -----------------------------------------------------------------------------

@dataclass
class RunResult:
    run_dir: Path
    records: list[Record] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)


def new_run_dir(out_root: Path, suite: Suite) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = out_root / suite.name / f"{stamp}-{secrets.token_hex(3)}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise UserError(f"--out {out_root}: cannot create the run directory {run_dir} "
                        f"({e.strerror or type(e).__name__})") from None
    return run_dir


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
    executor=None,
) -> RunResult:
    """Run ``cases`` into ``run_dir``; cases already recorded there are not run again."""
    if executor is None:
        from benchbench.executors import local as executor
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / RESULTS_FILE
    done = {r.case_id for r in read_records(results_path)} if results_path.exists() else set()
    todo = [c for c in cases if c.case_id not in done]

    suite_path = run_dir / SUITE_FILE
    if not suite_path.exists():
        suite_path.write_text(suite.text, encoding="utf-8")
        suite_catalogue.save(suite.catalogue, run_dir)  # the suite's catalogue: entries, kept with the run
    run_info = _read_run_info(run_dir) or {
        "suite": suite.name,
        "suite_sha256": suite.content_hash,
        "baseline": suite.baseline,  # the reference variant (report speed-up, fidelity)
        "created_at": _now(),
        "planned": [c.case_id for c in cases],
    }
    run_info.update(status="running", updated_at=_now())
    write_json(run_dir / RUN_FILE, run_info)
    if not (run_dir / ENVIRONMENT_FILE).exists():
        env = environment.collect(suite.text, _probes_for_environment({c.framework for c in cases}))
        write_json(run_dir / ENVIRONMENT_FILE, env)

    extra_paths = [os.getcwd(), str(Path(suite.path).resolve().parent)]
    result = RunResult(run_dir=run_dir)
    ran_one = False  # a cool-down (settings.cooldown_s) only follows a case that ran
    try:
        with _SigtermAsInterrupt():
            if hasattr(executor, "run_many"):  # a concurrent executor (Ray): records in completion order
                records = executor.run_many(todo, run_dir, extra_paths, on_start=on_start)
                try:
                    for record in records:
                        append_record(results_path, record)
                        result.records.append(record)
                        if on_record:
                            on_record(record)
                finally:
                    records.close()  # cancels what has not finished
                todo = []
            for i, case in enumerate(todo, 1):
                if on_start:
                    on_start(i, len(todo), case)
                reason = skip_reason(case)
                if reason is not None:
                    record = Record(case=case.to_dict(), status="skipped", reason=reason,
                                    started_at=_now(), ended_at=_now())
                else:
                    if ran_one and case.settings.cooldown_s > 0:
                        _sleep(case.settings.cooldown_s)  # a hot device draws more: let it cool
                    ran_one = True
                    log = run_dir / "logs" / f"{case.case_id}.log"
                    log.parent.mkdir(exist_ok=True)
                    record = executor.run_case(case, run_dir / ".work", log, extra_paths)
                    record.runtime["log"] = str(log.relative_to(run_dir))
                append_record(results_path, record)
                result.records.append(record)
                if on_record:
                    on_record(record)
    except (KeyboardInterrupt, Interrupted):
        result.interrupted = True
    recorded = done | {r.case_id for r in result.records}
    missing = [i for i in run_info["planned"] if i not in recorded]
    run_info.update(status="incomplete" if missing else "complete", missing=missing, updated_at=_now())
    write_json(run_dir / RUN_FILE, run_info)
    return result


def _read_run_info(run_dir: Path) -> dict | None:
    path = run_dir / RUN_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def resume_plan(run_dir: Path) -> tuple[Path, list[str]]:
    """(the suite file that ran, the planned case ids) of an earlier run directory."""
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run directory")
    info = _read_run_info(run_dir)
    suite_path = run_dir / SUITE_FILE
    if info is None or not suite_path.exists():
        raise UserError(f"--resume {run_dir}: not a benchbench run directory (no {RUN_FILE} / {SUITE_FILE})")
    return suite_path, list(info.get("planned") or [])
