"""NVIDIA DALI (``loader: dali``): skipped with the reason where it cannot run.

Only the availability check is built: DALI needs the ``nvidia-dali`` wheel and a CUDA
GPU, and this project's machines have neither, so a DALI pipeline could not be tested
here. Where both are present the case is still skipped, saying so, rather than running
untested code.
"""

from __future__ import annotations

from benchbench.framework.base import Skip


def availability(device_type: str) -> str | None:
    """None when DALI could run here, else the reason it cannot."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return "NVIDIA DALI is not installed (pip install nvidia-dali-cuda120 from NVIDIA's index)"
    if device_type != "cuda":
        return f"DALI decodes on a CUDA GPU; this case's device is {device_type}"
    return None


def pipeline(case, folder: str, device_type: str):
    reason = availability(device_type)
    raise Skip(reason or "DALI is installed, but benchbench's DALI pipeline is not built yet (untested here)")
