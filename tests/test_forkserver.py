"""Workers forked from the preloaded server: each case's process starts from the server's
pristine state (nothing a case changes reaches the next one), records how it started,
and costs a fork rather than an interpreter start. Failures of forked children (raise,
abort, segfault, hang, memory limit) are covered in test_isolation.py, whose CPU cases fork."""

import json
import shutil

import pytest

from benchbench import results
from conftest import FIXTURES, bb, run_dir_of, write

pytestmark = pytest.mark.slow

LEAKY = """\
name: leaky
matrix:
  model: ['leaky_models:first', 'leaky_models:second']
  batch_size: [2]
defaults:
  input_shape: [10]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.2
  min_iters: 4
  processes: 2
models:
  'leaky_models:first': {threads: 1}
"""


def test_state_a_case_changes_never_reaches_the_next_cases_child(tmp_path):
    shutil.copy(FIXTURES / "leaky_models.py", tmp_path / "leaky_models.py")
    suite = write(tmp_path / "leaky.yaml", LEAKY)
    proc = bb("run", suite, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recs = {r.case["model"]: r for r in results.read_records(run_dir_of(tmp_path / "out"))}
    assert {r.status for r in recs.values()} == {"ok"}, [r.reason for r in recs.values()]
    # interleaved: first, second, first, second — each second ran right after a first
    per = [p for r in recs.values() for p in r.processes["per_process"]]
    assert all(p["start_method"] == "forkserver" for p in per) and len({p["pid"] for p in per}) == 4
    assert recs["leaky_models:first"].runtime["threads"] == 1
    seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("seen-*.json"))]
    assert len(seen) == 2  # the second model built once in each of its two processes
    usable = recs["leaky_models:second"].runtime["threads"]
    for s in seen:
        assert s == {"mkldnn_enabled": True, "env": None, "built_before": [], "threads": usable}, s


PRELOAD_CHECK = """\
import sys
from benchbench.worker.server import preload
preload("torch")
before = set(sys.modules)
from benchbench.backends import torch as tb
versions = tb._versions()
assert "timm" not in sys.modules, "the server imported timm"
tb.BACKEND.imports("resnet18")  # a torchvision model: still no timm
assert "timm" not in sys.modules
import importlib.metadata as md
try:
    want = md.version("timm")
except md.PackageNotFoundError:
    want = None
assert versions["timm"] == want, (versions["timm"], want)
tb.BACKEND.imports("timm:resnet18") if want else None  # a timm model imports it before its build
assert (want is None) or "timm" in sys.modules
print("ok", versions["timm"])
"""


def test_the_server_preloads_what_workers_import_but_timm_only_for_timm_models():
    # a forked child must not import what every child needs (each paid ~0.4 s for timm once),
    # and the server must not import timm at all: a version string needs no import
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", PRELOAD_CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
