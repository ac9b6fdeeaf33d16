"""Run a case in its own worker subprocess, with a timeout and a memory limit.

Whatever happens to the worker — an exception, a segfault, an abort, the kernel's
OOM killer, a hang — the result is a record: the worker's own, or a failed one built
here from the exit status and the last line of the case's log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil

from benchbench.case import Case
from benchbench.results import Record, utc_now
from benchbench.rundir import LOGS_DIR, WORK_DIR
from benchbench.units import fmt_size

POLL_S = 0.05

SIGNAL_MEANING = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "abort",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
}


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _last_log_line(log_path: Path) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def worker_env(case: Case, extra_paths: list[str]) -> dict:
    env = dict(os.environ)
    threads = case.threads or len(os.sched_getaffinity(0))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in extra_paths if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_case(case: Case, work_dir: Path, log_path: Path, extra_paths: list[str] = (),
             python: list[str] | None = None, env: dict | None = None) -> Record:
    """Run ``case`` in a fresh interpreter (``python``: another one, as ``ab`` does, with
    ``env`` added); KeyboardInterrupt kills the worker and propagates."""
    work_dir.mkdir(parents=True, exist_ok=True)
    case_path = work_dir / f"{case.case_id}.case.json"
    result_path = work_dir / f"{case.case_id}.result.json"
    result_path.unlink(missing_ok=True)
    case_path.write_text(json.dumps(case.to_dict()), encoding="utf-8")
    started, t0 = utc_now(), time.monotonic()
    limit = case.settings.memory_limit
    reason = None
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*(python or [sys.executable]), "-m", "benchbench.worker", str(case_path), str(result_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**worker_env(case, list(extra_paths)), **(env or {})},
            start_new_session=True,  # its own process group: killed as a whole, no stray Ctrl-C
        )
        ps = psutil.Process(proc.pid)
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - t0
                if elapsed > case.settings.timeout:
                    _kill_group(proc)
                    reason = f"timed out after {case.settings.timeout:g} s (per-case timeout); worker killed"
                    break
                if limit is not None:
                    rss = _tree_rss(ps)
                    if rss > limit:
                        _kill_group(proc)
                        reason = (
                            f"out of memory: worker RSS {fmt_size(rss)} exceeded the memory "
                            f"limit of {fmt_size(limit)}; worker killed"
                        )
                        break
                time.sleep(POLL_S)
        except BaseException:
            _kill_group(proc)
            raise
        # the worker may have left children (data loaders) behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    duration = time.monotonic() - t0
    if reason is None and result_path.exists():
        record = Record.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
    else:
        record = Record(case=case.to_dict(), status="failed", started_at=started, ended_at=utc_now())
        record.reason = reason or _exit_reason(proc.returncode, log_path)
    record.duration_s = duration
    record.host = socket.gethostname()
    case_path.unlink(missing_ok=True)
    result_path.unlink(missing_ok=True)
    return record


def _exit_reason(code: int, log_path: Path) -> str:
    last = _last_log_line(log_path)
    tail = f"; last log line: {last}" if last else ""
    if code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGKILL:
            return f"worker killed by SIGKILL (likely the kernel's out-of-memory killer){tail}"
        meaning = SIGNAL_MEANING.get(sig, "signal")
        return f"worker crashed: {sig.name} ({meaning}){tail}"
    return f"worker exited with code {code} without a result{tail}"


class LocalExecutor:
    """Cases one after another, each in a fresh worker subprocess on this machine (the
    default executor). ``run_case``, ``skip_reason`` and ``sleep`` are the real ones unless
    a test passes its own."""

    def __init__(self, *, run_case: Callable[..., Record] | None = None,
                 skip_reason: Callable[[Case], str | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        from benchbench import probe

        self._run_case = run_case or globals()["run_case"]
        self._skip_reason = skip_reason or probe.skip_reason
        self._sleep = sleep  # the cool-down between cases

    def run_many(self, cases: list[Case], run_dir: Path, extra_paths: list[str],
                 on_start: Callable[[int, int, Case], None] | None = None) -> Iterator[Record]:
        ran_one = False  # a cool-down (settings.cooldown_s) only follows a case that ran
        for i, case in enumerate(cases, 1):
            if on_start:
                on_start(i, len(cases), case)
            reason = self._skip_reason(case)
            if reason is not None:
                yield Record(case=case.to_dict(), status="skipped", reason=reason, started_at=utc_now(),
                             ended_at=utc_now())
                continue
            if ran_one and case.settings.cooldown_s > 0:
                self._sleep(case.settings.cooldown_s)  # a hot device draws more: let it cool
            ran_one = True
            log = run_dir / LOGS_DIR / f"{case.case_id}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            record = self._run_case(case, run_dir / WORK_DIR, log, extra_paths)
            record.runtime["log"] = str(log.relative_to(run_dir))
            yield record

    def close(self) -> None:
        pass
