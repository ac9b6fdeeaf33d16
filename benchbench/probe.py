"""What a framework can do on this machine, asked in a subprocess (``python -m
benchbench.backends FRAMEWORK``) so the caller never imports the framework: versions,
devices, model names. Cached per process."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

PROBE_TIMEOUT_S = 300

INSTALL_HINT = {
    "torch": "pip install 'benchbench[torch]'",
    "tensorflow": "pip install 'benchbench[tensorflow]' (NVIDIA GPU: pip install 'tensorflow[and-cuda]')",
}


@functools.cache
def _probe(framework: str) -> tuple[dict | None, str | None]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchbench.backends", framework],  # backends/__main__.py
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"probing {framework} took over {PROBE_TIMEOUT_S} s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named" in last:
            hint = INSTALL_HINT.get(framework, "")
            return None, f"{framework} is not installed ({last}){': ' + hint if hint else ''}"
        return None, f"probing {framework} failed: {last}"
    return json.loads(proc.stdout), None


def probe(framework: str) -> dict | None:
    """The framework's probe dict, or None when it cannot be probed (see probe_error)."""
    return _probe(framework)[0]


def probe_error(framework: str) -> str | None:
    return _probe(framework)[1]


def device_skip_reason(framework: str, device: str) -> str | None:
    """Why ``device`` cannot run ``framework`` cases here, or None if it can."""
    info, error = _probe(framework)
    if info is None:
        return error
    kind, _, index = device.partition(":")
    dev = info["devices"].get(kind)
    if dev is None:
        return f"{framework} has no device {kind!r}"
    if not dev.get("available"):
        return dev.get("reason") or f"no {kind} device available"
    if index and int(index) >= dev.get("count", 1):
        return f"{device}: only {dev.get('count', 1)} {kind} device(s) visible"
    return None


def skip_reason(case) -> str | None:
    """Why ``case`` cannot run on this machine (decided without starting a worker): its
    device, or a variant the device or mode lacks."""
    from benchbench.registry import variant_support

    return device_skip_reason(case.framework, case.device) or variant_support(
        case.framework, case.variant, case.device, case.mode
    )
