"""Golden files: what users and stored histories depend on stays as it was for a single-device
case. tests/fixtures/golden/ holds what the code before the package restructure (commit
7a7b3ca) produced:

- ``compare_markdown.md``: ``benchbench compare BASE CAND --markdown`` of the two hand-made
  run directories built by :func:`build_runs` (byte for byte);
- ``record_keys.json``: the key set of a real single-device record (``benchbench run`` of
  :data:`ONE_CASE_SUITE`): the top level, ``stats`` and ``timing``.

A key a record gains must be listed in :data:`ADDED_IN_SCHEMA` (a deliberate schema
addition, said in the same change); a key that disappears or is renamed fails the test.
A deliberate change of the markdown output regenerates its golden file:
``BENCHBENCH_REGOLD=1 python -m pytest tests/test_golden.py -k markdown``.
"""

import json
import os
from pathlib import Path

import pytest

from benchbench.case import Case
from benchbench.measure.stats import summarize
from benchbench.results import Record, append_record
from conftest import FIXTURES, bb, run_dir_of, write

GOLDEN = FIXTURES / "golden"

# Keys records gained after the golden was taken, per part of the record ("top", "stats",
# "timing"): each one deliberate, with the change that added it named beside it.
ADDED_IN_SCHEMA: dict[str, set[str]] = {
    # issue 16 (several worker processes per case): the processes block, and what the interval covers
    "top": {"processes"}
    # issue 20: mode generate's block (TTFT, TPOT, token rates, KV-cache and weight bytes); {} otherwise
    | {"generate"}
    # issue 19: mode fit's block (learning curve, time to target, a variant's accuracy/F1); {} otherwise
    | {"quality"},
    "stats": {"interval_scope", "processes"},
    # issue 16: present only when a case's processes chose different block sizes
    "timing": {"block_sizes"}
    # issue 17: what p50…p99 are of (single iterations, or block means: then no latency p99)
    | {"percentiles_of"},
}

ONE_CASE_SUITE = """\
name: golden
matrix:
  framework: torch
  model: seed_mlp
  batch_size: 1
  device: cpu
  mode: inference
  variant: fp32
defaults:
  min_time: 0.2
  max_time: 0.5
"""

ENV = {"host": "h1", "cpu": {"model": "CPU X"}, "git": {"commit": "c0ffee0000", "dirty": False}}


def _record(model, median=0.01, spread=0.01, n=40, rss=100 * 2**20, status="ok"):
    """A single-device record whose samples spread ±``spread`` around ``median`` (deterministic)."""
    case = Case("torch", model, 1, "cpu", "inference", "fp32", (10,))
    if status != "ok":
        return Record(case=case.to_dict(), status=status, reason="boom", host="h1")
    samples = [median * (1 + spread * ((i * 7) % 11 - 5) / 5) for i in range(n)]
    return Record(
        case=case.to_dict(),
        status="ok",
        stats=summarize(samples, 1).to_dict(),
        samples=samples,
        memory={"host_peak_rss_bytes": rss},
        host="h1",
        runtime={"framework": "torch", "device_name": "CPU X", "versions": {"torch": "2.4.0"}},
    )


def build_runs(root: Path) -> tuple[Path, Path]:
    """Two run directories, ``base`` and ``cand``, with every verdict compare gives: regressed,
    improved, unchanged, inconclusive, new, broken (ok in the base, absent in the candidate), and a failed base."""
    base = [
        _record("seed_mlp"),
        _record("seed_cnn"),
        _record("seed_cnn4"),
        _record("resnet18"),
        _record("resnet50"),
        _record("mobilenet_v2", status="failed"),
    ]
    cand = [
        _record("seed_mlp", median=0.02, rss=150 * 2**20),
        _record("seed_cnn", median=0.0103),
        _record("seed_cnn4", median=0.005),
        _record("resnet18", spread=0.3, n=10),
        _record("mobilenet_v2"),
        _record("vit_b_16"),
    ]
    dirs = []
    for name, records in (("base", base), ("cand", cand)):
        d = root / name
        d.mkdir(parents=True)
        for r in records:
            append_record(d / "results.jsonl", r)
        (d / "environment.json").write_text(json.dumps(ENV), encoding="utf-8")
        dirs.append(d)
    return dirs[0], dirs[1]


def test_compare_markdown_matches_the_golden_file(tmp_path):
    base, cand = build_runs(tmp_path / "runs")
    # cwd: an empty directory, so no results/history.db is picked up as a store
    proc = bb("compare", base, cand, "--markdown", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr  # seed_mlp regressed
    golden = GOLDEN / "compare_markdown.md"
    if os.environ.get("BENCHBENCH_REGOLD"):
        golden.write_text(proc.stdout, encoding="utf-8")
    assert proc.stdout == golden.read_text(encoding="utf-8")


def record_keys(rec: dict) -> dict[str, list[str]]:
    """The key sets the golden file holds: the top level, ``stats`` and ``timing``."""
    return {"top": sorted(rec), "stats": sorted(rec.get("stats") or {}), "timing": sorted(rec.get("timing") or {})}


def check_keys(got: dict[str, list[str]], golden: dict[str, list[str]]) -> list[str]:
    """What is wrong with ``got`` against ``golden``: a key gone (removed or renamed) or a key
    new and not in ADDED_IN_SCHEMA."""
    problems = []
    for part, want in golden.items():
        have = set(got.get(part, []))
        for k in sorted(set(want) - have):
            problems.append(f"{part}: {k!r} is gone (removed or renamed): records with it are stored")
        for k in sorted(have - set(want) - ADDED_IN_SCHEMA.get(part, set())):
            problems.append(f"{part}: {k!r} is new: add it to ADDED_IN_SCHEMA[{part!r}] if deliberate")
    return problems


def test_key_check_flags_removals_renames_and_unlisted_additions():
    golden = {"top": ["a", "b"], "stats": ["median"], "timing": []}
    assert check_keys({"top": ["a", "b"], "stats": ["median"], "timing": []}, golden) == []
    assert check_keys({"top": ["a"], "stats": ["median"], "timing": []}, golden) == [
        "top: 'b' is gone (removed or renamed): records with it are stored"
    ]
    assert check_keys({"top": ["a", "b"], "stats": ["p50_s"], "timing": ["x"]}, golden) == [
        "stats: 'median' is gone (removed or renamed): records with it are stored",
        "stats: 'p50_s' is new: add it to ADDED_IN_SCHEMA['stats'] if deliberate",
        "timing: 'x' is new: add it to ADDED_IN_SCHEMA['timing'] if deliberate",
    ]


def test_added_keys_are_not_already_in_the_golden():
    golden = json.loads((GOLDEN / "record_keys.json").read_text(encoding="utf-8"))
    assert set(ADDED_IN_SCHEMA) <= set(golden)
    assert all(not (ADDED_IN_SCHEMA[p] & set(golden[p])) for p in ADDED_IN_SCHEMA)


@pytest.mark.slow
def test_a_fresh_single_device_record_has_the_golden_key_set(tmp_path):
    suite = write(tmp_path / "golden.yaml", ONE_CASE_SUITE)
    proc = bb("run", suite, "--out", tmp_path / "out", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = (run_dir_of(tmp_path / "out") / "results.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    assert rec["status"] == "ok", rec.get("reason")
    golden = json.loads((GOLDEN / "record_keys.json").read_text(encoding="utf-8"))
    assert check_keys(record_keys(rec), golden) == []
