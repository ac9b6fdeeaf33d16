"""Input pipelines (issue 10): generation, presets, corrupt images, the bound, suites, CLI.

TensorFlow runs in subprocesses (TensorFlow and torchvision in one process segfault here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from benchbench.data_spec import DataConfig
from benchbench.errors import UserError
from benchbench.measure import bound
from benchbench.pipelines import presets
from benchbench.pipelines.generate import ensure, generate, list_images
from benchbench.suite.schema import parse_suite

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["none", "light", "seed", "heavy"]


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("imgs") / "set"
    generate(out, images=12, size=48, classes=2, seed=3)
    return str(out)


# ------------------------------------------------------------------ generation


def test_generation_is_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a", images=6, size=32, classes=3, seed=7)
    b = generate(tmp_path / "b", images=6, size=32, classes=3, seed=7)
    c = generate(tmp_path / "c", images=6, size=32, classes=3, seed=8)
    assert a["files"] == b["files"] and len(a["files"]) == 6
    for rel in a["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert a["files"] != c["files"]
    paths, labels, classes = list_images(tmp_path / "a")
    assert classes == ["class_000", "class_001", "class_002"] and sorted(labels) == [0, 0, 1, 1, 2, 2]
    from PIL import Image

    with Image.open(paths[0]) as im:
        assert im.format == "JPEG" and im.size == (32, 32) and im.mode == "RGB"


def test_ensure_generates_once(tmp_path):
    folder, took = ensure(tmp_path / "cache" / "k", 4, 16, 2, 0)
    assert took is not None and os.path.isfile(os.path.join(folder, "manifest.json"))
    again, took2 = ensure(tmp_path / "cache" / "k", 4, 16, 2, 0)
    assert again == folder and took2 is None
    assert os.listdir(tmp_path / "cache") == ["k"]  # no temporary folder left behind


# ------------------------------------------------------------------ torch presets


@pytest.mark.parametrize("preset", PRESETS)
def test_torch_preset_shape_dtype_range(image_set, preset):
    import torch

    from benchbench.pipelines.torch_pipeline import TorchPipeline

    pipe = TorchPipeline(DataConfig(preset=preset), image_set, batch_size=4, input_shape=(3, 40, 40))
    x, y = pipe.next()
    lo, hi = presets.value_range(preset)
    assert x.shape == (4, 3, 40, 40) and x.dtype == torch.float32
    assert float(x.min()) >= lo - 1e-5 and float(x.max()) <= hi + 1e-5
    assert float(x.max()) > float(x.min())  # an image, not a constant
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}


def test_torch_epochs_restart_inside_next_and_are_counted(image_set):
    from benchbench.pipelines.torch_pipeline import TorchPipeline

    pipe = TorchPipeline(DataConfig(preset="none"), image_set, batch_size=5, input_shape=(3, 16, 16))
    for _ in range(5):  # 12 images, drop_last: 2 batches per epoch
        x, _ = pipe.next()
        assert x.shape[0] == 5
    assert pipe.counters()["epochs_started"] == 3 and pipe.counters()["batches"] == 5


def test_torch_corrupt_image_skipped_with_warning_or_failed(tmp_path):
    from benchbench.pipelines.torch_pipeline import CorruptImage, TorchPipeline

    generate(tmp_path / "s", images=6, size=24, classes=2, seed=0)
    bad = tmp_path / "s" / "class_000" / "img_00000.jpg"
    bad.write_bytes(b"this is not a JPEG")
    pipe = TorchPipeline(DataConfig(preset="none"), str(tmp_path / "s"), batch_size=6, input_shape=(3, 16, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = pipe.next()
    assert x.shape[0] == 6  # the next image took its place: the batch is full
    assert pipe.counters()["corrupt_skipped"] == 1 and pipe.counters()["corrupt_files"] == [str(bad)]
    assert any("corrupt image skipped" in str(w.message) and str(bad) in str(w.message) for w in caught)
    strict = TorchPipeline(DataConfig(preset="none", on_corrupt="fail"), str(tmp_path / "s"), 6, (3, 16, 16))
    with pytest.raises(CorruptImage, match="img_00000.jpg"):
        strict.next()


# ------------------------------------------------------------------ tf.data (subprocess)

TF_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    from benchbench.data_spec import DataConfig
    from benchbench.pipelines.tf_pipeline import CorruptImage, TfPipeline
    folder, bad_folder = sys.argv[1:3]
    out = {"presets": {}}
    for preset in ["none", "light", "seed", "heavy"]:
        for workers, cache in ((0, False), (2, True)):
            pipe = TfPipeline(DataConfig(preset=preset, num_workers=workers, cache=cache), folder, 4, (3, 40, 40))
            x, y = pipe.next()
            out["presets"][f"{preset}-{workers}"] = {"shape": list(x.shape), "dtype": x.dtype.name,
                "min": float(x.numpy().min()), "max": float(x.numpy().max()), "labels": sorted(set(y.numpy().tolist()))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = TfPipeline(DataConfig(preset="none"), bad_folder, 4, (3, 16, 16))
        pipe.next()
    out["skipped"] = pipe.counters()["corrupt_skipped"]
    out["warned"] = any("corrupt image skipped" in str(w.message) for w in caught)
    try:
        TfPipeline(DataConfig(preset="none", on_corrupt="fail"), bad_folder, 4, (3, 16, 16))
        out["failed"] = None
    except CorruptImage as e:
        out["failed"] = str(e)
    out["torch_imported"] = "torch" in sys.modules
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_tf_presets_and_corrupt_images_in_a_subprocess(image_set, tmp_path):
    # never import TensorFlow here: TF and torchvision in one process crash (see test_tensorflow.py)
    generate(tmp_path / "bad", images=6, size=24, classes=2, seed=0)
    (tmp_path / "bad" / "class_001" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", TF_SCRIPT, image_set, str(tmp_path / "bad")],
                          capture_output=True, text=True, timeout=240, cwd=REPO, env=env)  # fmt: skip
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT ") :])
    for key, got in out["presets"].items():
        lo, hi = presets.value_range(key.split("-")[0])
        assert got["shape"] == [4, 40, 40, 3] and got["dtype"] == "float32", key
        assert lo - 1e-5 <= got["min"] < got["max"] <= hi + 1e-5, key
        assert set(got["labels"]) <= {0, 1}, key
    assert out["skipped"] == 1 and out["warned"]
    assert out["failed"] and "broken.jpg" in out["failed"]
    assert out["torch_imported"] is False


# ------------------------------------------------------------------ the bound


def test_bound_classification_on_hand_made_rates():
    b = bound.classify(410.0, 1250.0, 395.0)
    assert b["bound"] == "input" and b["text"] == "input-bound: loader 410 img/s < model 1,250 img/s"
    assert b["end_to_end_vs_model"] == pytest.approx(395 / 1250) and b["note"] is None
    c = bound.classify(2000.0, 100.0, 60.0)
    assert c["bound"] == "compute" and c["text"] == "compute-bound: model 100 img/s < loader 2,000 img/s"
    assert c["end_to_end_vs_slower"] == pytest.approx(0.6) and "share the cores" in c["note"]
    assert bound.classify(100.0, 105.0)["bound"] == "balanced"
    assert bound.classify(100.0, 112.0)["bound"] == "input"  # just outside the 10% band
    u = bound.classify(None, 50.0)
    assert u["bound"] == "unknown" and "loader" in u["text"]
    assert bound.fmt_rate(3.456) == "3.46"


# ------------------------------------------------------------------ suites


SUITE = """\
name: p
matrix:
  framework: [torch, tensorflow]
  model: [seed_cnn]
  batch_size: 4
  mode: [data, train]
defaults:
  input_shape: [3, 32, 32]
  data: {source: generated, images: 20, size: 40, preset: [none, seed], num_workers: [0, 1]}
"""


def test_suite_data_sweeps_expand_and_synthetic_ids_stay():
    cases = parse_suite(SUITE, "p.yaml", catalog=lambda fw: None).cases
    assert len(cases) == 2 * 2 * 2 * 2
    assert {(c.data.preset, c.data.num_workers) for c in cases} == {("none", 0), ("none", 1), ("seed", 0), ("seed", 1)}
    assert len({c.case_id for c in cases}) == len(cases)
    plain = parse_suite(SUITE.replace("  mode: [data, train]\n", "").split("  data:")[0], "q.yaml",
                        catalog=lambda fw: None).cases  # fmt: skip
    import dataclasses

    for c in plain:
        assert c.data is None and "data" not in c.identity()
    with_data = cases[0]
    assert with_data.identity()["data"]["preset"] == with_data.data.preset
    assert dataclasses.replace(with_data, data=None).case_id != with_data.case_id
    # the cache folder is where, not what: not in the identity
    moved = dataclasses.replace(with_data, data=dataclasses.replace(with_data.data, cache_dir="/elsewhere"))
    assert moved.case_id == with_data.case_id
    from benchbench.case import Case

    assert Case.from_dict(with_data.to_dict()) == with_data


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            ("  data: {source: generated, images: 20, size: 40, preset: [none, seed], num_workers: [0, 1]}\n", ""),
            "p.yaml:6: matrix.mode: mode 'data' times an input pipeline",
        ),
        (("preset: [none, seed]", "preset: [none, sed]"), "p.yaml:9: defaults.data.preset[1]: expected one of"),
        (("images: 20", "imagez: 20"), "p.yaml:9: defaults.data.imagez: unknown key 'imagez'; did you mean 'images'?"),
        (("num_workers: [0, 1]", "num_workers: -1"), "p.yaml:9: defaults.data.num_workers: must be >= 0"),
        (("images: 20", "classes: 3"), "p.yaml:9: defaults.data.classes: seed_cnn is a binary classifier"),
        (
            ("source: generated", "source: folder, path: /no/such/dir"),
            "p.yaml:9: defaults.data.path: no such directory",
        ),
    ],
)
def test_suite_data_mistakes_are_one_line_with_file_and_line(edit, expected):
    with pytest.raises(UserError) as e:
        parse_suite(SUITE.replace(*edit), "p.yaml", catalog=lambda fw: None)
    assert any(line.startswith(expected) for line in e.value.problems), e.value.problems


# ------------------------------------------------------------------ end to end


E2E = """\
name: e2e
matrix:
  framework: [torch, tensorflow]
  model: [seed_cnn]
  batch_size: 4
  mode: [data, train]
exclude:
  - {framework: tensorflow, mode: data}
defaults:
  input_shape: [3, 32, 32]
  warmup_iters: 1
  warmup_max_time: 2
  min_time: 0.1
  max_time: 0.3
  min_iters: 3
  telemetry: {hz: 0}
  data: {source: generated, images: 16, size: 40, preset: seed, num_workers: 0}
"""


@pytest.mark.slow
def test_cli_end_to_end_data_and_train_modes(tmp_path):
    suite = tmp_path / "e2e.yaml"
    suite.write_text(E2E)
    env = {**os.environ, "BENCHBENCH_DATA_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--out", str(tmp_path / "out"),
                           "--json"], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    by_mode = {(r["case"]["framework"], r["case"]["mode"]): r for r in records}
    assert set(by_mode) == {("torch", "data"), ("torch", "train"), ("tensorflow", "train")}
    assert all(r["status"] == "ok" for r in records), [r["reason"] for r in records]
    data = by_mode[("torch", "data")]["pipeline"]
    assert data["loader_rate"] > 0 and data["cpu_cores_used"] > 0 and data["per_worker_rate"] == data["loader_rate"]
    assert data["corrupt_skipped"] == 0 and data["folder"].startswith(str(tmp_path / "cache"))
    for fw in ("torch", "tensorflow"):
        p = by_mode[(fw, "train")]["pipeline"]
        assert p["bound"] in ("input", "compute", "balanced")
        assert p["loader_rate"] > 0 and p["model_rate"] > 0
        assert p["end_to_end_rate"] == pytest.approx(by_mode[(fw, "train")]["stats"]["throughput"])
        assert p["text"].startswith(p["bound"])
    assert len(os.listdir(tmp_path / "cache")) == 1  # generated once, shared by every case


# ------------------------------------------------------------------ report


def test_report_section_plots_loader_vs_workers_against_the_model():
    from types import SimpleNamespace

    from benchbench.report import pipeline as section_mod
    from benchbench.results import Record

    def rec(fw, mode, workers, loader, model=None, e2e=None):
        case = {
            "framework": fw,
            "model": "seed_cnn",
            "mode": mode,
            "batch_size": 32,
            "device": "cpu",
            "data": {"preset": "seed", "num_workers": workers},
        }
        p = {"config": {"preset": "seed", "num_workers": workers}, "loader_rate": loader}
        if mode != "data":
            p.update(bound.classify(loader, model, e2e))
        return Record(case=case, status="ok", pipeline=p)

    run = SimpleNamespace(
        records=[
            rec("torch", "data", 0, 100.0),
            rec("torch", "data", 2, 300.0),
            rec("torch", "train", 0, 90.0, 200.0, 80.0),
            rec("torch", "train", 2, 280.0, 210.0, 150.0),
            Record(case={"framework": "torch"}, status="ok"),
        ]
    )  # synthetic: left out
    sec = section_mod.section([run])
    assert sec is not None and len(sec.figures) == 1
    fig = sec.figures[0][1]
    traces = {t.name: (list(t.x), list(t.y)) for t in fig.data}
    assert traces["loader · torch"] == ([0, 2], [100.0, 300.0])  # data-mode records give the loader line
    assert traces["model · torch · seed_cnn"] == ([0, 2], [200.0, 210.0])
    assert traces["end to end · torch · seed_cnn"] == ([0, 2], [80.0, 150.0])
    assert "input-bound: loader 90 img/s &lt; model 200 img/s" in sec.body
    assert section_mod.section([SimpleNamespace(records=[])]) is None


def test_pipeline_suite_validates_and_matches_its_schema():
    from benchbench.suite.schema import load_suite, suite_json_schema

    suite = load_suite(REPO / "suites" / "pipeline.yaml", catalog=lambda fw: None)
    train = [c for c in suite.cases if c.mode == "train"]
    assert {(c.framework, c.model) for c in train} == {
        ("torch", "seed_cnn"),
        ("tensorflow", "seed_cnn"),
        ("torch", "resnet18"),
    }
    assert {(c.data.preset, c.data.num_workers) for c in train} == {(p, w) for p in PRESETS for w in (0, 1, 2)}
    assert all(c.data.images == 2000 and c.data.source == "generated" for c in suite.cases)
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = suite_json_schema()
    data = yaml.safe_load((REPO / "suites" / "pipeline.yaml").read_text())
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    data["defaults"]["data"]["preset"] = "nope"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
