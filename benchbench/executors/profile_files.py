"""Profile files (``profile: true``) on their way to the run directory.

A worker writes its case's profile files — torch's Chrome trace, TensorFlow's Chrome
trace and XSpace logdir — to ``<run dir>/profiles/`` (its work directory's sibling). A
worker on another machine (``--executor ray``) writes them to a temporary directory on its
node instead: :func:`pack` reads them there, the task returns them with the record, and
:func:`land` writes them into the driver's run directory and points the record at them.
Imports no framework.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchbench.results import Record

DIR = "profiles"
MAX_SHIP_BYTES = 512 * 2**20  # more than this per case stays on the node, and the record says so


def pack(profile_dir: Path, case_id: str, limit: int = MAX_SHIP_BYTES) -> dict | None:
    """``{"dir": str, "files": {relative path: bytes}}`` of ``case_id``'s files under
    ``profile_dir`` (None when there are none), or ``{"dir", "reason"}`` above ``limit``."""
    profile_dir = Path(profile_dir)
    if not profile_dir.is_dir():
        return None
    paths = [p for p in sorted(profile_dir.rglob("*"))
             if p.is_file() and p.relative_to(profile_dir).parts[0].startswith(case_id)]  # fmt: skip
    if not paths:
        return None
    size = sum(p.stat().st_size for p in paths)
    if size > limit:
        return {"dir": str(profile_dir), "reason": f"profile files of {size:,} bytes exceed the {limit:,} bytes "
                "shipped back from a Ray node; not kept"}  # fmt: skip
    return {"dir": str(profile_dir), "files": {str(p.relative_to(profile_dir)): p.read_bytes() for p in paths}}


def land(record: Record, packed: dict | None, run_dir: Path) -> Record:
    """Write ``packed`` files into ``run_dir/profiles`` and rewrite the record's profile
    paths from the node's directory to it. Files never escape ``run_dir/profiles``."""
    prof = record.runtime.get("profile")
    if not packed or not isinstance(prof, dict):
        return record
    dest = (Path(run_dir) / DIR).resolve()
    if "files" not in packed:
        for key in ("trace", "xspace"):
            if prof.get(key):
                prof[key] = None
                prof[f"{key}_reason"] = packed["reason"]
        return record
    for rel, blob in packed["files"].items():
        target = (dest / rel).resolve()
        if dest not in target.parents:
            continue  # a path that climbs out: never written
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    src = packed["dir"].rstrip(os.sep) + os.sep
    for key, value in prof.items():
        if isinstance(value, str) and value.startswith(src):
            prof[key] = str(dest / value[len(src) :])
    return record
