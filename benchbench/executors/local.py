"""Run a case in its own worker subprocess, with a timeout and a memory limit.

Whatever happens to the worker — an exception, a segfault, an abort, the kernel's
OOM killer, a hang — the result is a record: the worker's own, or a failed one built
here from the exit status and the last line of the case's log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


class WorkerServer:
    """The executor's side of a preloaded fork server (:mod:`benchbench.worker.server`) for one
    framework: started once, it forks a fresh worker per case in a fraction of a spawn's cost."""

    START_TIMEOUT_S = 300.0

    def __init__(self, framework: str, env: dict, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchbench.worker.server", framework],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self._buf = b""
        self._exits: dict[int, int] = {}
        self._next_id = 0
        msg = self._read(lambda m: "ready" in m, self.START_TIMEOUT_S)
        if msg is None:
            self.close()
            raise RuntimeError(f"the {framework} fork server did not start (see {log_path})")
        self.preload_s = msg.get("preload_s")
        self.start_s = time.monotonic() - t0

    def _read(self, want, timeout: float) -> dict | None:
        """Read protocol lines until one satisfies ``want`` (exits are kept on the way)."""
        deadline = time.monotonic() + timeout
        out = self.proc.stdout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                msg = json.loads(line)
                if "exit" in msg:
                    self._exits[msg["exit"]] = msg["code"]
                if want(msg):
                    return msg
            left = deadline - time.monotonic()
            ready, _, _ = select.select([out], [], [], max(0.0, min(left, POLL_S)))
            if ready:
                data = os.read(out.fileno(), 65536)
                if not data:  # the server died
                    return None
                self._buf += data
            elif left <= 0:
                return None

    def start(self, case_path: Path, result_path: Path, log_path: Path, env: dict) -> int:
        self._next_id += 1
        req = {
            "id": self._next_id,
            "case": str(case_path),
            "result": str(result_path),
            "log": str(log_path),
            "env": env,
            "cwd": os.getcwd(),
            "paths": [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p],
        }
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        msg = self._read(lambda m: m.get("started") == req["id"], 60.0)
        if msg is None:
            raise RuntimeError("the fork server did not start the worker")
        return msg["pid"]

    def exit_code(self, pid: int) -> int | None:
        """The child's exit code once it has ended, else None."""
        if pid not in self._exits:
            self._read(lambda m: False, 0.0)
        if pid not in self._exits and self.proc.poll() is not None:
            return -signal.SIGKILL  # the server died with its children
        if pid not in self._exits and not psutil.pid_exists(pid):
            # gone without its exit message (never expected): wait briefly for it, then say so
            self._read(lambda m: m.get("exit") == pid, 2.0)
            if pid not in self._exits:
                print(
                    f"benchbench: worker {pid} ended without its exit status from the fork server",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        return self._exits.pop(pid, None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                _kill_group_pid(self.proc.pid)
                self.proc.wait()
        self._log.close()


class _Spawned:
    method = "spawn"

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.pid = proc, proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        _kill_group_pid(self.pid)
        self.proc.wait()


class _Forked:
    method = "forkserver"

    def __init__(self, server: WorkerServer, pid: int):
        self.server, self.pid = server, pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self.server.exit_code(self.pid)
        return self.code

    def kill(self) -> None:
        _kill_group_pid(self.pid)
        deadline = time.monotonic() + 10
        while self.poll() is None and time.monotonic() < deadline:
            pass


def _kill_group_pid(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def forkable(case: Case) -> str | None:
    """Why ``case`` must spawn a fresh interpreter rather than fork from a preloaded server
    (None: it may fork). CUDA and TPU runtimes, and torchrun's ranks, do not survive a fork."""
    if case.device.split(":")[0] != "cpu":
        return f"device {case.device}: a fork after the framework's import is unsafe for its runtime"
    if case.devices > 1:
        return "data-parallel: ranks are launched by torchrun / the strategy"
    return None


def run_case(
    case: Case,
    work_dir: Path,
    log_path: Path,
    extra_paths: list[str] = (),
    python: list[str] | None = None,
    env: dict | None = None,
    server: WorkerServer | None = None,
) -> Record:
    """Run ``case`` in a fresh worker process: forked from ``server`` when given, else a new
    interpreter (``python``: another one, as ``ab`` does, with ``env`` added);
    KeyboardInterrupt kills the worker and propagates."""
    work_dir.mkdir(parents=True, exist_ok=True)
    case_path = work_dir / f"{case.case_id}.case.json"
    result_path = work_dir / f"{case.case_id}.result.json"
    result_path.unlink(missing_ok=True)
    case_path.write_text(json.dumps(case.to_dict()), encoding="utf-8")
    started, t0 = utc_now(), time.monotonic()
    limit = case.settings.memory_limit
    reason = None
    worker_env_ = {**worker_env(case, list(extra_paths)), **(env or {})}
    with open(log_path, "ab") as log:
        if server is not None:
            handle: _Spawned | _Forked = _Forked(server, server.start(case_path, result_path, log_path, worker_env_))
        else:
            handle = _Spawned(
                subprocess.Popen(
                    [*(python or [sys.executable]), "-m", "benchbench.worker", str(case_path), str(result_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=worker_env_,
                    start_new_session=True,  # its own process group: killed as a whole, no stray Ctrl-C
                )
            )
        try:
            ps = psutil.Process(handle.pid)
        except psutil.Error:
            ps = None
        try:
            while handle.poll() is None:
                elapsed = time.monotonic() - t0
                if elapsed > case.settings.timeout:
                    handle.kill()
                    reason = f"timed out after {case.settings.timeout:g} s (per-case timeout); worker killed"
                    break
                if limit is not None and ps is not None:
                    rss = _tree_rss(ps)
                    if rss > limit:
                        handle.kill()
                        reason = (
                            f"out of memory: worker RSS {fmt_size(rss)} exceeded the memory "
                            f"limit of {fmt_size(limit)}; worker killed"
                        )
                        break
                time.sleep(POLL_S)
        except BaseException:
            handle.kill()
            raise
        # the worker may have left children (data loaders) behind
        _kill_group_pid(handle.pid)
    duration = time.monotonic() - t0
    if reason is None and result_path.exists():
        record = Record.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
    else:
        record = Record(case=case.to_dict(), status="failed", started_at=started, ended_at=utc_now())
        code = handle.poll()
        record.reason = reason or _exit_reason(code if code is not None else -signal.SIGKILL, log_path)
    record.duration_s = duration
    record.host = socket.gethostname()
    record.runtime.setdefault("worker", {}).update(pid=handle.pid, start_method=handle.method)
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

    def __init__(
        self,
        *,
        run_case: Callable[..., Record] | None = None,
        skip_reason: Callable[[Case], str | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from benchbench import probe

        self._run_case = run_case or globals()["run_case"]
        self._skip_reason = skip_reason or probe.skip_reason
        self._sleep = sleep  # the cool-down between cases
        self._injected = run_case is not None
        self._servers: dict[str, WorkerServer | None] = {}
        self.server_notes: dict[str, str] = {}

    def _server(self, case: Case, run_dir: Path, extra_paths: list[str]) -> WorkerServer | None:
        """The framework's fork server, started on first use; None where the case must spawn
        (or the server could not start: the case spawns and the record says why)."""
        if self._injected or forkable(case) is not None:
            return None
        fw = case.framework
        if fw not in self._servers:
            env = worker_env(dataclasses.replace(case, threads=None), list(extra_paths))
            try:
                self._servers[fw] = WorkerServer(fw, env, run_dir / LOGS_DIR / f"fork-server-{fw}.log")
            except (OSError, RuntimeError) as e:
                self._servers[fw] = None
                self.server_notes[fw] = str(e)
        server = self._servers[fw]
        if server is not None and not server.alive():
            server.close()
            self._servers[fw] = server = None
            self.server_notes[fw] = "the fork server died; later cases spawn"
        return server

    def run_many(
        self,
        cases: list[Case],
        run_dir: Path,
        extra_paths: list[str],
        on_start: Callable[[int, int, Case], None] | None = None,
    ) -> Iterator[Record]:
        """The cases one after another. The fork servers started here end with the call: the
        runner calls once per pass, so each pass forks from freshly started servers, and a
        case's processes do not all inherit one server's memory layout (which would hide part
        of the run-to-run spread from the interval)."""
        try:
            yield from self._run_many(cases, run_dir, extra_paths, on_start)
        finally:
            self.close()

    def _run_many(self, cases, run_dir, extra_paths, on_start) -> Iterator[Record]:
        ran_one = False  # a cool-down (settings.cooldown_s) only follows a case that ran
        for i, case in enumerate(cases, 1):
            if on_start:
                on_start(i, len(cases), case)
            reason = self._skip_reason(case)
            if reason is not None:
                yield Record(
                    case=case.to_dict(), status="skipped", reason=reason, started_at=utc_now(), ended_at=utc_now()
                )
                continue
            if ran_one and case.settings.cooldown_s > 0:
                self._sleep(case.settings.cooldown_s)  # a hot device draws more: let it cool
            ran_one = True
            log = run_dir / LOGS_DIR / f"{case.case_id}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            server = self._server(case, run_dir, extra_paths)
            if server is not None:
                record = self._run_case(case, run_dir / WORK_DIR, log, extra_paths, server=server)
                record.runtime.setdefault("worker", {}).update(
                    server_pid=server.proc.pid, server_start_s=server.start_s
                )
            else:
                record = self._run_case(case, run_dir / WORK_DIR, log, extra_paths)
                why = forkable(case) or self.server_notes.get(case.framework)
                if why and not self._injected:
                    record.runtime.setdefault("worker", {})["spawn_reason"] = why
            record.runtime["log"] = str(log.relative_to(run_dir))
            yield record

    def close(self) -> None:
        for server in self._servers.values():
            if server is not None:
                server.close()
        self._servers.clear()
