"""Data to train on, offline (issue 19): the generated sets are learnable, the split is seeded,
stable, stratified and disjoint, scikit-learn's bundled sets load as the table says, a user's
folder splits the same way; the suite's ``fit:`` block and its mistakes."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pytest

from benchbench.case import Case
from benchbench.data_spec import SKLEARN_SETS, DataConfig
from benchbench.errors import UserError
from benchbench.fit_spec import FitConfig
from benchbench.pipelines import split as splits
from benchbench.pipelines import tabular
from benchbench.pipelines.generate import class_hue, generate, list_images
from benchbench.suite.schema import parse_suite

# ------------------------------------------------------------------ the split


def test_split_is_stable_stratified_disjoint_and_order_free():
    keys = [f"class_{i % 3:03d}/img_{i:05d}.jpg" for i in range(90)]
    labels = [i % 3 for i in range(90)]
    a = splits.assign(keys, labels, 0.2, seed=0)
    assert a == splits.assign(keys, labels, 0.2, seed=0)  # the same every time
    order = list(range(90))
    random.Random(1).shuffle(order)
    b = splits.assign([keys[i] for i in order], [labels[i] for i in order], 0.2, seed=0)
    assert {keys[i] for i, v in zip(order, b) if v} == {k for k, v in zip(keys, a) if v}  # not the file order
    for c in range(3):  # stratified: 6 of each class's 30 in validation
        assert sum(v for v, y in zip(a, labels) if y == c) == 6
    assert splits.assign(keys, labels, 0.2, seed=1) != a  # the seed chooses
    assert splits.val_count(1, 0.2) == 0 and splits.val_count(2, 0.2) == 1 and splits.val_count(10, 0.99) == 9
    with pytest.raises(ValueError, match="unique"):
        splits.assign(["a", "a"], [0, 0], 0.5, 0)


def test_folder_split_is_links_made_once_disjoint_and_complete(tmp_path):
    generate(tmp_path / "set", images=30, size=16, classes=3, seed=0)
    s1 = splits.split_folder(tmp_path / "set", 0.2, 0, tmp_path / "cache")
    s2 = splits.split_folder(tmp_path / "set", 0.2, 0, tmp_path / "cache")
    assert (s1.train, s1.val) == (s2.train, s2.val)
    train = {os.path.realpath(p) for p in list_images(s1.train)[0]}
    val = {os.path.realpath(p) for p in list_images(s1.val)[0]}
    every = {os.path.realpath(p) for p in list_images(tmp_path / "set")[0]}
    assert not train & val and train | val == every and len(val) == 6
    assert s1.info["per_class"]["class_001"] == {"train": 8, "val": 2}
    assert list_images(s1.val)[2] == list_images(s1.train)[2] == ["class_000", "class_001", "class_002"]
    # the user's folder grows: a new split folder (its key covers the file list), old files keep their side
    (tmp_path / "set" / "class_000" / "extra.jpg").write_bytes(
        (tmp_path / "set" / "class_000" / "img_00000.jpg").read_bytes()
    )
    s3 = splits.split_folder(tmp_path / "set", 0.2, 0, tmp_path / "cache")
    assert s3.train != s1.train


def test_sklearn_sets_load_as_the_table_says_and_scale_on_training_rows():
    for name, (features, classes, rows) in SKLEARN_SETS.items():
        x, y, names = tabular.load(name)
        assert x.shape == (rows, features) and len(names) == classes and set(y.tolist()) == set(range(classes))
    s = tabular.split("breast_cancer", 0.2, 0)
    assert len(s.y_train) + len(s.y_val) == 569 and "warning" not in s.info
    assert np.allclose(s.x_train.mean(axis=0), 0, atol=1e-4) and np.allclose(s.x_train.std(axis=0), 1, atol=1e-3)
    assert not np.allclose(s.x_val.mean(axis=0), 0, atol=1e-4)  # validation rows scaled with the training statistics
    b = tabular.ArrayBatches(s.x_train, s.y_train, 32, seed=3)
    seen = [b.next()[1] for _ in range(b.steps_per_epoch)]
    assert b.epochs == 1 and len(np.unique(np.concatenate([x for x in seen]))) <= 2
    b.next()
    assert b.epochs == 2  # the next epoch starts inside next()


def test_hue_shift_moves_the_classes_and_keeps_unshifted_sets_as_they_were(tmp_path):
    assert class_hue(0, 2) == 0.25 and class_hue(1, 2, 0.5) == pytest.approx(0.25)
    a = generate(tmp_path / "a", images=4, size=16, classes=2, seed=0)
    b = generate(tmp_path / "b", images=4, size=16, classes=2, seed=0, hue_shift=0.3)
    assert "hue_shift" not in a and b["hue_shift"] == 0.3 and a["files"] != b["files"]
    plain = DataConfig()
    assert "hue_shift" not in plain.identity() and "name" not in plain.identity()
    assert DataConfig(hue_shift=0.3).generation_key() != plain.generation_key()


# ------------------------------------------------------------------ the suite

SUITE = """\
name: q
matrix:
  framework: torch
  model: [seed_cnn, seed_mlp]
  batch_size: 16
  mode: fit
  variant: [fp32, int8_dynamic, frozen_backbone]
exclude:
  - {model: seed_mlp, variant: frozen_backbone}
defaults:
  data: {source: generated, images: 100, size: 32}
  fit:
    epochs: 4
    target: {metric: val_accuracy, value: 0.9}
    seeds: 3
    backbone: {hue_shift: 0.5}
models:
  seed_mlp:
    data: {source: sklearn, name: digits}
"""


def test_fit_suite_expands_seeds_shapes_and_the_backbone():
    cases = parse_suite(SUITE, "q.yaml", catalog=lambda fw: None).cases
    by = {(c.model, c.variant): c for c in cases}
    assert len(cases) == 5
    cnn, mlp = by[("seed_cnn", "fp32")], by[("seed_mlp", "fp32")]
    assert cnn.input_shape == (3, 32, 32) and mlp.input_shape == (64,)  # the data set's shape
    assert cnn.settings.processes == 3 and cnn.fit.seeds == 3  # one worker process per seed
    assert cnn.fit.target == {"metric": "val_accuracy", "value": 0.9} and cnn.fit.backbone is None
    frozen = by[("seed_cnn", "frozen_backbone")]
    assert frozen.fit.backbone.hue_shift == 0.5 and frozen.fit.backbone.size == 32  # over the case's data:
    assert frozen.identity()["fit"]["backbone"]["hue_shift"] == 0.5
    assert Case.from_dict(frozen.to_dict()) == frozen and frozen.label.endswith("/fit-e4-val_accuracy0.9")
    assert mlp.data.label == "sklearn-digits" and mlp.identity()["optimizer"] == "adam"
    # seeds say how many fits, not what one is
    assert dataclasses.replace(cnn, fit=dataclasses.replace(cnn.fit, seeds=7)).case_id == cnn.case_id


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            ("  data: {source: generated, images: 100, size: 32}\n", ""),
            "q.yaml:6: matrix.mode: mode fit trains on a data set",
        ),
        (("value: 0.9", "value: 1.5"), "q.yaml:14: defaults.fit.target.value: val_accuracy is between 0 and 1"),
        (
            ("metric: val_accuracy", "metric: val_acc"),
            "q.yaml:14: defaults.fit.target.metric: expected one of val_accuracy",
        ),
        (
            ("    seeds: 3\n", "    sedes: 3\n"),
            "q.yaml:15: defaults.fit.sedes: unknown key 'sedes'; did you mean 'seeds'?",
        ),
        (
            ("    backbone: {hue_shift: 0.5}\n", ""),
            "q.yaml:13: defaults.fit: variant frozen_backbone in mode fit starts",
        ),
        (
            ("hue_shift: 0.5", "hue_shift: 0"),
            "q.yaml:16: defaults.fit.backbone: the backbone's data set is the case's own",
        ),
        (("name: digits", "name: mnist"), "q.yaml:19: models.seed_mlp.data.name: expected one of digits"),
        (("mode: fit", "mode: [fit, train]"), "q.yaml:6: matrix.mode: source: sklearn is a data set to train on"),
        (
            ("    data: {source: sklearn, name: digits}\n", "    data: synthetic\n"),
            "q.yaml:6: matrix.mode: mode fit trains on a data set",
        ),
    ],
)
def test_fit_suite_mistakes_are_one_line_with_file_and_line(edit, expected):
    assert edit[0] in SUITE
    with pytest.raises(UserError) as e:
        parse_suite(SUITE.replace(*edit), "q.yaml", catalog=lambda fw: None)
    assert any(line.startswith(expected) for line in e.value.problems), e.value.problems


def test_the_quality_suite_validates_against_the_schema_and_expands():
    import yaml

    jsonschema = pytest.importorskip("jsonschema")
    from benchbench.suite.schema import load_suite, suite_json_schema

    path = os.path.join(os.path.dirname(__file__), "..", "suites", "quality.yaml")
    with open(path, encoding="utf-8") as f:
        jsonschema.validate(yaml.safe_load(f), suite_json_schema())
    cases = load_suite(path, catalog=lambda fw: None).cases
    assert {c.mode for c in cases} == {"fit"} and all(c.fit.target["value"] == 0.95 for c in cases)
    assert {(c.framework, c.model) for c in cases if c.variant == "fp32"} == {
        ("torch", "seed_cnn"), ("torch", "resnet18"), ("torch", "seed_mlp"),
        ("tensorflow", "seed_cnn"), ("tensorflow", "seed_mlp"),
    }  # fmt: skip
    assert {c.variant for c in cases if c.fit.backbone is not None} == {"frozen_backbone", "finetune"}


def test_other_modes_keep_their_case_ids():
    plain = Case("torch", "seed_cnn", 16, "cpu", "train", "fp32", (3, 224, 224))
    assert "fit" not in plain.identity()
    assert plain.case_id == Case.from_dict(plain.to_dict()).case_id
    fit = dataclasses.replace(plain, mode="fit", fit=FitConfig())
    assert fit.identity()["fit"]["epochs"] == 10 and fit.identity()["fit"]["target"] is None


# ------------------------------------------------------------------ learnable


def test_a_generated_set_is_learnable_a_short_fit_reaches_the_target(tmp_path, monkeypatch):
    """seed_cnn at 24×24 on 96 generated images: validation accuracy ≥ 0.9 within 8 epochs."""
    pytest.importorskip("torch")
    from benchbench.backends.torch_fit import Job
    from benchbench.measure import fit

    monkeypatch.setenv("BENCHBENCH_DATA_CACHE", str(tmp_path / "cache"))
    suite = SUITE.replace("size: 32", "size: 24, preset: none, images: 96").replace("images: 100, ", "")
    suite = suite.replace("epochs: 4", "epochs: 8").replace("seeds: 3", "seeds: 1")
    case = next(c for c in parse_suite(suite, "q.yaml", catalog=lambda fw: None).cases
                if (c.model, c.variant) == ("seed_cnn", "fp32"))  # fmt: skip
    case = dataclasses.replace(case, threads=1)
    job = Job(case, seed=0)
    assert job.classes == 2 and len(job.y_val) == 20 and job.steps_per_epoch == 4
    model = job.new_model()
    call, params, _ = job.trainable(model, "fp32")
    result = fit.run(job.trainer(model, call, params), epochs=8, classes=2, batch_size=16, target=case.fit.target)
    q = result.to_dict()
    assert q["reached"], q["curve"]
    assert q["final"]["val_accuracy"] >= 0.9 and q["epochs_run"] <= 8
