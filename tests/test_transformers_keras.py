"""The transformer presets on TensorFlow: keras_hub backbones built in code, offline, with the
same parameter counts as transformers' (so one suite line measures one architecture on both
frameworks), and the tiny presets through the real worker path.

TensorFlow never enters the pytest process (tests/conftest.py): one subprocess builds the
models and runs the cases, and prints what the tests check."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO

for _module, _why in (("tensorflow", "tensorflow is not installed"),
                      ("keras_hub", "keras-hub is not installed: pip install --no-deps keras-hub")):  # fmt: skip
    if importlib.util.find_spec(_module) is None:
        pytest.skip(_why, allow_module_level=True)

# What transformers builds for the same architectures: tests/test_transformers_presets.py holds the
# torch side to these very numbers (the reduced ones: one layer, a 1000-token vocabulary — every kind
# of weight the family has, small enough to build for real)
ARCHITECTURE_PARAMS = {
    "tiny_encoder": 202_688,
    "tiny_decoder": 656_000,
    "bert_base": 8_842_752,
    "gpt2_small": 8_643_840,
    "llama_1b": 62_871_552,
}
CASES = {
    "tiny_encoder/inference": ("tiny_encoder", "inference", "fp32", {"seq_len": 16}),
    "tiny_encoder/train": ("tiny_encoder", "train", "fp32", {"seq_len": 16}),
    "tiny_decoder/inference": ("tiny_decoder", "inference", "fp32", {"seq_len": 16}),
    "tiny_decoder/train": ("tiny_decoder", "train", "fp32", {"seq_len": 16}),
    "generate": ("tiny_decoder", "generate", "fp32", {"prompt_len": 8, "new_tokens": 4}),
    "int8_weight": ("tiny_decoder", "inference", "int8_weight", {"seq_len": 16}),
}
SCRIPT = """
import dataclasses, json, sys
from benchbench.case import Case, Settings
from benchbench.models import transformers_keras
from benchbench.models.transformers_presets import PRESETS
from benchbench.worker import core
fast = Settings(warmup_iters=1, warmup_max_time=1.0, min_time=0.05, max_time=0.5, min_iters=3, telemetry_hz=0)
records = {}
for key, (model, mode, variant, axes) in json.loads(sys.argv[1]).items():
    length = axes.get("seq_len") or axes["prompt_len"]
    rec = core.run(Case("tensorflow", model, 2, "cpu", mode, variant, (length,), settings=fast, **axes))
    records[key] = {"status": rec.status, "reason": rec.reason, "runtime": rec.runtime, "model": rec.model,
                    "throughput": (rec.stats or {}).get("throughput")}
counts = {}  # after the cases: a case sets TensorFlow's threads before its runtime starts
for name in PRESETS:
    p = PRESETS[name]
    if not name.startswith("tiny"):
        p = dataclasses.replace(p, layers=1, vocab=1000, max_positions=min(p.max_positions, 2048))
    counts[name] = int(transformers_keras.backbone(p).count_params())
print("RESULT " + json.dumps({"counts": counts, "records": records}))
"""


@pytest.fixture(scope="module")
def keras_side():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], cwd=REPO, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_PARAMS))
def test_keras_hub_builds_the_same_architecture_as_transformers(keras_side, name):
    assert keras_side["counts"][name] == ARCHITECTURE_PARAMS[name]


def test_tiny_presets_run_on_tensorflow(keras_side):
    for key in ("tiny_encoder/inference", "tiny_encoder/train", "tiny_decoder/inference", "tiny_decoder/train"):
        rec = keras_side["records"][key]
        assert rec["status"] == "ok", (key, rec["reason"])
        assert rec["runtime"]["input_shape"] == [2, 16], key
        assert rec["runtime"]["token_model"]["library"].startswith("keras_hub"), key
        assert rec["throughput"] > 0 and rec["model"]["params"] > 0, key
    assert keras_side["records"]["tiny_encoder/train"]["runtime"]["loss"].startswith("masked-LM")
    assert keras_side["records"]["tiny_decoder/inference"]["model"]["params"] == ARCHITECTURE_PARAMS["tiny_decoder"]


def test_generate_and_the_llm_variants_are_torch_only_and_say_so(keras_side):
    rec = keras_side["records"]["generate"]
    assert rec["status"] == "skipped" and "torch only" in rec["reason"]
    rec = keras_side["records"]["int8_weight"]
    assert rec["status"] == "skipped" and "torchao is PyTorch only" in rec["reason"]
