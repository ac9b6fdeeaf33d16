"""A suite's own device catalogue files (top-level ``catalogue: FILE`` or a list of files).

Paths are relative to the suite file. Each file has the shape of the built-in catalogue
(:mod:`benchbench.hardware.catalogue`) and is checked when the suite loads: a mistake is one line
naming the suite's ``catalogue`` line and the catalogue file's own ``FILE:LINE``. A run
keeps a copy of the entries (``<run dir>/devices.yaml``, so the run stays readable where
the files are not), and ``benchbench report --hardware`` merges each run's copy over the
built-in catalogue (and under ``--devices`` files). Imports no framework.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchbench import rundir, yamlsrc
from benchbench.errors import UserError
from benchbench.hardware import catalogue as hardware

RUN_FILE = rundir.CATALOGUE_FILE  # in a run directory


def resolve(value, suite_path: str) -> tuple[tuple[str, ...], list[tuple[tuple, str]]]:
    """(absolute paths, [(key path, problem)]) for a suite's ``catalogue:`` value."""
    items = [] if value is None else [value] if isinstance(value, str) else list(value)
    base = Path(suite_path).resolve().parent
    paths, problems = [], []
    for i, item in enumerate(items):
        loc = ("catalogue",) if isinstance(value, str) else ("catalogue", i)
        path = base / os.path.expanduser(item)
        if not path.is_file() and rundir.is_run_dir(base) and (base / RUN_FILE).is_file():
            path = base / RUN_FILE  # the suite copy in a run directory (--resume): the run's copy
        if not path.is_file():
            problems.append((loc, f"device catalogue file {item!r} not found (looked for {path})"))
            continue
        try:
            hardware.load_catalogue([path], env={})
        except UserError as e:
            problems.append((loc, str(e)))
            continue
        if str(path) not in paths:
            paths.append(str(path))
    return tuple(paths), problems


def save(paths, run_dir: Path) -> Path | None:
    """Copy the entries of the suite's catalogue ``paths`` into ``run_dir/devices.yaml``."""
    if not paths:
        return None
    entries = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yamlsrc.load(text).data
        entries += list((data or {}).get("devices") or [])
    import yaml

    out = Path(run_dir) / RUN_FILE
    header = "# the device catalogue entries of this run's suite (catalogue:), from:\n"
    header += "".join(f"#   {p}\n" for p in paths)
    out.write_text(header + yaml.safe_dump({"devices": entries}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def run_files(run_dirs) -> list[Path]:
    """Each run directory's copy of its suite's catalogue, where it has one."""
    return [Path(d) / RUN_FILE for d in run_dirs if (Path(d) / RUN_FILE).is_file()]
