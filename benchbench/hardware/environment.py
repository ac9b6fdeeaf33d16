"""environment.json: the machine and software a run happened on. No framework import:
framework facts come from the probe (a subprocess)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

import psutil

import benchbench

PACKAGES = (
    "benchbench",
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pandas",
    "pydantic",
    "psutil",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "plotly",
)


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | None = None) -> dict | None:
    """The commit of the working directory (and whether it has local changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


def collect(suite_text: str, probes: dict[str, dict | None]) -> dict:
    vm = psutil.virtual_memory()
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "cpu": {
            "model": cpu_model(),
            "arch": platform.machine(),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True),
            "usable_cores": len(os.sched_getaffinity(0)),
        },
        "ram_bytes": vm.total,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "benchbench_version": benchbench.__version__,
        "frameworks": probes,
        "git": git_commit(),
        "suite_sha256": hashlib.sha256(suite_text.encode("utf-8")).hexdigest(),
    }
