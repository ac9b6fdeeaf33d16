"""The tensorflow backend: the same models as torch (seed models to the parameter, the
paired zoo models within 1%), a TensorFlow run through the real CLI, skips and failures.

TensorFlow is never imported into the pytest process: importing torchvision (triton)
after TensorFlow segfaults (their bundled LLVMs clash), so one in-process import here
could crash an unrelated test later in the session. Every framework runs in a subprocess;
the module is skipped where TensorFlow is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from benchbench import registry, results
from conftest import REPO, bb, run_dir_of, write

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("tensorflow is not installed (pip install 'benchbench[tensorflow]')", allow_module_level=True)

pytestmark = pytest.mark.slow

SEED_SHAPES = {"seed_cnn": [3, 224, 224], "seed_cnn4": [3, 224, 224], "seed_mlp": [10]}
SEED_CNN_PARAMS = 44_396_609  # DESIGN.md's seed_cnn at 224×224×3

FLOPS_MODELS = ("seed_cnn", "seed_mlp", "mobilenet_v2", "efficientnet_b0", "convnext_tiny")

FACTS = {  # per framework: params(name, shape) and flops(name, shape), run in a subprocess
    "torch": """
import torch
from benchbench.backends import torch as backend
from benchbench.models import torch_models
def params(name, shape):
    return sum(p.numel() for p in torch_models.build(name, shape).parameters())
def flops(name, shape):
    return backend._flops_per_sample(torch_models.build(name, shape).eval(), torch.randn(1, *shape))
""",
    "tensorflow": """
from benchbench.backends import tensorflow as backend
from benchbench.models import keras_models
def params(name, shape):
    n = keras_models.param_counts(keras_models.build(name, shape))[0]
    backend.keras.backend.clear_session()
    return n
def flops(name, shape):
    model = keras_models.build(name, shape)
    return backend._flops_per_sample(model, keras_models.keras_input_shape(shape))[0]
""",
}


def _facts(framework: str, params: dict, flops: dict) -> subprocess.Popen:
    """A process that prints {"params": {key: count}, "flops": {key: count}} for
    {key: (model, input shape)} each."""
    script = FACTS[framework] + textwrap.dedent(f"""
        import json
        params_of, flops_of = {json.dumps(params)}, {json.dumps(flops)}
        print(json.dumps({{"params": {{k: params(name, shape) for k, (name, shape) in params_of.items()}},
                          "flops": {{k: flops(name, shape) for k, (name, shape) in flops_of.items()}}}}))
    """)
    err = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the other process runs
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    proc.err_file = err
    return proc


@pytest.fixture(scope="module")
def facts() -> dict[str, dict[str, dict[str, int]]]:
    """Per framework: parameter counts of the seed models (at two input sizes) and of every
    torchvision↔Keras pair, FLOPs per sample of a few; both frameworks build at once."""
    params = {name: (name, shape) for name, shape in SEED_SHAPES.items()}
    params |= {"seed_cnn@32": ("seed_cnn", [3, 32, 32]), "seed_cnn4@48": ("seed_cnn4", [3, 48, 48])}
    params |= {name: (name, [3, 224, 224]) for name in registry.TORCHVISION_TO_KERAS}
    flops = {name: (name, SEED_SHAPES.get(name, [3, 224, 224])) for name in (*FLOPS_MODELS, "resnet50")}
    procs = {fw: _facts(fw, params, flops) for fw in FACTS}
    out = {}
    for fw, proc in procs.items():
        stdout, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            proc.err_file.seek(0)
            pytest.fail(f"{fw} model facts failed:\n{proc.err_file.read().decode(errors='replace')[-3000:]}")
        out[fw] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_seed_models_have_exactly_the_same_parameter_count(facts):
    torch, tf = facts["torch"]["params"], facts["tensorflow"]["params"]
    assert torch["seed_cnn"] == tf["seed_cnn"] == SEED_CNN_PARAMS
    for name in ("seed_cnn4", "seed_mlp", "seed_cnn@32", "seed_cnn4@48"):
        assert torch[name] == tf[name], name
    assert tf["seed_mlp"] == 10 * 128 + 128 + 128 * 10 + 10


def test_paired_zoo_models_within_one_percent(facts):
    torch, tf = facts["torch"]["params"], facts["tensorflow"]["params"]
    for name in registry.TORCHVISION_TO_KERAS:
        assert abs(tf[name] - torch[name]) <= 0.01 * torch[name], (name, torch[name], tf[name])


def test_flops_are_counted_alike(facts):
    """Both count convolutions and matmuls, 2 × MACs: the same figure for the same model
    (convnext_tiny's grouped convolutions run in an XLA function the count must enter)."""
    torch, tf = facts["torch"]["flops"], facts["tensorflow"]["flops"]
    for name in FLOPS_MODELS:
        assert tf[name] == torch[name] > 0, (name, torch[name], tf[name])
    # Keras's ResNet is v1 (stride in the first 1×1 conv), torchvision's v1.5: see registry
    assert 0.93 * torch["resnet50"] < tf["resnet50"] < 0.96 * torch["resnet50"]


# ------------------------------------------------------------- through the CLI

KERAS_USER = """\
import keras


class Raising(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(10)

    def call(self, x):
        raise RuntimeError("boom in keras call")


def raising(input_shape=None):
    return Raising()


def not_a_model(input_shape=None):
    return "a string"


def small(input_shape=(10,)):
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
"""

TINY = """\
name: tinytf
matrix:
  framework: [tensorflow]
  model: [keras_user:raising, keras_user:not_a_model, seed_mlp, seed_cnn]
  batch_size: [4]
  device: [cpu, tpu]
  mode: [inference, train]
exclude:
  - {model: ['keras_user:raising', 'keras_user:not_a_model'], device: tpu}
  - {model: ['keras_user:raising', 'keras_user:not_a_model'], mode: train}
include:
  - {model: seed_mlp, device: cpu, mode: inference, variant: [eager, xla]}
  - {model: 'keras_user:small', device: cpu, mode: [inference, train]}
defaults:
  input_shape: [3, 32, 32]
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.5
  min_iters: 8
  threads: 1
  timeout: 180
"""

NOISE = ("oneDNN", "absl", "cpu_feature_guard", "I0000", "W0000", "tensorflow/core")


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tf")
    write(tmp / "keras_user.py", KERAS_USER)
    suite = write(tmp / "tiny.yaml", TINY)
    proc = bb("run", suite, "--out", tmp / "out", cwd=tmp)
    recs = {
        (r.case["model"], r.case["device"], r.case["mode"], r.case["variant"]): r
        for r in results.read_records(run_dir_of(tmp / "out"))
    }
    return tmp, proc, recs


def test_cpu_cases_are_ok_with_nhwc_inputs_threads_and_model_facts(tf_run):
    _, proc, recs = tf_run
    assert proc.returncode == 0, proc.stderr
    assert len(recs) == 14
    ok = [r for r in recs.values() if r.status == "ok"]
    assert {(m, mode, v) for m, d, mode, v in recs if d == "cpu" and recs[m, d, mode, v].status == "ok"} == {
        ("seed_mlp", "inference", "fp32"), ("seed_mlp", "train", "fp32"), ("seed_cnn", "inference", "fp32"),
        ("seed_cnn", "train", "fp32"), ("seed_mlp", "inference", "eager"), ("seed_mlp", "inference", "xla"),
        ("keras_user:small", "inference", "fp32"), ("keras_user:small", "train", "fp32"),
    }  # fmt: skip
    for r in ok:
        assert r.runtime["framework"] == "tensorflow" and r.runtime["versions"]["tensorflow"]
        assert r.runtime["threads"] == 1 and r.runtime["interop_threads"] == 1
        assert r.runtime["math_modes"]["tensor_float_32_execution"] is False
        assert r.stats["n"] == len(r.samples) and r.stats["throughput"] > 0
        per = r.processes["per_process"]  # process 1 at least 2 samples, a later one 1; min_time / 5 each
        assert per[0]["n"] >= 2 and all(p["n"] >= 1 and p["timed_wall_s"] >= 0.05 / 5 for p in per)
        assert r.memory["device_peak_allocated_bytes"] is None and r.memory["device_memory_reason"]
        assert r.model["params"] > 0 and r.model["serialized_bytes"] > 0
        assert r.model["flops_per_sample"] is None or r.model["flops_per_sample"] > 0
        assert r.cold_start["build_s"] > 0 and r.cold_start["first_iter_s"] > 0
    cnn = recs["seed_cnn", "cpu", "train", "fp32"]
    assert cnn.runtime["data_layout"] == "NHWC" and cnn.runtime["input_shape"] == [4, 32, 32, 3]
    assert cnn.case["input_shape"] == [3, 32, 32]  # the case stays channels first
    assert cnn.runtime["loss"] == "binary cross-entropy" and cnn.runtime["optimizer"] == "Adam"
    mlp = recs["seed_mlp", "cpu", "inference", "fp32"]
    assert mlp.runtime["data_layout"] == "NC" and mlp.runtime["input_shape"] == [4, 10]
    assert mlp.model["params"] == 10 * 128 + 128 + 128 * 10 + 10
    assert mlp.model["flops_per_sample"] == 2 * (10 * 128 + 128 * 10)  # the torch backend's figure
    assert recs["seed_mlp", "cpu", "train", "fp32"].runtime["loss"] == "sparse categorical cross-entropy"
    assert recs["keras_user:small", "cpu", "train", "fp32"].runtime["loss"] == "cross-entropy"


def test_variants_say_how_they_executed(tf_run):
    _, _, recs = tf_run
    fp32, eager, xla = (recs["seed_mlp", "cpu", "inference", v] for v in ("fp32", "eager", "xla"))
    assert fp32.runtime["math_modes"]["execution"] == "tf.function" and fp32.cold_start["compile_s"] > 0
    assert eager.runtime["math_modes"]["execution"] == "eager" and eager.cold_start["compile_s"] is None
    assert xla.runtime["math_modes"]["xla_jit_compile"] is True


def test_tpu_cases_are_skipped_with_the_reason(tf_run):
    _, _, recs = tf_run
    tpu = [r for (m, d, mode, v), r in recs.items() if d == "tpu"]
    assert len(tpu) == 4
    for r in tpu:
        assert r.status == "skipped" and "TPU" in r.reason


def test_a_keras_model_that_raises_is_a_failed_record_and_the_suite_goes_on(tf_run):
    tmp, proc, recs = tf_run
    raising = recs["keras_user:raising", "cpu", "inference", "fp32"]
    assert raising.status == "failed" and "RuntimeError: boom in keras call" in raising.reason
    wrong = recs["keras_user:not_a_model", "cpu", "inference", "fp32"]
    assert wrong.status == "failed" and "returned str, not a keras.Model" in wrong.reason
    assert recs["seed_cnn", "cpu", "train", "fp32"].status == "ok"  # ran after them
    log = run_dir_of(tmp / "out") / raising.runtime["log"]
    assert "Traceback" in log.read_text()


def test_tensorflow_start_up_noise_stays_in_the_case_logs(tf_run):
    tmp, proc, recs = tf_run
    for line in NOISE:
        assert line not in proc.stdout + proc.stderr, line
    assert "Traceback" not in proc.stdout + proc.stderr
    log = run_dir_of(tmp / "out") / recs["seed_mlp", "cpu", "inference", "fp32"].runtime["log"]
    assert "tensorflow/seed_mlp" in log.read_text()


def test_validate_checks_models_per_framework_quietly(tmp_path):
    mixed = write(tmp_path / "mixed.yaml", "name: mixed\nmatrix:\n  framework: [torch, tensorflow]\n"
                  "  model: [seed_cnn, resnet18, mobilenet_v2]\n  batch_size: [1]\n")  # fmt: skip
    proc = bb("validate", mixed)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"{mixed}:4: matrix.model[1]: not available for tensorflow: unknown model 'resnet18'; "
        "did you mean 'resnet152'? (run `benchbench list models` to see them all); to run it on the "
        "other frameworks only, add to exclude: {framework: tensorflow, model: 'resnet18'}"
    )
    write(mixed, mixed.read_text() + "exclude:\n  - {framework: tensorflow, model: resnet18}\n")
    for suite in (mixed, REPO / "suites" / "frameworks.yaml", REPO / "suites" / "cnn.yaml"):
        proc = bb("validate", suite)
        assert proc.returncode == 0, proc.stderr
        for line in NOISE:
            assert line not in proc.stdout + proc.stderr, line
