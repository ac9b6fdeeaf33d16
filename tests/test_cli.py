"""The CLI's non-running commands, through a real subprocess: exit codes, stdout vs stderr."""

import json

import benchbench
from conftest import bb, write


def test_version_both_ways():
    proc = bb("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"benchbench {benchbench.__version__}"


def test_schema_is_json_for_editors():
    proc = bb("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert "matrix" in schema["properties"]


def test_validate_good_and_bad(tmp_path):
    good = write(tmp_path / "good.yaml", "name: g\nmatrix:\n  model: [seed_mlp]\n  batch_size: [1, 2]\n")
    proc = bb("validate", good)
    assert proc.returncode == 0 and "2 cases" in proc.stdout
    bad = write(tmp_path / "bad.yaml", "name: g\nmatrix:\n  model: [seed_mlp]\n  batch_size: [0]\n  mode: [training]\n")
    proc = bb("validate", bad)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert f"{bad}:4: matrix.batch_size[0]: must be >= 1, got 0" in lines
    assert any(
        line.startswith(f"{bad}:5: matrix.mode[0]: unknown mode 'training'; did you mean 'train'?") for line in lines
    )
    assert "Traceback" not in proc.stderr


def test_missing_suite_file_is_exit_2_one_line(tmp_path):
    proc = bb("run", tmp_path / "nope.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such file"


def test_an_out_dir_that_cannot_be_made_and_a_filter_that_matches_nothing(tmp_path):
    suite = write(tmp_path / "s.yaml", "name: s\nmatrix:\n  model: [seed_mlp]\n  batch_size: [1]\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = bb("run", suite, "--out", blocker)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: --out {blocker}: cannot create the run directory {blocker}/s/")
    assert "(Not a directory)" in proc.stderr
    proc = bb("run", suite, "--filter", "resnet", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "matches none of the suite's 1 cases" in proc.stderr
    assert "torch/seed_mlp/bs1/cpu/inference/fp32" in proc.stderr  # what a label looks like
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_outputs_that_cannot_be_written_are_exit_2_naming_the_file(tmp_path):
    from benchbench.report.synthetic import make_record, write_run

    run = write_run(tmp_path / "run", [make_record("seed_mlp", 1), make_record("seed_cnn", 8)])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = bb("report", run, "-o", blocker / "r.html")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: report: cannot write {blocker / 'r.html'} (File exists: {blocker})"
    proc = bb("store", "export", run, "--format", "csv", "-o", blocker / "x.csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {blocker / 'x.csv'}: Not a directory"
    assert blocker.read_text() == ""


def test_resume_of_something_that_is_not_a_run(tmp_path):
    proc = bb("run", "--resume", tmp_path)
    assert proc.returncode == 2 and "not a benchbench run directory" in proc.stderr


def test_list_modes_variants_and_models():
    assert "train" in bb("list", "modes").stdout
    assert "fp32" in bb("list", "variants").stdout
    models = bb("list", "models")
    assert models.returncode == 0
    names = {line.split()[0] for line in models.stdout.splitlines() if line.strip()}
    assert {"seed_cnn", "seed_cnn4", "seed_mlp", "resnet18", "mobilenet_v2"} <= names
    devices = bb("list", "devices")
    assert devices.returncode == 0 and devices.stdout.startswith("cpu")
    assert "cuda" in devices.stdout and "tpu" in devices.stdout
