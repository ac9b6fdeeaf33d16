"""The tensorflow backend's compression and precision variants (benchbench.variants.tf_variants):
each runs on a small model on the CPU with its size, non-zero count and fidelity; what
cannot run is skipped with the reason.

TensorFlow is never imported into the pytest process (see tests/test_tensorflow.py: it and
torchvision segfault in one process): every case runs through ``benchbench.worker.run`` in
one subprocess, one TensorFlow start-up for all of them — which also checks that a dtype
policy does not leak from one case into the next.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchbench.variants import fidelity
from conftest import REPO

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("tensorflow is not installed (pip install 'benchbench[tensorflow]')", allow_module_level=True)

pytestmark = pytest.mark.slow

CNN, MLP = ("seed_cnn", [3, 64, 64]), ("seed_mlp", [10])
CASES = [  # (model, input shape, device, mode, variant); bf16 runs before fp32 on purpose
    (*CNN, "cpu", "inference", "bf16"), (*CNN, "cpu", "inference", "fp32"),
    (*CNN, "cpu", "inference", "amp_bf16"), (*CNN, "cpu", "inference", "tflite_dynamic"),
    (*CNN, "cpu", "inference", "tflite_int8"), (*CNN, "cpu", "inference", "prune:0.5"),
    (*MLP, "cpu", "inference", "tflite_int8"), (*MLP, "cpu", "inference", "tflite_dynamic"),
    (*MLP, "cpu", "inference", "fp32"), (*MLP, "cpu", "inference", "prune:0.5"),
    (*CNN, "cpu", "train", "frozen_backbone"), (*CNN, "cpu", "train", "finetune"),
    (*MLP, "cpu", "train", "amp"),
    # cannot run: each skipped with the reason
    (*MLP, "cpu", "inference", "fp16"), (*MLP, "cpu", "train", "tflite_int8"),
    (*MLP, "cuda", "inference", "tflite_dynamic"), (*MLP, "cpu", "inference", "int8_static"),
    (*MLP, "cpu", "inference", "frozen_backbone"), (*MLP, "cpu", "train", "prune:0.5"),
    (*MLP, "cpu", "inference", "channels_last"),
]  # fmt: skip

SCRIPT = """
import json, sys
from benchbench.case import Case, Settings
from benchbench import worker
settings = Settings(warmup_iters=1, min_time=0.02, max_time=0.2, min_iters=3, telemetry_hz=0, seed=0)
out = {}
for model, shape, device, mode, variant in json.loads(sys.argv[1]):
    rec = worker.run(Case("tensorflow", model, 8, device, mode, variant, tuple(shape), threads=1, settings=settings))
    out["/".join((model, device, mode, variant))] = rec.to_dict()
print("RECORDS " + json.dumps(out))
# what is pruned: Conv/Dense kernels, as tfmot's prune registry; never depthwise kernels or biases
from benchbench.variants import tf_variants
keras = tf_variants.keras
inputs = keras.Input((8, 8, 3))
x = keras.layers.DepthwiseConv2D(3)(keras.layers.Conv2D(4, 3)(inputs))
model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(x)))
print("PRUNED " + json.dumps(tf_variants.magnitude_prune(model, 0.25)))
# amp as on a GPU (mixed_float16 + LossScaleOptimizer), forced onto the CPU: the scaled loss must
# be taped for gradients to reach the weights (else "No gradients provided": a failed record)
tf_variants.TFVariant.check_device = lambda self, kind: setattr(self, "policy", "mixed_float16")
rec = worker.run(Case("tensorflow", "seed_mlp", 8, "cpu", "train", "amp", (10,), threads=1, settings=settings))
print("AMP16 " + json.dumps(rec.to_dict()))
"""


@pytest.fixture(scope="module")
def recs() -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(CASES)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    out = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
           if line.startswith(("RECORDS ", "PRUNED ", "AMP16 "))}  # fmt: skip
    assert proc.returncode == 0 and len(out) == 3, proc.stderr[-3000:]
    return {**out["RECORDS"], "pruned": out["PRUNED"], "amp16": out["AMP16"]}


def _ok(recs, key):
    r = recs[key]
    assert r["status"] == "ok", (key, r["reason"])
    assert r["stats"]["throughput"] > 0
    assert r["model"]["params"] > 0 and r["model"]["serialized_bytes"] > 0
    assert 0 < r["model"]["nonzero_params"] <= r["model"]["params"]
    f = r["fidelity"]
    assert f["method"] and 0.0 <= f["top1_agreement"] <= 1.0 and f["seed"] == fidelity.SEED_OFFSET, f
    assert f["batch"] == 64 or f["method"].startswith("not recomputed"), f  # 8 batches of 8
    return r


def test_bf16_policies_run_on_cpu_with_sane_fidelity_and_do_not_leak(recs):
    bf16, mixed = _ok(recs, "seed_cnn/cpu/inference/bf16"), _ok(recs, "seed_cnn/cpu/inference/amp_bf16")
    fp32 = _ok(recs, "seed_cnn/cpu/inference/fp32")
    assert bf16["runtime"]["math_modes"]["keras_dtype_policy"] == "bfloat16" and bf16["runtime"]["dtype"] == "bfloat16"
    assert mixed["runtime"]["math_modes"]["keras_dtype_policy"] == "mixed_bfloat16"
    assert mixed["runtime"]["math_modes"]["variable_dtype"] == "float32"
    for r in (bf16, mixed):  # bfloat16 rounding: close to fp32, not identical
        f = r["fidelity"]
        assert f["top1_agreement"] >= 0.9 and 0 < f["mean_abs_diff"] <= f["max_abs_diff"] < 0.05, f
    # fp32 ran after bf16 in the same process: the policy was reset after bf16's build
    assert fp32["runtime"]["math_modes"]["keras_dtype_policy"] == "float32" and fp32["runtime"]["dtype"] == "float32"
    assert fp32["fidelity"]["max_abs_diff"] < 1e-5 and fp32["fidelity"]["top1_agreement"] == 1.0
    assert bf16["model"]["serialized_bytes"] < 0.6 * fp32["model"]["serialized_bytes"]  # 2-byte weights
    assert bf16["model"]["params"] == fp32["model"]["params"]


@pytest.mark.parametrize("model", ["seed_cnn", "seed_mlp"])
def test_tflite_variants_are_smaller_and_int8_agrees_with_fp32(recs, model):
    fp32 = _ok(recs, f"{model}/cpu/inference/fp32")
    for variant in ("tflite_dynamic", "tflite_int8"):
        r = _ok(recs, f"{model}/cpu/inference/{variant}")
        assert r["model"]["serialized_format"].startswith("TensorFlow Lite flatbuffer")
        assert r["model"]["serialized_bytes"] < fp32["model"]["serialized_bytes"] / 2, variant
        info = r["runtime"]["variant"]
        assert info["interpreter"] and info["interpreter_threads"] == 1
        assert info["interpreter"].startswith(("LiteRT: ai_edge_litert", "tf.lite.Interpreter"))
        assert info["interpreter"] in r["runtime"]["math_modes"]["execution"]
        assert r["cold_start"]["compile_s"] > 0  # the conversion
        assert r["fidelity"]["top1_agreement"] >= 0.9, (variant, r["fidelity"])
        assert 0 < r["fidelity"]["mean_abs_diff"] < 0.05, (variant, r["fidelity"])
    assert (
        "float32 inputs and outputs" in recs[f"{model}/cpu/inference/tflite_int8"]["runtime"]["variant"]["quantization"]
    )


def test_prune_half_zeroes_half_of_the_kernels(recs):
    for model in ("seed_cnn", "seed_mlp"):
        r, fp32 = _ok(recs, f"{model}/cpu/inference/prune:0.5"), _ok(recs, f"{model}/cpu/inference/fp32")
        info = r["runtime"]["variant"]
        assert info["sparsity"] == 0.5 and info["tfmot_not_used"] and "magnitude" in info["method"]
        # every Conv/Dense kernel weight is prunable (biases are not): half of them are now zero
        kernels = {"seed_mlp": 10 * 128 + 128 * 10, "seed_cnn": r["model"]["params"] - (32 + 64 + 128 + 512 + 1)}
        assert info["prunable_weights"] == kernels[model] and info["pruned_weights"] == kernels[model] // 2
        newly_zero = fp32["model"]["nonzero_params"] - r["model"]["nonzero_params"]
        assert newly_zero == info["pruned_weights"]  # random kernels have no zeros of their own
        zeros = r["model"]["params"] - r["model"]["nonzero_params"]  # zero-initialised biases too
        assert 0.47 <= zeros / r["model"]["params"] <= 0.53, zeros / r["model"]["params"]
        assert r["model"]["serialized_deflate_bytes"] < 0.75 * r["model"]["serialized_bytes"]
        assert r["fidelity"]["max_abs_diff"] > 0


def test_frozen_backbone_trains_only_the_head(recs):
    frozen, full = _ok(recs, "seed_cnn/cpu/train/frozen_backbone"), _ok(recs, "seed_cnn/cpu/train/finetune")
    assert frozen["model"]["params"] == full["model"]["params"]
    assert frozen["model"]["trained_params"] == 512 + 1  # Dense 1 head: 512 weights and a bias
    assert full["model"]["trained_params"] == full["model"]["params"]
    assert frozen["runtime"]["variant"]["head"] and frozen["fidelity"]["max_abs_diff"] == 0


def test_amp_trains_on_cpu_in_mixed_bfloat16(recs):
    r = _ok(recs, "seed_mlp/cpu/train/amp")
    assert r["runtime"]["math_modes"]["keras_dtype_policy"] == "mixed_bfloat16"
    assert r["runtime"]["optimizer"] == "Adam"  # loss scaling is for float16 only


def test_float16_training_scales_the_loss_and_still_trains(recs):
    r = recs["amp16"]
    assert r["status"] == "ok", r["reason"]
    assert r["runtime"]["math_modes"]["keras_dtype_policy"] == "mixed_float16"
    assert r["runtime"]["optimizer"] == "LossScaleOptimizer" and r["runtime"]["variant"]["loss_scaling"]


@pytest.mark.parametrize("key, words", [
    ("seed_mlp/cpu/inference/fp16", "bf16"),
    ("seed_mlp/cpu/train/tflite_int8", "train"),
    ("seed_mlp/cuda/inference/tflite_dynamic", "CPU"),
    ("seed_mlp/cpu/inference/int8_static", "tflite_int8"),
    ("seed_mlp/cpu/inference/frozen_backbone", "train"),
    ("seed_mlp/cpu/train/prune:0.5", "inference"),
    ("seed_mlp/cpu/inference/channels_last", "tensorflow"),
])  # fmt: skip
def test_combinations_that_cannot_run_are_skipped_with_the_reason(recs, key, words):
    r = recs[key]
    assert r["status"] == "skipped" and words in r["reason"], r["reason"]


def test_pruning_leaves_depthwise_kernels_and_biases_alone(recs):
    conv, dense = 3 * 3 * 3 * 4, 4 * 4 * 4 * 5  # Conv2D 3→4 kernel; Dense on the 4×4×4 depthwise output
    assert recs["pruned"] == {"pruned_weights": round(0.25 * conv) + round(0.25 * dense),
                              "prunable_weights": conv + dense, "pruned_tensors": 2}  # fmt: skip
