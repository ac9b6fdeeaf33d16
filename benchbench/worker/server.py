"""A preloaded fork server: cheap, fresh worker processes for one framework.

    python -m benchbench.worker.server torch|tensorflow

Started once per framework by the local executor. It imports the framework, its model zoo
and benchbench's worker side (no op run, so no thread pool or device context exists yet),
then forks one child per request; each child becomes a fresh worker (its own session and
process group, its log on stdout/stderr, the case's environment) and runs
``benchbench.worker.core.main`` exactly as ``python -m benchbench.worker`` would. Thread
counts, precision flags, a crash or a leak stay in that child; the server never runs a case.

Protocol (JSON lines): requests on stdin ``{"id", "case", "result", "log", "env", "cwd",
"paths"}``; on its stdout ``{"ready": true, "preload_s"}`` once, then ``{"started": id,
"pid"}`` per request and ``{"exit": pid, "code"}`` when a child ends (``code`` as
``Popen.returncode``: negative for a signal). End of stdin ends the server and its children.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback


def preload(framework: str) -> None:
    """Import what every worker of ``framework`` imports (module code only: no op run, no
    thread pool or device context): whatever the server leaves out, each child pays again
    (timm, which torch's workers once imported for its version string, cost ~0.4 s a child;
    now only a ``timm:`` case imports it)."""
    if framework == "torch":
        import torch  # noqa: F401
        import torchvision  # noqa: F401

        from benchbench.backends import torch as _torch_backend  # noqa: F401 (models)
        from benchbench.variants import torch_variants  # noqa: F401
    elif framework == "tensorflow":
        from benchbench.backends import tensorflow as _tf_backend  # noqa: F401 (tf, keras, models)
        from benchbench.variants import tf_variants  # noqa: F401
    else:
        raise SystemExit(f"no fork server for framework {framework!r}")
    import benchbench.worker.core  # noqa: F401
    from benchbench.measure import generate, stats, telemetry, timing  # noqa: F401
    from benchbench.measure.sources import amd, cpu, nvml, rapl  # noqa: F401


def _child(req: dict, proto: int, inp: int) -> None:
    """In the forked child: become the worker for ``req``; never returns."""
    code = 1
    try:
        os.setsid()
        os.close(proto)
        log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, inp)  # stdin (the server's requests) becomes /dev/null
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        for p in reversed(req.get("paths") or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        from benchbench.worker.core import main

        code = main([req["case"], req["result"]])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(framework: str) -> int:
    proto = os.dup(1)  # the protocol's channel; stdout itself goes to stderr so prints cannot corrupt it
    os.dup2(2, 1)
    inp = 0
    t0 = time.perf_counter()
    preload(framework)

    def say(msg: dict) -> None:
        os.write(proto, (json.dumps(msg) + "\n").encode())

    say({"ready": True, "pid": os.getpid(), "preload_s": time.perf_counter() - t0})
    print(
        f"benchbench fork server pid {os.getpid()} ({framework}): ready in {time.perf_counter() - t0:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    children: set[int] = set()
    buf = b""
    try:
        while True:
            ready, _, _ = select.select([inp], [], [], 0.05)
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
            if not ready:
                continue
            data = os.read(inp, 65536)
            if not data:
                return 0
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(req, proto, inp)
                children.add(pid)
                say({"started": req["id"], "pid": pid})
                print(f"forked worker pid {pid} for {os.path.basename(req['case'])}", file=sys.stderr, flush=True)
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1]))
