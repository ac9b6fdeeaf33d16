import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def bb(*args, cwd=None, timeout=600, **kw):
    """Run the real CLI (`python -m benchbench …`) in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "benchbench", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture
def workdir(tmp_path):
    """A directory with the misbehaving models importable as ``bad_models``."""
    shutil.copy(FIXTURES / "bad_models.py", tmp_path / "bad_models.py")
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_dir_of(out: Path) -> Path:
    dirs = [p for p in out.glob("*/*") if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """TensorFlow and torchvision in one process crash here, so TensorFlow only ever runs in
    subprocesses: a test that imports it into the pytest process is an error."""
    if "tensorflow" in sys.modules:
        raise RuntimeError(f"{item.nodeid} imported tensorflow into the pytest process: run it in a subprocess")
