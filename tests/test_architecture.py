"""The house rules (docs/architecture.md): the import-linter contracts in pyproject.toml hold,
and importing any module of report or history imports no framework."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO


def _lint_imports() -> list[str] | None:
    """The lint-imports command of this interpreter's environment, or None when import-linter
    is not installed."""
    exe = Path(sys.executable).with_name("lint-imports")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("lint-imports")
    return [found] if found else None


def test_the_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[lint]')")
    cmd = _lint_imports()
    if cmd is None:
        pytest.skip("import-linter is installed but its lint-imports command is not on PATH")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)  # pyproject.toml's contracts
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


FRAMEWORKS = ("torch", "torchvision", "timm", "tensorflow", "keras", "ai_edge_litert")
WORKER_SIDE = (
    "benchbench.worker",
    "benchbench.backends",
    "benchbench.framework",
    "benchbench.variants",
    "benchbench.models",
    "benchbench.pipelines",
)


def test_report_and_history_import_no_framework_when_imported():
    """Every module of benchbench.report and benchbench.history, imported in a fresh
    interpreter: no framework and nothing of the worker side lands in sys.modules."""
    script = textwrap.dedent(f"""
        import importlib, json, pkgutil, sys
        import benchbench.history, benchbench.report
        names = []
        for pkg in (benchbench.report, benchbench.history):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                try:
                    importlib.import_module(m.name)
                except ImportError as e:  # an optional dependency (kaleido, ruptures, ...)
                    if e.name and e.name.split(".")[0] in {FRAMEWORKS!r}:
                        raise
                    continue
                names.append(m.name)
        bad = sorted(n for n in sys.modules
                     if n.split(".")[0] in {FRAMEWORKS!r} or n.startswith({WORKER_SIDE!r}))
        print(json.dumps({{"imported": names, "bad": bad}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "benchbench.report.frame" in out["imported"] and "benchbench.history.compare" in out["imported"]
    assert out["bad"] == []
